"""The science behind the claims; knows no claim, no registry and no audit context."""
