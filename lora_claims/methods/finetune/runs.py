"""Few-shot LoRA fine-tuning runs: configs in, one result record per run, cached by config hash.

A run follows the LM-BFF protocol: train on the k-shot train split of one data seed, evaluate on
the k-shot dev split every ``eval_every`` steps, keep the adapter and head of the best dev
accuracy, and report train/dev/test accuracy of that checkpoint with every test prediction.

Runs that share an encoder, a task and the training settings train together in the stacked
engine (``stacked.py``: one frozen base, one adapter per run, each on its own data split); the
``peft`` engine trains them one at a time through peft (``peft_reference.py``), the reference the
stacked engine is tested against. Every record names its engine, placement, head and dropout.
"""

from __future__ import annotations

import functools
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lora_claims.errors import Interrupted, InvalidArgument, require_int, require_positive_float
from lora_claims.harness.cache import CacheKind, ResultCache, config_hash
from lora_claims.harness.environment import package_versions
from lora_claims.methods.data.glue import Split, get_task
from lora_claims.methods.data.kshot import FewShotData, label_counts, load_seed
from lora_claims.methods.finetune import (
    models as _models,  # sets the offline environment before transformers loads
)
from lora_claims.methods.finetune.stacked import HEADS, PLACEMENTS

FINETUNE_RUNS = CacheKind("finetune", 4)  # bump the schema when training or evaluation changes
PREFIX_STATES = CacheKind("frozen-prefix", 1)  # hidden states entering the first adapted layer
ENGINES = ("stacked", "peft")
ARCHITECTURES = Path(__file__).parent / "architectures"  # configs for --random-init, no weights
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
    learning_rate: float = 5e-4
    steps: int = 1000
    eval_every: int = 100
    batch_size: int = 8
    eval_batch_size: int = 128
    max_length: int = 128
    test_cap: int | None = 1000
    weight_decay: float = 0.0
    device: str = "cpu"
    engine: str = "stacked"  # or "peft": one run at a time, the reference
    placement: str = "all-layers"  # or "last-layer": Jang et al.'s default
    head: str = "native"  # or "linear-cls", "linear-mean"
    random_init: bool = False  # the architecture with random weights: plumbing and speed only

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
        for flag, value, allowed in (("--engine", self.engine, ENGINES),
                                     ("--placement", self.placement, PLACEMENTS),
                                     ("--head", self.head, HEADS)):
            if value not in allowed:
                raise InvalidArgument(f"{flag} {value}: choose one of {', '.join(allowed)}")

    @property
    def lora_alpha(self) -> float:
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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


def cache_key(config: RunConfig, model_fingerprint: str, data: FewShotData) -> dict:
    """The cache key: the config with the model and data identified by content, not by name, so
    a substituted model or a changed data file never replays a stale result."""
    import torch

    key = config.to_json()
    key.pop("model")
    key["device"] = torch.device(config.device).type
    key.update(
        model_fingerprint=model_fingerprint,
        data_fingerprint={s.name: s.fingerprint() for s in (data.train, data.dev, data.test)},
        versions=package_versions(RUN_PACKAGES),
    )
    return key


def run_finetune(config: RunConfig, inputs: RunInputs) -> dict[str, Any]:
    """Run ``config`` (or replay it from the cache) and return its result record."""
    return run_sweep([config], inputs, progress=False)[0]


@dataclass
class _Pending:
    """A run to compute: its config, data, cache key and place in the sweep."""

    index: int
    config: RunConfig
    data: FewShotData
    key: dict


