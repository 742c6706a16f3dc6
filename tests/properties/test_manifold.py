"""The Jacobian-rank check behind C2, with a negative control at a degenerate point."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lora_claims.errors import InvalidArgument
from lora_claims.methods.counting.capacity import manifold_dim
from lora_claims.methods.counting.manifold import check_lora_manifold_rank, lora_jacobian, numerical_rank


@st.composite
def shapes_and_rank(draw):
    m = draw(st.integers(1, 9))
    n = draw(st.integers(1, 9))
    return m, n, draw(st.integers(1, min(m, n)))


@given(shapes_and_rank(), st.integers(0, 2**32 - 1))
def test_jacobian_rank_equals_manifold_dimension(case, seed):
    m, n, r = case
    check = check_lora_manifold_rank(m, n, r, np.random.default_rng(seed))
    assert check.rank == manifold_dim(r, m, n)
    assert check.gap > 1e6


@pytest.mark.parametrize("m, n, r", [(24, 9, 4), (16, 16, 16), (30, 2, 2)])
def test_jacobian_rank_on_larger_shapes(m, n, r, seed):
    check = check_lora_manifold_rank(m, n, r, np.random.default_rng(seed))
    assert check.ok, f"rank {check.rank} != {check.expected} at seed {seed}"


def test_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 5)), rng.standard_normal((4, 2))
    da, db = rng.standard_normal(a.shape), rng.standard_normal(b.shape)
    step = 1e-6
    numeric = ((b + step * db) @ (a + step * da) - b @ a) / step
    direction = np.concatenate([da.ravel(order="F"), db.ravel(order="F")])
    analytic = (lora_jacobian(a, b) @ direction).reshape(4, 5, order="F")
    np.testing.assert_allclose(analytic, numeric, atol=1e-4)


def test_numerical_rank_calibration_on_known_rank():
    rng = np.random.default_rng(2)
    for rank in range(1, 6):
        matrix = rng.standard_normal((12, rank)) @ rng.standard_normal((rank, 9))
        assert numerical_rank(matrix)[0] == rank


def test_negative_control_degenerate_point_has_lower_rank():
    # At A = 0 only the B-directions vanish and the A-directions are B-dependent: the check must
    # report a rank below r(m+n) - r^2, so the C2 machinery can fail.
    a = np.zeros((1, 4))
    b = np.ones((3, 1))
    rank, _ = numerical_rank(lora_jacobian(a, b))
    assert rank < manifold_dim(1, 3, 4)


def test_mismatched_factors_are_refused():
    with pytest.raises(InvalidArgument, match="ranks r must agree"):
        lora_jacobian(np.ones((2, 3)), np.ones((4, 1)))
