"""Batched solvers for the C* estimators: every trial of a grid point advances in one tensor step.

- ``levenberg_marquardt``: the exact-fit solver. A lambda-damped Gauss-Newton step in the p x p
  form, step = -J^T (J J^T + lambda I)^{-1} res, with per-trial damping (divided by 3 on an
  accepted step, multiplied by 4 on a rejected one), factors re-balanced every few iterations and
  random restarts for the trials not yet solved. It can only undercount solvable instances.
- ``armijo_descent`` and ``adam_descent``: budgeted first-order training, the trainability
  definition; each returns the lowest relative loss a trial reached within its step budget.
- ``fixed_step_linear_loss``: gradient descent with step 1/lambda_max on least squares from 0,
  in closed form from the eigendecomposition of X X^T (the Marchenko-Pastur calibration case).

Trials that are finished (solved, stalled, or below the tolerance) are dropped from the batch as
the run goes on, so the cost follows the hard instances, not the easy ones.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from lora_claims.errors import InvalidArgument, require_int, require_positive_float
from lora_claims.methods.cstar.problems import LinearSystem, LoraSystem, relative_loss

System = LoraSystem | LinearSystem
OPTIMIZERS = ("armijo", "adam", "fixed")


@dataclass(frozen=True)
class LMSettings:
    """Levenberg-Marquardt settings of the exact-fit estimator (defaults: the research notes)."""

    restarts: int = 8
    max_iterations: int = 200
    success_tol: float = 1e-16  # relative loss counted as an exact fit in float64
    stall_window: int = 40
    stall_improvement: float = 1e-6
    rebalance_every: int = 10
    initial_damping: float = 1e-3  # times the mean diagonal of J J^T

    def __post_init__(self) -> None:
        for name in ("restarts", "max_iterations", "stall_window", "rebalance_every"):
            require_int(name, getattr(self, name))
        for name in ("success_tol", "stall_improvement", "initial_damping"):
            require_positive_float(name, getattr(self, name))

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GDSettings:
    """Budgeted-training settings of the trainability estimator; all recorded with the result."""

    optimizer: str = "armijo"
    steps: int = 300
    tol: float = 1e-6  # success: relative loss below tol within the budget
    init_scale: float = 1e-2  # LoRA factors: iid entries of init_scale * (p / (m n r))^(1/4)
    lr: float = 1e-2  # Adam's absolute learning rate
    armijo_constant: float = 0.5  # sufficient-decrease constant; the step halves on failure

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InvalidArgument(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        require_int("steps", self.steps)
        for name in ("tol", "init_scale", "lr"):
            require_positive_float(name, getattr(self, name))
        if not 0 < self.armijo_constant < 1:
            raise InvalidArgument(f"armijo_constant must lie in (0, 1), got {self.armijo_constant}")

    def to_json(self) -> dict:
        return asdict(self)


def restart_scale(system: System) -> float:
    """Entry scale of random LM starts: predictions <G_j, B A> come out of order one."""
    if isinstance(system, LoraSystem):
        return (system.m * system.n * system.rank) ** -0.25
    return system.n_params**-0.5


def levenberg_marquardt(
    system: System, rng: np.random.Generator, settings: LMSettings
) -> np.ndarray:
    """The lowest relative loss per trial over up to ``settings.restarts`` random starts."""
    best = np.full(system.trials, np.inf)
    scale = restart_scale(system)
    for _ in range(settings.restarts):
        open_trials = np.flatnonzero(~(best < settings.success_tol))
        if open_trials.size == 0:
            break
        subsystem = system if open_trials.size == system.trials else system.take(open_trials)
        start = rng.standard_normal((open_trials.size, system.n_params)) * scale
        best[open_trials] = np.minimum(
            best[open_trials], lm_single_start(subsystem, start, settings)
        )
    return best


def lm_single_start(system: System, theta: np.ndarray, settings: LMSettings) -> np.ndarray:
    """One damped Gauss-Newton run per trial; returns the final relative loss of each trial."""
    norm_y = np.sum(system.targets**2, axis=1)
    result = np.empty(system.trials)
    alive = np.arange(system.trials)  # positions in ``result`` of the trials still running
    residual = system.residual(theta)
    loss = np.sum(residual**2, axis=1)
    jacobian = system.jacobian(theta)
    gram = jacobian @ np.swapaxes(jacobian, 1, 2)
    scale = np.mean(np.diagonal(gram, axis1=1, axis2=2), axis=1)
    damping = settings.initial_damping * scale
    history: deque[np.ndarray] = deque(maxlen=settings.stall_window)
    identity = np.eye(system.equations)
    for iteration in range(1, settings.max_iterations + 1):
        shifted = gram + damping[:, None, None] * identity
        dual = np.linalg.solve(shifted, residual[..., None])  # (J J^T + lambda I)^{-1} res
        candidate = theta - (np.swapaxes(jacobian, 1, 2) @ dual)[..., 0]
        candidate_residual = system.residual(candidate)
        candidate_loss = np.sum(candidate_residual**2, axis=1)
        accept = candidate_loss < loss
        theta = np.where(accept[:, None], candidate, theta)
        residual = np.where(accept[:, None], candidate_residual, residual)
        loss = np.where(accept, candidate_loss, loss)
        damping = np.clip(np.where(accept, damping / 3, damping * 4), 1e-12 * scale, 1e12 * scale)
        if iteration % settings.rebalance_every == 0:
            theta = system.rebalance(theta)
        history.append(loss)
        finished = loss < settings.success_tol * norm_y
        if len(history) == settings.stall_window:
            finished |= loss > (1 - settings.stall_improvement) * history[0]
        if iteration == settings.max_iterations or finished.all():
            break
        if iteration % settings.rebalance_every == 0 and finished.any():
            result[alive[finished]] = loss[finished] / norm_y[finished]
            keep = ~finished
            alive, system = alive[keep], system.take(keep)
            theta, residual, loss, damping = theta[keep], residual[keep], loss[keep], damping[keep]
            scale, norm_y = scale[keep], norm_y[keep]
            history = deque((past[keep] for past in history), maxlen=settings.stall_window)
        jacobian = system.jacobian(theta)
        gram = jacobian @ np.swapaxes(jacobian, 1, 2)
    result[alive] = loss / norm_y
    return result


def initial_parameters(
    system: System, rng: np.random.Generator, settings: GDSettings
) -> np.ndarray:
    """Small Gaussian LoRA factors (B A about 1e-4 of the solution scale); zero for least
    squares."""
    if isinstance(system, LinearSystem):
        return np.zeros((system.trials, system.n_params))
    size = settings.init_scale * (system.equations / (system.m * system.n * system.rank)) ** 0.25
    return rng.standard_normal((system.trials, system.n_params)) * size


def train(system: System, rng: np.random.Generator, settings: GDSettings) -> np.ndarray:
    """The lowest relative loss each trial reaches under the budgeted optimizer of ``settings``."""
    if settings.optimizer == "fixed":
        if not isinstance(system, LinearSystem):
            raise InvalidArgument(
                "optimizer 'fixed' (closed-form fixed-step GD) needs the linear model"
            )
        return fixed_step_linear_loss(system, settings.steps)
    theta = initial_parameters(system, rng, settings)
    if settings.optimizer == "armijo":
        return armijo_descent(system, theta, settings)
    return adam_descent(system, theta, settings)


class _Batch:
    """The trials of a training run that have not yet reached the tolerance."""

    def __init__(self, system: System, theta: np.ndarray):
        self.system, self.theta = system, theta.copy()
        self.alive = np.arange(system.trials)
        self.norm_y = np.sum(system.targets**2, axis=1)
        self.best = relative_loss(system, theta)  # indexed by original trial

    def record(self, loss: np.ndarray, tol: float, **state: np.ndarray) -> dict[str, np.ndarray]:
        """Store the current losses and drop trials below ``tol``; returns the kept rows of
        ``state``."""
        relative = loss / self.norm_y
        self.best[self.alive] = np.minimum(self.best[self.alive], relative)
        done = relative < tol
        if not done.any():
            return state
        keep = ~done
        self.alive, self.system, self.norm_y = (
            self.alive[keep],
            self.system.take(keep),
            self.norm_y[keep],
        )
        self.theta = self.theta[keep]
        return {name: value[keep] for name, value in state.items()}


def armijo_descent(system: System, theta: np.ndarray, settings: GDSettings) -> np.ndarray:
    """Gradient descent with Armijo backtracking: halve the step until sufficient decrease, then
    start the next search from twice the accepted step. The first trial step is 1/(p sqrt(size))."""
    batch = _Batch(system, theta)
    step = np.full(system.trials, 1.0 / (system.equations * np.sqrt(system.feature_size)))
    residual = system.residual(theta)
    state = batch.record(np.sum(residual**2, axis=1), settings.tol, residual=residual, step=step)
    for _ in range(settings.steps):
        if batch.alive.size == 0:
            break
        residual, step = state["residual"], state["step"]
        loss = np.sum(residual**2, axis=1)
        gradient = batch.system.gradient(batch.theta, residual)
        decrease = 2 * settings.armijo_constant * np.sum(gradient**2, axis=1)  # on |res|^2 scale
        pending = np.arange(batch.alive.size)
        for _ in range(60):  # 2^-60: a step this small changes nothing in float64
            trial_system = (
                batch.system if pending.size == batch.alive.size else batch.system.take(pending)
            )
            candidate = batch.theta[pending] - step[pending, None] * gradient[pending]
            candidate_residual = trial_system.residual(candidate)
            candidate_loss = np.sum(candidate_residual**2, axis=1)
            ok = candidate_loss <= loss[pending] - step[pending] * decrease[pending]
            accepted = pending[ok]
            batch.theta[accepted] = candidate[ok]
            residual[accepted] = candidate_residual[ok]
            loss[accepted] = candidate_loss[ok]
            step[accepted] *= 2
            pending = pending[~ok]
            step[pending] /= 2
            if pending.size == 0:
                break
        state = batch.record(loss, settings.tol, residual=residual, step=step)
    return batch.best


def adam_descent(
    system: System,
    theta: np.ndarray,
    settings: GDSettings,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-12,
) -> np.ndarray:
    """Adam with an absolute learning rate; success uses the lowest loss seen along the run."""
    batch = _Batch(system, theta)
    residual = system.residual(theta)
    state = {"residual": residual, "first": np.zeros_like(theta), "second": np.zeros_like(theta)}
    for step in range(1, settings.steps + 1):
        if batch.alive.size == 0:
            break
        gradient = batch.system.gradient(batch.theta, state["residual"])
        first = betas[0] * state["first"] + (1 - betas[0]) * gradient
        second = betas[1] * state["second"] + (1 - betas[1]) * gradient**2
        corrected = (first / (1 - betas[0] ** step)) / (
            np.sqrt(second / (1 - betas[1] ** step)) + eps
        )
        batch.theta = batch.theta - settings.lr * corrected
        residual = batch.system.residual(batch.theta)
        loss = np.sum(residual**2, axis=1)
        state = batch.record(loss, settings.tol, residual=residual, first=first, second=second)
    return batch.best


def fixed_step_linear_loss(system: LinearSystem, steps: int) -> np.ndarray:
    """Relative loss after ``steps`` of GD with step 1/lambda_max(X^T X) from w = 0, exactly.

    The residual evolves as (I - X X^T / lambda_max)^N y, so along each eigenvector u_i of X X^T
    it shrinks by (1 - lambda_i / lambda_max)^N.
    """
    steps = require_int("steps", steps)
    eigenvalues, eigenvectors = np.linalg.eigh(system.design @ np.swapaxes(system.design, 1, 2))
    shrink = np.clip(1 - eigenvalues / eigenvalues[:, -1:], 0.0, 1.0) ** (2 * steps)
    weights = (np.swapaxes(eigenvectors, 1, 2) @ system.targets[..., None])[..., 0] ** 2
    return np.sum(shrink * weights, axis=1) / np.sum(system.targets**2, axis=1)
