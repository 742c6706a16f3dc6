"""Three-way comparisons of C* thresholds through their intervals, and the power of a design.

A threshold is compared with a target band, or two thresholds with each other, only through
parametric-bootstrap intervals (each grid point's count redrawn as Binomial(T, observed fraction),
as in ``estimate.bootstrap_interval``). A threshold whose point estimate is not reached on the grid
is ``not_found``: it decides nothing. The power of a design is simulated: the measured success
curve is shifted so that the claimed value holds, designs of the same grid and trial count are
drawn from it, and the share of them whose interval would decide for the claim is the power.
"""

from __future__ import annotations

import math

import numpy as np

from lora_claims.methods.cstar.estimate import CStarResult, threshold_crossing

INSIDE, OUTSIDE, UNDECIDED, NOT_FOUND = "inside", "outside", "undecided", "not_found"
ABOVE, AT_MOST = "above", "at_most"


def _curve(result: CStarResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rho (ascending), successes and trials of a result's grid."""
    points = sorted(result.points, key=lambda point: point.rho)
    return (np.array([p.rho for p in points]), np.array([p.successes for p in points]),
            np.array([p.trials for p in points]))


def _draws(rhos, fractions, trials, level: float, replicates: int, rng) -> np.ndarray:
    counts = rng.binomial(trials, fractions, size=(replicates, len(trials)))
    return threshold_crossing(rhos, counts / trials, level)


def _interval(values: np.ndarray, confidence: float) -> list[float | None]:
    """Percentile interval by nearest order statistics; an undefined draw (NaN) counts against
    both ends, an unbounded end is None."""
    tail = (1 - confidence) / 2
    low = float(np.quantile(np.where(np.isnan(values), -np.inf, values), tail, method="lower"))
    high = float(np.quantile(np.where(np.isnan(values), np.inf, values), 1 - tail, method="higher"))
    return [low if math.isfinite(low) else None, high if math.isfinite(high) else None]


def difference_interval(first: CStarResult, second: CStarResult, level: float, replicates: int,
                        confidence: float, seed: int) -> list[float | None]:
    """Bootstrap interval of rho_level(first) - rho_level(second), the two redrawn independently
    (conservative where the two share instances, as budgets of one seed do)."""
    rng = np.random.default_rng([seed, 7])
    draws = []
    for result in (first, second):
        rhos, successes, trials = _curve(result)
        draws.append(_draws(rhos, successes / trials, trials, level, replicates, rng))
    with np.errstate(invalid="ignore"):
        return _interval(draws[0] - draws[1], confidence)


def against_band(estimate: float | None, interval, centre: float, band: float) -> str:
    """``inside`` if the interval lies within centre +- band, ``outside`` if it misses the band,
    ``undecided`` otherwise; ``not_found`` if the point estimate was not reached on the grid."""
    if estimate is None:
        return NOT_FOUND
    low, high = interval
    if low is not None and high is not None and centre - band <= low and high <= centre + band:
        return INSIDE
    if (low is not None and low > centre + band) or (high is not None and high < centre - band):
        return OUTSIDE
    return UNDECIDED


def against_margin(estimate: float | None, interval, margin: float) -> str:
    """``above`` if the interval lies above margin, ``at_most`` if it lies at or below it,
    ``undecided`` otherwise; ``not_found`` without a point estimate."""
    if estimate is None:
        return NOT_FOUND
    low, high = interval
    if low is not None and low > margin:
        return ABOVE
    if high is not None and high <= margin:
        return AT_MOST
    return UNDECIDED


def _shifted(result: CStarResult, level: float, target: float) -> tuple[np.ndarray, ...]:
    """The measured curve moved along rho so that its threshold at ``level`` is ``target``."""
    rhos, successes, trials = _curve(result)
    fractions = successes / trials
    shift = float(threshold_crossing(rhos, fractions, level)) - target
    if not math.isfinite(shift):
        raise ValueError("a curve whose threshold was not reached cannot be shifted to a target")
    return rhos, np.interp(rhos + shift, rhos, fractions), trials


def power_to_match(result: CStarResult, level: float, target: float, band: float, designs: int,
                   replicates: int, confidence: float, seed: int) -> float:
    """P(the interval lies inside target +- band) for this design when the true threshold is
    ``target`` (the measured curve shifted there); 0 when the measured curve never reaches the level."""
    try:
        rhos, fractions, trials = _shifted(result, level, target)
    except ValueError:
        return 0.0
    rng = np.random.default_rng([seed, 11])
    hits = 0
    for _ in range(designs):
        observed = rng.binomial(trials, fractions) / trials
        estimate = float(threshold_crossing(rhos, observed, level))
        interval = _interval(_draws(rhos, observed, trials, level, replicates, rng), confidence)
        estimate_or_none = estimate if math.isfinite(estimate) else None
        hits += against_band(estimate_or_none, interval, target, band) == INSIDE
    return hits / designs


def power_to_show_equal(result: CStarResult, level: float, band: float, designs: int,
                        replicates: int, confidence: float, seed: int) -> float:
    """P(the difference interval of two independent designs lies inside +- band) when both have
    ``result``'s true curve: the power to show that a threshold transfers when it does."""
    rhos, successes, trials = _curve(result)
    fractions = successes / trials
    if not math.isfinite(float(threshold_crossing(rhos, fractions, level))):
        return 0.0
    rng = np.random.default_rng([seed, 13])
    hits = 0
    for _ in range(designs):
        observed = [rng.binomial(trials, fractions) / trials for _ in range(2)]
        estimates = [float(threshold_crossing(rhos, f, level)) for f in observed]
        draws = [_draws(rhos, f, trials, level, replicates, rng) for f in observed]
        with np.errstate(invalid="ignore"):
            interval = _interval(draws[0] - draws[1], confidence)
        estimate = estimates[0] - estimates[1] if all(map(math.isfinite, estimates)) else None
        hits += against_band(estimate, interval, 0.0, band) == INSIDE
    return hits / designs
