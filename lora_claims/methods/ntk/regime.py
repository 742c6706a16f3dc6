"""How far real LoRA fine-tuning moves from its linearization: the measurements behind C11.

The trained parameters are the LoRA factors of the adapted matrices (Delta = (alpha / r) B A) and,
when the classifier has a trainable head, the head's weight and bias, exactly as in the fine-tuning
runs. One initialization (``init``: the values the fine-tuning engine draws) is trained twice, with
the same optimizer, schedule, learning rate and minibatch order:

- the real model: every trained parameter in place, the rest frozen, evaluated on the cached
  inputs of its last layer (``last_layer.LastLayerModel``);
- its linearization around the same initial point, jointly in every trained matrix:
  f = f0 + sum_W <G_W, Delta_W>, where the head's weight and bias are matrices like the adapted
  ones (their Delta is H - H0), and G is the Jacobian at the initial point (head H0 included).

Measured then: on the test set, which rows the two models classify alike (per row, so intervals
can resample rows) and the logit distance relative to the real fine-tuning move; on the training
examples, the relative Frobenius change of the empirical NTK between start and end of real
training, for all trained matrices and for the adapted ones alone (the features the theory holds
fixed).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from lora_claims.errors import InvalidArgument, require_int, require_positive_float
from lora_claims.methods.ntk.features import (
    Encodings,
    JacobianFeatures,
    extract_features,
    frozen_prefix,
    shifted_weights,
    trimmed,
)
from lora_claims.methods.ntk.last_layer import LastLayerModel, take

OPTIMIZERS = ("adamw", "sgd")  # AdamW with linear decay (the fine-tuning runs'); plain SGD, constant lr


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
    """One training run: rank, optimizer, learning rate, steps of ``batch_size`` examples, seed of
    the minibatch order, LoRA scale alpha / rank (alpha None: 2 r, the fine-tuning runs' default)."""

    rank: int = 1
    steps: int = 500
    lr: float = 3e-3
    optimizer: str = "adamw"
    batch_size: int = 8
    seed: int = 0
    alpha: float | None = None

    def __post_init__(self) -> None:
        require_int("rank", self.rank)
        require_int("steps", self.steps, minimum=0)
        require_int("batch_size", self.batch_size)
        require_positive_float("lr", self.lr)
        require_int("seed", self.seed, minimum=0)
        if self.optimizer not in OPTIMIZERS:
            raise InvalidArgument(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")

    @property
    def scale(self) -> float:
        return (self.alpha if self.alpha is not None else 2.0 * self.rank) / self.rank

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Init:
    """The initial point: LoRA factors (B [m, r], A [r, n]) of each adapted matrix and the initial
    value of each fully trained matrix (a head's weight and bias)."""

    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]
    full: dict[str, torch.Tensor]


@dataclass
class TrainedLora:
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]  # each adapted matrix's (B, A) at the end
    full: dict[str, torch.Tensor]  # each fully trained matrix at the end
    deltas: dict[str, torch.Tensor]  # every trained matrix's change from the initial point
    scale: float
    losses: list[float]  # training loss on the step's minibatch, before each step
    seconds: float


def minibatch_order(n_rows: int, run: LoraRun) -> list[torch.Tensor]:
    """Row indices of each step: a fresh permutation each epoch, drawn from ``run.seed``."""
    generator = torch.Generator().manual_seed(run.seed)
    order: list[torch.Tensor] = []
    while len(order) < run.steps:
        permutation = torch.randperm(n_rows, generator=generator)
        order += list(permutation.split(run.batch_size))
    return order[:run.steps]


def _optimize(init: Init, loss_on, n_rows: int, run: LoraRun) -> TrainedLora:
    """Train from ``init``; ``loss_on(factors, full, rows)`` is the minibatch loss."""
    factors = {name: (b.clone().requires_grad_(), a.clone().requires_grad_())
               for name, (b, a) in init.factors.items()}
    full = {name: value.clone().requires_grad_() for name, value in init.full.items()}
    params = [t for pair in factors.values() for t in pair] + list(full.values())
    if run.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=run.lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / run.steps)
    else:
        optimizer, schedule = torch.optim.SGD(params, lr=run.lr), None
    losses = []
    start = time.perf_counter()
    for rows in minibatch_order(n_rows, run):
        optimizer.zero_grad()
        loss = loss_on(factors, full, rows)
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.detach())
    seconds = time.perf_counter() - start
    with torch.no_grad():
        factors = {name: (b.detach(), a.detach()) for name, (b, a) in factors.items()}
        full = {name: value.detach() for name, value in full.items()}
        deltas = {name: run.scale * b @ a for name, (b, a) in factors.items()}
        deltas |= {name: full[name] - init.full[name] for name in full}
    losses = torch.stack(losses).tolist() if losses else []
    return TrainedLora(factors, full, deltas, run.scale, losses, seconds)


def train_real(model: LastLayerModel, train: EncodedSplit, init: Init, run: LoraRun) -> TrainedLora:
    """The real model trained from ``init`` (the model itself is not modified), each step on the
    cached inputs of its minibatch's rows."""
    rows = model.cached_rows(train.encodings)

    def loss_on(factors, full, batch):
        return nn.functional.cross_entropy(model.logits(take(rows, batch), factors, full, run.scale),
                                           train.labels[batch])

    return _optimize(init, loss_on, train.labels.shape[0], run)


def _to_init(model: nn.Module, init: Init) -> dict[str, torch.Tensor]:
    """The shift from the model's own fully trained matrices (its head) to ``init``'s."""
    params = dict(model.named_parameters())
    return {name: value - params[f"{name}.weight"].detach() for name, value in init.full.items()}


