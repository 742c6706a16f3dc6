"""How far real LoRA fine-tuning moves from its linearization: the measurements behind C11.

One LoRA initialization per adapted matrix (B = 0, A with iid N(0, s^2) entries, s = 1 / (sqrt(r) n),
as in Jang et al.'s code, no alpha / r scaling) is trained twice, with the same optimizer, learning
rate and number of full-batch steps on the same k-shot examples:

- the real model: W = W0 + B A inside the encoder (``functional_call``); every other weight stays
  frozen, the classifier head included, so both models train exactly the same parameters;
- its linearization: f = f0 + sum_W <G_W, B A> with the Jacobian features G taken at W0.

Measured then: on the test set, how often the two models predict the same class and how far apart
their logits are relative to how far fine-tuning moved the real logits; the same for the
first-order Taylor model at the real end point (f0 + <G, Delta_real>), which separates the
nonlinearity of the model from the difference of the two trajectories; on the training examples,
the relative change of the empirical NTK in weight space between the start and the end of real
training. Every phase is timed in the same process, so the costs can be compared.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.func import functional_call

from lora_claims.errors import InvalidArgument, require_int, require_positive_float
from lora_claims.methods.ntk.features import (
    Encodings,
    JacobianFeatures,
    batches,
    extract_features,
    frozen_prefix,
    linearized_logits,
    logits_at,
    matrix_shapes,
    shifted_weights,
    trimmed,
)

OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class EncodedSplit:
    """Tokenized examples with their integer labels."""

    encodings: Encodings
    labels: torch.Tensor

    def __post_init__(self) -> None:
        rows = self.encodings["input_ids"].shape[0]
        if self.labels.ndim != 1 or self.labels.shape[0] != rows:
            raise InvalidArgument(
                f"labels must be a vector of {rows} class indices, got {tuple(self.labels.shape)}")


@dataclass(frozen=True)
class LoraRun:
    """One LoRA training run: rank, optimizer, learning rate, full-batch steps, initialization seed."""

    rank: int = 1
    steps: int = 40
    lr: float = 1e-3
    optimizer: str = "adam"
    init_seed: int = 0

    def __post_init__(self) -> None:
        require_int("rank", self.rank)
        require_int("steps", self.steps, minimum=0)
        require_positive_float("lr", self.lr)
        require_int("init_seed", self.init_seed, minimum=0)
        if self.optimizer not in OPTIMIZERS:
            raise InvalidArgument(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class TrainedLora:
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]  # name -> (B [m, r], A [r, n])
    losses: list[float]  # training loss before each step and at the end
    seconds: float
    snapshots: dict[int, dict[str, torch.Tensor]]  # step -> the update B A after that many steps

    def deltas(self) -> dict[str, torch.Tensor]:
        return _deltas(self.factors)


def init_factors(shapes: Mapping[str, tuple[int, int]], rank: int, seed: int,
                 dtype: torch.dtype = torch.float32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """B = 0 and A ~ N(0, (1 / (sqrt(r) n))^2) for each matrix, drawn in the given order from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    factors = {}
    for name, (m, n) in shapes.items():
        if not 1 <= rank <= min(m, n):
            raise InvalidArgument(f"rank must lie in 1..min(m, n) = {min(m, n)} for {name!r}, got {rank}")
        a = torch.randn(rank, n, generator=generator, dtype=dtype) / (rank**0.5 * n)
        factors[name] = (torch.zeros(m, rank, dtype=dtype), a)
    return factors


def _deltas(factors) -> dict[str, torch.Tensor]:
    return {name: (b @ a).detach() for name, (b, a) in factors.items()}


def _optimize(factors, loss_fn, run: LoraRun, snapshot_steps: Sequence[int] = ()) -> TrainedLora:
    params = [tensor.requires_grad_() for pair in factors.values() for tensor in pair]
    optimizer = (torch.optim.Adam if run.optimizer == "adam" else torch.optim.SGD)(params, lr=run.lr)
    losses, snapshots = [], {}
    start = time.perf_counter()
    for step in range(run.steps):
        if step in snapshot_steps:
            snapshots[step] = _deltas(factors)
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        losses.append(loss_fn().item())
    for tensor in params:
        tensor.requires_grad_(False)
    return TrainedLora(factors, losses, time.perf_counter() - start, snapshots)


