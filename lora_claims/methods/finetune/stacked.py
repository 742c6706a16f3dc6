"""Stacked LoRA fine-tuning: many adapters trained together over one frozen encoder.

Every adapter of a group (its own seed, rank, learning rate and scale) trains on the same frozen
BERT-family, RoBERTa-family or MPNet model. The frozen weights are applied once to the concatenated
batch of a pass of adapters (all of them on CUDA, 64 rows' worth on CPU); each adapter's LoRA delta
is added to its own slice with batched matmuls; heads are stacked too; one optimizer update per
step covers the whole group. The result equals training each adapter alone (``peft_reference``
does that with peft, and the equivalence test compares the two):

- Gradients: the loss is the sum of the per-adapter mean losses, and adapter s's parameters touch
  only slice s, so each adapter receives exactly the gradient of its own loss.
- Optimizer: AdamW is elementwise, so one update over all adapters' parameters at once, with a
  learning rate per adapter, is independent AdamW per adapter (there is no gradient clipping that
  would couple them).
- Ranks: adapters of different ranks share tensors padded to the largest rank; the padding stays
  exactly zero (see ``StackedAdamW``).
- Data order, best-dev checkpoint and evaluation are per adapter, as in the single-run loop.

Placements: ``all-layers`` adapts query and value of every layer; ``last-layer`` only those of the
last layer (Jang et al.'s default), so everything below it is frozen and deterministic and is
computed once per example (``frozen_prefix_states``), and so are the frozen query, key and value
projections of the first adapted layer (``frozen_projections``): a step then only adds each
adapter's LoRA deltas to them. With a first-token head the last layer only computes what the head
reads: keys and values of every token, the rest for token 0 only.

Dropout is off everywhere (the frozen base runs in eval mode): the cached prefix needs a
deterministic base, and one setting for both placements keeps them comparable and lets the peft
reference reproduce a run exactly. On CUDA the frozen base runs under bf16 autocast while LoRA
factors, heads and optimizer state stay in float32; on CPU everything runs in the model's dtype.
No host synchronisation happens inside a training step: batches are gathered on the device from
pre-padded split tensors, losses and dev accuracies stay on the device until the run ends.

Architectures: the engine runs one layer computation (attention, output projection and LayerNorm,
feed-forward) for every supported family. Where a family keeps those modules (``LayerLayout``) and
what else differs (``Architecture``: token types, the native head) is data, not branches. MPNet
also adds a relative position bias to every layer's attention scores; it depends only on the
sequence width, so it is computed once per width (``position_bias``) and passed to each layer.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lora_claims.errors import InvalidArgument

PLACEMENTS = ("last-layer", "all-layers")
HEADS = ("native", "linear-cls", "linear-mean")
PROJECTIONS = ("query", "value")  # the adapted attention projections, in initialisation order
DROPOUT = 0.0  # see the module docstring
BETAS = (0.9, 0.999)  # torch.optim.AdamW's defaults, as in the single-run loop
EPS = 1e-8


@dataclass(frozen=True)
class AdapterSpec:
    """One adapter of a group: what differs between the runs stacked together."""

    seed: int  # initialisation and data order
    rank: int
    learning_rate: float
    alpha: float | None = None  # None: 2 * rank, the same scale alpha / r at every rank
    split: int = 0  # which of the group's train/dev splits this adapter learns from

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InvalidArgument(f"seed must be an integer >= 0, got {self.seed!r}")
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise InvalidArgument(f"rank must be an integer >= 1, got {self.rank!r}")
        for name in ("learning_rate", "alpha"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise InvalidArgument(f"{name} must be a finite number > 0, got {value!r}")

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank

    def scale(self, rslora: bool) -> float:
        """peft's scaling: alpha / r, or alpha / sqrt(r) under rsLoRA."""
        return self.lora_alpha / (math.sqrt(self.rank) if rslora else self.rank)


