"""Few-shot LoRA fine-tuning runs: one config in, one result record out, cached by config hash.

A run follows the LM-BFF protocol: train on the k-shot train split of one data seed, evaluate on
the k-shot dev split every ``eval_every`` steps, keep the adapter and head of the best dev
accuracy, and report train/dev/test accuracy of that checkpoint. The model is
``AutoModelForSequenceClassification`` wrapped with a peft LoRA adapter on the attention query and
value projections (the classification head is trained too, counted separately).

Our own loop rather than the Hugging Face Trainer, for speed on small data: every split is
tokenized once per (tokenizer, split, max length) and kept in memory, batches are padded to their
own longest row, evaluation runs under ``torch.inference_mode`` in large length-sorted batches,
the test set is evaluated once (at the selected checkpoint), and checkpoints are kept in memory.
"""

from __future__ import annotations

import functools
import os
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lora_claims.methods.finetune import models as _models  # sets the offline environment before transformers loads
from lora_claims.methods.data.glue import Split, get_task
from lora_claims.harness.environment import package_versions
from lora_claims.errors import Interrupted, InvalidArgument, require_int, require_positive_float
from lora_claims.methods.data.kshot import FewShotData, label_counts, load_few_shot
from lora_claims.harness.cache import CacheKind, ResultCache, config_hash

