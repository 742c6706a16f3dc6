"""Interval estimates and paired tests shared by the estimators and the claim verdicts."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from lora_claims.errors import (
    InvalidArgument,
    require_fraction,
    require_int,
    require_positive_float,
)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's implementation)."""
    trials = require_int("trials", trials)
    successes = require_int("successes", successes, minimum=0, maximum=trials)
    confidence = require_fraction("confidence", confidence)
    interval = stats.binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)



# Paired comparisons of fine-tuning runs. Runs are paired by data seed: the same seed gives both
# arms the same k-shot split and the same test rows, so the unit of analysis is the per-seed
# difference, and the interval is an interval for its mean.


@dataclass(frozen=True)
class DifferenceInterval:
    """Mean of paired differences with a two-sided interval at ``confidence``."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    method: str

    def to_json(self) -> dict:
        return asdict(self)


def _differences(values) -> np.ndarray:
    diffs = np.asarray(values, dtype=float)
    if diffs.ndim != 1 or diffs.size < 2 or not np.all(np.isfinite(diffs)):
        raise InvalidArgument(
            f"paired differences must be a 1-d array of at least 2 finite values, got {values!r}"
        )
    return diffs


def paired_t_interval(differences, confidence: float = 0.95) -> DifferenceInterval:
    """Student-t interval for the mean of paired differences (scipy.stats.t)."""
    diffs = _differences(differences)
    confidence = require_fraction("confidence", confidence)
    mean = float(diffs.mean())
    sem = float(stats.sem(diffs))
    if sem == 0.0:
        low = high = mean
    else:
        low, high = (float(v) for v in stats.t.interval(confidence, diffs.size - 1, mean, sem))
    return DifferenceInterval(mean, low, high, int(diffs.size), confidence, "t")


def paired_bootstrap_interval(differences, confidence: float = 0.95, n_resamples: int = 9999,
                              seed: int = 0) -> DifferenceInterval:
    """Percentile bootstrap interval for the mean of paired differences (scipy.stats.bootstrap,
    seeded). With a handful of seeds it is narrower than the t interval; both are reported."""
    diffs = _differences(differences)
    confidence = require_fraction("confidence", confidence)
    mean = float(diffs.mean())
    if np.ptp(diffs) == 0.0:
        low = high = mean
    else:
        result = stats.bootstrap(
            (diffs,), np.mean, confidence_level=confidence, method="percentile",
            n_resamples=n_resamples, rng=np.random.default_rng(seed),
        )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return DifferenceInterval(mean, low, high, int(diffs.size), confidence, "percentile bootstrap")


def _margin_decision(interval: DifferenceInterval, delta: float) -> str:
    if interval.low > -delta:
        return "non_inferior"
    if interval.high < -delta:
        return "inferior"
    return "inconclusive"


@dataclass(frozen=True)
class NonInferiority:
    """Is arm A at most ``delta`` worse than arm B?  A - B is compared with -delta."""

    delta: float
    t: DifferenceInterval
    bootstrap: DifferenceInterval
    decision: str  # by the t interval: non_inferior | inferior | inconclusive
    bootstrap_decision: str

    @property
    def intervals_agree(self) -> bool:
        return self.decision == self.bootstrap_decision

    def to_json(self) -> dict:
        return {"delta": self.delta, "t": self.t.to_json(), "bootstrap": self.bootstrap.to_json(),
                "decision": self.decision, "bootstrap_decision": self.bootstrap_decision}


def paired_non_inferiority(acc_a, acc_b, delta: float, confidence: float = 0.95,
                           seed: int = 0) -> NonInferiority:
    """Non-inferiority of A against B from per-seed accuracies (same order = same seed).

    The margin ``delta`` must be declared before the data are seen (the claim registry holds it).
    Non-inferior when the interval's lower end lies above -delta; inferior when its upper end lies
    below -delta; otherwise the data cannot tell (too few seeds or too much spread).
    """
    a, b = np.asarray(acc_a, dtype=float), np.asarray(acc_b, dtype=float)
    if a.shape != b.shape:
        raise InvalidArgument(f"paired arms need the same seeds: {a.size} vs {b.size} values")
    delta = require_positive_float("delta", delta)
    t = paired_t_interval(a - b, confidence)
    boot = paired_bootstrap_interval(a - b, confidence, seed=seed)
    return NonInferiority(delta, t, boot, _margin_decision(t, delta), _margin_decision(boot, delta))


@dataclass(frozen=True)
class ChanceLevel:
    """Majority-class accuracy on a test set, with its Wilson interval."""

    majority: float
    low: float
    high: float
    test_size: int

    def above(self, accuracy: float) -> bool:
        """Above chance: beyond the upper end of the majority-class interval."""
        return accuracy > self.high

    def to_json(self) -> dict:
        return asdict(self)


def chance_level(label_counts, confidence: float = 0.95) -> ChanceLevel:
    """The accuracy of always predicting the most frequent test label, and its interval."""
    counts = [int(c) for c in label_counts]
    total = sum(counts)
    low, high = wilson_interval(max(counts), total, confidence)
    return ChanceLevel(max(counts) / total, low, high, total)


@dataclass(frozen=True)
class BestRank:
    """Which rank has the best mean accuracy, and how it compares with the baseline rank."""

    means: dict[int, float]
    best: int
    baseline: int
    comparator: int  # the best rank other than the baseline
    t: DifferenceInterval  # acc(comparator) - acc(baseline), Bonferroni-adjusted confidence
    bootstrap: DifferenceInterval
    decision: str  # above_baseline | baseline_best | inconclusive

    def to_json(self) -> dict:
        return {"means": {str(r): m for r, m in self.means.items()}, "best": self.best,
                "baseline": self.baseline, "comparator": self.comparator, "t": self.t.to_json(),
                "bootstrap": self.bootstrap.to_json(), "decision": self.decision}


def best_rank_test(acc_by_rank: dict[int, list[float]], baseline: int = 1, alpha: float = 0.05,
                   seed: int = 0) -> BestRank:
    """Best rank by mean accuracy against ``baseline``, paired by seed.

    The best rank is chosen from the data, so the interval of acc(best) - acc(baseline) uses a
    Bonferroni level 1 - alpha / m over the m candidate ranks: picking the maximum of m noisy
    differences would otherwise overstate it. ``above_baseline`` when a rank other than the
    baseline is best and the adjusted interval lies above 0; ``baseline_best`` when the baseline
    itself has the best mean; ``inconclusive`` otherwise.
    """
    if baseline not in acc_by_rank or len(acc_by_rank) < 2:
        raise InvalidArgument(
            f"best_rank_test needs the baseline rank {baseline} and another rank, "
            f"got ranks {sorted(acc_by_rank)}"
        )
    arrays = {int(r): np.asarray(v, dtype=float) for r, v in acc_by_rank.items()}
    sizes = {a.size for a in arrays.values()}
    if len(sizes) != 1:
        raise InvalidArgument(f"every rank needs the same seeds; got sizes {sorted(sizes)}")
    alpha = require_fraction("alpha", alpha)
    means = {r: float(a.mean()) for r, a in sorted(arrays.items())}
    best = max(means, key=lambda r: (means[r], -r))  # ties go to the smaller rank
    others = [r for r in means if r != baseline]
    confidence = 1.0 - alpha / len(others)
    comparator = best if best != baseline else max(others, key=lambda r: (means[r], -r))
    diffs = arrays[comparator] - arrays[baseline]
    t = paired_t_interval(diffs, confidence)
    boot = paired_bootstrap_interval(diffs, confidence, seed=seed)
    if best == baseline:
        decision = "baseline_best"
    elif t.low > 0:
        decision = "above_baseline"
    else:
        decision = "inconclusive"
    return BestRank(means, best, baseline, comparator, t, boot, decision)