@dataclass(frozen=True)
class TrainSettings:
    """What every adapter of a group shares."""

    placement: str = "last-layer"
    head: str = "native"
    steps: int = 1000
    eval_every: int = 100
    batch_size: int = 8
    eval_rows: int = 256  # rows per evaluation forward, all adapters together
    # training rows per forward/backward pass, all adapters together; None: 64 on CPU (measured on
    # MiniLM, last layer, length 128: 50 adapters in one pass took 11.4 ms per adapter-step, in
    # passes of 8 adapters 9.2 ms; smaller tensors stay in cache), all adapters at once on CUDA
    rows_per_pass: int | None = None
    weight_decay: float = 0.0
    rslora: bool = False

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise InvalidArgument(f"placement must be one of {', '.join(PLACEMENTS)}; "
                                  f"got {self.placement!r}")
        if self.head not in HEADS:
            raise InvalidArgument(f"head must be one of {', '.join(HEADS)}; got {self.head!r}")
        for name in ("steps", "eval_every", "batch_size", "eval_rows", "rows_per_pass"):
            value = getattr(self, name)
            if name == "rows_per_pass" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.weight_decay, (int, float)) and 0 <= self.weight_decay < math.inf):
            raise InvalidArgument(f"weight_decay must be a finite number >= 0, "
                                  f"got {self.weight_decay!r}")

    def adapters_per_pass(self, device: torch.device) -> int:
        rows = self.rows_per_pass or (64 if device.type == "cpu" else 2**62)
        return max(1, rows // self.batch_size)


@dataclass(frozen=True)
class SplitTensors:
    """A tokenized split padded once to its longest row, on the training device: batches are then
    gathered by index on the device, without per-step collation or host copies."""

    input_ids: torch.Tensor  # (rows, width), long
    attention_mask: torch.Tensor  # (rows, width), 1 for tokens, 0 for padding
    labels: torch.Tensor  # (rows,), long
    token_type_ids: torch.Tensor | None = None

    @classmethod
    def collate(cls, input_ids: Sequence[Sequence[int]], labels: Sequence[int], pad_id: int,
                device="cpu", token_type_ids: Sequence[Sequence[int]] | None = None):
        if not input_ids or len(input_ids) != len(labels):
            raise InvalidArgument(f"a split needs as many labels as rows (>= 1), got "
                                  f"{len(input_ids)} rows and {len(labels)} labels")
        width = max(len(row) for row in input_ids)
        ids = torch.full((len(input_ids), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(input_ids), width), dtype=torch.long)
        types = None if token_type_ids is None else torch.zeros_like(ids)
        for i, row in enumerate(input_ids):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
            if types is not None:
                types[i, : len(row)] = torch.tensor(token_type_ids[i])
        on = lambda t: None if t is None else t.to(device)  # noqa: E731
        return cls(on(ids), on(mask), on(torch.as_tensor(labels, dtype=torch.long)), on(types))

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @classmethod
    def concat(cls, splits: Sequence[SplitTensors]) -> SplitTensors:
        """One split holding the rows of ``splits`` in order, padded to the widest of them."""
        width = max(s.input_ids.shape[1] for s in splits)

        def cat(name: str, pad: int):
            parts = [getattr(s, name) for s in splits]
            if parts[0] is None:
                return None
            return torch.cat([F.pad(p, (0, width - p.shape[1]), value=pad) for p in parts])

        return cls(cat("input_ids", 0), cat("attention_mask", 0),
                   torch.cat([s.labels for s in splits]), cat("token_type_ids", 0))

    def model_inputs(self, rows) -> dict[str, torch.Tensor]:
        """Keyword arguments of a transformers model for the given rows."""
        inputs = {"input_ids": self.input_ids[rows], "attention_mask": self.attention_mask[rows]}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids[rows]
        return inputs


def batch_schedule(n_rows: int, batch_size: int, steps: int, seed: int):
    """The rows each step trains on, drawn like the single-run loop: a queue refilled with
    ``randperm(n_rows)`` from ``Generator().manual_seed(seed)`` whenever it runs empty, so the last
    batch of an epoch may be short. Returns ``rows`` (steps, batch_size) and a boolean ``valid`` of
    the same shape that marks the filler slots of short batches False."""
    order = torch.Generator().manual_seed(seed)
    rows = torch.zeros((steps, batch_size), dtype=torch.long)
    valid = torch.zeros((steps, batch_size), dtype=torch.bool)
    queue: list[int] = []
    for step in range(steps):
        if not queue:
            queue = torch.randperm(n_rows, generator=order).tolist()
        taken, queue = queue[:batch_size], queue[batch_size:]
        rows[step, : len(taken)] = torch.tensor(taken)
        valid[step, : len(taken)] = True
    return rows, valid


# --- the frozen model ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerLayout:
    """Where an encoder layer keeps the modules ``layer_forward`` runs, by role (paths from the
    layer; the feed-forward is ``layer.intermediate`` and ``layer.output`` in every family)."""

    attention: str  # the self-attention module: num_attention_heads, attention_head_size
    query: str
    key: str
    value: str
    output: str  # the attention output projection
    norm: str  # the LayerNorm after attention
    position_bias: bool  # the scores take the encoder's relative position bias (``position_bias``)

    def part(self, layer, role: str) -> torch.nn.Module:
        return layer.get_submodule(getattr(self, role))


BERT_LAYER = LayerLayout("attention.self", "attention.self.query", "attention.self.key",
                         "attention.self.value", "attention.output.dense",
                         "attention.output.LayerNorm", position_bias=False)
MPNET_LAYER = LayerLayout("attention.attn", "attention.attn.q", "attention.attn.k", "attention.attn.v",
                          "attention.attn.o", "attention.LayerNorm", position_bias=True)


@dataclass(frozen=True)
class Architecture:
    """What differs between model families beyond the layer layout."""

    token_types: bool  # the embeddings take token_type_ids
    # "pooler": BERT's frozen pretrained pooler, then one linear; "tanh": dense, tanh, out_proj on
    # token 0 (RoBERTa, MPNet); "gelu": ELECTRA's GELU between two linears, which is refused
    native_head: str


ARCHITECTURES = {
    "bert": Architecture(token_types=True, native_head="pooler"),
    "roberta": Architecture(token_types=True, native_head="tanh"),
    "xlm-roberta": Architecture(token_types=True, native_head="tanh"),
    "electra": Architecture(token_types=True, native_head="gelu"),
    "mpnet": Architecture(token_types=False, native_head="tanh"),
}
MODEL_TYPES = tuple(ARCHITECTURES)


_LAYOUT_OF_CLASS: dict[type, LayerLayout] = {}


def layer_layout(layer) -> LayerLayout:
    """The layout of ``layer``, recognised by where its self-attention sits (a layer does not know
    its model type, and ``layer_forward`` is given only the layer); found once per layer class,
    since every layer_forward call asks."""
    if type(layer) not in _LAYOUT_OF_CLASS:
        for layout in (BERT_LAYER, MPNET_LAYER):
            with contextlib.suppress(AttributeError):
                layer.get_submodule(layout.attention)
                _LAYOUT_OF_CLASS[type(layer)] = layout
                break
        else:
            raise InvalidArgument(
                f"layer: no supported layout (BERT-family or MPNet) for {type(layer).__name__}")
    return _LAYOUT_OF_CLASS[type(layer)]


def layer_part(layer, role: str) -> torch.nn.Module:
    """The module playing ``role`` (query, key, value, output, norm) in ``layer``."""
    return layer_layout(layer).part(layer, role)


def encoder_of(model):
    """The encoder (BertModel / RobertaModel / MPNetModel) of ``model``, checked to be one we can
    run."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in MODEL_TYPES:
        raise InvalidArgument(f"model must be a BERT- or RoBERTa-family or MPNet transformers model "
                              f"({', '.join(MODEL_TYPES)}); got model_type {model_type!r}")
    if getattr(model.config, "position_embedding_type", "absolute") != "absolute":
        raise InvalidArgument("model: only absolute position embeddings are supported, got "
                              f"{model.config.position_embedding_type!r}")
    if getattr(model.config, "is_decoder", False):  # MPNet's config has no is_decoder
        raise InvalidArgument("model: a decoder configuration (is_decoder=True) is not supported")
    if getattr(model.config, "embedding_size", model.config.hidden_size) != model.config.hidden_size:
        raise InvalidArgument("model: an embedding size other than the hidden size (ELECTRA-small's "
                              "projection) is not supported")
    return model.base_model


def architecture(model) -> Architecture:
    """The family of ``model``, checked by ``encoder_of``."""
    encoder_of(model)
    return ARCHITECTURES[model.config.model_type]


def position_bias(encoder, width: int) -> torch.Tensor | None:
    """The relative position bias (heads, width, width) that MPNet adds to every layer's attention
    scores for rows padded to ``width`` tokens, or None for a family without one. It depends only
    on the key-query offsets, so a narrower width's bias is its top-left corner and a query row's
    bias is the same whatever the padding."""
    if not layer_layout(encoder.encoder.layer[0]).position_bias:
        return None
    device = encoder.encoder.relative_attention_bias.weight.device
    return encoder.encoder.compute_position_bias(torch.empty(1, width, 0, device=device))[0]


def adapted_layers(model, placement: str) -> list[int]:
    """Indices of the layers whose query and value carry LoRA."""
    if placement not in PLACEMENTS:
        raise InvalidArgument(f"placement must be one of {', '.join(PLACEMENTS)}; got {placement!r}")
    count = len(encoder_of(model).encoder.layer)
    return list(range(count)) if placement == "all-layers" else [count - 1]


def head_shapes(model, head: str) -> list[tuple[int, int]]:
    """(out, in) of each trainable linear of the head, in module order; tanh between them.

    ``native`` is exactly what peft's SEQ_CLS ``modules_to_save`` trains: BERT's ``classifier``
    (after the frozen pretrained pooler), RoBERTa's and MPNet's ``classifier.dense`` and
    ``classifier.out_proj``.
    """
    if head not in HEADS:
        raise InvalidArgument(f"head must be one of {', '.join(HEADS)}; got {head!r}")
    hidden, labels = model.config.hidden_size, model.config.num_labels
    if head != "native":
        return [(labels, hidden)]
    classifier = getattr(model, "classifier", None)
    if classifier is None:
        raise InvalidArgument("head 'native' needs a *ForSequenceClassification model; this one "
                              "has no classifier (use head 'linear-cls' or 'linear-mean')")
    native = architecture(model).native_head
    if native == "gelu":
        raise InvalidArgument(f"head 'native' on {model.config.model_type.upper()} (GELU between its "
                              "two linears) is not supported: use head 'linear-cls'")
    if native == "pooler" and encoder_of(model).pooler is None:
        raise InvalidArgument("head 'native' on BERT needs the pooler, and this model has none")
    return [(m.out_features, m.in_features) for m in classifier.modules()
            if isinstance(m, torch.nn.Linear)]


def check_ranks(model, placement: str, ranks: Sequence[int]) -> None:
    """Every rank must be at most min(in, out) of each adapted matrix."""
    layers = encoder_of(model).encoder.layer
    for index in adapted_layers(model, placement):
        for name in PROJECTIONS:
            linear = layer_part(layers[index], name)
            limit = min(linear.in_features, linear.out_features)
            for rank in ranks:
                if rank > limit:
                    raise InvalidArgument(
                        f"rank {rank} exceeds min(in, out) = {limit} of layer {index} {name} "
                        f"({linear.out_features} x {linear.in_features}); "
                        f"choose 1 <= rank <= {limit}")


def initial_adapter_values(model, adapter: AdapterSpec, settings: TrainSettings) -> dict:
    """An adapter's initial head and LoRA factors, float32 on the CPU (the same numbers on every
    device and dtype), named ``head.{i}.weight|bias``, ``lora_A|lora_B.{layer}.{projection}``.

    Draw order: a generator seeded with ``adapter.seed`` draws the head weights, normal(0,
    initializer_range), in module order (biases zero); a second generator with the same seed draws
    each A, kaiming-uniform with a = sqrt(5) as peft does, layer by layer, query before value
    (B zero). For the native head on all layers these are the numbers the single-run loop draws.
    """
    values = {}
    heads = torch.Generator().manual_seed(adapter.seed)
    for index, (out_features, in_features) in enumerate(head_shapes(model, settings.head)):
        weight = torch.empty(out_features, in_features)
        torch.nn.init.normal_(weight, std=model.config.initializer_range, generator=heads)
        values[f"head.{index}.weight"] = weight
        values[f"head.{index}.bias"] = torch.zeros(out_features)
    factors = torch.Generator().manual_seed(adapter.seed)
    layers = encoder_of(model).encoder.layer
    for index in adapted_layers(model, settings.placement):
        for name in PROJECTIONS:
            linear = layer_part(layers[index], name)
            a = torch.empty(adapter.rank, linear.in_features)
            torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=factors)
            values[f"lora_A.{index}.{name}"] = a
            values[f"lora_B.{index}.{name}"] = torch.zeros(linear.out_features, adapter.rank)
    return values


def frozen_autocast(device: torch.device):
    """bf16 autocast for the frozen base on CUDA; nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def project(x: torch.Tensor, linear: torch.nn.Linear, lora=None, frozen=None) -> torch.Tensor:
    """``linear(x)`` (or ``frozen``, its value computed beforehand) plus, when ``lora = (A, B,
    scale)`` is given, each adapter's delta on its slice: x is (adapters, ..., in), A (adapters,
    r, in), B (adapters, out, r), scale (adapters, 1, 1). The delta runs outside autocast, in the
    factors' dtype."""
    out = linear(x) if frozen is None else frozen
    if lora is None:
        return out
    a, b, scale = lora
    with torch.autocast(x.device.type, enabled=False):
        rows = x.reshape(x.shape[0], -1, x.shape[-1]).to(a.dtype)
        delta = torch.bmm(torch.bmm(rows, a.transpose(1, 2)), b.transpose(1, 2)) * scale
    return out + delta.view(out.shape)