FINETUNE_RUNS = CacheKind("finetune", 2)  # bump the schema when training or evaluation changes
RUN_PACKAGES = ("torch", "transformers", "peft")  # the versions a run's result depends on


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's outcome (the device type included: CPU and GPU kernels
    differ numerically)."""

    model: str = "minilm"
    task: str = "SST-2"
    k: int = 16
    seed: int = 42
    rank: int = 1
    alpha: float | None = None  # None: 2 * rank, the same LoRA scale alpha / r at every rank
    rslora: bool = False  # scale alpha / sqrt(r) instead of alpha / r
    target_modules: tuple[str, ...] | None = None  # None: query and value, named per architecture
    learning_rate: float = 5e-4
    steps: int = 1000
    eval_every: int = 100
    batch_size: int = 8
    eval_batch_size: int = 128
    max_length: int = 128
    test_cap: int | None = 1000
    weight_decay: float = 0.0
    device: str = "cpu"

    def __post_init__(self) -> None:
        # One spelling per task, so that `sst-2` and `SST-2` share their cache entries.
        object.__setattr__(self, "task", get_task(self.task).name)
        require_int("k", self.k)
        require_int("seed", self.seed, minimum=0)
        require_int("rank", self.rank)
        require_int("steps", self.steps)
        require_int("eval_every", self.eval_every)
        require_int("batch_size", self.batch_size)
        require_int("eval_batch_size", self.eval_batch_size)
        require_int("max_length", self.max_length, minimum=8)
        require_positive_float("learning_rate", self.learning_rate)
        if self.alpha is not None:
            require_positive_float("alpha", self.alpha)
        if self.test_cap is not None:
            require_int("test_cap", self.test_cap)
        if self.weight_decay < 0:
            raise InvalidArgument(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.target_modules is not None and not self.target_modules:
            raise InvalidArgument("target_modules must name at least one module (or be None)")

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["target_modules"] = list(self.target_modules) if self.target_modules else None
        return record


@dataclass
class RunInputs:
    """What a run needs besides its config: where data and models are."""

    data_dir: str | os.PathLike | None
    model_paths: dict[str, str] = field(default_factory=dict)
    cache: ResultCache = field(default_factory=ResultCache)


def resolve_device(device: str):
    """A torch device, or a clear error naming ``--device`` when it is not one this machine has.
    A bare ``cuda`` under pytest-xdist pins worker gwN to GPU N modulo the number of GPUs."""
    import torch

    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidArgument(f"--device {device}: not a torch device (cpu, cuda or cuda:N)") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgument(
                f"--device {device}: torch {torch.__version__} sees no CUDA device "
                "(torch.cuda.is_available() is False); use --device cpu"
            )
        count = torch.cuda.device_count()
        if chosen.index is None:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
            index = int(worker[2:]) if worker[2:].isdigit() else 0
            chosen = torch.device("cuda", index % count)
        elif chosen.index >= count:
            raise InvalidArgument(f"--device {device}: only {count} GPU(s) exist")
    elif chosen.type != "cpu":
        raise InvalidArgument(f"--device {device}: only cpu and cuda are supported")
    return chosen


def cache_key(config: RunConfig, model: _models.ResolvedModel, data: FewShotData) -> dict:
    """The cache key: the config with the model and data identified by content, not by name, so
    a substituted model or a changed data file never replays a stale result."""
    import torch

    key = config.to_json()
    key.pop("model")
    key["device"] = torch.device(config.device).type
    key.update(
        model_fingerprint=model.fingerprint(),
        data_fingerprint={s.name: s.fingerprint() for s in (data.train, data.dev, data.test)},
        versions=package_versions(RUN_PACKAGES),
    )
    return key


def run_finetune(config: RunConfig, inputs: RunInputs) -> dict[str, Any]:
    """Run ``config`` (or replay it from the cache) and return its result record."""
    resolve_device(config.device)
    model = _models.resolve_model(config.model, inputs.model_paths, inputs.cache.root)
    data = load_few_shot(inputs.data_dir, config.task, config.k, config.seed, config.test_cap)
    key = cache_key(config, model, data)
    digest = config_hash(key)
    record = inputs.cache.get_or_compute(
        FINETUNE_RUNS, key, lambda: train_and_evaluate(config, model, data) | {"config_hash": digest}
    )
    return record | {"model": config.model, "model_source": model.source}


def run_sweep(configs: list[RunConfig], inputs: RunInputs, progress: bool = True) -> list[dict]:
    """Run many configs in order with a progress bar; finished runs are cached one by one, so an
    interrupted sweep resumes where it stopped."""
    from tqdm.auto import tqdm

    results = []
    try:
        with tqdm(configs, desc="fine-tuning", unit="run", disable=not progress) as bar:
            for config in bar:
                bar.set_postfix_str(f"{config.model} {config.task} r={config.rank} seed={config.seed}")
                results.append(run_finetune(config, inputs))
    except KeyboardInterrupt:
        raise Interrupted(f"{len(results)} of {len(configs)} runs cached; rerun to resume") from None
    return results


# --- the run itself -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoded:
    """A tokenized split: token ids per row (unpadded), token types when the model uses them."""

    input_ids: tuple[tuple[int, ...], ...]
    token_type_ids: tuple[tuple[int, ...], ...] | None
    labels: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.input_ids), dtype=np.int64)


@functools.lru_cache(maxsize=8)
def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True)


@functools.lru_cache(maxsize=64)
def _encode_cached(path: str, split: Split, max_length: int) -> Encoded:
    tokenizer = load_tokenizer(path)
    texts_a = [e.text_a for e in split.examples]
    texts_b = [e.text_b for e in split.examples]
    pair = texts_b[0] is not None
    encoded = tokenizer(texts_a, texts_b if pair else None, truncation=True, max_length=max_length)
    types = encoded.get("token_type_ids")
    return Encoded(
        tuple(tuple(ids) for ids in encoded["input_ids"]),
        tuple(tuple(t) for t in types) if types is not None else None,
        np.asarray(split.labels, dtype=np.int64),
    )


def encode(path: Path, split: Split, max_length: int) -> Encoded:
    """Tokenize a split once per (tokenizer, split, max length) and keep it for later runs."""
    return _encode_cached(str(path), split, max_length)


def collate(encoded: Encoded, rows, pad_id: int, device) -> dict:
    """Pad the selected rows to the longest of them."""
    import torch

    width = max(len(encoded.input_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long) if encoded.token_type_ids else None
    for slot, i in enumerate(rows):
        row = encoded.input_ids[i]
        ids[slot, : len(row)] = torch.tensor(row)
        mask[slot, : len(row)] = 1
        if types is not None:
            types[slot, : len(row)] = torch.tensor(encoded.token_type_ids[i])
    batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if types is not None:
        batch["token_type_ids"] = types.to(device)
    return batch


def predict(model, encoded: Encoded, batch_size: int, pad_id: int, device) -> np.ndarray:
    """Predicted labels, in the split's order; rows are batched by length to waste no padding."""
    import torch

    order = np.argsort(-encoded.lengths, kind="stable")
    predictions = np.empty(len(order), dtype=np.int64)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size].tolist()
            logits = model(**collate(encoded, rows, pad_id, device)).logits
            predictions[rows] = logits.argmax(dim=-1).cpu().numpy()
    model.train(was_training)
    return predictions


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predictions == labels))


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_rank(model, target_modules: tuple[str, ...], rank: int) -> None:
    """Every adapted layer must allow the rank: r <= min(in_features, out_features)."""
    import torch

    matched = [
        (name, module) for name, module in model.named_modules()
        if name.split(".")[-1] in target_modules and isinstance(module, torch.nn.Linear)
    ]
    if not matched:
        raise InvalidArgument(
            f"target modules {list(target_modules)} match no linear layer of this model"
        )
    for name, module in matched:
        limit = min(module.in_features, module.out_features)
        if rank > limit:
            raise InvalidArgument(
                f"rank {rank} exceeds min(in, out) = {limit} of layer {name} "
                f"({module.out_features} x {module.in_features}); choose 1 <= rank <= {limit}"
            )


