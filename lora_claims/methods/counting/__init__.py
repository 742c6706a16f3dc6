"""Parameter counts and the LoRA manifold's dimension."""