def run_sweep(configs: list[RunConfig], inputs: RunInputs, progress: bool = True) -> list[dict]:
    """Run many configs; cached runs replay, the others train in groups that share an encoder,
    a task and the training settings (one stacked pass per group, or one peft run at a time).
    A finished group is cached at once, so an interrupted sweep resumes where it stopped."""
    from tqdm.auto import tqdm

    results: list[dict | None] = [None] * len(configs)
    pending: dict[tuple, list[_Pending]] = {}
    for index, config in enumerate(configs):
        resolve_device(config.device)
        encoder = load_encoder(config, inputs)
        data = load_seed(inputs.data_dir, config.task, config.k, config.seed, config.test_cap)
        key = cache_key(config, encoder.fingerprint, data)
        record = inputs.cache.load(FINETUNE_RUNS, key)
        if record is not None:
            results[index] = record["result"] | encoder.labels(config)
            continue
        group = (config.model, config.random_init, config.task, config.k, config.engine,
                 _settings(config), config.max_length, data.test.fingerprint(), config.device)
        if config.engine == "peft":  # one run at a time anyway: cache each as it finishes
            group += (index,)
        pending.setdefault(group, []).append(_Pending(index, config, data, key))
    total = sum(len(runs) * runs[0].config.steps for runs in pending.values())
    done = len(configs) - sum(len(runs) for runs in pending.values())
    try:
        with tqdm(total=total, desc="fine-tuning", unit="adapter-step", disable=not progress) as bar:
            for runs in pending.values():
                first, count = runs[0].config, len(runs)
                bar.set_postfix_str(f"{first.model} {first.task} {count} runs ({first.engine})")
                records = train_group([run.config for run in runs], [run.data for run in runs],
                                      inputs, bar.update)
                encoder = load_encoder(first, inputs)
                for run, record in zip(runs, records, strict=True):
                    record["config_hash"] = config_hash(inputs.cache.key(FINETUNE_RUNS, run.key))
                    inputs.cache.store(FINETUNE_RUNS, run.key, record)
                    results[run.index] = record | encoder.labels(run.config)
                    done += 1
    except KeyboardInterrupt:
        raise Interrupted(f"{done} of {len(configs)} runs cached; rerun to resume") from None
    return results


def _settings(config: RunConfig):
    from lora_claims.methods.finetune.stacked import TrainSettings

    return TrainSettings(placement=config.placement, head=config.head, steps=config.steps,
                         eval_every=config.eval_every, batch_size=config.batch_size,
                         weight_decay=config.weight_decay, rslora=config.rslora)


# --- encoders -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoder:
    """A frozen base model ready for a group of runs, and what identifies it."""

    model: Any
    tokenizer_path: Path
    fingerprint: str
    source: str

    def labels(self, config: RunConfig) -> dict[str, Any]:
        return {"model": config.model, "model_source": self.source, "random_init": config.random_init}


def load_encoder(config: RunConfig, inputs: RunInputs) -> Encoder:
    """The pretrained encoder of ``config.model`` in float32 (whatever dtype its weights are
    stored in), or with ``random_init`` the shipped architecture with seeded random weights and
    the packaged MiniLM tokenizer (vocabulary size adapted)."""
    num_labels = get_task(config.task).num_classes
    if not config.random_init:
        resolved = _models.resolve_model(config.model, inputs.model_paths, inputs.cache.root)
        model = load_base_model(str(resolved.path), num_labels)
        return Encoder(model, resolved.path, resolved.fingerprint(), resolved.source)
    architecture = ARCHITECTURES / f"{config.model.split('/')[-1]}.json"
    if not architecture.is_file():
        shipped = ", ".join(sorted(p.stem for p in ARCHITECTURES.glob("*.json")))
        raise InvalidArgument(f"--random-init: no shipped architecture for {config.model!r} "
                              f"(shipped: {shipped})")
    tokenizer_path = _models.minilm_path()
    model = random_init_model(str(architecture), str(tokenizer_path), num_labels)
    digest = config_hash({"architecture": architecture.read_text(), "init_seed": 0})
    return Encoder(model, tokenizer_path, f"random-init:{digest}", f"random init ({architecture.name})")


@functools.lru_cache(maxsize=2)
def random_init_model(architecture: str, tokenizer_path: str, num_labels: int):
    import json

    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    settings = json.loads(Path(architecture).read_text())
    tokenizer = load_tokenizer(tokenizer_path)
    # The borrowed (BERT) tokenizer marks the second sentence of a pair with token type 1, which
    # RoBERTa's single-type embedding has no row for: random weights lose nothing by having two.
    settings.update(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id or 0,
                    num_labels=num_labels, type_vocab_size=max(settings.get("type_vocab_size", 2), 2))
    config = AutoConfig.for_model(**settings)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return AutoModelForSequenceClassification.from_config(config, dtype=torch.float32)


