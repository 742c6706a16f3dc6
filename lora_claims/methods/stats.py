"""Interval estimates shared by the estimators and the claim verdicts (the per-example tests of
the fine-tuning claims live in per_example.py)."""

from __future__ import annotations

from scipy import stats

from lora_claims.errors import require_fraction, require_int


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's implementation)."""
    trials = require_int("trials", trials)
    successes = require_int("successes", successes, minimum=0, maximum=trials)
    confidence = require_fraction("confidence", confidence)
    interval = stats.binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)
