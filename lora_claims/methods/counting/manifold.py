"""Numerical checks that the LoRA parametrization (A, B) -> B A spans r(m+n) - r^2 directions.

The Jacobian is built explicitly in float64 (column-major vec): d vec(B A) = (I_n kron B) vec(dA) +
(A^T kron I_m) vec(dB). Its rank is read from the singular values with numpy's default tolerance,
sigma_max * max(shape) * eps(float64); the ratio between the last kept and the first dropped
singular value (the spectral gap) is returned too, so a reader can see the rank is not a tolerance
artefact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lora_claims.errors import InvalidArgument, require_int
from lora_claims.methods.counting.capacity import manifold_dim


@dataclass(frozen=True)
class RankCheck:
    m: int
    n: int
    r: int
    rank: int
    expected: int
    gap: float  # sigma_rank / sigma_{rank+1}; inf when nothing is dropped

    @property
    def ok(self) -> bool:
        return self.rank == self.expected


def lora_jacobian(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The (m n) x r(m+n) Jacobian of (A, B) -> B A at (A, B), A: r x n, B: m x r."""
    r, n = a.shape
    m, r_b = b.shape
    if r != r_b:
        raise InvalidArgument(f"A is {a.shape} and B is {b.shape}: their ranks r must agree")
    return np.hstack([np.kron(np.eye(n), b), np.kron(a.T, np.eye(m))])


def numerical_rank(matrix: np.ndarray) -> tuple[int, float]:
    """Rank at numpy's default tolerance, and the spectral gap at that rank."""
    singular = np.linalg.svd(matrix, compute_uv=False)
    tolerance = singular[0] * max(matrix.shape) * np.finfo(np.float64).eps
    rank = int(np.sum(singular > tolerance))
    if rank >= len(singular):
        return rank, float("inf")
    gap = singular[rank - 1] / singular[rank] if singular[rank] > 0 else float("inf")
    return rank, float(gap)


def check_lora_manifold_rank(m: int, n: int, r: int, rng: np.random.Generator) -> RankCheck:
    """Jacobian rank of (A, B) -> B A at a random Gaussian point against r(m+n) - r^2."""
    m = require_int("m", m)
    n = require_int("n", n)
    r = require_int("r", r, maximum=min(m, n))
    a = rng.standard_normal((r, n))
    b = rng.standard_normal((m, r))
    rank, gap = numerical_rank(lora_jacobian(a, b))
    return RankCheck(m, n, r, rank, manifold_dim(r, m, n), gap)
