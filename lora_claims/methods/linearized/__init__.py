"""The NTK-linearized LoRA model, its losses, solvers and experiments."""
