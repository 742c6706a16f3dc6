"""The peft reference for the stacked engine: one adapter, trained alone with peft.

Same initial values (``initial_adapter_values``), data order (``batch_schedule``), dropout (off:
the model runs in eval mode), placement (peft's ``layers_to_transform``), head, optimizer
(``torch.optim.AdamW`` with ``LambdaLR`` linear decay) and checkpoint rule as the stacked engine,
but through peft's own LoRA layers and transformers' own forward, on batches padded as the
single-run loop pads them. It is the contract the stacked engine is tested against, not a fast
path.
"""

from __future__ import annotations

import copy
import re

import torch
import torch.nn.functional as F

from lora_claims.methods.finetune.models import target_modules_for, wrap_with_peft
from lora_claims.methods.finetune.stacked import (
    PROJECTIONS,
    AdapterSpec,
    SplitTensors,
    TrainSettings,
    adapted_layers,
    adapter_record,
    batch_schedule,
    check_ranks,
    encoder_of,
    head_shapes,
    initial_adapter_values,
)

LORA_LAYER_NAME = re.compile(r"\.layer\.(\d+)\..*\.(\w+)$")


class PooledClassifier(torch.nn.Module):
    """An encoder with a linear head on its first token or on the mask-aware token mean."""

    def __init__(self, encoder, num_labels: int, mean_pooling: bool):
        super().__init__()
        self.encoder, self.mean_pooling = encoder, mean_pooling
        parameter = next(encoder.parameters())
        self.head = torch.nn.Linear(encoder.config.hidden_size, num_labels,
                                    dtype=parameter.dtype, device=parameter.device)

    def forward(self, input_ids, attention_mask, **token_types):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              **token_types).last_hidden_state
        if self.mean_pooling:
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return self.head((hidden * weights).sum(-2) / weights.sum(-2))
        return self.head(hidden[:, 0])


def build_peft_model(model, adapter: AdapterSpec, settings: TrainSettings):
    """A copy of ``model`` with peft LoRA and the head, holding the adapter's initial values;
    returns (peft model, function from model inputs to logits)."""
    from peft import LoraConfig, TaskType
    from peft.tuners.lora import LoraLayer

    check_ranks(model, settings.placement, [adapter.rank])
    values = initial_adapter_values(model, adapter, settings)
    shapes = head_shapes(model, settings.head)
    # the single-run loop's targets (MPNet's q and v), under the engine's names query and value
    targets = target_modules_for(model.config.model_type)
    projection_of = dict(zip(targets, PROJECTIONS, strict=True))
    options = dict(
        r=adapter.rank, lora_alpha=adapter.lora_alpha, lora_dropout=0.0,
        target_modules=list(targets), use_rslora=settings.rslora,
        layers_to_transform=(adapted_layers(model, settings.placement)
                             if settings.placement == "last-layer" else None),
    )
    copied = copy.deepcopy(model)
    if settings.head == "native":
        wrapped, head, task = copied, copied.classifier, dict(task_type=TaskType.SEQ_CLS)
    else:
        wrapped = PooledClassifier(encoder_of(copied), model.config.num_labels,
                                   settings.head == "linear-mean")
        head, task = wrapped.head, dict(modules_to_save=["head"])
    linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == len(shapes)
    with torch.no_grad():
        for index, linear in enumerate(linears):  # before wrapping: peft copies the head
            linear.weight.copy_(values[f"head.{index}.weight"])
            linear.bias.copy_(values[f"head.{index}.bias"])
    peft_model = wrap_with_peft(wrapped, LoraConfig(**options, **task))
    with torch.no_grad():
        for name, module in peft_model.named_modules():
            match = LORA_LAYER_NAME.search(name)
            if isinstance(module, LoraLayer) and match:
                key = f"{match[1]}.{projection_of[match[2]]}"
                module.lora_A["default"].weight.copy_(values[f"lora_A.{key}"])
                module.lora_B["default"].weight.copy_(values[f"lora_B.{key}"])
    peft_model.eval()  # dropout off, as in the stacked engine
    if settings.head == "native":
        return peft_model, lambda inputs: peft_model(**inputs).logits
    return peft_model, lambda inputs: peft_model(**inputs)


def trimmed_inputs(split: SplitTensors, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows' model inputs padded only to their own longest row, as the single-run loop
    collates them (the stacked engine pads to the split's longest row: the mask makes it equal)."""
    width = int(split.attention_mask[rows].sum(1).max())
    return {name: value[:, :width] for name, value in split.model_inputs(rows).items()}


def train_peft_reference(model, adapter: AdapterSpec, settings: TrainSettings,
                         train: SplitTensors, dev: SplitTensors, test: SplitTensors,
                         keep_step_losses: bool = False) -> dict:
    """Train one adapter with peft and return the same record as the stacked engine
    (``engine: "peft"``)."""
    peft_model, forward = build_peft_model(model, adapter, settings)
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=adapter.learning_rate,
                                  weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / settings.steps)
    rows, valid = batch_schedule(len(train), settings.batch_size, settings.steps, adapter.seed)

    @torch.no_grad()
    def predict(split: SplitTensors) -> torch.Tensor:
        order = torch.argsort(split.attention_mask.sum(1), descending=True, stable=True)
        predictions = torch.empty_like(split.labels)
        for start in range(0, len(split), settings.eval_rows):
            rows = order[start : start + settings.eval_rows]
            predictions[rows] = forward(trimmed_inputs(split, rows)).argmax(-1)
        return predictions

    def accuracy(split: SplitTensors) -> float:
        return (predict(split) == split.labels).to(torch.float64).mean().item()

    losses, curve, best_accuracy, best_step, best_state = [], [], -1.0, 0, None
    for step in range(1, settings.steps + 1):
        batch = rows[step - 1][valid[step - 1]].to(train.input_ids.device)
        loss = F.cross_entropy(forward(trimmed_inputs(train, batch)), train.labels[batch])
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % settings.eval_every == 0 or step == settings.steps:
            dev_accuracy = accuracy(dev)
            curve.append([step, dev_accuracy, losses[-1]])
            if dev_accuracy > best_accuracy:
                best_accuracy, best_step = dev_accuracy, step
                best_state = [p.detach().clone() for p in trainable]
    with torch.no_grad():
        for parameter, saved in zip(trainable, best_state, strict=True):
            parameter.copy_(saved)
    accuracies = {name: accuracy(split) for name, split in
                  (("train", train), ("dev", dev), ("test", test))}
    return adapter_record("peft", adapter, settings, model, accuracies, best_step, curve,
                          predict(test).tolist(), test.labels.tolist(),
                          losses if keep_step_losses else None)