def layer_forward(layer, x: torch.Tensor, attend: torch.Tensor, lora_query=None, lora_value=None,
                  first_token_only: bool = False, frozen: dict | None = None,
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """One BERT/RoBERTa/MPNet layer without dropout. ``x`` (..., tokens, hidden), ``attend`` (...,
    tokens) True at real tokens. With ``first_token_only`` only token 0's output is computed (it
    still attends to every token); the result is then (..., 1, hidden). ``frozen`` optionally
    holds the frozen query, key and value projections of ``x`` (``frozen_projections``). ``bias``
    is the encoder's ``position_bias`` for this width: required by MPNet, None elsewhere."""
    layout = layer_layout(layer)
    if layout.position_bias != (bias is not None):
        raise InvalidArgument("layer_forward: pass the encoder's position_bias exactly when the layer "
                              f"takes one ({type(layer).__name__}: {layout.position_bias})")
    frozen = frozen or {}
    attention = layout.part(layer, "attention")
    heads, size = attention.num_attention_heads, attention.attention_head_size
    rows = x[..., :1, :] if first_token_only else x

    def by_head(t):
        return t.reshape(-1, t.shape[-2], heads, size).transpose(1, 2)

    mask = attend.reshape(-1, 1, 1, attend.shape[-1])
    if bias is not None:  # additive: the bias on real keys, -inf (weight exactly 0) on padding
        mask = torch.where(mask, bias[:, : rows.shape[-2]], -math.inf)
    context = F.scaled_dot_product_attention(
        by_head(project(rows, layout.part(layer, "query"), lora_query, frozen.get("query"))),
        by_head(project(x, layout.part(layer, "key"), frozen=frozen.get("key"))),
        by_head(project(x, layout.part(layer, "value"), lora_value, frozen.get("value"))),
        attn_mask=mask,
    )
    context = context.transpose(1, 2).reshape(*rows.shape[:-1], heads * size)
    attended = layout.part(layer, "norm")(layout.part(layer, "output")(context) + rows)
    return layer.output.LayerNorm(layer.output.dense(layer.intermediate(attended)) + attended)


def frozen_prefix_states(model, split: SplitTensors, n_layers: int,
                         chunk_rows: int = 64) -> torch.Tensor:
    """The hidden states entering layer ``n_layers`` (0: the embedding output) for every row of
    ``split``, (rows, width, hidden), from the frozen model with dropout off. They depend only on
    the weights and the rows, so every adapter (and a later disk cache) can share them."""
    encoder = encoder_of(model)
    token_types = architecture(model).token_types
    device = split.input_ids.device
    attend = split.attention_mask.bool()
    was_training = model.training
    model.eval()
    chunks = []
    with torch.no_grad(), frozen_autocast(device):
        bias = position_bias(encoder, split.input_ids.shape[1])
        for start in range(0, len(split), chunk_rows):
            rows = slice(start, start + chunk_rows)
            inputs = split.model_inputs(rows)
            types = {"token_type_ids": inputs.get("token_type_ids")} if token_types else {}
            states = encoder.embeddings(input_ids=inputs["input_ids"], **types)
            for layer in encoder.encoder.layer[:n_layers]:
                states = layer_forward(layer, states, attend[rows], bias=bias)
            chunks.append(states)
    model.train(was_training)
    return torch.cat(chunks)


def frozen_projections(layer, states: torch.Tensor, first_token_only: bool,
                       chunk_rows: int = 64) -> dict[str, torch.Tensor]:
    """The frozen query (token 0 only with ``first_token_only``), key and value outputs of
    ``layer`` for cached input ``states``: like the states, fixed per example, so a step reuses
    them instead of recomputing the layer's largest matmuls for every adapter."""
    layout = layer_layout(layer)
    parts: dict[str, list[torch.Tensor]] = {"query": [], "key": [], "value": []}
    with torch.no_grad(), frozen_autocast(states.device):
        for start in range(0, states.shape[0], chunk_rows):
            x = states[start : start + chunk_rows]
            parts["query"].append(layout.part(layer, "query")(x[:, :1] if first_token_only else x))
            parts["key"].append(layout.part(layer, "key")(x))
            parts["value"].append(layout.part(layer, "value")(x))
    return {name: torch.cat(chunks) for name, chunks in parts.items()}


# --- parameters and optimizer -------------------------------------------------------------------


class ParameterBank:
    """Every trainable tensor of a group in one flat buffer (and its gradient in another), each
    tensor a contiguous (adapters, ...) block: the optimizer and checkpointing then act on a
    single tensor whatever the number of layers and adapters. Gradients land in place in
    ``grads`` because each parameter's ``.grad`` is preset to its view of it."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], n_adapters: int, dtype, device):
        sizes = [n_adapters * math.prod(shape) for shape in shapes.values()]
        self.values = torch.zeros(sum(sizes), dtype=dtype, device=device)
        self.grads = torch.zeros_like(self.values)
        self.tensors: dict[str, torch.nn.Parameter] = {}
        owners, offset = [], 0
        for (name, shape), size in zip(shapes.items(), sizes, strict=True):
            parameter = torch.nn.Parameter(self.values[offset : offset + size].view(n_adapters, *shape))
            parameter.grad = self.grads[offset : offset + size].view(n_adapters, *shape)
            self.tensors[name] = parameter
            owners.append(torch.arange(n_adapters, device=device).repeat_interleave(size // n_adapters))
            offset += size
        self.adapter_of_element = torch.cat(owners)

    def __getitem__(self, name: str) -> torch.nn.Parameter:
        return self.tensors[name]

    def per_element(self, per_adapter: torch.Tensor) -> torch.Tensor:
        """Spread a per-adapter tensor (adapters,) over the flat buffer."""
        return per_adapter[self.adapter_of_element]


class StackedAdamW:
    """``torch.optim.AdamW`` (its single-tensor update, no amsgrad) on the whole bank at once,
    with one learning rate per adapter and the single-run loop's linear decay: step t uses
    lr * (1 - (t - 1) / steps), as ``LambdaLR(lambda s: 1 - s / steps)`` does.

    Why not ``torch.optim.AdamW(fused=True)``: its learning rate is one scalar per parameter
    group, so a rate per adapter would take a group, and a kernel launch, per adapter. Here the
    whole group's update is a fixed handful of elementwise kernels over one flat buffer, however
    many adapters and layers it holds: what fusing buys, with the per-adapter rate kept.

    Padding stays zero. Let row j of A and column j of B be padding (j >= the adapter's rank),
    both zero. The gradient of A[j, :] is scale * sum_tokens (B[:, j] . dy) x, zero because
    B[:, j] = 0; that of B[:, j] is scale * sum_tokens dy (A[j, :] . x), zero because A[j, :] = 0.
    With a zero gradient and zero parameter, AdamW keeps m = v = 0, adds lr * 0 / (0 + eps) = 0
    and decays 0 * (1 - lr * wd) = 0: the padding is zero again after the step, so by induction
    forever, and the padded adapter computes exactly what an unpadded one would.
    """

    def __init__(self, bank: ParameterBank, learning_rates: torch.Tensor, weight_decay: float,
                 steps: int):
        self.bank, self.weight_decay, self.steps = bank, weight_decay, steps
        self.learning_rates = bank.per_element(learning_rates.to(bank.values))
        self.first_moment = torch.zeros_like(bank.values)
        self.second_moment = torch.zeros_like(bank.values)

    @torch.no_grad()
    def step(self, step: int) -> None:
        (beta1, beta2), values, grads = BETAS, self.bank.values, self.bank.grads
        lr = self.learning_rates * (1.0 - (step - 1) / self.steps)
        if self.weight_decay:
            values.mul_(1 - lr * self.weight_decay)
        self.first_moment.lerp_(grads, 1 - beta1)
        self.second_moment.mul_(beta2).addcmul_(grads, grads, value=1 - beta2)
        denominator = (self.second_moment.sqrt() / math.sqrt(1 - beta2**step)).add_(EPS)
        values.sub_(self.first_moment / denominator * (lr / (1 - beta1**step)))


# --- memory -------------------------------------------------------------------------------------


def estimate_group_bytes(model, settings: TrainSettings, n_adapters: int, max_rank: int,
                         splits: Sequence[SplitTensors]) -> dict[str, int]:
    """A rough upper estimate of a group's memory, by part: the flat parameter buffers (values,
    gradients, two moments, best checkpoint, one temporary), the cached inputs of every split
    (states, keys, values and queries of the first adapted layer), and the activations autograd
    keeps for one training pass (per row and adapted layer: about 10 hidden-size and 2
    intermediate-size vectors per computed token, and one attention matrix, two with MPNet's
    additive bias mask), plus one evaluation forward."""
    config = model.config
    device = next(model.parameters()).device
    width = max(s.input_ids.shape[1] for s in splits)
    hidden, inner, heads = config.hidden_size, config.intermediate_size, config.num_attention_heads
    element = next(model.parameters()).element_size()
    activation = 2 if device.type == "cuda" else element
    layers = adapted_layers(model, settings.placement)
    lora = sum(max_rank * 2 * hidden for _ in layers for _ in PROJECTIONS)
    head = sum(o * i + o for o, i in head_shapes(model, settings.head))
    matrices = 2 if layer_layout(encoder_of(model).encoder.layer[0]).position_bias else 1
    full_layer = width * (10 * hidden + 2 * inner) + matrices * heads * width * width
    last_rows = 1 if settings.head != "linear-mean" else width
    last_layer = width * 3 * hidden + last_rows * (10 * hidden + 2 * inner) + matrices * heads * width
    per_row = (len(layers) - 1) * full_layer + last_layer
    return {
        "parameters": 6 * n_adapters * (lora + head) * element,
        "cached_inputs": 4 * sum(len(s) for s in splits) * width * hidden * element,
        "activations": (min(n_adapters, settings.adapters_per_pass(device)) * settings.batch_size
                        + settings.eval_rows) * per_row * activation,
    }


def available_bytes(device: torch.device) -> int:
    """Free memory on ``device``: CUDA's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def adapters_per_group(model, settings: TrainSettings, adapters: Sequence[AdapterSpec],
                       splits: Sequence[SplitTensors], budget_bytes: int | None = None) -> int:
    """How many of ``adapters`` fit in one group within ``budget_bytes`` (default: 90% of the
    free memory); InvalidArgument with the numbers when not even one fits."""
    device = next(model.parameters()).device
    budget = int(0.9 * available_bytes(device)) if budget_bytes is None else budget_bytes
    max_rank = max(a.rank for a in adapters)
    fits = 0
    for count in range(len(adapters), 0, -1):
        if sum(estimate_group_bytes(model, settings, count, max_rank, splits).values()) <= budget:
            fits = count
            break
    if fits == 0:
        parts = estimate_group_bytes(model, settings, 1, max_rank, splits)
        detail = ", ".join(f"{name} {size / 2**30:.2f} GiB" for name, size in parts.items())
        raise InvalidArgument(
            f"adapters: even one adapter needs about {sum(parts.values()) / 2**30:.2f} GiB "
            f"({detail}) but the memory budget is {budget / 2**30:.2f} GiB on {device}; lower "
            f"batch_size, rows_per_pass or eval_rows, or shorten the rows")
    return fits


