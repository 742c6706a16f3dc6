"""The Rademacher bound of claim C7: calibration, monotonicity in r, scaling with N."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lora_claims.errors import InvalidArgument
from lora_claims.methods.linearized.generalization import (
    CONTRACTION,
    _teacher,
    best_rank_set,
    grade_prediction,
    nuclear_ball_complexity,
    predicted_rank,
    rademacher_bound,
)
from lora_claims.methods.linearized.model import gaussian_features


def test_complexity_matches_random_matrix_theory():
    """For K = 1 and iid N(0,1) G_j, (1/N) sum sigma_j G_j is Gaussian with entry variance 1/N, whose
    operator norm concentrates at (sqrt(m) + sqrt(n)) / sqrt(N)."""
    features = gaussian_features(2, 64, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    value = nuclear_ball_complexity(features, draws=32).mean().item()
    assert value == pytest.approx((40**0.5 + 40**0.5) / 64**0.5, rel=0.08)


def test_complexity_scales_like_one_over_sqrt_n():
    generator = torch.Generator().manual_seed(1)
    small = nuclear_ball_complexity(gaussian_features(1, 25, 2, 12, 12, generator=generator)).item()
    large = nuclear_ball_complexity(
        gaussian_features(1, 400, 2, 12, 12, generator=generator)
    ).item()
    assert small / large == pytest.approx(4.0, rel=0.1)


@given(st.integers(1, 6), st.floats(0.1, 10), st.integers(0, 2**16), st.booleans())
def test_variance_term_bounds_the_rank_r_class(rank, rho, seed, flat):
    """sup over rank-r Delta with ||Delta||_F <= rho of <Delta, M> is rho sqrt(sum of the top r
    sigma_i(M)^2); the bound's sqrt(r) rho ||M||_op must not fall below it, and meets it when the
    top r singular values are equal."""
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((6, 6))
    if flat:
        u, _, vh = np.linalg.svd(matrix)
        matrix = u @ np.diag([2.0] * rank + [1.0] * (6 - rank)) @ vh
    sigma = np.linalg.svd(matrix, compute_uv=False)
    exact = rho * np.sqrt(np.sum(sigma[:rank] ** 2))
    bound = rademacher_bound([rank], rho, sigma[0])[0] / CONTRACTION
    assert bound >= exact * (1 - 1e-12)
    if flat:
        assert bound == pytest.approx(exact, rel=1e-9)


def test_best_rank_set_covers_the_best_rank_at_its_level():
    """Five ranks with equal expected loss: each is a best rank, and the set may drop a given one in
    at most alpha of the draws (Bonferroni over its R - 1 comparisons); without the correction it
    would drop it in about 4 alpha. Tolerance: 3 binomial SEs over the 600 draws."""
    rng = np.random.default_rng(0)
    dropped = [1 not in best_rank_set(rng.standard_normal((5, 12)), [1, 2, 3, 4, 6])["set"]
               for _ in range(600)]
    assert np.mean(dropped) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 600)


def test_best_rank_set_singles_out_a_clear_best_and_grades_predictions():
    rng = np.random.default_rng(1)
    losses = rng.normal(0.0, 0.05, (4, 12)) + np.array([[1.0], [0.5], [0.8], [0.9]])
    found = best_rank_set(losses, [1, 2, 3, 4])
    assert found["set"] == [2] and found["best"] == 2 and found["power"] > 0.99
    assert grade_prediction(2, found["set"]) == "correct"
    assert grade_prediction(1, found["set"]) == "wrong"
    assert grade_prediction(2, [2, 3]) == "undecided"


def test_decaying_teacher_has_the_declared_norm_and_spectrum():
    teacher = _teacher(3, 6, 6, 6, 3.0, torch.Generator().manual_seed(0), decay=0.5)
    sigma = torch.linalg.svdvals(teacher)
    assert torch.linalg.matrix_norm(teacher).numpy() == pytest.approx([3.0] * 3)
    assert (sigma[:, 1:] / sigma[:, :-1]).numpy() == pytest.approx(np.full((3, 5), 0.5))


def test_predicted_rank_is_the_argmin_with_smallest_rank_on_ties():
    assert predicted_rank([1, 2, 3], [1.0, 0.2, 0.2], [0.1, 0.2, 0.3]) == 2
    assert predicted_rank([1, 2, 3], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0]) == 1
    assert predicted_rank([1, 2], [0.3, 0.0], [1.0, 1.5]) == 1  # variance dominates


def test_bad_bound_arguments_are_named():
    with pytest.raises(InvalidArgument, match="rho must be a finite number > 0"):
        rademacher_bound([1, 2], -1.0, 1.0)
    with pytest.raises(InvalidArgument, match="rank must be >= 1"):
        rademacher_bound([0, 2], 1.0, 1.0)
