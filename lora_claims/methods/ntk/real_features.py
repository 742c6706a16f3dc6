"""NTK features of a real encoder on real few-shot tasks: the model, the k-shot data, cached Jacobians.

Shared by the regime check (real training against its linearization), linearized fine-tuning and
the capacity experiments on real features. The Jacobians of a (model, task, data seed, matrices,
max length, head seed) are computed once and cached on disk under the caller's cache root, so every
rank and every LoRA-initialization seed reuses them.

The capacity experiments use the pretrained encoder with a fresh frozen K-logit head drawn from
``head_seed`` (the packaged encoders have no masked-LM head, so Jang et al.'s label-word logits are
not available). The regime check and linearized fine-tuning use the fine-tuning runs' own model
instead (``run_task``): the first-token linear head, drawn and trained as the fine-tuning engine
does, with LoRA on the last layer's query and value.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from lora_claims.harness.cache import ResultCache
from lora_claims.methods.data.glue import Split, get_task
from lora_claims.methods.data.kshot import load_few_shot
from lora_claims.methods.finetune.models import resolve_model
from lora_claims.methods.finetune.runs import load_base_model, load_tokenizer, prefix_cache, reset_head
from lora_claims.methods.ntk.features import (
    DEFAULT_KINDS,
    JacobianFeatures,
    cached_features,
    extract_features,
    select_matrices,
)
from lora_claims.methods.ntk.last_layer import LastLayerModel
from lora_claims.methods.ntk.regime import EncodedSplit, Init, train_features

MAX_LENGTH = 128


@dataclass
class TaskFeatures:
    """A task's encoded train and test splits and the Jacobian features of its train split."""

    model: torch.nn.Module
    task: str
    seed: int
    train: EncodedSplit
    test: EncodedSplit
    features: JacobianFeatures  # .seconds: the extraction time, measured when they were computed
    test_note: str
    config: dict


