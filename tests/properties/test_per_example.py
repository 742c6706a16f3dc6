"""The per-example statistics behind the fine-tuning verdicts, on simulated predictions at the CPU
design's real size and noise: SST-2's 872 test rows, 20 data seeds, a seed-level SD of 4 points in
the paired difference, and rows whose difficulty is shared by every seed and both arms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from lora_claims.errors import InvalidArgument
from lora_claims.methods.per_example import (
    best_constant_score,
    best_rank_test,
    chance_test,
    f1_positive,
    holm,
    matthews,
    non_inferiority_power,
    paired_difference,
)
from tests.stats_support import ALPHA, MARGIN, ROWS, SEEDS, simulate


def test_metrics_on_known_cases():
    labels = np.array([1, 1, 0, 0])
    assert matthews(labels, labels) == pytest.approx(1.0)
    assert matthews(1 - labels, labels) == pytest.approx(-1.0)
    assert matthews(np.ones(4, int), labels) == 0.0
    assert f1_positive(np.array([1, 0, 0, 0]), labels) == pytest.approx(2 / 3)
    assert best_constant_score(np.array([1, 1, 1, 0]), "accuracy") == 0.75
    assert best_constant_score(np.array([1, 1, 1, 0]), "f1") == pytest.approx(6 / 7)
    assert best_constant_score(labels, "mcc") == 0.0


def test_chance_test_controls():
    rng = np.random.default_rng(0)
    arms, labels = simulate({"good": 0.75, "chance": 0.5}, rng)
    majority = max(np.mean(labels), 1 - np.mean(labels))
    good = chance_test(arms["good"], labels)
    assert good.above and good.constant == pytest.approx(majority)
    # Always predicting the majority class is the constant predictor itself: never above chance.
    constant = np.full((SEEDS, ROWS), int(np.mean(labels) >= 0.5))
    assert not chance_test(constant, labels).above
    guesses = rng.integers(0, 2, (SEEDS, ROWS))
    assert not chance_test(guesses, labels).above
    assert chance_test(arms["good"], labels, metric="mcc").above
    assert not chance_test(guesses[:3], labels, metric="mcc").above


def test_chance_test_is_calibrated_under_the_null():
    """Arms drawn at the majority fraction beat chance about alpha of the time, not more."""
    rng = np.random.default_rng(1)
    labels = (rng.random(277) < 0.53).astype(int)  # RTE's test size
    hits = 0
    for _ in range(300):
        predictions = np.where(rng.random((1, 277)) < 0.53, labels, 1 - labels)
        hits += chance_test(predictions, labels).above
    assert hits / 300 <= ALPHA + 0.03


def test_identical_seed_differences_keep_the_row_error():
    """Every seed giving the same difference leaves the test rows' sampling error: the interval
    has positive width (a seed-only interval would collapse to a point)."""
    rng = np.random.default_rng(2)
    arms, labels = simulate({"a": 0.8, "b": 0.8}, rng, seeds=5, seed_sd=0.0)
    same_a, same_b = np.repeat(arms["a"][:1], 5, axis=0), np.repeat(arms["b"][:1], 5, axis=0)
    result = paired_difference(same_a, same_b, labels, MARGIN)
    assert result.lower < result.mean < result.upper
    assert result.upper - result.lower > 0.01


@pytest.mark.slow
def test_non_inferiority_positive_control_at_design_size():
    """True difference 0: non-inferior at least as often as the power the design declares."""
    rng = np.random.default_rng(3)
    shown, errors = 0, []
    for trial in range(120):
        arms, labels = simulate({"r1": 0.82, "r12": 0.82}, rng)
        result = paired_difference(arms["r1"], arms["r12"], labels, MARGIN, ALPHA, 1000, trial)
        shown += result.lower > -MARGIN
        errors.append(result.standard_error)
    declared = non_inferiority_power(float(np.mean(errors)), MARGIN, ALPHA)
    assert 0.3 < declared < 1.0
    assert shown / 120 >= declared - 0.12  # 120 trials: binomial error about 0.045


@pytest.mark.slow
def test_inferiority_negative_control_at_design_size():
    """True difference -6 points: the upper bound falls below -margin; non-inferiority is never shown."""
    rng = np.random.default_rng(4)
    inferior = 0
    for trial in range(60):
        arms, labels = simulate({"r1": 0.76, "r12": 0.82}, rng)
        result = paired_difference(arms["r1"], arms["r12"], labels, MARGIN, ALPHA, 1000, trial)
        assert result.lower < -MARGIN
        inferior += result.upper < -MARGIN
    assert inferior / 60 >= 0.9


@pytest.mark.slow
def test_false_non_inferiority_is_rare_at_the_margin():
    """True difference exactly -margin: non-inferiority shown about alpha of the time."""
    rng = np.random.default_rng(5)
    shown = 0
    for trial in range(150):
        arms, labels = simulate({"r1": 0.80, "r12": 0.82}, rng)
        result = paired_difference(arms["r1"], arms["r12"], labels, MARGIN, ALPHA, 1000, trial)
        shown += result.lower > -MARGIN
    assert shown / 150 <= ALPHA + 0.05


def test_bad_designs_are_refused():
    labels = np.zeros(10, int)
    with pytest.raises(InvalidArgument, match="at least 2 seeds"):
        paired_difference(np.zeros((1, 10)), np.zeros((1, 10)), labels, MARGIN)
    with pytest.raises(InvalidArgument, match="differ in shape"):
        paired_difference(np.zeros((2, 10)), np.zeros((3, 10)), labels, MARGIN)


def test_holm_matches_its_definition():
    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    assert holm([0.001, 0.01, 0.02], 0.05) == [True, True, True]
    assert holm([], 0.05) == []


def test_power_formula():
    assert non_inferiority_power(0.01, 0.02, 0.05) == pytest.approx(stats.norm.cdf(2 - 1.6449), abs=1e-4)
    assert non_inferiority_power(0.01, 0.02, 0.05, true_difference=-0.02) == pytest.approx(0.05, abs=1e-4)


def per_seed(arms: dict) -> dict:
    return {rank: list(predictions) for rank, predictions in arms.items()}


def test_best_rank_with_seeds_on_their_own_rows():
    """MNLI's seeds are tested on different rows: each seed draws its own rows."""
    rng = np.random.default_rng(9)
    predictions, labels = {1: [], 4: []}, []
    for _ in range(5):
        arms, y = simulate({1: 0.55, 4: 0.70}, rng, rows=200, seeds=1)
        labels.append(y)
        for rank in predictions:
            predictions[rank].append(arms[rank][0])
    test = best_rank_test(predictions, labels)
    assert test.best == 4 and test.lower["4"] > 0 > test.lower["4"] - 0.2
    with pytest.raises(InvalidArgument, match="at least 2 seeds"):
        best_rank_test({1: predictions[1][:1], 4: predictions[4][:1]}, labels[:1])


