"""Few-shot LoRA fine-tuning of real encoders."""
