"""lora-claims: an executable audit of arXiv 2605.03724, "Rethinking the Rank Threshold for LoRA"."""

__version__ = "0.1.0"