def train_linearized(features: JacobianFeatures, labels: torch.Tensor, init: Init,
                     run: LoraRun) -> TrainedLora:
    """The same run on the linearization f0 + sum_W <G_W, Delta_W> (features at ``init``)."""
    trained = set(init.factors) | set(init.full)
    if set(features.matrices) != trained:
        raise InvalidArgument(f"the features' matrices {list(features.matrices)} are not the trained "
                              f"ones {sorted(trained)}")

    def loss_on(factors, full, rows):
        chosen = features.take(rows)
        moved = {name: full[name] - init.full[name] for name in full}
        return nn.functional.cross_entropy(chosen.f0 + chosen.inner_factored(factors, run.scale, moved),
                                           labels[rows])

    return _optimize(init, loss_on, labels.shape[0], run)


def relative_change(before: torch.Tensor, after: torch.Tensor) -> float:
    """||after - before||_F / ||before||_F."""
    return float((after - before).norm() / before.norm())


def compare_predictions(reference: torch.Tensor, other: torch.Tensor, base: torch.Tensor) -> dict:
    """How well ``other`` logits reproduce ``reference`` logits, both moved away from ``base``.

    ``agreement``: fraction of rows with the same predicted class; ``logit_distance``:
    ||other - reference||_F / ||reference - base||_F, the error relative to the fine-tuning move.
    """
    moved = (reference - base).norm()
    return {
        "agreement": float((reference.argmax(dim=1) == other.argmax(dim=1)).double().mean()),
        "logit_distance": float((other - reference).norm() / moved) if moved > 0 else float("nan"),
    }


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(dim=1) == labels).double().mean())


def kernel_of(features: JacobianFeatures, matrices: Sequence[str]) -> torch.Tensor:
    """The empirical NTK of ``matrices`` alone."""
    return JacobianFeatures(tuple(matrices), features.left, features.right, features.f0).kernel()


def test_logits(model: LastLayerModel, test: EncodedSplit, init: Init,
                real: Mapping[str, TrainedLora] | None = None,
                linearized: Mapping[str, TrainedLora] | None = None,
                batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Test logits at the initial point (``"base"``), of real models (label -> trained run) and of
    linearized ones (label -> trained run, by forward-mode products at ``init``), batch by batch
    over the cached inputs of the test rows."""
    real, linearized = dict(real or {}), dict(linearized or {})
    rows = model.cached_rows(test.encodings)
    parts = {label: [] for label in ["base", *real, *linearized]}
    with torch.no_grad():
        for start in range(0, test.labels.shape[0], batch_size):
            batch = take(rows, slice(start, start + batch_size))
            parts["base"].append(model.logits(batch, init.factors, init.full, 1.0))
            for label, trained in real.items():
                parts[label].append(model.logits(batch, trained.factors, trained.full, trained.scale))
            for label, trained in linearized.items():
                parts[label].append(model.linearized_logits(batch, trained.factors, trained.full, init.full,
                                                            trained.scale)[1])
    return {label: torch.cat(values) for label, values in parts.items()}


def train_features(model: nn.Module, train: EncodedSplit, init: Init, n_outputs: int,
                   deltas: Mapping[str, torch.Tensor] | None = None) -> JacobianFeatures:
    """Jacobian features of the trained matrices on the training rows, at ``init`` + ``deltas``."""
    names = [*init.factors, *init.full]
    to_init = _to_init(model, init)
    shift = {name: to_init.get(name, 0) + (deltas or {}).get(name, 0) for name in names}
    shift = {name: value for name, value in shift.items() if torch.is_tensor(value)}
    batch = trimmed(train.encodings)
    rows = batch["input_ids"].shape[0]
    with shifted_weights(model, shift), frozen_prefix(model, list(init.factors), batch):
        return extract_features(model, batch, names, n_outputs, batch_size=rows)


def regime_run(model: LastLayerModel, features: JacobianFeatures, train: EncodedSplit, test: EncodedSplit,
               init: Init, run: LoraRun) -> dict:
    """Train real and linearized from ``init`` and compare them (see the module doc); ``features``
    are ``train_features(model.classifier, train, init)``."""
    real = train_real(model, train, init, run)
    linear = train_linearized(features, train.labels, init, run)
    logits = test_logits(model, test, init, {"real": real}, {"linearized": linear})
    moved = train_features(model.classifier, train, init, features.n_outputs, real.deltas)
    adapted = list(init.factors)
    with torch.no_grad():
        real_train = moved.f0  # the real model's logits at its end point
        linear_train = features.f0 + features.inner(linear.deltas)
    return {
        "run": run.to_json(),
        "real": _summary(real, real_train, logits["real"], train, test),
        "linearized": _summary(linear, linear_train, logits["linearized"], train, test),
        "base_test_accuracy": accuracy(logits["base"], test.labels),
        "same_prediction": (logits["real"].argmax(1) == logits["linearized"].argmax(1)).int().tolist(),
        "linearized_vs_real": compare_predictions(logits["real"], logits["linearized"], logits["base"]),
        "ntk_relative_change": relative_change(features.kernel(), moved.kernel()),
        "adapted_ntk_relative_change": relative_change(kernel_of(features, adapted),
                                                       kernel_of(moved, adapted)),
    }


def _summary(trained: TrainedLora, train_logits, test_logits, train: EncodedSplit,
             test: EncodedSplit) -> dict:
    return {"train_loss": float(nn.functional.cross_entropy(train_logits, train.labels)),
            "train_accuracy": accuracy(train_logits, train.labels),
            "test_accuracy": accuracy(test_logits, test.labels),
            "train_seconds": trained.seconds}
