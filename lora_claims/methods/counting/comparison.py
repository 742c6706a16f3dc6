"""Where the manifold count r(m+n) - r^2 and the Sard-form count r(r+1)/2 compare (claim C3).

Exact integer and rational arithmetic over exhaustive grids of shapes, so that the boundary of the
comparison is located, not sampled.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from lora_claims.methods.counting.capacity import (
    manifold_dim,
    min_rank_manifold,
    min_rank_sard,
    sard_count,
)


def inequality_equality_cases(max_side: int) -> tuple[list[tuple[int, int, int]], int]:
    """All (m, n, r) with r <= min(m, n) <= max_side where r(m+n) - r^2 == r(r+1)/2, and how many
    cases violate r(m+n) - r^2 >= r(r+1)/2 (expected: [(1, 1, 1)] and 0)."""
    m, n, r = np.meshgrid(*(np.arange(1, max_side + 1),) * 3, indexing="ij")
    valid = r <= np.minimum(m, n)
    gap = r * (m + n) - r * r - r * (r + 1) // 2
    equal = np.argwhere(valid & (gap == 0)) + 1
    return [tuple(int(v) for v in row) for row in equal], int(np.sum(valid & (gap < 0)))


def smallest_out_of_domain_failure(max_side: int) -> dict | None:
    """The first (m, n, r) with r > min(m, n) where r(m+n) - r^2 < r(r+1)/2."""
    for total in range(2, 2 * max_side + 1):
        for m in range(1, total):
            n = total - m
            for r in range(min(m, n) + 1, m + n + 1):
                if r * (m + n) - r * r < sard_count(r):
                    return {"m": m, "n": n, "r": r, "r(m+n)-r^2": r * (m + n) - r * r,
                            "r(r+1)/2": sard_count(r)}
    return None


def critical_constant(max_side: int) -> dict:
    """The smallest C at which min_rank_manifold(C) > min_rank_sard occurs on the domain
    r_sard(KN) <= min(m, n), over m, n <= max_side.

    Because r(m+n) - r^2 increases in r there, min_rank_manifold(KN, C) <= r_sard exactly when
    d(r_sard) > C KN, so the comparison first fails at C = min over the domain of d(r_sard) / KN.
    """
    best: tuple[Fraction, int, int, int] | None = None
    for m in range(1, max_side + 1):
        for n in range(m, max_side + 1):  # symmetric in (m, n)
            for kn in range(1, sard_count(m)):  # r_sard(KN) <= m = min(m, n)
                ratio = Fraction(manifold_dim(min_rank_sard(kn), m, n), kn)
                if best is None or ratio < best[0]:
                    best = (ratio, m, n, kn)
    ratio, m, n, kn = best
    return {"C": str(ratio), "C_float": float(ratio), "m": m, "n": n, "KN": kn,
            "r_sard": min_rank_sard(kn), "d(r_sard)": manifold_dim(min_rank_sard(kn), m, n)}


def rank_comparison_violations(max_side: int, c: float) -> int:
    """How many (m, n, KN) on the domain have min_rank_manifold(KN, C) > min_rank_sard(KN)."""
    violations = 0
    for m in range(1, max_side + 1):
        for n in range(m, max_side + 1):
            for kn in range(1, sard_count(m)):
                r_manifold = min_rank_manifold(kn, m, n, c)
                if r_manifold is None or r_manifold > min_rank_sard(kn):
                    violations += 1
    return violations
