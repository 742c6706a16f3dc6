"""The convex counterpart of l2-regularized LoRA: min_Delta L(Delta) + lam ||Delta||_*.

Because min over B A = Delta of (1/2)(||A||_F^2 + ||B||_F^2) equals ||Delta||_* (for r >= rank
Delta), the LoRA objective L(B A) + (lam / 2)(||A||^2 + ||B||^2) is bounded below by the optimum
P* of this convex problem, with equality when the convex minimizer has rank <= r. Solving it gives
an independent estimate of the infimum that PL ratios are measured against (claim C6).

Solver: FISTA (accelerated proximal gradient) with singular-value soft-thresholding, batched over
instances, with step 1 / Lip where Lip = max_j weight_j * ||G||_op^2 bounds the loss curvature
(the Hessian of CE and squared loss in the logits is <= I per example).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lora_claims.errors import InvalidArgument, require_int, require_positive_float
from lora_claims.methods.linearized.model import DenseFeatures, LinearizedProblem


@dataclass
class NuclearSolution:
    delta: torch.Tensor  # [I, m, n]
    value: torch.Tensor  # [I] L(delta) + lam ||delta||_*
    rank: torch.Tensor  # [I] numerical rank of delta (singular values > 1e-6 of the largest)


def _value(problem: LinearizedProblem, delta: torch.Tensor, lam: float) -> torch.Tensor:
    loss = problem.loss_at(problem.f0 + problem.features.outputs_dense(delta)).loss
    return loss + lam * torch.linalg.matrix_norm(delta, ord="nuc")


def solve_nuclear(problem: LinearizedProblem, lam: float, steps: int = 2000) -> NuclearSolution:
    """FISTA on L(Delta) + lam ||Delta||_* for every instance (dense features only)."""
    if not isinstance(problem.features, DenseFeatures):
        raise InvalidArgument("solve_nuclear needs DenseFeatures (it forms Delta-space gradients)")
    lam = require_positive_float("lam", lam)
    steps = require_int("steps", steps)
    _, n_ex, _, m, n = problem.shape
    flat = problem.features._flat
    weight = 1.0 / n_ex if problem.mask is None else 1.0 / problem.mask.sum(dim=1).min().item()
    step = 1.0 / (weight * torch.linalg.matrix_norm(flat, ord=2).max().item() ** 2)
    delta = torch.zeros(problem.instances, m, n, dtype=flat.dtype)
    momentum_point, t = delta.clone(), 1.0
    for _ in range(steps):
        grad = problem.features.adjoint(
            problem.loss_at(problem.f0 + problem.features.outputs_dense(momentum_point)).grad
        )
        u, s, vh = torch.linalg.svd(momentum_point - step * grad, full_matrices=False)
        new_delta = u @ torch.diag_embed((s - step * lam).clamp_min(0)) @ vh
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        momentum_point = new_delta + ((t - 1) / t_next) * (new_delta - delta)
        delta, t = new_delta, t_next
    singular = torch.linalg.svdvals(delta)
    rank = (singular > 1e-6 * singular[:, :1].clamp_min(1e-300)).sum(dim=1) * (singular[:, 0] > 0)
    return NuclearSolution(delta=delta, value=_value(problem, delta, lam), rank=rank)