def load_classifier(path: Path, n_outputs: int, head_seed: int) -> torch.nn.Module:
    """The encoder with a fresh, seeded K-logit head, in eval mode, every weight frozen.

    Eager attention: forward-mode AD (the test-set predictions) has no rule for fused attention.
    """
    model = copy.deepcopy(load_base_model(str(path), n_outputs))
    model.set_attn_implementation("eager")
    reset_head(model, head_seed)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def encode_split(path: Path, split: Split, max_length: int = MAX_LENGTH) -> EncodedSplit:
    """Token ids, padded to the split's longest row, and labels."""
    tokenizer = load_tokenizer(str(path))
    texts_b = [example.text_b for example in split.examples]
    encodings = tokenizer([example.text_a for example in split.examples],
                          texts_b if texts_b[0] is not None else None,
                          truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return EncodedSplit(dict(encodings), torch.tensor(split.labels))


def _load(data_dir: Path | None, model_paths: Mapping[str, str], task: str, seed: int, model_name: str,
          test_cap: int | None, head_seed: int):
    resolved = resolve_model(model_name, model_paths)
    data = load_few_shot(data_dir, task, k=16, seed=seed, test_cap=test_cap)
    model = load_classifier(resolved.path, get_task(task).num_classes, head_seed)
    return resolved, data, model


def _features_config(model_name: str, resolved, task: str, seed: int, split: Split, matrices, max_length: int,
                     head_seed: int) -> dict:
    return {"model": model_name, "weights": resolved.fingerprint(), "task": task, "seed": seed,
            "examples": split.fingerprint(), "matrices": list(matrices), "max_length": max_length,
            "head_seed": head_seed}


def task_features(task: str, seed: int, *, data_dir: Path | None, model_paths: Mapping[str, str],
                  cache_root: Path, model_name: str = "minilm", kinds: tuple[str, ...] = DEFAULT_KINDS,
                  layers: str = "last", test_cap: int | None = None, max_length: int = MAX_LENGTH,
                  head_seed: int = 0) -> TaskFeatures:
    """Load the model and the k-shot task, and the Jacobian features of the train split (cached
    under ``cache_root``)."""
    resolved, data, model = _load(data_dir, model_paths, task, seed, model_name, test_cap, head_seed)
    matrices = select_matrices(model, kinds, layers)
    train = encode_split(resolved.path, data.train, max_length)
    test = encode_split(resolved.path, data.test, max_length)
    config = _features_config(model_name, resolved, task, seed, data.train, matrices, max_length, head_seed)
    n_outputs = get_task(task).num_classes
    features = cached_features(ResultCache(cache_root), config,
                               lambda: extract_features(model, train.encodings, matrices, n_outputs))
    return TaskFeatures(model, task, seed, train, test, features, data.test_note, config)


@dataclass
class FeaturePool:
    """Features of one matrix for a pool of real examples: the k-shot train split first, then test rows."""

    features: JacobianFeatures
    labels: torch.Tensor
    n_train: int
    config: dict  # what identifies the features (model weights, task, seed, examples, matrices, ...)


def pool_features(task: str, seed: int, kind: str, pool_cap: int, *, data_dir: Path | None,
                  model_paths: Mapping[str, str], cache_root: Path, model_name: str = "minilm",
                  max_length: int = MAX_LENGTH, head_seed: int = 0) -> FeaturePool:
    """Features of the last layer's ``kind`` matrix for the k-shot train split followed by up to
    ``pool_cap`` test rows (the capacity experiments sample their instances from this pool)."""
    resolved, data, model = _load(data_dir, model_paths, task, seed, model_name, pool_cap, head_seed)
    matrices = select_matrices(model, (kind,), "last")
    pool = Split("pool", data.train.examples + data.test.examples, f"{data.train.source} + {data.test_note}")
    encoded = encode_split(resolved.path, pool, max_length)
    config = _features_config(model_name, resolved, task, seed, pool, matrices, max_length, head_seed)
    n_outputs = get_task(task).num_classes
    features = cached_features(ResultCache(cache_root), config,
                               lambda: extract_features(model, encoded.encodings, matrices, n_outputs))
    return FeaturePool(features, encoded.labels, len(data.train), config)


class FirstTokenClassifier(nn.Module):
    """The fine-tuning runs' ``linear-cls`` model: a linear head on the last layer's first-token
    state. The head runs at every token and is read at the first, and its bias is a K x 1 matrix
    on a constant input, so the Jacobian features treat both like the adapted matrices."""

    def __init__(self, encoder: nn.Module, n_outputs: int):
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.head = nn.Linear(encoder.config.hidden_size, n_outputs, bias=False)
        self.head_bias = nn.Linear(1, n_outputs, bias=False)

    def forward(self, **batch):
        states = self.encoder(**batch).last_hidden_state
        ones = states.new_ones(*states.shape[:-1], 1)
        return SimpleNamespace(logits=(self.head(states) + self.head_bias(ones))[:, 0])


HEAD_MATRICES = ("head", "head_bias")


@dataclass
class RunTask:
    """A task's splits, the fine-tuning runs' model around its initial point for one data seed
    (head drawn from that seed), and the Jacobian features there of every trained matrix."""

    model: FirstTokenClassifier
    last_layer: LastLayerModel  # the same model on cached rows (training and test predictions)
    base: nn.Module  # the encoder with its classification head, for the fine-tuning engine's draws
    task: str
    seed: int
    train: EncodedSplit
    test: EncodedSplit
    features: JacobianFeatures
    adapted: tuple[str, ...]
    test_note: str
    config: dict

    def init(self, rank: int) -> Init:
        """The fine-tuning engine's initial values for this seed and rank (head from the seed,
        A kaiming-uniform, B zero), under this model's matrix names."""
        from lora_claims.methods.finetune.stacked import AdapterSpec, TrainSettings, initial_adapter_values

        values = initial_adapter_values(self.base, AdapterSpec(self.seed, rank, 1e-3),
                                        TrainSettings(placement="last-layer", head="linear-cls"))
        factors = {}
        for name in self.adapted:
            layer, projection = name.split(".")[-4], name.split(".")[-1]
            factors[name] = (values[f"lora_B.{layer}.{projection}"], values[f"lora_A.{layer}.{projection}"])
        return Init(factors, {"head": values["head.0.weight"], "head_bias": values["head.0.bias"][:, None]})


def run_task(task: str, seed: int, *, data_dir: Path | None, model_paths: Mapping[str, str],
             cache_root: Path, model_name: str = "minilm", test_cap: int | None = None,
             max_length: int = MAX_LENGTH) -> RunTask:
    """Load the k-shot task of ``seed`` and the fine-tuning runs' model; the features at the
    initial point are cached under ``cache_root`` (they depend on the seed through the head), and
    so are the frozen prefix states of its rows (shared with the fine-tuning runs)."""
    resolved = resolve_model(model_name, model_paths)
    data = load_few_shot(data_dir, task, k=16, seed=seed, test_cap=test_cap)
    n_outputs = get_task(task).num_classes
    base = copy.deepcopy(load_base_model(str(resolved.path), n_outputs))
    base.set_attn_implementation("eager")
    from lora_claims.methods.finetune.stacked import encoder_of

    model = FirstTokenClassifier(encoder_of(base), n_outputs).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    adapted = tuple(f"encoder.{name}" for name in select_matrices(encoder_of(base), DEFAULT_KINDS, "last"))
    last_layer = LastLayerModel(model, adapted, prefix_cache(encoder_of(base), resolved.fingerprint(),
                                                              ResultCache(cache_root)))
    train = encode_split(resolved.path, data.train, max_length)
    test = encode_split(resolved.path, data.test, max_length)
    config = _features_config(model_name, resolved, task, seed, data.train, adapted + HEAD_MATRICES,
                              max_length, seed) | {"head": "linear-cls"}
    loaded = RunTask(model, last_layer, base, task, seed, train, test, None, adapted, data.test_note, config)
    loaded.features = cached_features(ResultCache(cache_root), config,
                                      lambda: train_features(model, train, loaded.init(1), n_outputs))
    return loaded
