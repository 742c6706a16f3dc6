"""Claim evaluators: each turns measurements into a verdict with its evidence."""
