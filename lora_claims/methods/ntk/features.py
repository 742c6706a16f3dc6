"""Empirical NTK features of a real classifier: Jacobians of its K logits w.r.t. chosen weight matrices.

In the NTK (linearized) regime a LoRA update Delta = B A on a weight W changes the logits of
example j by <G_jk, Delta>, with G_jk = d logit_k / d W at the pretrained weights (Jang et al.'s
``linearized.py``; LM-Kernel-FT's eNTK). For a linear layer y_t = W h_t applied at token positions
t, the chain rule gives the exact factored form

    G_jk = sum_t u_jkt h_jt^T,   u_jkt = d logit_k / d y_jt,   h_jt = input of W at token t,

which is the ``FactoredFeatures`` layout of the linearized model ([N, K, T, m] and [N, T, n]).
The factors of a whole batch come from K vector-Jacobian products (``torch.func.vjp``) with respect
to an additive shift of each matrix's output: since the logits of one example depend only on its
own shift, the cotangent "logit k of every example" returns every example's u_k at once, K backward
passes per batch instead of B K. (Per-example ``vmap(jacrev(...))`` is not an option: the attention
mask code of transformers has data-dependent branches that vmap rejects.)

Test-set predictions of the linearized model need no test Jacobians: f0 + <G(x), Delta> is one
forward-mode product along Delta (``last_layer.LastLayerModel.linearized_logits``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import vjp

from lora_claims.errors import InvalidArgument, require_int
from lora_claims.harness.cache import CacheKind, ResultCache

DEFAULT_KINDS = ("query", "value")  # Jang et al.: LoRA on the attention query and value matrices

Encodings = Mapping[str, torch.Tensor]  # tokenizer output: input_ids, attention_mask, ...


class FeaturesTooLarge(InvalidArgument):
    """The requested features would not fit in the memory budget; the message gives the estimate."""


# --- which matrices ---------------------------------------------------------------------------------


def _layer_index(name: str) -> int | None:
    """The layer a module belongs to: the last integer in its dotted name (``...layer.5.attention...``)."""
    numbers = [int(part) for part in name.split(".") if part.isdigit()]
    return numbers[-1] if numbers else None


def _matches(name: str, kind: str) -> bool:
    return name == kind or name.endswith("." + kind)


def select_matrices(model: nn.Module, kinds: Sequence[str] = DEFAULT_KINDS,
                    layers: str | int | Sequence[int] = "last") -> tuple[str, ...]:
    """Names of the ``nn.Linear`` modules whose name is, or ends with, one of ``kinds``.

    ``layers``: ``"last"`` keeps the matches in the highest-numbered layer (Jang et al.'s default),
    ``"all"`` keeps every match, an int or a list of ints keeps those layers.
    """
    if isinstance(kinds, str) or not kinds:
        raise InvalidArgument(f"kinds must be a non-empty list of module names, got {kinds!r}")
    linear = {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    found = [name for name in linear if any(_matches(name, kind) for kind in kinds)]
    if not found:
        leaves = sorted({name.rsplit(".", 1)[-1] for name in linear})
        raise InvalidArgument(
            f"matrices {list(kinds)} match no nn.Linear module of {type(model).__name__}; "
            f"its linear modules end with: {', '.join(leaves)}"
        )
    indices = sorted({index for index in map(_layer_index, found) if index is not None})
    if layers == "all":
        chosen = found
    elif layers == "last":
        chosen = [name for name in found if _layer_index(name) == (indices[-1] if indices else None)]
    else:
        wanted = {layers} if isinstance(layers, int) else set(layers)
        if not wanted or not all(isinstance(i, int) for i in wanted) or not wanted <= set(indices):
            raise InvalidArgument(
                f"layers must be 'last', 'all' or layer numbers among {indices}, got {layers!r}"
            )
        chosen = [name for name in found if _layer_index(name) in wanted]
    missing = [kind for kind in kinds if not any(_matches(name, kind) for name in chosen)]
    if missing:
        raise InvalidArgument(f"matrices {missing} match no nn.Linear module in layers {layers!r}")
    return tuple(chosen)


def matrix_shapes(model: nn.Module, matrices: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(m, n) = (out_features, in_features) of each matrix."""
    modules = dict(model.named_modules())
    shapes = {}
    for name in matrices:
        module = modules.get(name)
        if not isinstance(module, nn.Linear):
            raise InvalidArgument(f"matrix {name!r} is not an nn.Linear module of {type(model).__name__}")
        shapes[name] = (module.out_features, module.in_features)
    return shapes


def checked_logits(model: nn.Module, output, n_outputs: int) -> torch.Tensor:
    """The ``logits`` of a model output, or a clear error when the head cannot give the task's K."""
    logits = getattr(output, "logits", None)
    if logits is None:
        raise InvalidArgument(
            f"{type(model).__name__} returns no logits (no classification head); load the model with "
            f"AutoModelForSequenceClassification and num_labels={n_outputs}"
        )
    if logits.ndim != 2 or logits.shape[1] != n_outputs:
        raise InvalidArgument(
            f"the head of {type(model).__name__} gives logits of shape {tuple(logits.shape[1:])} per "
            f"example but the task has K = {n_outputs} classes; load the model with num_labels={n_outputs}"
        )
    return logits


# --- memory -----------------------------------------------------------------------------------------


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def feature_bytes(n_examples: int, tokens: int, n_outputs: int, shapes: Mapping[str, tuple[int, int]],
                  itemsize: int = 4, dense: bool = False) -> int:
    """Bytes of the stored features: factored (u, h), plus the dense [N, K, m, n] form if asked."""
    total = 0
    for m, n in shapes.values():
        total += n_examples * tokens * (n_outputs * m + n) * itemsize
        if dense:
            total += n_examples * n_outputs * m * n * itemsize
    return total


def check_memory(needed: int, budget: int | None, what: str) -> None:
    """Refuse before computing when ``needed`` bytes exceed the budget (default: half of what is free)."""
    budget = available_memory() // 2 if budget is None else budget
    if needed > budget:
        raise FeaturesTooLarge(
            f"{what} need about {needed / 2**30:.2f} GiB but the memory budget is {budget / 2**30:.2f} "
            "GiB (half of the free memory unless memory_budget is given); use fewer examples, "
            "shorter sequences or fewer matrices"
        )


# --- features ---------------------------------------------------------------------------------------


@dataclass
class JacobianFeatures:
    """G_jk = sum_t left[j, k, t] right[j, t]^T for each matrix, and the logits f0 at the base weights.

    ``left[name]``: [N, K, T, m], the gradient of logit k w.r.t. the matrix output at token t;
    ``right[name]``: [N, T, n], the matrix input at token t (zero at padding positions).
    """

    matrices: tuple[str, ...]
    left: dict[str, torch.Tensor]
    right: dict[str, torch.Tensor]
    f0: torch.Tensor
    seconds: float = 0.0  # wall time of the extraction (kept with cached features)

    @property
    def n_examples(self) -> int:
        return self.f0.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.f0.shape[1]

    def shape(self, name: str) -> tuple[int, int]:
        return self.left[name].shape[-1], self.right[name].shape[-1]

    def take(self, rows: slice | torch.Tensor) -> JacobianFeatures:
        """The features of a subset of the examples."""
        return JacobianFeatures(self.matrices, {name: value[rows] for name, value in self.left.items()},
                                {name: value[rows] for name, value in self.right.items()}, self.f0[rows],
                                self.seconds)

    def dense(self, name: str) -> torch.Tensor:
        """The full feature matrices of one weight, [N, K, m, n]."""
        return torch.einsum("jktm,jtn->jkmn", self.left[name], self.right[name])

    def inner(self, deltas: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """sum over matrices of <G_jk, Delta>, [N, K], without forming G (differentiable in Delta)."""
        total = torch.zeros_like(self.f0)
        for name in self.matrices:
            total = total + self._inner_one(name, deltas[name])
        return total

    def inner_factored(self, factors: Mapping[str, tuple[torch.Tensor, torch.Tensor]], scale: float,
                       deltas: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``inner`` with Delta = scale B A for the matrices in ``factors`` (name -> (B, A)) and
        ``deltas`` for the rest, without forming B A: <G_jk, B A> = sum_t (u_jkt B) . (A h_jt),
        r numbers per token instead of m n (a training step's cost)."""
        total = torch.zeros_like(self.f0)
        for name in self.matrices:
            if name not in factors:
                total = total + self._inner_one(name, deltas[name])
                continue
            b, a = factors[name]
            total = total + scale * torch.einsum("jktr,jtr->jk", self.left[name] @ b, self.right[name] @ a.T)
        return total

    def _inner_one(self, name: str, delta: torch.Tensor) -> torch.Tensor:
        projected = self.right[name] @ delta.to(self.right[name].dtype).transpose(0, 1)
        return torch.einsum("jktm,jtm->jk", self.left[name], projected)

    def kernel(self) -> torch.Tensor:
        """The empirical NTK over the training outputs, [N K, N K]: sum over matrices of <G_jk, G_il>."""
        size = self.n_examples * self.n_outputs
        gram = torch.zeros(size, size, dtype=torch.float64)
        for name in self.matrices:  # one dense matrix at a time keeps the peak at N K m n numbers
            flat = self.dense(name).reshape(size, -1).double()
            gram += flat @ flat.T
        return gram

    def state(self) -> dict:
        return {"matrices": list(self.matrices), "left": self.left, "right": self.right, "f0": self.f0,
                "seconds": self.seconds}

    @classmethod
    def from_state(cls, state: Mapping) -> JacobianFeatures:
        return cls(tuple(state["matrices"]), dict(state["left"]), dict(state["right"]), state["f0"],
                   float(state["seconds"]))


def batches(encodings: Encodings, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """Consecutive rows of the encodings, each batch trimmed to its own longest sequence."""
    mask = encodings["attention_mask"]
    for start in range(0, mask.shape[0], require_int("batch_size", batch_size)):
        rows = slice(start, start + batch_size)
        length = int(mask[rows].sum(dim=1).max())
        yield {key: value[rows, :length] for key, value in encodings.items()}


def trimmed(encodings: Encodings) -> dict[str, torch.Tensor]:
    """All rows, trimmed to the longest sequence among them."""
    return next(batches(encodings, _check_encodings(encodings)))


def _check_encodings(encodings: Encodings) -> int:
    if "input_ids" not in encodings or "attention_mask" not in encodings:
        raise InvalidArgument(
            f"encodings must hold input_ids and attention_mask (tokenizer output), got {sorted(encodings)}"
        )
    shapes = {key: tuple(value.shape) for key, value in encodings.items()}
    if len(set(shapes.values())) != 1 or len(next(iter(shapes.values()))) != 2:
        raise InvalidArgument(f"encodings must be [N, T] tensors of one shape, got {shapes}")
    return encodings["input_ids"].shape[0]


def extract_features(model: nn.Module, encodings: Encodings, matrices: Sequence[str], n_outputs: int,
                     batch_size: int = 16, memory_budget: int | None = None) -> JacobianFeatures:
    """Jacobian features of the K logits w.r.t. ``matrices`` for every encoded example."""
    n_examples = _check_encodings(encodings)
    batch_size = require_int("batch_size", batch_size)
    shapes = matrix_shapes(model, matrices)
    tokens = encodings["input_ids"].shape[1]
    itemsize = next(model.parameters()).element_size()
    check_memory(feature_bytes(n_examples, tokens, n_outputs, shapes, itemsize),
                 memory_budget, f"Jacobian features of {n_examples} examples x {tokens} tokens x "
                 f"K = {n_outputs} for {len(shapes)} matrices")
    start = time.perf_counter()
    modules = dict(model.named_modules())
    left = {name: [] for name in matrices}
    right = {name: [] for name in matrices}
    f0 = []
    for batch in batches(encodings, batch_size):
        batch_left, batch_right, logits = _batch_factors(model, modules, batch, matrices, shapes, n_outputs)
        pad = tokens - batch["input_ids"].shape[1]
        for name in matrices:
            left[name].append(nn.functional.pad(batch_left[name], (0, 0, 0, pad)))
            right[name].append(nn.functional.pad(batch_right[name], (0, 0, 0, pad)))
        f0.append(logits)
    return JacobianFeatures(tuple(matrices), {name: torch.cat(left[name]) for name in matrices},
                            {name: torch.cat(right[name]) for name in matrices}, torch.cat(f0),
                            time.perf_counter() - start)


def _batch_factors(model, modules, batch, matrices, shapes, n_outputs):
    size, length = batch["input_ids"].shape
    inputs: dict[str, torch.Tensor] = {}

    def logits_given_shifts(shifts):
        calls = {name: 0 for name in matrices}

        def hook_for(name):
            def hook(module, args, output):
                calls[name] += 1
                inputs[name] = args[0].detach()
                return output + shifts[name]
            return hook

        handles = [modules[name].register_forward_hook(hook_for(name)) for name in matrices]
        try:
            logits = checked_logits(model, model(**batch), n_outputs)
        finally:
            for handle in handles:
                handle.remove()
        reused = {name: count for name, count in calls.items() if count != 1}
        if reused:
            raise InvalidArgument(f"each matrix must be applied once per forward pass, got calls {reused}")
        return logits

    zeros = {name: torch.zeros(size, length, shapes[name][0], dtype=next(model.parameters()).dtype)
             for name in matrices}
    logits, pullback = vjp(logits_given_shifts, zeros)
    per_output = [pullback(nn.functional.one_hot(torch.full((size,), k), n_outputs).to(logits.dtype))[0]
                  for k in range(n_outputs)]
    token_mask = batch["attention_mask"].unsqueeze(-1).to(logits.dtype)
    left = {name: torch.stack([grads[name] for grads in per_output], dim=1).detach() for name in matrices}
    right = {name: inputs[name] * token_mask for name in matrices}
    return left, right, logits.detach()


# --- weights shifted in place --------------------------------------------------------------------------


def _weight_names(matrices: Sequence[str]) -> dict[str, str]:
    return {name: f"{name}.weight" for name in matrices}


@contextmanager
def shifted_weights(model: nn.Module, deltas: Mapping[str, torch.Tensor]):
    """Temporarily replace each matrix W by W + Delta (restored exactly on exit)."""
    params = dict(model.named_parameters())
    names = _weight_names(deltas)
    saved = {m: params[names[m]].detach().clone() for m in deltas}
    try:
        with torch.no_grad():
            for matrix, delta in deltas.items():
                params[names[matrix]].add_(delta.to(params[names[matrix]].dtype))
        yield model
    finally:
        with torch.no_grad():
            for matrix, weight in saved.items():
                params[names[matrix]].copy_(weight)


# --- skipping the frozen layers ---------------------------------------------------------------------


class _Passthrough(nn.Module):
    """Stands in for a frozen block whose output is replayed: returns its hidden-state input."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def _layer_stack(model: nn.Module, matrices: Sequence[str]) -> tuple[nn.ModuleList, int] | None:
    """The ModuleList of blocks that holds every matrix, and the lowest block index among them."""
    modules = dict(model.named_modules())
    stacks = set()
    lowest = None
    for name in matrices:
        parts = name.split(".")
        digits = [i for i, part in enumerate(parts) if part.isdigit()]
        if not digits:
            return None
        stacks.add(".".join(parts[:digits[-1]]))
        index = int(parts[digits[-1]])
        lowest = index if lowest is None else min(lowest, index)
    stack = modules.get(stacks.pop()) if len(stacks) == 1 else None
    return (stack, lowest) if isinstance(stack, nn.ModuleList) else None


@contextmanager
def frozen_prefix(model: nn.Module, matrices: Sequence[str], batch: Mapping[str, torch.Tensor]):
    """Inside the context, forward passes *on this batch* skip the blocks below the lowest adapted one.

    Those blocks do not depend on the adapted matrices, so their output is computed once and
    replayed: they become pass-throughs and the first adapted block receives the stored hidden
    states. The replay is checked against the full forward pass once; a model whose blocks do not
    fit this pattern simply runs in full.

    Yields ``select(rows)``: after it, forward passes take the batch's ``rows`` only (minibatches
    of the stored batch, whose inputs the caller passes), or None where nothing is replayed.
    """
    found = _layer_stack(model, matrices)
    if found is None or found[1] == 0:
        yield None
        return
    stack, first = found
    stored = {}

    def capture(module, args):
        if args:
            stored["hidden"] = args[0].detach()

    handle = stack[first].register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            full = model(**batch).logits
    finally:
        handle.remove()
    if "hidden" not in stored:
        yield None
        return
    originals = [stack[i] for i in range(first)]
    for i in range(first):
        stack[i] = _Passthrough()
    handle = stack[first].register_forward_pre_hook(lambda module, args: (stored["hidden"], *args[1:]))

    def restore():
        handle.remove()
        for i, block in enumerate(originals):
            stack[i] = block

    try:
        with torch.no_grad():
            replayed = model(**batch).logits
        if not torch.allclose(replayed, full, rtol=1e-4, atol=1e-6):
            restore()
            yield None
            return
        every_row = stored["hidden"]
        yield lambda rows: stored.update(hidden=every_row[rows])
    finally:
        restore()


# --- disk cache -------------------------------------------------------------------------------------

FEATURES = CacheKind("ntk-features", 1)  # bump when the stored layout or its computation changes


def cached_features(cache: ResultCache, config: Mapping, compute) -> JacobianFeatures:
    """The features stored for ``config`` (model, task, seed, matrices, ...), or computed and stored."""
    return JacobianFeatures.from_state(
        cache.get_or_compute_tensors(FEATURES, dict(config), lambda: compute().state()))