def train_group(configs: list[RunConfig], datas: list[FewShotData], inputs: RunInputs,
                on_steps=None) -> list[dict]:
    """Train runs that share everything but rank, learning rate, alpha and data seed; returns
    their records in order (per-example test predictions with the test rows' ids).
    ``on_steps(n)`` hears of n more adapter-steps done at every evaluation point."""
    from lora_claims.methods.finetune.peft_reference import train_peft_reference
    from lora_claims.methods.finetune.stacked import AdapterSpec, train_stacked

    first = configs[0]
    encoder = load_encoder(first, inputs)
    device = resolve_device(first.device)
    model = encoder.model.to(device)
    splits: dict[str, int] = {}
    trains, devs = [], []
    for data in datas:  # one train/dev pair per distinct data split
        fingerprint = data.train.fingerprint() + data.dev.fingerprint()
        if fingerprint not in splits:
            splits[fingerprint] = len(trains)
            trains.append(tensors(encoder, data.train, first.max_length, device))
            devs.append(tensors(encoder, data.dev, first.max_length, device))
    test = tensors(encoder, datas[0].test, first.max_length, device)
    adapters = [AdapterSpec(c.seed, c.rank, c.learning_rate, c.alpha,
                            splits[d.train.fingerprint() + d.dev.fingerprint()])
                for c, d in zip(configs, datas, strict=True)]
    settings = _settings(first)
    start = time.perf_counter()
    if first.engine == "stacked":
        records = train_stacked(model, adapters, settings, trains, devs, test,
                                prefix=prefix_cache(encoder.model, encoder.fingerprint, inputs.cache),
                                on_steps=on_steps)
    else:
        records = []
        for adapter in adapters:
            records.append(train_peft_reference(model, adapter, settings, trains[adapter.split],
                                                devs[adapter.split], test))
            if on_steps is not None:
                on_steps(settings.steps)
    seconds = (time.perf_counter() - start) / len(records)
    spec = get_task(first.task)
    for config, data, record in zip(configs, datas, records, strict=True):
        record.update(
            schema=FINETUNE_RUNS.schema, config=config.to_json(), task=config.task, k=config.k,
            test_row_ids=list(range(len(data.test))), test_fingerprint=data.test.fingerprint(),
            test_size=len(data.test), test_note=data.test_note,
            train_label_counts=label_counts(spec, data.train),
            dev_label_counts=label_counts(spec, data.dev),
            test_label_counts=label_counts(spec, data.test), device=str(device),
            wall_seconds=round(seconds, 3), versions=package_versions(RUN_PACKAGES))
    return records


def tensors(encoder: Encoder, split: Split, max_length: int, device):
    """A split tokenized once and padded once, on the device."""
    from lora_claims.methods.finetune.stacked import SplitTensors

    encoded = encode(encoder.tokenizer_path, split, max_length)
    tokenizer = load_tokenizer(str(encoder.tokenizer_path))
    return SplitTensors.collate(encoded.input_ids, encoded.labels.tolist(),
                                tokenizer.pad_token_id or 0, device, encoded.token_type_ids)


def prefix_cache(model, fingerprint: str, cache: ResultCache):
    """The frozen prefix states of a split, cached on disk by the model's weights (``fingerprint``)
    and the token content: shared by every rank, seed and learning rate that trains or tests on
    those rows, by later runs, and by the linearized and regime runs on the same encoder."""
    import hashlib

    from lora_claims.methods.finetune.stacked import frozen_prefix_states

    def prefix(split, n_layers: int):
        digest = hashlib.sha256()
        for value in (split.input_ids, split.attention_mask, split.token_type_ids):
            if value is not None:
                digest.update(value.cpu().numpy().tobytes())
        key = {"model": fingerprint, "layers": n_layers, "rows": digest.hexdigest()}
        device = split.input_ids.device
        state = cache.get_or_compute_tensors(
            PREFIX_STATES, key,
            lambda: {"states": frozen_prefix_states(model, split, n_layers).cpu()})
        return state["states"].to(device)

    return prefix


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
    """The pretrained encoder with a classification head, loaded once per process, in float32
    whatever dtype its weights are stored in (transformers keeps the stored dtype otherwise)."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the load report lists the new head as MISSING: expected
    hf_logging.disable_progress_bar()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=num_labels, local_files_only=True, dtype=torch.float32
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
    """A copy of the encoder with a fresh head and a peft LoRA adapter, both drawn from
    ``config.seed``: the model a Hugging Face Trainer or a benchmark trains (native head only).

    The head and the LoRA weights are (re)initialized after copying and wrapping, under the run's
    seed, so that they depend on the seed alone and not on what ran before in the process.
    """
    import copy

    from peft import LoraConfig, TaskType
    from peft.tuners.lora import LoraLayer

    model = copy.deepcopy(load_base_model(str(model_path), num_labels))
    reset_head(model, config.seed)
    targets = _models.target_modules_for(model.config.model_type)
    check_rank(model, targets, config.rank)
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=config.rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,
        target_modules=list(targets),
        layers_to_transform=([model.config.num_hidden_layers - 1]
                             if config.placement == "last-layer" else None),
        use_rslora=config.rslora,
    )
    model = _models.wrap_with_peft(model, lora)
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