@functools.lru_cache(maxsize=1)
def load_base_model(path: str, num_labels: int):
    """The pretrained encoder with a classification head, loaded once and copied for each run."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the load report lists the new head as MISSING: expected
    hf_logging.disable_progress_bar()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, local_files_only=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


HEAD_MODULES = ("classifier", "score")  # peft's default modules_to_save for SEQ_CLS


def reset_head(model, seed: int) -> None:
    """Draw a fresh classification head from ``seed`` (normal(0, initializer_range) weights,
    zero biases: the initialization BERT-style models give a new head)."""
    import torch

    seed_everything(seed)
    std = getattr(model.config, "initializer_range", 0.02)
    heads = [m for name, m in model.named_children() if name in HEAD_MODULES]
    if not heads:
        raise InvalidArgument(f"no classification head ({' or '.join(HEAD_MODULES)}) in this model")
    for head in heads:
        for module in head.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)


def build_lora_model(config: RunConfig, model_path: Path, num_labels: int):
    """A copy of the encoder with a fresh head and a LoRA adapter, both drawn from ``config.seed``.

    The head and the LoRA weights are (re)initialized after copying and wrapping, under the run's
    seed, so that they depend on the seed alone and not on what ran before in the process.
    """
    import copy

    from peft import LoraConfig, TaskType, get_peft_model
    from peft.tuners.lora import LoraLayer

    model = copy.deepcopy(load_base_model(str(model_path), num_labels))
    reset_head(model, config.seed)
    targets = config.target_modules or _models.target_modules_for(model.config.model_type)
    check_rank(model, targets, config.rank)
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=config.rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        target_modules=list(targets),
        use_rslora=config.rslora,
    )
    with warnings.catch_warnings():  # peft probes a property transformers has deprecated
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        model = get_peft_model(model, lora)
    seed_everything(config.seed)
    for module in model.modules():
        if isinstance(module, LoraLayer):
            module.reset_lora_parameters("default", True)
    return model, targets


def parameter_counts(model) -> dict[str, int]:
    """Trainable LoRA and head parameters separately: the head can dominate at rank 1."""
    lora = head = total = 0
    for name, parameter in model.named_parameters():
        total += parameter.numel()
        if parameter.requires_grad:
            if "lora_" in name:
                lora += parameter.numel()
            else:
                head += parameter.numel()
    return {"lora_params": lora, "head_params": head, "total_params": total}


def train_and_evaluate(config: RunConfig, resolved: _models.ResolvedModel,
                       data: FewShotData) -> dict[str, Any]:
    """Train one LoRA adapter and evaluate its best-dev checkpoint (see the module docstring)."""
    import torch

    start = time.perf_counter()
    device = resolve_device(config.device)
    spec = get_task(config.task)
    tokenizer = load_tokenizer(str(resolved.path))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    splits = {s.name: encode(resolved.path, s, config.max_length)
              for s in (data.train, data.dev, data.test)}
    model, targets = build_lora_model(config, resolved.path, spec.num_classes)
    model.to(device)
    model.train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([p for _, p in trainable], lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - s / config.steps)
    order = torch.Generator().manual_seed(config.seed)
    train, n_train = splits["train"], len(data.train)
    labels = torch.as_tensor(train.labels, device=device)
    queue: list[int] = []
    best_accuracy, best_step, best_state, curve, loss_value = -1.0, 0, None, [], float("nan")
    for step in range(1, config.steps + 1):
        if not queue:
            queue = torch.randperm(n_train, generator=order).tolist()
        rows, queue = queue[: config.batch_size], queue[config.batch_size :]
        logits = model(**collate(train, rows, pad_id, device)).logits
        loss = torch.nn.functional.cross_entropy(logits, labels[rows])
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.detach())
        if step % config.eval_every == 0 or step == config.steps:
            dev_accuracy = accuracy(
                predict(model, splits["dev"], config.eval_batch_size, pad_id, device),
                splits["dev"].labels,
            )
            curve.append([step, dev_accuracy, loss_value])
            if dev_accuracy > best_accuracy:
                best_accuracy, best_step = dev_accuracy, step
                best_state = [p.detach().clone() for _, p in trainable]
    with torch.no_grad():
        for (_, parameter), saved in zip(trainable, best_state, strict=True):
            parameter.copy_(saved)
    results = {
        name: accuracy(predict(model, enc, config.eval_batch_size, pad_id, device), enc.labels)
        for name, enc in splits.items()
    }
    return {
        "schema": FINETUNE_RUNS.schema,
        "config": config.to_json(),
        "model_type": model.config.model_type,
        "target_modules": list(targets),
        "lora_alpha": config.lora_alpha,
        "train_accuracy": results["train"],
        "dev_accuracy": results["dev"],
        "test_accuracy": results["test"],
        "best_step": best_step,
        "dev_curve": curve,  # [step, dev accuracy, training loss of that step]
        "test_size": len(data.test),
        **{f"{split.name}_label_counts": label_counts(spec, split)
           for split in (data.train, data.dev, data.test)},
        "test_note": data.test_note,
        **parameter_counts(model),
        "device": str(device),
        "wall_seconds": round(time.perf_counter() - start, 3),
        "versions": package_versions(RUN_PACKAGES),
    }
