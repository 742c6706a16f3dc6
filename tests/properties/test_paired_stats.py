"""Controls for the paired statistics behind C8-C10: each test has a case where it must find the
effect and one where it must not, on synthetic per-seed accuracies with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lora_claims.errors import InvalidArgument
from lora_claims.methods.stats import (
    best_rank_test,
    chance_level,
    paired_bootstrap_interval,
    paired_non_inferiority,
    paired_t_interval,
)

DELTA = 0.02


def test_non_inferiority_positive_control_equal_arms():
    rng = np.random.default_rng(1)
    base = 0.8 + rng.normal(0, 0.02, 10)
    rank1 = base + rng.normal(0, 0.003, 10)  # same accuracy up to small paired noise
    result = paired_non_inferiority(rank1, base, DELTA)
    assert result.decision == "non_inferior" and result.bootstrap_decision == "non_inferior"
    assert result.t.low > -DELTA


def test_non_inferiority_negative_control_clearly_worse():
    rng = np.random.default_rng(2)
    base = 0.8 + rng.normal(0, 0.02, 10)
    rank1 = base - 0.06 + rng.normal(0, 0.003, 10)  # 6 points worse, margin 2 points
    result = paired_non_inferiority(rank1, base, DELTA)
    assert result.decision == "inferior" and result.bootstrap_decision == "inferior"
    assert result.t.high < -DELTA


def test_non_inferiority_underpowered_is_inconclusive():
    result = paired_non_inferiority([0.80, 0.70, 0.78], [0.76, 0.78, 0.74], DELTA)
    assert result.decision == "inconclusive"


def test_pairing_matters():
    """Seed-to-seed spread shared by both arms cancels in the paired difference."""
    spread = np.array([0.55, 0.70, 0.85, 0.60, 0.90])
    result = paired_non_inferiority(spread + 0.001, spread, DELTA)
    assert result.decision == "non_inferior"


def test_t_interval_coverage_calibration():
    """95% t intervals cover the true mean of normal differences about 95% of the time."""
    rng = np.random.default_rng(3)
    covered = 0
    trials = 2000
    for _ in range(trials):
        interval = paired_t_interval(rng.normal(0.1, 0.05, 5), 0.95)
        covered += interval.low <= 0.1 <= interval.high
    assert 0.93 <= covered / trials <= 0.97


@given(st.lists(st.floats(-1, 1), min_size=2, max_size=12))
def test_intervals_contain_the_mean(diffs):
    for interval in (paired_t_interval(diffs), paired_bootstrap_interval(diffs, n_resamples=200)):
        assert interval.low - 1e-12 <= interval.mean <= interval.high + 1e-12


def test_chance_level_controls():
    chance = chance_level([428, 444])  # SST-2 dev
    assert chance.majority == pytest.approx(444 / 872)
    assert chance.above(0.80)  # positive control: clearly above the majority class
    assert not chance.above(0.52)  # negative control: within the majority interval


def test_best_rank_positive_control():
    rng = np.random.default_rng(4)
    noise = rng.normal(0, 0.005, 5)
    by_rank = {1: 0.50 + noise, 2: 0.52 + noise, 8: 0.62 + noise + rng.normal(0, 0.005, 5),
               16: 0.55 + noise}
    result = best_rank_test(by_rank, baseline=1)
    assert result.best == 8 and result.decision == "above_baseline"
    assert result.t.confidence == pytest.approx(1 - 0.05 / 3)  # Bonferroni over 3 candidates


def test_best_rank_negative_control_rank_one_best():
    rng = np.random.default_rng(5)
    by_rank = {r: 0.6 - 0.01 * r + rng.normal(0, 0.005, 5) for r in (1, 2, 4, 8)}
    result = best_rank_test(by_rank, baseline=1)
    assert result.best == 1 and result.decision == "baseline_best"


def test_best_rank_noise_only_is_not_above_baseline():
    """Equal ranks: picking the best of several noisy ranks must rarely look significant."""
    rng = np.random.default_rng(6)
    significant = 0
    for _ in range(150):
        by_rank = {r: 0.6 + rng.normal(0, 0.02, 5) for r in (1, 2, 4, 8, 12, 16)}
        significant += best_rank_test(by_rank).decision == "above_baseline"
    assert significant / 150 <= 0.05


def test_bad_inputs_are_named():
    with pytest.raises(InvalidArgument, match="same seeds"):
        paired_non_inferiority([0.5, 0.6], [0.5, 0.6, 0.7], DELTA)
    with pytest.raises(InvalidArgument, match="delta"):
        paired_non_inferiority([0.5, 0.6], [0.5, 0.6], -0.1)
    with pytest.raises(InvalidArgument, match="at least 2"):
        paired_t_interval([0.1])
    with pytest.raises(InvalidArgument, match="baseline rank"):
        best_rank_test({2: [0.5, 0.6], 4: [0.5, 0.6]})
