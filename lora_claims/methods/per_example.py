"""Statistics on per-example test predictions: the tests behind the fine-tuning verdicts.

A fine-tuning arm (one encoder, task and rank) is a set of runs, one per data seed, each scored on
test rows. Two sources of error decide how precisely an arm's accuracy is known: which k-shot
split a seed drew (seed-level) and which test rows the GLUE dev set happens to hold (row-level).
Every seed of a task is scored on the same rows, so the row-level error is shared across seeds and
no number of seeds removes it; the intervals here resample both levels together: seeds with
replacement, and rows with replacement with the same row indices for every seed and both arms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from lora_claims.errors import InvalidArgument, require_fraction

N_RESAMPLES = 4000


# --- the metrics each task reports ----------------------------------------------------------------


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels))


def matthews(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Matthews correlation (CoLA's GLUE metric); 0 for a constant predictor."""
    classes = np.union1d(predictions, labels)
    if classes.size > 2:
        raise InvalidArgument("Matthews correlation is implemented for binary labels only")
    p, y = predictions == classes[-1], labels == classes[-1]
    tp, tn = float(np.sum(p & y)), float(np.sum(~p & ~y))
    fp, fn = float(np.sum(p & ~y)), float(np.sum(~p & y))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator


def f1_positive(predictions: np.ndarray, labels: np.ndarray) -> float:
    """F1 of the positive class (label 1: MRPC's GLUE metric)."""
    tp = float(np.sum((predictions == 1) & (labels == 1)))
    predicted, actual = float(np.sum(predictions == 1)), float(np.sum(labels == 1))
    return 0.0 if predicted + actual == 0 else 2 * tp / (predicted + actual)


METRICS = {"accuracy": accuracy, "mcc": matthews, "f1": f1_positive}


def best_constant_score(labels: np.ndarray, metric: str) -> float:
    """The best score any constant predictor reaches on these labels."""
    classes = np.unique(labels)
    return max(METRICS[metric](np.full_like(labels, c), labels) for c in classes)


# --- is an arm above chance? -----------------------------------------------------------------------


@dataclass(frozen=True)
class ChanceTest:
    metric: str
    score: float  # the arm's score, averaged over seeds
    constant: float  # the best constant predictor's score on the same rows
    p_value: float
    above: bool
    method: str

    def to_json(self) -> dict:
        return asdict(self)


def chance_test(predictions: np.ndarray, labels: np.ndarray, metric: str = "accuracy",
                alpha: float = 0.05, seed: int = 0) -> ChanceTest:
    """Test an arm (predictions: seeds x rows) against the best constant predictor on its rows.

    Accuracy: the seeds' mean number of correct rows against Binomial(rows, majority fraction),
    exact and one-sided (scipy.stats.binomtest). Other metrics: a permutation null that keeps each
    seed's predictions but breaks their link to the labels; p is the share of permuted mean scores
    at or above the observed one (with the usual +1 correction).
    """
    predictions, labels = np.atleast_2d(predictions), np.asarray(labels)
    alpha = require_fraction("alpha", alpha)
    score = float(np.mean([METRICS[metric](p, labels) for p in predictions]))
    constant = best_constant_score(labels, metric)
    if metric == "accuracy":
        correct = int(round(score * labels.size))
        p_value = float(stats.binomtest(correct, labels.size, constant, alternative="greater").pvalue)
        method = "exact one-sided binomial against the majority fraction"
    else:
        rng = np.random.default_rng(seed)
        permuted = np.array([
            np.mean([METRICS[metric](p, rng.permutation(labels)) for p in predictions])
            for _ in range(999)
        ])
        p_value = float((1 + np.sum(permuted >= score)) / (1 + permuted.size))
        method = "permutation null (999 label permutations)"
    return ChanceTest(metric, score, constant, p_value, p_value < alpha, method)


# --- the paired difference of two arms -------------------------------------------------------------


@dataclass(frozen=True)
class PairedDifference:
    """acc(arm a) - acc(arm b) with its bootstrap distribution summarised."""

    mean: float
    lower: float  # one-sided lower bound at 1 - alpha
    upper: float  # one-sided upper bound at 1 - alpha
    alpha: float
    standard_error: float
    seeds: int
    rows: int
    p_below_margin: float  # bootstrap share of differences <= -margin (non-inferiority p-value)
    p_above_margin: float  # bootstrap share >= -margin (inferiority p-value)

    def to_json(self) -> dict:
        return asdict(self)


def _correct(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return (np.asarray(predictions) == np.asarray(labels)).astype(float)


def two_level_means(values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = 0) -> np.ndarray:
    """Bootstrap means of a seeds x rows array, resampling seeds and rows together (the same row
    indices for every seed): one mean per resample."""
    values = np.asarray(values, dtype=float)
    n_seeds, n_rows = values.shape
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_resamples)
    row_counts = rng.multinomial(n_rows, np.full(n_rows, 1 / n_rows), size=n_resamples)
    return np.einsum("bs,sr,br->b", seed_counts, values, row_counts) / (n_seeds * n_rows)


