"""Full-batch training of the linearized LoRA model, batched over instances.

Start: the standard LoRA initialization of Jang et al.'s code, B = 0 and A with iid N(0, s^2)
entries, s = 1 / (sqrt(r) n) by default. Instances may have different ranks in one tensor: an
instance of rank r_i < r_max has rows r_i.. of A set to zero, and since grad_B = M A^T and
grad_A = B^T M, those rows and the matching columns of B stay exactly zero under both optimizers.

Optimizers:
- ``gd``: gradient descent with a per-instance step size. With ``line_search`` (the default) each
  step is an Armijo backtracking step, F(x') <= F(x) - c ||x' - x||^2 / eta, halving eta until it
  holds and doubling it after each accepted step, so the objective never increases; an instance
  with no acceptable step in ``max_backtracks`` halvings stays where it is.
- ``adam``: Adam with a fixed learning rate (no monotonicity guarantee).

Optional l2 regularization (weight_decay / 2)(||A||^2 + ||B||^2) and an optional Frobenius bound
||B A||_F <= max_norm (applied by rescaling both factors, which is the Euclidean projection of
Delta = B A onto the ball and keeps its rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from lora_claims.errors import InvalidArgument, require_int, require_positive_float
from lora_claims.methods.linearized.losses import LABEL_LOSSES, accuracy
from lora_claims.methods.linearized.model import DTYPE, LinearizedProblem, objective

METHODS = ("gd", "adam")
ARMIJO_C = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    rank: int = 1
    method: str = "gd"
    steps: int = 300
    lr: float = 1.0  # initial step size of gd, or Adam's learning rate
    line_search: bool = True
    weight_decay: float = 0.0
    max_norm: float | None = None
    init_std: float | None = None  # None: 1 / (sqrt(r) n), as in Jang et al.'s code
    stop_below: float | None = None  # stop once every instance's objective is below this
    max_backtracks: int = 40
    record_delta_grad: bool = False  # also record ||grad_Delta L||^2 (unregularized loss)

    def __post_init__(self) -> None:
        require_int("rank", self.rank)
        require_int("steps", self.steps, minimum=0)
        require_positive_float("lr", self.lr)
        require_int("max_backtracks", self.max_backtracks)
        if self.method not in METHODS:
            raise InvalidArgument(
                f"method must be one of {', '.join(METHODS)}, got {self.method!r}"
            )
        if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
            raise InvalidArgument(
                f"weight_decay must be a finite number >= 0, got {self.weight_decay}"
            )
        for name in ("max_norm", "init_std", "stop_below"):
            if getattr(self, name) is not None:
                require_positive_float(name, getattr(self, name))


@dataclass
class TrainResult:
    b: torch.Tensor  # [I, m, r]
    a: torch.Tensor  # [I, r, n]
    objective: torch.Tensor  # [I] final F
    accuracy: torch.Tensor | None  # [I] training accuracy (label losses)
    history: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [steps + 1, I]
    steps_run: int = 0


def lora_init(
    problem: LinearizedProblem, ranks, config: TrainConfig, generator: torch.Generator | None
):
    """B = 0 and A ~ N(0, std^2) with rows beyond each instance's rank set to zero."""
    count, _, _, m, n = problem.shape
    ranks = torch.as_tensor(ranks, dtype=torch.long).expand(count)
    r_max = int(ranks.max())
    if int(ranks.min()) < 1 or r_max > min(m, n):
        raise InvalidArgument(
            f"rank must lie in 1..min(m, n) = {min(m, n)}, got {ranks.unique().tolist()}"
        )
    a = torch.randn(count, r_max, n, generator=generator, dtype=DTYPE)
    if config.init_std is None:
        std = 1.0 / (ranks.to(DTYPE).sqrt() * n)
    else:
        std = torch.full((count,), config.init_std, dtype=DTYPE)
    a = a * std.view(-1, 1, 1) * (torch.arange(r_max).view(1, -1, 1) < ranks.view(-1, 1, 1))
    return torch.zeros(count, m, r_max, dtype=DTYPE), a


