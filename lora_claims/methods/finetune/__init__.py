"""Fine-tuning engines: the stacked multi-adapter engine and its peft reference."""
