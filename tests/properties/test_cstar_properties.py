"""Properties of the C* estimators over shapes, the threshold statistics, and bad input.

Every statistical check has a positive and a negative control: the monotonicity check flags a
fabricated increasing curve, and the bootstrap interval covers the true threshold of a synthetic
curve near its nominal rate but not a shifted one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lora_claims.errors import InvalidArgument
from lora_claims.methods.counting.capacity import manifold_dim
from lora_claims.methods.counting.manifold import numerical_rank
from lora_claims.methods.cstar.estimate import (
    CStarConfig,
    GridPoint,
    bootstrap_interval,
    estimate_cstar,
    first_grid_rho,
    monotonicity_violations,
    threshold_crossing,
)
from lora_claims.methods.cstar.problems import LinearSystem, LoraSystem, lora_problem
from lora_claims.methods.cstar.solvers import GDSettings, LMSettings, levenberg_marquardt
from lora_claims.methods.stats import wilson_interval

FEW_RESTARTS = LMSettings(restarts=2)


@st.composite
def shapes(draw, max_side: int = 6):
    m = draw(st.integers(1, max_side))
    n = draw(st.integers(1, max_side))
    return m, n, draw(st.integers(1, min(m, n)))


@given(shapes(), st.data(), st.integers(0, 2**32 - 1))
def test_few_equations_are_always_solvable(shape, data, seed):
    """p <= max(m, n) r: fixing the factor on the shorter side leaves a full-rank linear system."""
    m, n, r = shape
    p = data.draw(st.integers(1, max(m, n) * r), label="p")
    rng = np.random.default_rng(seed)
    system = lora_problem(m, n, r, p, 6, rng)
    # The construction of the claim: fix A (if n >= m, else B) and solve for the other factor.
    for features, target in zip(system.features, system.targets, strict=True):
        if n >= m:
            fixed_b = rng.standard_normal((m, r))
            rows = np.einsum("mr,jmn->jrn", fixed_b, features).reshape(p, -1)  # unknown: A
        else:
            fixed_a = rng.standard_normal((r, n))
            rows = np.einsum("jmn,rn->jmr", features, fixed_a).reshape(p, -1)  # unknown: B
        solution = np.linalg.lstsq(rows, target, rcond=None)[0]
        assert np.sum((rows @ solution - target) ** 2) < 1e-20 * np.sum(target**2) + 1e-24
    assert (levenberg_marquardt(system, rng, LMSettings()) < 1e-16).all()


@settings(max_examples=15)
@given(shapes(max_side=5), st.integers(1, 3), st.integers(0, 2**32 - 1))
def test_more_equations_than_dimensions_are_never_solvable(shape, excess, seed):
    m, n, r = shape
    p = manifold_dim(r, m, n) + excess
    rng = np.random.default_rng(seed)
    system = lora_problem(m, n, r, p, 6, rng)
    assert not (levenberg_marquardt(system, rng, FEW_RESTARTS) < 1e-16).any()


@given(shapes(max_side=8), st.data(), st.integers(0, 2**32 - 1))
def test_system_jacobian_has_rank_min_p_d(shape, data, seed):
    m, n, r = shape
    d = manifold_dim(r, m, n)
    p = data.draw(st.integers(1, d + 4), label="p")
    rng = np.random.default_rng(seed)
    system = lora_problem(m, n, r, p, 1, rng)
    jacobian = system.jacobian(rng.standard_normal((1, system.n_params)))[0]
    rank, _ = numerical_rank(jacobian)
    assert rank == min(p, d)


def test_jacobian_rank_drops_at_a_degenerate_point():
    """Negative control: at A = 0, B = 0 the Jacobian vanishes, so the rank check can fail."""
    rng = np.random.default_rng(0)
    system = lora_problem(4, 4, 1, 5, 1, rng)
    assert numerical_rank(system.jacobian(np.zeros((1, system.n_params)))[0])[0] == 0


def _point(p: int, successes: int, trials: int = 100) -> GridPoint:
    return GridPoint(p, 10 / p, successes, trials, wilson_interval(successes, trials))


def test_monotonicity_check_controls():
    decreasing = [_point(5, 95), _point(6, 80), _point(7, 82), _point(8, 10)]
    assert monotonicity_violations(decreasing) == []
    increasing = [_point(5, 10), _point(6, 90)]
    assert monotonicity_violations(increasing) == [(5, 6)]


@settings(max_examples=6)
@given(shapes(max_side=6), st.sampled_from(["solv", "gd"]), st.integers(0, 1000))
def test_success_fractions_do_not_increase_with_p(shape, definition, seed):
    m, n, r = shape
    config = CStarConfig(
        m,
        n,
        r,
        definition=definition,
        trials=40,
        seed=seed,
        bootstrap=50,
        lm=FEW_RESTARTS,
        gd=GDSettings(steps=100),
    )
    assert monotonicity_violations(estimate_cstar(config).points) == []


def test_threshold_crossing_interpolates_and_flags_unreached_levels():
    rhos = np.array([1.0, 1.1, 1.2, 1.3])
    fractions = np.array([0.0, 0.2, 0.6, 1.0])
    assert threshold_crossing(rhos, fractions, 0.5) == pytest.approx(1.1 + 0.1 * 0.3 / 0.4)
    assert threshold_crossing(rhos, fractions, 1.0) == pytest.approx(1.3)
    assert threshold_crossing(rhos, np.array([0.0, 0.1, 0.2, 0.3]), 0.5) == math.inf
    assert first_grid_rho(rhos, fractions, 0.5) == 1.2
    stacked = threshold_crossing(rhos, np.stack([fractions, fractions[::-1] * 0]), 0.5)
    assert stacked[0] == pytest.approx(1.175) and stacked[1] == math.inf


def _bootstrap_coverage(shift: float) -> float:
    """How often the interval covers the true rho50 (+ shift) of a known logistic curve."""
    rng = np.random.default_rng(7)
    rhos = np.linspace(1.0, 1.6, 13)
    truth = 1.0 / (1.0 + np.exp(-(rhos - 1.3) / 0.06))
    true_rho50 = float(threshold_crossing(rhos, truth, 0.5))
    trials = np.full(rhos.size, 100)
    covered = 0
    repeats = 150
    for _ in range(repeats):
        counts = rng.binomial(trials, truth)
        low, high = bootstrap_interval(rhos, counts, trials, 0.5, 300, 0.95, rng)
        covered += low <= true_rho50 + shift <= high
    return covered / repeats


def test_bootstrap_interval_covers_the_true_threshold():
    assert _bootstrap_coverage(0.0) >= 0.85  # positive control: near the nominal 95%
    assert _bootstrap_coverage(0.05) <= 0.2  # negative control: a wrong threshold is rejected


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"m": 3, "n": 4, "r": 4}, "r"),
        ({"m": 3, "n": 4, "r": 0}, "r"),
        ({"m": 3, "n": 4, "r": 1, "grid": (5, 0)}, "p"),
        ({"m": 3, "n": 4, "r": 1, "level": 1.0}, "level"),
        ({"m": 3, "n": 4, "r": 1, "level": 0.0}, "level"),
        ({"m": 3, "n": 4, "r": 1, "trials": 0}, "trials"),
        ({"m": 3, "n": 4, "r": 1, "definition": "exact"}, "definition"),
        (
            {"m": 3, "n": 4, "r": 1, "definition": "gd", "gd": GDSettings(optimizer="fixed")},
            "optimizer",
        ),
    ],
)
def test_bad_estimator_settings_name_the_argument(kwargs, argument):
    with pytest.raises(InvalidArgument, match=argument):
        CStarConfig(**kwargs)


@pytest.mark.parametrize("tol", [0.0, -1e-6, math.inf, math.nan])
def test_bad_tolerance_is_rejected(tol):
    with pytest.raises(InvalidArgument, match="tol"):
        GDSettings(tol=tol)
    with pytest.raises(InvalidArgument, match="success_tol"):
        LMSettings(success_tol=tol)


def test_non_finite_features_are_rejected():
    features = np.ones((2, 3, 2, 2))
    features[1, 2, 0, 1] = np.nan
    with pytest.raises(InvalidArgument, match="features G must be finite, but 1 of its 24"):
        LoraSystem(features, np.zeros((2, 3)), 1)
    with pytest.raises(InvalidArgument, match="design X must be finite"):
        LinearSystem(np.full((1, 2, 3), np.inf), np.zeros((1, 2)))
    with pytest.raises(InvalidArgument, match="targets y must be finite"):
        LoraSystem(np.ones((1, 3, 2, 2)), np.array([[0.0, np.inf, 1.0]]), 1)


def test_problem_generator_rejects_bad_shapes():
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidArgument, match="r"):
        lora_problem(2, 3, 3, 4, 1, rng)
    with pytest.raises(InvalidArgument, match="p must be >= 1"):
        lora_problem(2, 3, 1, 0, 1, rng)