def delta_frobenius(b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """||B A||_F per instance through the r x r Gram matrices, without forming B A."""
    gram = (b.transpose(1, 2) @ b) * (a @ a.transpose(1, 2))
    return gram.sum(dim=(1, 2)).clamp_min(0).sqrt()


def _project(b, a, max_norm):
    if max_norm is None:
        return b, a
    scale = (
        (max_norm / delta_frobenius(b, a).clamp_min(1e-300)).clamp(max=1.0).sqrt().view(-1, 1, 1)
    )
    return b * scale, a * scale


def train(
    problem: LinearizedProblem,
    config: TrainConfig,
    ranks=None,
    generator: torch.Generator | None = None,
) -> TrainResult:
    """Train every instance of ``problem`` from the LoRA initialization; ``ranks`` per instance
    (default: ``config.rank`` for all).

    An instance stops (its parameters freeze) once its objective is below ``stop_below``, or, under
    the line search, when no step in ``max_backtracks`` halvings decreases it (it sits at a
    stationary point to machine precision). Training ends when no instance is left or after
    ``steps`` steps.
    """
    b, a = lora_init(problem, config.rank if ranks is None else ranks, config, generator)
    step = _gd_step if config.method == "gd" else _adam_step(b, a)
    value, grad_b, grad_a = objective(problem, b, a, config.weight_decay)
    history: dict[str, list[torch.Tensor]] = {"objective": [], "grad_sq": [], "step_size": []}
    if config.record_delta_grad:
        history["delta_grad_sq"] = []
    eta = torch.full((problem.instances,), config.lr, dtype=DTYPE)
    active = torch.ones(problem.instances, dtype=torch.bool)
    steps_run = 0
    for steps_run in range(config.steps + 1):  # noqa: B007  (steps_run is read after the loop)
        history["objective"].append(value)
        history["grad_sq"].append(grad_b.square().sum(dim=(1, 2)) + grad_a.square().sum(dim=(1, 2)))
        history["step_size"].append(eta.clone())
        if config.record_delta_grad:
            residual = problem.loss_at(problem.outputs(b, a)).grad
            history["delta_grad_sq"].append(
                problem.features.adjoint(residual).square().sum(dim=(1, 2))
            )
        if config.stop_below is not None:
            active &= value >= config.stop_below
        if steps_run == config.steps or not bool(active.any()):
            break
        new_b, new_a, eta, moved = step(problem, config, b, a, value, grad_b, grad_a, eta, active)
        active &= moved
        keep = active.view(-1, 1, 1)
        b, a = torch.where(keep, new_b, b), torch.where(keep, new_a, a)
        value, grad_b, grad_a = objective(problem, b, a, config.weight_decay)
    acc = None
    if problem.loss in LABEL_LOSSES:
        acc = accuracy(
            problem.loss,
            problem.outputs(b, a),
            problem.target.expand(problem.instances, -1),
            None if problem.mask is None else problem.mask.expand(problem.instances, -1),
        )
    return TrainResult(
        b=b,
        a=a,
        objective=value,
        accuracy=acc,
        steps_run=steps_run,
        history={name: torch.stack(values) for name, values in history.items()},
    )


def _gd_step(problem, config, b, a, value, grad_b, grad_a, eta, active):
    """One step per active instance; returns (B, A, step sizes, which instances moved)."""
    if not config.line_search:
        e = eta.view(-1, 1, 1)
        return (*_project(b - e * grad_b, a - e * grad_a, config.max_norm), eta, active)
    accepted = ~active
    new_b, new_a = b.clone(), a.clone()
    for _ in range(config.max_backtracks):
        e = eta.view(-1, 1, 1)
        cand_b, cand_a = _project(b - e * grad_b, a - e * grad_a, config.max_norm)
        cand_value = objective(problem, cand_b, cand_a, config.weight_decay, with_grad=False)[0]
        moved = (cand_b - b).square().sum(dim=(1, 2)) + (cand_a - a).square().sum(dim=(1, 2))
        ok = ~accepted & (moved > 0) & (cand_value <= value - ARMIJO_C * moved / eta)
        new_b = torch.where(ok.view(-1, 1, 1), cand_b, new_b)
        new_a = torch.where(ok.view(-1, 1, 1), cand_a, new_a)
        accepted |= ok
        if bool(accepted.all()):
            break
        eta = torch.where(accepted, eta, eta / 2)
    stalled = ~accepted  # no decrease found: stationary to machine precision
    return new_b, new_a, torch.where(active & accepted, eta * 2, eta), active & ~stalled


def _adam_step(b, a, beta1=0.9, beta2=0.999, eps=1e-12):
    moments = [torch.zeros_like(b), torch.zeros_like(a), torch.zeros_like(b), torch.zeros_like(a)]
    count = [0]

    def step(problem, config, b, a, value, grad_b, grad_a, eta, active):
        count[0] += 1
        t = count[0]
        updated = []
        for index, (param, grad) in enumerate(((b, grad_b), (a, grad_a))):
            first, second = moments[index], moments[index + 2]
            first.mul_(beta1).add_(grad, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (second / (1 - beta2**t)).sqrt().add_(eps)
            updated.append(param - config.lr * (first / (1 - beta1**t)) / denom)
        return (*_project(*updated, config.max_norm), eta, active)

    return step
