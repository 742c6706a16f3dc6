"""Training methods, one subpackage per family."""
