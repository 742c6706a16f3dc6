"""Property tests of the counting functions behind C1, C3 and C5."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import assume, find, given
from hypothesis import strategies as st

from lora_claims.errors import InvalidArgument
from lora_claims.methods.counting.capacity import (
    canonical_setups,
    manifold_dim,
    min_rank_manifold,
    min_rank_manifold_leading,
    min_rank_sard,
    min_rank_sard_leading,
    sard_count,
)
from lora_claims.methods.counting.comparison import critical_constant

sides = st.integers(1, 300)
kn_values = st.integers(1, 100_000)
constants = st.fractions(min_value=Fraction(1, 10), max_value=Fraction(4), max_denominator=100)


@st.composite
def shapes_and_rank(draw, max_side=300):
    m = draw(st.integers(1, max_side))
    n = draw(st.integers(1, max_side))
    r = draw(st.integers(1, min(m, n)))
    return m, n, r


@given(st.integers(1, 10_000))
def test_sard_count_is_strictly_increasing(r):
    assert sard_count(r + 1) > sard_count(r)


@given(shapes_and_rank())
def test_manifold_dim_increases_in_rank_and_sides(case):
    m, n, r = case
    if r < min(m, n):
        assert manifold_dim(r + 1, m, n) > manifold_dim(r, m, n)
    assert manifold_dim(r, m + 1, n) == manifold_dim(r, m, n) + r
    assert manifold_dim(r, m, n) == manifold_dim(r, n, m)


@given(shapes_and_rank())
def test_manifold_count_dominates_sard_count_with_one_equality_case(case):
    m, n, r = case
    gap = manifold_dim(r, m, n) - sard_count(r)
    assert gap >= 0
    assert (gap == 0) == ((m, n, r) == (1, 1, 1))


@given(kn_values)
def test_min_rank_sard_is_minimal(kn):
    r = min_rank_sard(kn)
    assert sard_count(r) > kn
    assert r == 1 or sard_count(r - 1) <= kn


@given(kn_values)
def test_sqrt_form_is_minimal_and_at_most_one_above_exact(kn):
    r = min_rank_sard_leading(kn)
    assert r * r > 2 * kn and (r - 1) ** 2 <= 2 * kn
    assert min_rank_sard(kn) <= r <= min_rank_sard(kn) + 1


@given(kn_values, shapes_and_rank(), constants)
def test_min_rank_manifold_is_minimal_or_none(kn, case, c):
    m, n, _ = case
    r = min_rank_manifold(kn, m, n, c)
    if r is None:
        assert manifold_dim(min(m, n), m, n) <= c * kn
    else:
        assert manifold_dim(r, m, n) > c * kn
        assert r == 1 or manifold_dim(r - 1, m, n) <= c * kn
        assert r >= min_rank_manifold_leading(kn, m, n, c)  # dropping -r^2 can only lower it


def test_strict_inequality_at_the_integer_boundary():
    # d(1) for 2 x 2 is 3; with C = 1.5 and KN = 2, C KN = 3 exactly: 3 > 3 is false.
    assert min_rank_manifold(2, 2, 2, 1.5) == 2
    assert min_rank_manifold(2, 2, 2, Fraction(149, 100)) == 1


@st.composite
def domain_cases(draw, c_strategy):
    """(m, n, KN, C) with the Sard rank fitting the matrix: r_sard(KN) <= min(m, n)."""
    m = draw(st.integers(1, 40))
    n = draw(st.integers(1, 40))
    assume(sard_count(min(m, n)) > 1)
    kn = draw(st.integers(1, sard_count(min(m, n)) - 1))
    return m, n, kn, draw(c_strategy)


def _manifold_rank_not_larger(case) -> bool:
    m, n, kn, c = case
    r = min_rank_manifold(kn, m, n, c)
    return r is not None and r <= min_rank_sard(kn)


@given(domain_cases(st.fractions(min_value=Fraction(1, 100), max_value=Fraction(177, 100))))
def test_manifold_rank_never_exceeds_sard_rank_below_critical_constant(case):
    assert _manifold_rank_not_larger(case)


def test_hypothesis_finds_the_boundary_above_the_critical_constant():
    counterexample = find(
        domain_cases(st.fractions(min_value=Fraction(16, 9), max_value=Fraction(3))),
        lambda case: not _manifold_rank_not_larger(case),
    )
    m, n, kn, c = counterexample
    assert c >= Fraction(16, 9)
    assert min_rank_sard(kn) <= min(m, n)


def test_critical_constant_is_sixteen_ninths_at_four_by_four():
    critical = critical_constant(12)
    assert Fraction(critical["C"]) == Fraction(16, 9)
    assert (critical["m"], critical["n"], critical["KN"]) == (4, 4, 9)


def test_canonical_setups_cover_both_k_conventions():
    setups = {(s.task, s.k, s.outputs): s for s in canonical_setups()}
    assert setups[("SST-2", 16, 2)].kn == 64
    assert setups[("SST-2", 16, 1)].kn == 32
    assert setups[("MNLI", 16, 3)].kn == 144
    assert ("MNLI", 16, 1) not in setups  # a single logit exists only for binary tasks
    assert min_rank_sard(64) == 11 and min_rank_sard_leading(64) == 12 == math.isqrt(128) + 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: manifold_dim(3, 2, 5), "r must be <= 2"),
        (lambda: manifold_dim(1, 0, 5), "m must be >= 1"),
        (lambda: manifold_dim(1, 4, -3), "n must be >= 1"),
        (lambda: manifold_dim(1.5, 4, 4), "r must be an integer"),
        (lambda: manifold_dim(True, 4, 4), "r must be an integer"),
        (lambda: min_rank_sard(0), "KN must be >= 1"),
        (lambda: min_rank_manifold(5, 4, 4, 0), "C must be a finite number > 0"),
        (lambda: min_rank_manifold(5, 4, 4, float("nan")), "C must be a finite number > 0"),
    ],
)
def test_bad_dimensions_name_the_argument_and_range(call, message):
    with pytest.raises(InvalidArgument, match=message):
        call()