# --- training -----------------------------------------------------------------------------------


def _own_rows(splits, adapters: Sequence[AdapterSpec], name: str):
    """The union of a group's splits and, per adapter, the indices of its own split's rows."""
    if isinstance(splits, SplitTensors):
        splits = [splits]
    sizes = {len(s) for s in splits}
    if len(sizes) != 1:
        raise InvalidArgument(f"{name} splits of one group must have equal sizes, got {sorted(sizes)}")
    size = sizes.pop()
    for adapter in adapters:
        if not 0 <= adapter.split < len(splits):
            raise InvalidArgument(f"adapter split {adapter.split} outside the group's "
                                  f"{len(splits)} {name} split(s)")
    members = torch.stack([torch.arange(size) + adapter.split * size for adapter in adapters])
    return SplitTensors.concat(splits) if len(splits) > 1 else splits[0], {name: members}


class StackedTrainer:
    """One group of adapters on one frozen model. The model is put in eval mode and frozen in
    place (its own weights never receive gradients)."""

    def __init__(self, model, adapters: Sequence[AdapterSpec], settings: TrainSettings,
                 train: SplitTensors | Sequence[SplitTensors],
                 dev: SplitTensors | Sequence[SplitTensors], test: SplitTensors,
                 keep_step_losses: bool = False, prefix=None, on_steps=None):
        """``train`` and ``dev`` are one split, or one per data split with ``AdapterSpec.split``
        choosing each adapter's (k-shot splits of equal size, as LM-BFF's are); the test split is
        shared. ``prefix(split, n_layers)`` may supply the frozen prefix states (a cache);
        ``on_steps(n)`` hears of n adapter-steps done at each evaluation point (a progress bar)."""
        if not adapters:
            raise InvalidArgument("adapters must list at least one adapter")
        self.prefix = prefix or (lambda split, n_layers: frozen_prefix_states(model, split, n_layers))
        train, self.members = _own_rows(train, adapters, "train")
        dev, dev_members = _own_rows(dev, adapters, "dev")
        self.members["dev"] = dev_members["dev"]
        check_ranks(model, settings.placement, [a.rank for a in adapters])
        shapes = head_shapes(model, settings.head)
        for name, split in (("train", train), ("dev", dev), ("test", test)):
            if int(split.labels.max()) >= model.config.num_labels or int(split.labels.min()) < 0:
                raise InvalidArgument(f"{name} labels must lie in 0..{model.config.num_labels - 1}"
                                      " (model.config.num_labels)")
        self.model, self.adapters, self.settings = model.eval().requires_grad_(False), adapters, settings
        self.splits = {"train": train, "dev": dev, "test": test}
        self.keep_step_losses = keep_step_losses
        self.on_steps = on_steps or (lambda steps: None)
        parameter = next(model.parameters())
        self.device, dtype = parameter.device, parameter.dtype
        self.layers = encoder_of(model).encoder.layer
        self.adapted = adapted_layers(model, settings.placement)
        self.head_layers = len(shapes)
        self.pooled = settings.head == "native" and architecture(model).native_head == "pooler"
        self.biases: dict[int, torch.Tensor | None] = {}
        count, max_rank = len(adapters), max(a.rank for a in adapters)

        bank_shapes = {}
        for index, (out_features, in_features) in enumerate(shapes):
            bank_shapes[f"head.{index}.weight"] = (out_features, in_features)
            bank_shapes[f"head.{index}.bias"] = (out_features,)
        for index in self.adapted:
            for name in PROJECTIONS:
                linear = layer_part(self.layers[index], name)
                bank_shapes[f"lora_A.{index}.{name}"] = (max_rank, linear.in_features)
                bank_shapes[f"lora_B.{index}.{name}"] = (linear.out_features, max_rank)
        self.bank = ParameterBank(bank_shapes, count, dtype, self.device)
        with torch.no_grad():
            for slot, adapter in enumerate(adapters):
                for name, value in initial_adapter_values(model, adapter, settings).items():
                    target = self.bank[name][slot]
                    target[tuple(slice(0, n) for n in value.shape)] = value
        self.scale = torch.tensor([a.scale(settings.rslora) for a in adapters],
                                  dtype=dtype, device=self.device).view(count, 1, 1)
        self.optimizer = StackedAdamW(
            self.bank, torch.tensor([a.learning_rate for a in adapters], dtype=torch.float64),
            settings.weight_decay, settings.steps)

        own_rows = self.members["train"].shape[1]
        schedules = [batch_schedule(own_rows, settings.batch_size, settings.steps, a.seed)
                     for a in adapters]
        local = torch.stack([rows for rows, _ in schedules], dim=1)  # (steps, adapters, batch)
        rows = torch.gather(self.members["train"].unsqueeze(0).expand(settings.steps, -1, -1), 2, local)
        size = settings.adapters_per_pass(self.device)
        self.passes = [slice(start, start + size) for start in range(0, count, size)]
        # Each pass runs at the width of its longest row, not the split's: padding costs compute
        # and changes nothing (padded keys get zero attention weight, padded tokens are never
        # read). The widths are known before training, so a step needs no host sync for them.
        self.lengths = {name: split.attention_mask.sum(1).cpu() for name, split in self.splits.items()}
        self.step_widths = torch.stack([self.lengths["train"][rows[:, part]].flatten(1).amax(1)
                                        for part in self.passes], dim=1).tolist()
        # An adapter's own train and dev rows are evaluated in order of length, in chunks of
        # ``batch_size`` rows padded to their longest.
        self.own_order = {name: self.lengths[name][members].argsort(dim=1, stable=True)
                          for name, members in self.members.items()}
        self.own_chunks = {}
        for name, members in self.members.items():
            ordered = self.lengths[name][members.gather(1, self.own_order[name])]
            self.own_chunks[name] = [
                (part, columns, int(ordered[part, columns].max()))
                for part in self.passes
                for columns in (slice(start, start + settings.batch_size)
                                for start in range(0, members.shape[1], settings.batch_size))]
        self.own_order = {name: order.to(self.device) for name, order in self.own_order.items()}
        self.rows = rows.to(self.device)
        self.members = {name: rows.to(self.device) for name, rows in self.members.items()}
        self.weights = torch.stack([valid for _, valid in schedules], dim=1).to(self.device, dtype)
        self.step_losses = torch.zeros(settings.steps, count, dtype=dtype, device=self.device)
        self.inputs = {"train": self.cached_inputs(train), "dev": self.cached_inputs(dev)}

    def cached_inputs(self, split: SplitTensors) -> dict[str, torch.Tensor]:
        """What a step reads per example: the states entering the first adapted layer, that
        layer's frozen projections of them, and the key mask."""
        first = self.adapted[0]
        states = self.prefix(split, first)
        query_first_token = self.settings.head != "linear-mean" and first == len(self.layers) - 1
        return {"states": states, "attend": split.attention_mask.bool(),
                **frozen_projections(self.layers[first], states, query_first_token)}

    def position_bias(self, width: int) -> torch.Tensor | None:
        """``position_bias`` for rows of ``width`` tokens, computed once per width."""
        if width not in self.biases:
            self.biases[width] = position_bias(encoder_of(self.model), width)
        return self.biases[width]

    def lora(self, index: int, name: str, part: slice):
        if index not in self.adapted:
            return None
        return (self.bank[f"lora_A.{index}.{name}"][part], self.bank[f"lora_B.{index}.{name}"][part],
                self.scale[part])

    def logits(self, inputs: dict[str, torch.Tensor], part: slice) -> torch.Tensor:
        """Logits (adapters, rows, labels) of the adapters in ``part`` from cached inputs
        (``cached_inputs``) gathered per adapter: each (adapters, rows, ...)."""
        first_token = self.settings.head != "linear-mean"
        hidden, attend = inputs["states"], inputs["attend"]
        frozen = {name: inputs[name] for name in ("query", "key", "value")}
        bias = self.position_bias(attend.shape[-1])
        with frozen_autocast(self.device):
            for index in range(self.adapted[0], len(self.layers)):
                hidden = layer_forward(self.layers[index], hidden, attend,
                                       self.lora(index, "query", part),
                                       self.lora(index, "value", part),
                                       first_token_only=first_token and index == len(self.layers) - 1,
                                       frozen=frozen if index == self.adapted[0] else None, bias=bias)
            if first_token:
                features = hidden[..., 0, :]
            else:
                weights = attend.unsqueeze(-1).to(hidden.dtype)
                features = (hidden * weights).sum(-2) / weights.sum(-2)
            if self.pooled:
                features = encoder_of(self.model).pooler.activation(
                    encoder_of(self.model).pooler.dense(features))
        features = features.to(self.bank.values.dtype)
        count = self.head_layers
        for index in range(count):
            weight = self.bank[f"head.{index}.weight"][part]
            bias = self.bank[f"head.{index}.bias"][part]
            features = torch.baddbmm(bias.unsqueeze(1), features, weight.transpose(1, 2))
            if index < count - 1:
                features = torch.tanh(features)
        return features

    def train_step(self, step: int) -> None:
        """One optimizer step of every adapter (``step`` counts from 1), the forward and backward
        in passes of ``adapters_per_pass`` adapters (each pass adds only its own adapters'
        gradients); no host sync."""
        rows, weights = self.rows[step - 1], self.weights[step - 1]
        train = self.inputs["train"]
        for part, width in zip(self.passes, self.step_widths[step - 1], strict=True):
            logits = self.logits({name: value[:, :width][rows[part]] for name, value in train.items()},
                                 part)
            losses = F.cross_entropy(logits.flatten(0, 1),
                                     self.splits["train"].labels[rows[part]].flatten(),
                                     reduction="none").view(weights[part].shape)
            per_adapter = (losses * weights[part]).sum(1) / weights[part].sum(1)
            per_adapter.sum().backward()
            self.step_losses[step - 1, part] = per_adapter.detach()
        self.optimizer.step(step)
        self.bank.grads.zero_()

    @torch.no_grad()
    def predict(self, name: str) -> torch.Tensor:
        """Predicted labels (adapters, rows) of every adapter for every row of a split. Rows go
        in order of length, so that each chunk is padded to about its own rows' length."""
        inputs, lengths = self.inputs[name], self.lengths[name]
        count = len(self.adapters)
        chunk = max(1, self.settings.eval_rows // count)
        order = torch.argsort(lengths, stable=True)
        predictions = torch.empty((count, len(lengths)), dtype=torch.long, device=self.device)
        for start in range(0, len(lengths), chunk):
            rows = order[start : start + chunk]
            width = int(lengths[rows].max())
            on_device = rows.to(self.device)
            shared = {key: value[:, :width][on_device] for key, value in inputs.items()}
            logits = self.logits({key: value.expand(count, *value.shape)
                                  for key, value in shared.items()}, slice(None))
            predictions[:, on_device] = logits.argmax(-1)
        return predictions

    @torch.no_grad()
    def predict_own(self, name: str) -> torch.Tensor:
        """Predicted labels (adapters, rows) of every adapter on its own rows of a train or dev
        split (its k-shot split's rows, gathered per adapter)."""
        order, inputs = self.own_order[name], self.inputs[name]
        members = self.members[name].gather(1, order)
        ordered = torch.empty_like(members)
        for part, columns, width in self.own_chunks[name]:
            gathered = {key: value[:, :width][members[part, columns]] for key, value in inputs.items()}
            ordered[part, columns] = self.logits(gathered, part).argmax(-1)
        return torch.empty_like(ordered).scatter_(1, order, ordered)

    def accuracy(self, predictions: torch.Tensor, name: str) -> torch.Tensor:
        labels = self.splits[name].labels
        labels = labels[self.members[name]] if name in self.members else labels.expand_as(predictions)
        return (predictions == labels).to(torch.float64).mean(1)

    def fit(self) -> list[dict]:
        """Train, keep each adapter's best-dev checkpoint (strictly better than any earlier
        evaluation), restore it, and return one record per adapter."""
        settings = self.settings
        count = len(self.adapters)
        best_accuracy = torch.full((count,), -1.0, dtype=torch.float64, device=self.device)
        best_step = torch.zeros(count, dtype=torch.long, device=self.device)
        best_values = self.bank.values.clone()
        curve = []
        reported = 0
        for step in range(1, settings.steps + 1):
            self.train_step(step)
            if step % settings.eval_every == 0 or step == settings.steps:
                self.on_steps((step - reported) * count)
                reported = step
                accuracy = self.accuracy(self.predict_own("dev"), "dev")
                improved = accuracy > best_accuracy
                best_accuracy = torch.where(improved, accuracy, best_accuracy)
                best_step = torch.where(improved, step, best_step)
                best_values = torch.where(self.bank.per_element(improved), self.bank.values,
                                          best_values)
                curve.append((step, accuracy, self.step_losses[step - 1].clone()))
        with torch.no_grad():
            self.bank.values.copy_(best_values)
        self.inputs["test"] = self.cached_inputs(self.splits["test"])
        predictions = {"train": self.predict_own("train"), "dev": self.predict_own("dev"),
                       "test": self.predict("test")}
        del self.inputs["test"]
        accuracies = {name: self.accuracy(predictions[name], name).tolist() for name in predictions}
        eval_steps = [step for step, _, _ in curve]
        dev_accuracies = torch.stack([accuracy for _, accuracy, _ in curve], 1).tolist()
        train_losses = torch.stack([loss for _, _, loss in curve], 1).tolist()
        test_predictions = predictions["test"].tolist()
        step_losses = self.step_losses.T.tolist()
        best = best_step.tolist()
        return [
            adapter_record(
                "stacked", adapter, settings, self.model,
                {name: accuracies[name][slot] for name in accuracies}, best[slot],
                [list(point) for point in zip(eval_steps, dev_accuracies[slot], train_losses[slot],
                                              strict=True)],
                test_predictions[slot], self.splits["test"].labels.tolist(),
                step_losses[slot] if self.keep_step_losses else None)
            for slot, adapter in enumerate(self.adapters)
        ]


def adapter_record(engine: str, adapter: AdapterSpec, settings: TrainSettings, model,
                   accuracies: dict[str, float], best_step: int, dev_curve: list,
                   test_predictions: list[int], test_labels: list[int],
                   step_losses: list[float] | None) -> dict:
    """One run's result, the same keys from either engine."""
    layers = encoder_of(model).encoder.layer
    lora_params = sum(
        adapter.rank * (layer_part(layers[i], n).in_features + layer_part(layers[i], n).out_features)
        for i in adapted_layers(model, settings.placement) for n in PROJECTIONS)
    record = {
        "engine": engine,
        "placement": settings.placement,
        "head": settings.head,
        "dropout": DROPOUT,
        "seed": adapter.seed,
        "rank": adapter.rank,
        "learning_rate": adapter.learning_rate,
        "lora_alpha": adapter.lora_alpha,
        "lora_scale": adapter.scale(settings.rslora),
        "rslora": settings.rslora,
        "weight_decay": settings.weight_decay,
        "steps": settings.steps,
        "eval_every": settings.eval_every,
        "batch_size": settings.batch_size,
        "model_type": model.config.model_type,
        "lora_params": lora_params,
        "head_params": sum(o * i + o for o, i in head_shapes(model, settings.head)),
        "train_accuracy": accuracies["train"],
        "dev_accuracy": accuracies["dev"],
        "test_accuracy": accuracies["test"],
        "best_step": best_step,
        "dev_curve": dev_curve,  # [step, dev accuracy, training loss of that step]
        "test_predictions": test_predictions,  # in test-row order
        "test_labels": test_labels,
    }
    if step_losses is not None:
        record["step_losses"] = step_losses
    return record


def train_stacked(model, adapters: Sequence[AdapterSpec], settings: TrainSettings,
                  train: SplitTensors | Sequence[SplitTensors],
                  dev: SplitTensors | Sequence[SplitTensors], test: SplitTensors, *,
                  memory_budget_bytes: int | None = None, keep_step_losses: bool = False,
                  prefix=None, on_steps=None) -> list[dict]:
    """Train ``adapters`` on the frozen ``model`` and return one record per adapter, in order.
    Groups are as large as the memory estimate allows (see ``adapters_per_group``); ``train`` and
    ``dev`` may hold one split per data split (see ``StackedTrainer``)."""
    if not adapters:
        raise InvalidArgument("adapters must list at least one adapter")
    check_ranks(model, settings.placement, [a.rank for a in adapters])
    unions = [s if isinstance(s, SplitTensors) else SplitTensors.concat(s) for s in (train, dev)]
    size = adapters_per_group(model, settings, adapters, (*unions, test), memory_budget_bytes)
    records = []
    for start in range(0, len(adapters), size):
        group = adapters[start : start + size]
        records += StackedTrainer(model, group, settings, train, dev, test, keep_step_losses,
                                  prefix, on_steps).fit()
    return records