def test_best_rank_controls():
    rng = np.random.default_rng(6)
    rising, labels = simulate({1: 0.60, 2: 0.64, 4: 0.68, 8: 0.70}, rng, seeds=10)
    test = best_rank_test(per_seed(rising), [labels] * 10)
    assert test.best == 8 and test.lower["8"] > 0
    assert all(test.lower[r] < test.advantages[r] < test.upper[r] for r in test.lower)
    falling, labels = simulate({1: 0.70, 2: 0.66, 4: 0.62, 8: 0.60}, rng, seeds=10)
    test = best_rank_test(per_seed(falling), [labels] * 10)
    assert test.best == 1 and all(high < 0 for high in test.upper.values())


@pytest.mark.slow
def test_best_rank_selection_is_corrected():
    """With all ranks equal, the best-looking rank's lower bound clears 0 about alpha of the time."""
    rng = np.random.default_rng(7)
    false_wins = 0
    for trial in range(100):
        flat, labels = simulate({1: 0.6, 2: 0.6, 4: 0.6, 8: 0.6, 12: 0.6, 16: 0.6}, rng, seeds=5,
                                rows=300)
        test = best_rank_test(per_seed(flat), [labels] * 5, n_resamples=1000, seed=trial)
        false_wins += max(test.lower.values()) > 0
    assert false_wins / 100 <= ALPHA + 0.06


def test_the_bootstrap_agrees_with_statsmodels_tost_on_seed_level_data():
    """With one row per seed the two-level bootstrap is a bootstrap over paired differences: at a
    large sample its p-value for H0: difference <= -margin matches the paired t test that
    statsmodels' TOST runs (its lower one-sided test)."""
    from statsmodels.stats.weightstats import ttost_paired

    rng = np.random.default_rng(8)
    labels = np.ones(1, int)
    for shift in (0.0, -0.02, -0.05):
        correct_a = rng.random((600, 1)) < 0.80 + shift
        correct_b = rng.random((600, 1)) < 0.80
        ours = paired_difference(correct_a.astype(int), correct_b.astype(int), labels, MARGIN,
                                 n_resamples=8000)
        tost_lower_p = ttost_paired(correct_a[:, 0].astype(float), correct_b[:, 0].astype(float),
                                    -MARGIN, MARGIN)[1][1]
        assert ours.p_below_margin == pytest.approx(tost_lower_p, abs=0.03), shift