def train_real(model: nn.Module, train: EncodedSplit, matrices: Sequence[str], run: LoraRun,
               snapshot_steps: Sequence[int] = ()) -> TrainedLora:
    """LoRA on ``matrices`` of the real model, full batch, cross-entropy; the model is not modified.

    ``snapshot_steps``: steps before which the update B A is kept (for the kernel's trajectory).
    """
    shapes = matrix_shapes(model, matrices)
    params = dict(model.named_parameters())
    base = {name: params[f"{name}.weight"].detach() for name in matrices}
    batch = trimmed(train.encodings)
    factors = init_factors(shapes, run.rank, run.init_seed, next(model.parameters()).dtype)

    def loss():
        weights = {f"{name}.weight": base[name] + b @ a for name, (b, a) in factors.items()}
        logits = functional_call(model, weights, kwargs=batch).logits
        return nn.functional.cross_entropy(logits, train.labels)

    start = time.perf_counter()
    with frozen_prefix(model, matrices, batch):
        trained = _optimize(factors, loss, run, snapshot_steps)
    trained.seconds = time.perf_counter() - start  # the replayed layers' one forward pass included
    return trained


def train_linearized(features: JacobianFeatures, labels: torch.Tensor, run: LoraRun) -> TrainedLora:
    """The same LoRA run on the linearized model f0 + sum_W <G_W, B A>."""
    shapes = {name: features.shape(name) for name in features.matrices}
    factors = init_factors(shapes, run.rank, run.init_seed, features.f0.dtype)

    def loss():
        deltas = {name: b @ a for name, (b, a) in factors.items()}
        return nn.functional.cross_entropy(features.f0 + features.inner(deltas), labels)

    return _optimize(factors, loss, run)


def relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """||after - before||_F / ||before||_F."""
    return float((after - before).norm() / before.norm())


def compare_predictions(reference: torch.Tensor, other: torch.Tensor, base: torch.Tensor) -> dict:
    """How well ``other`` logits reproduce ``reference`` logits, both moved away from ``base``.

    ``agreement``: fraction of examples with the same predicted class; ``logit_distance``:
    ||other - reference||_F / ||reference - base||_F, the error relative to the fine-tuning move.
    """
    moved = (reference - base).norm()
    return {
        "agreement": float((reference.argmax(dim=1) == other.argmax(dim=1)).double().mean()),
        "logit_distance": float((other - reference).norm() / moved) if moved > 0 else float("nan"),
        "rms_logit_error": float((other - reference).square().mean().sqrt()),
    }


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).double().mean())


def prefix_predictions(model: nn.Module, matrices: Sequence[str], encodings: Encodings,
                       real: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
                       linearized: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
                       batch_size: int = 32) -> dict:
    """Logits of the real model at W0 + Delta (``real``: label -> deltas) and of the linearized
    model (``linearized``: label -> deltas, plus f0 as ``"base"``), batch by batch, each batch over
    the replayed frozen layers (one forward pass of those layers serves every model).

    ``seconds``: ``"prefix"`` for the frozen layers' pass, then one entry per label.
    """
    real, linearized = dict(real or {}), dict(linearized or {})
    parts = {label: [] for label in [*real, *linearized, "base"]}
    seconds = dict.fromkeys(["prefix", *real, *linearized], 0.0)
    for batch in batches(encodings, batch_size):
        rows = batch["input_ids"].shape[0]
        start = time.perf_counter()
        with frozen_prefix(model, matrices, batch):
            seconds["prefix"] += time.perf_counter() - start
            for label, deltas in real.items():
                start = time.perf_counter()
                parts[label].append(logits_at(model, batch, deltas, rows))
                seconds[label] += time.perf_counter() - start
            for label, deltas in linearized.items():
                start = time.perf_counter()
                base, moved = linearized_logits(model, batch, deltas, rows)
                seconds[label] += time.perf_counter() - start
                parts[label].append(moved)
            if not linearized:
                base = logits_at(model, batch, {}, rows)
        parts["base"].append(base)
    return {**{label: torch.cat(values) for label, values in parts.items()}, "seconds": seconds}


