"""NTK features of a real encoder on real few-shot tasks: the model, the k-shot data, cached Jacobians.

Shared by the regime check (real training against its linearization), linearized fine-tuning and
the capacity experiments on real features. The Jacobians of a (model, task, data seed, matrices,
max length, head seed) are computed once and cached on disk under the caller's cache root, so every
rank and every LoRA-initialization seed reuses them.

The classifier is the pretrained encoder with a fresh K-logit head drawn from ``head_seed`` (the
packaged encoders have no masked-LM head, so Jang et al.'s label-word logits are not available);
the head stays frozen, so the adapted matrices are the only trained weights in every comparison.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from lora_claims.harness.cache import ResultCache
from lora_claims.methods.data.glue import Split, get_task
from lora_claims.methods.finetune.runs import load_base_model, load_tokenizer, reset_head
from lora_claims.methods.data.kshot import load_few_shot
from lora_claims.methods.finetune.models import resolve_model
from lora_claims.methods.ntk.features import (
    DEFAULT_KINDS,
    JacobianFeatures,
    cached_features,
    extract_features,
    select_matrices,
)
from lora_claims.methods.ntk.regime import EncodedSplit

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