def paired_difference(pred_a: np.ndarray, pred_b: np.ndarray, labels: np.ndarray, margin: float,
                      alpha: float = 0.05, n_resamples: int = N_RESAMPLES,
                      seed: int = 0) -> PairedDifference:
    """Paired accuracy difference of two arms scored on the same rows (predictions: seeds x rows,
    seed s of one arm paired with seed s of the other)."""
    pred_a, pred_b = np.atleast_2d(pred_a), np.atleast_2d(pred_b)
    if pred_a.shape != pred_b.shape:
        raise InvalidArgument(f"the two arms differ in shape: {pred_a.shape} vs {pred_b.shape}")
    if pred_a.shape[0] < 2:
        raise InvalidArgument(f"a paired comparison needs at least 2 seeds per arm, got {pred_a.shape[0]}")
    alpha = require_fraction("alpha", alpha)
    differences = _correct(pred_a, labels) - _correct(pred_b, labels)
    resampled = two_level_means(differences, n_resamples, seed)
    lower, upper = np.quantile(resampled, [alpha, 1 - alpha])
    return PairedDifference(
        mean=float(differences.mean()), lower=float(lower), upper=float(upper), alpha=alpha,
        standard_error=float(resampled.std(ddof=1)), seeds=differences.shape[0],
        rows=differences.shape[1],
        p_below_margin=float((1 + np.sum(resampled <= -margin)) / (1 + n_resamples)),
        p_above_margin=float((1 + np.sum(resampled >= -margin)) / (1 + n_resamples)),
    )


def non_inferiority_power(standard_error: float, margin: float, alpha: float,
                          true_difference: float = 0.0) -> float:
    """Power to show non-inferiority when the true difference is ``true_difference``, under a
    normal approximation with the design's standard error (from the bootstrap)."""
    if standard_error <= 0:
        return 1.0 if true_difference > -margin else 0.0
    z = stats.norm.ppf(1 - alpha)
    return float(stats.norm.cdf((true_difference + margin) / standard_error - z))


def holm(p_values: list[float], alpha: float) -> list[bool]:
    """Which hypotheses Holm's step-down procedure rejects at family-wise level ``alpha``
    (statsmodels.stats.multitest.multipletests)."""
    if not p_values:
        return []
    from statsmodels.stats.multitest import multipletests

    return [bool(r) for r in multipletests(p_values, alpha=alpha, method="holm")[0]]


# --- which rank is best? ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BestRankTest:
    """Each rank's advantage over the baseline rank, with simultaneous one-sided bounds."""

    baseline: int
    best: int
    advantages: dict[str, float]  # rank -> mean acc(rank) - acc(baseline)
    lower: dict[str, float]  # simultaneous lower bounds (max-statistic bootstrap)
    upper: dict[str, float]  # simultaneous upper bounds
    alpha: float

    def to_json(self) -> dict:
        return asdict(self)


def best_rank_test(predictions: dict[int, list[np.ndarray]], labels: list[np.ndarray],
                   baseline: int = 1, alpha: float = 0.05, n_resamples: int = N_RESAMPLES,
                   seed: int = 0) -> BestRankTest:
    """Simultaneous bounds on acc(r) - acc(baseline) for every other rank r.

    ``predictions[rank][s]`` and ``labels[s]`` are seed s's test rows. Seeds are resampled, and
    rows within each seed; where every seed scores the same rows the row draw is shared by all
    seeds (the rows are one sample of the task), otherwise each seed draws its own. The lower
    bounds hold together at 1 - alpha, and so do the upper bounds (the bootstrap distribution of
    the largest standardized deviation over ranks, one side at a time), so the rank that looks
    best is not favoured by having been selected.
    """
    others = sorted(r for r in predictions if r != baseline)
    if not others:
        raise InvalidArgument("a rank sweep needs at least one rank besides the baseline")
    labels = [np.asarray(y) for y in labels]
    n_seeds = len(labels)
    if n_seeds < 2:
        raise InvalidArgument(f"a rank sweep needs at least 2 seeds, got {n_seeds}")
    shared = all(y.shape == labels[0].shape and np.array_equal(y, labels[0]) for y in labels)
    rng = np.random.default_rng(seed)
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_resamples)
    shared_rows = (rng.multinomial(labels[0].size, np.full(labels[0].size, 1 / labels[0].size),
                                   size=n_resamples) if shared else None)
    per_seed = np.empty((n_resamples, n_seeds, len(others)))
    means = np.zeros(len(others))
    for s, y in enumerate(labels):
        base = np.asarray(predictions[baseline][s]) == y
        diff = np.stack([(np.asarray(predictions[r][s]) == y).astype(float) - base for r in others])
        rows = shared_rows if shared else rng.multinomial(y.size, np.full(y.size, 1 / y.size),
                                                          size=n_resamples)
        per_seed[:, s, :] = rows @ diff.T / y.size
        means += diff.mean(1) / n_seeds
    draws = (np.einsum("bs,bsr->br", seed_counts, per_seed) / n_seeds).T  # ranks x resamples
    scale = draws.std(axis=1, ddof=1)
    scale = np.where(scale > 0, scale, 1.0)
    deviation = (draws - means[:, None]) / scale[:, None]
    above = float(np.quantile(deviation.max(axis=0), 1 - alpha))  # for the lower bounds
    below = float(np.quantile((-deviation).max(axis=0), 1 - alpha))  # for the upper bounds
    lower, upper = means - above * scale, means + below * scale
    best = others[int(np.argmax(means))] if means.max() > 0 else baseline
    key = [str(r) for r in others]
    return BestRankTest(baseline, best, dict(zip(key, means.tolist(), strict=True)),
                        dict(zip(key, lower.tolist(), strict=True)),
                        dict(zip(key, upper.tolist(), strict=True)), alpha)
