"""The fine-tuning runs' model on cached rows: its logits as a function of the trained values.

C8-cpu's configuration adapts only the last layer's query and value and reads a linear head on
the first token. Everything below that layer is frozen, so a row's logits depend on the trained
values only through the last layer evaluated for token 0, on inputs that never change: the states
entering the layer and its frozen query (token 0), key and value projections. These are the
stacked engine's cached inputs (the prefix cached on disk where a cache is given), and the layer is
the engine's ``layer_forward``. C11's real runs train on this function, and the linearized model's
predictions are its forward-mode derivative along the trained update: a step then costs a
fraction of a full forward pass, and a test row's prefix is computed once for every seed and rank.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from lora_claims.errors import InvalidArgument
from lora_claims.methods.finetune.stacked import (
    PROJECTIONS,
    SplitTensors,
    frozen_prefix_states,
    frozen_projections,
    layer_forward,
)

Factors = Mapping[str, tuple[torch.Tensor, torch.Tensor]]  # adapted matrix -> (B [m, r], A [r, n])
CachedRows = dict[str, torch.Tensor]  # states, attend, query (token 0), key, value; one row each


class LastLayerModel:
    """A first-token classifier (``real_features.FirstTokenClassifier``: ``encoder``, ``head``,
    ``head_bias``) with LoRA on its last layer's query and value, evaluated on cached rows.

    ``adapted`` names the adapted matrices as the classifier's modules; ``prefix(split, layers)``
    supplies the states entering layer ``layers`` (default: computed, not cached)."""

    def __init__(self, classifier: nn.Module, adapted: Sequence[str],
                 prefix: Callable[[SplitTensors, int], torch.Tensor] | None = None):
        self.classifier = classifier
        self.encoder = classifier.encoder
        self.last = len(self.encoder.encoder.layer) - 1
        self.projections = {}
        for name in adapted:
            parts = name.split(".")
            if parts[-1] not in PROJECTIONS or str(self.last) not in parts:
                raise InvalidArgument(f"adapted matrix {name!r} is not the last layer's query or value")
            self.projections[name] = parts[-1]
        self.prefix = prefix or (lambda split, layers: frozen_prefix_states(self.encoder, split, layers))

    def cached_rows(self, encodings: Mapping[str, torch.Tensor]) -> CachedRows:
        """What the last layer reads of each encoded row (computed once per split)."""
        mask = encodings["attention_mask"]
        split = SplitTensors(encodings["input_ids"], mask, torch.zeros(mask.shape[0], dtype=torch.long),
                             encodings.get("token_type_ids"))
        states = self.prefix(split, self.last)
        return {"states": states, "attend": mask.bool(),
                **frozen_projections(self.encoder.encoder.layer[self.last], states, first_token_only=True)}

    def logits(self, rows: CachedRows, factors: Factors, head: Mapping[str, torch.Tensor],
               scale: float | torch.Tensor) -> torch.Tensor:
        """[rows, K] with each adapted W + scale B A and the head ``head`` (``head`` [K, hidden],
        ``head_bias`` [K, 1])."""
        lora = {projection: None for projection in PROJECTIONS}
        for name, projection in self.projections.items():
            b, a = factors[name]
            lora[projection] = (a[None], b[None], scale)
        layer = self.encoder.encoder.layer[self.last]
        hidden = layer_forward(layer, rows["states"][None], rows["attend"][None],
                               lora["query"], lora["value"], first_token_only=True,
                               frozen={name: rows[name][None] for name in ("query", "key", "value")})
        return hidden[0, :, 0] @ head["head"].T + head["head_bias"][:, 0]

    def linearized_logits(self, rows: CachedRows, factors: Factors, head: Mapping[str, torch.Tensor],
                          initial_head: Mapping[str, torch.Tensor],
                          scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(f0, f0 + <G, Delta>) around the initial point (B = 0, head ``initial_head``), with
        Delta = (scale B A, head - initial head): the derivative at t = 0 of the logits along
        t -> (t scale B A, initial head + t (head - initial head)), one forward-mode product."""
        def along(t):
            moved = {name: initial_head[name] + t * (head[name] - initial_head[name]) for name in head}
            return self.logits(rows, factors, moved, t * scale)

        zero = torch.zeros((), dtype=rows["states"].dtype)
        with sdpa_kernel(SDPBackend.MATH):  # the fused CPU attention kernels have no forward-mode rule
            f0, change = jvp(along, (zero,), (torch.ones_like(zero),))
        return f0, f0 + change


def take(rows: CachedRows, index) -> CachedRows:
    """The cached inputs of some rows."""
    return {name: value[index] for name, value in rows.items()}
