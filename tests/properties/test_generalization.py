"""The Rademacher bound of claim C7: calibration, monotonicity in r, scaling with N."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lora_claims.errors import InvalidArgument
from lora_claims.methods.linearized.generalization import nuclear_ball_complexity, predicted_rank, rademacher_bound
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


@given(
    st.lists(st.integers(1, 64), min_size=2, max_size=8, unique=True),
    st.floats(0.1, 10),
    st.floats(0.01, 5),
)
def test_bound_grows_with_rank_like_sqrt_r(ranks, rho, complexity):
    ranks = sorted(ranks)
    values = rademacher_bound(ranks, rho, complexity)
    assert np.all(np.diff(values) > 0)
    np.testing.assert_allclose(values / np.sqrt(ranks), values[0] / np.sqrt(ranks[0]))


def test_predicted_rank_is_the_argmin_with_smallest_rank_on_ties():
    assert predicted_rank([1, 2, 3], [1.0, 0.2, 0.2], [0.1, 0.2, 0.3]) == 2
    assert predicted_rank([1, 2, 3], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0]) == 1
    assert predicted_rank([1, 2], [0.3, 0.0], [1.0, 1.5]) == 1  # variance dominates


def test_bad_bound_arguments_are_named():
    with pytest.raises(InvalidArgument, match="rho must be a finite number > 0"):
        rademacher_bound([1, 2], -1.0, 1.0)
    with pytest.raises(InvalidArgument, match="rank must be >= 1"):
        rademacher_bound([0, 2], 1.0, 1.0)
