"""Claim evaluators: ``evaluate_cN(ctx) -> ClaimResult``, referenced from the claim registry."""