def regime_run(model: nn.Module, features: JacobianFeatures, train: EncodedSplit, test: EncodedSplit,
               run: LoraRun, batch_size: int = 32, kernel_points: int = 4) -> dict:
    """Train real and linearized LoRA from one initialization and compare them (see module doc).

    The kernel's relative change is also read at ``kernel_points`` evenly spaced steps of the real
    run (``kernel_trajectory``: step, training loss, change), so one can see when it moves.
    """
    matrices = features.matrices
    checkpoints = sorted({round(i * run.steps / kernel_points) for i in range(1, kernel_points)} - {0})
    real = train_real(model, train, matrices, run, checkpoints)
    linear = train_linearized(features, train.labels, run)
    real_deltas, linear_deltas = real.deltas(), linear.deltas()

    predictions = prefix_predictions(model, matrices, test.encodings, {"real": real_deltas},
                                     {"linearized": linear_deltas, "taylor": real_deltas}, batch_size)
    real_test, base_test = predictions["real"], predictions["base"]
    linear_test, taylor_test = predictions["linearized"], predictions["taylor"]
    seconds = predictions["seconds"]
    real_eval_seconds = seconds["prefix"] + seconds["real"]
    linear_eval_seconds = seconds["prefix"] + seconds["linearized"]

    kernel = features.kernel()
    trajectory = [{"step": 0, "train_loss": real.losses[0], "ntk_relative_change": 0.0}]
    batch, rows = trimmed(train.encodings), features.n_examples
    with frozen_prefix(model, matrices, batch):  # every pass below runs on this one batch
        for step, deltas in [*real.snapshots.items(), (run.steps, real_deltas)]:
            with shifted_weights(model, deltas):
                moved = extract_features(model, batch, matrices, features.n_outputs, batch_size=rows)
            trajectory.append({"step": step, "train_loss": real.losses[step],
                               "ntk_relative_change": relative_change(kernel, moved.kernel())})
        real_train = logits_at(model, batch, real_deltas, batch_size=rows)
    weights = dict(model.named_parameters())

    def summary(trained: TrainedLora, train_logits, test_logits, test_seconds: float) -> dict:
        return {
            "train_loss": trained.losses[-1], "train_accuracy": accuracy(train_logits, train.labels),
            "test_accuracy": accuracy(test_logits, test.labels),
            "train_seconds": trained.seconds, "test_seconds": test_seconds,
            "delta_relative_norm": _relative_norm(trained.deltas(), weights), "losses": trained.losses,
        }

    return {
        "run": run.to_json(),
        "real": summary(real, real_train, real_test, real_eval_seconds),
        "linearized": summary(linear, features.f0 + features.inner(linear_deltas), linear_test,
                              linear_eval_seconds),
        "taylor_test_accuracy": accuracy(taylor_test, test.labels),
        "base_test_accuracy": accuracy(base_test, test.labels),
        "linearized_vs_real": compare_predictions(real_test, linear_test, base_test),
        "taylor_vs_real": compare_predictions(real_test, taylor_test, base_test),
        "ntk_relative_change": trajectory[-1]["ntk_relative_change"],
        "kernel_trajectory": trajectory,
    }


def _relative_norm(deltas: Mapping[str, torch.Tensor], weights: Mapping[str, torch.Tensor]) -> float:
    """||Delta|| / ||W0|| over all adapted matrices together."""
    delta_sq = sum(float(delta.double().square().sum()) for delta in deltas.values())
    weight_sq = sum(float(weights[f"{name}.weight"].detach().double().square().sum()) for name in deltas)
    return (delta_sq / weight_sq) ** 0.5
