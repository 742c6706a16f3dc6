"""Few-shot splits in the LM-BFF protocol: the staged layout, a seeded sampler, the test set.

LM-BFF (Gao et al. 2021) draws k examples per class for training and a *separate* k per class for
model selection from the original train set, with data seeds 13, 21, 42, 87, 100, and uses the
original GLUE dev set as the test set. On disk a split lives in ``<TASK>/k-shot/<k>-<seed>/``
(LM-BFF's own layout ``k-shot/<TASK>/<k>-<seed>/`` is accepted too). The test file is one and the
same for every seed, so staged copies may keep it under one seed folder only; it is looked up
there, then in the task folder's full dev set. MNLI and QQP have no staged dev set: for them the
test set is the union of the *other* seeds' k-shot rows (all distinct from the training seed's
rows), and the result says so.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lora_claims.errors import InvalidArgument, MissingData, require_int
from lora_claims.methods.data.glue import (
    DataFormatError,
    Example,
    Split,
    TaskSpec,
    get_task,
    read_split,
)

LM_BFF_SEEDS = (13, 21, 42, 87, 100)
HF_DATA_DIR = "hf"  # --data-dir hf: sample from Hugging Face `datasets` (needs network access)
OTHER_SEEDS_TASKS = ("MNLI", "QQP")  # no staged GLUE dev set: test on the other seeds' rows


@dataclass(frozen=True)
class FewShotData:
    task: str
    k: int
    seed: int
    train: Split
    dev: Split
    test: Split
    test_note: str  # where the test set comes from, and any cap applied


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | str:
    """The data folder to read, ``"hf"`` for the `datasets` fallback, or MissingData."""
    if data_dir is None or str(data_dir) == "":
        raise MissingData(
            "no GLUE data: pass --data-dir or set LORA_CLAIMS_DATA to a folder with the staged "
            "k-shot splits (or --data-dir hf to sample from Hugging Face `datasets`)"
        )
    if str(data_dir) == HF_DATA_DIR:
        return HF_DATA_DIR
    path = Path(data_dir)
    if not path.is_dir():
        raise MissingData(
            f"GLUE data folder {path} does not exist (from --data-dir / LORA_CLAIMS_DATA)"
        )
    return path


def kshot_folder(data_dir: Path, task: str, k: int, seed: int) -> Path:
    """``<TASK>/k-shot/<k>-<seed>`` (staged layout) or ``k-shot/<TASK>/<k>-<seed>`` (LM-BFF's)."""
    spec = get_task(task)
    candidates = [
        Path(data_dir) / spec.name / "k-shot" / f"{k}-{seed}",
        Path(data_dir) / "k-shot" / spec.name / f"{k}-{seed}",
    ]
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise MissingData(
        f"{spec.name}: no {k}-shot split for seed {seed} under {data_dir} "
        f"(looked for {candidates[0]} and {candidates[1]})"
    )


def load_few_shot(
    data_dir: str | os.PathLike | None,
    task: str,
    k: int = 16,
    seed: int = 42,
    test_cap: int | None = None,
    cap_seed: int = 0,
) -> FewShotData:
    """The k-shot train/dev split of ``seed`` and the task's test set, capped to ``test_cap``."""
    spec = get_task(task)
    k = require_int("k", k)
    root = resolve_data_dir(data_dir)
    if root == HF_DATA_DIR:
        train, dev, test, note = _from_hugging_face(spec, k, seed)
    else:
        folder = kshot_folder(root, spec.name, k, seed)
        train = _read_in(spec, folder, "train")
        dev = _read_in(spec, folder, spec.kshot_dev_file, name="dev")
        test, note = _find_test(spec, root, folder, k, seed, train, dev)
    for split in (train, dev):
        check_k_per_class(spec, split, k)
    test, cap_note = cap_split(test, test_cap, cap_seed)
    return FewShotData(spec.name, k, seed, train, dev, test, note + cap_note)


def label_counts(spec: TaskSpec, split: Split) -> list[int]:
    """Examples per class, in the order of ``spec.labels``."""
    return np.bincount(split.labels, minlength=spec.num_classes).tolist()


def check_k_per_class(spec: TaskSpec, split: Split, k: int) -> None:
    """A k-shot split holds exactly k examples of every class: a one-class file or a 16-shot file
    in a 64-shot folder would otherwise train silently under the wrong name."""
    counts = label_counts(spec, split)
    if counts != [k] * spec.num_classes:
        found = ", ".join(f"{label}: {n}" for label, n in zip(spec.labels, counts, strict=True))
        raise DataFormatError(
            f"{split.source}: a {k}-shot {split.name} split needs {k} examples of each "
            f"{spec.name} class; found {found}"
        )


def _read_in(spec: TaskSpec, folder: Path, stem: str, name: str | None = None) -> Split:
    path = folder / f"{stem}.{spec.extension}"
    if not path.is_file():
        raise MissingData(f"{spec.name}: missing data file {path}")
    return read_split(spec, path, name=name or stem)


def _find_test(
    spec: TaskSpec, root: Path, folder: Path, k: int, seed: int, train: Split, dev: Split
) -> tuple[Split, str]:
    own = folder / f"test.{spec.extension}"
    shared = sorted(
        folder.parent.glob(f"*/test.{spec.extension}"),
        key=lambda p: (not p.parent.name.startswith(f"{k}-"), p.parent.name),
    )
    candidates = ([own] if own.is_file() else []) + shared
    if candidates:
        path = candidates[0]
        return (
            read_split(spec, path, name="test"),
            f"test set {path.relative_to(root)} (the original evaluation set, shared by all seeds)",
        )
    if spec.full_dev and (root / spec.name / spec.full_dev).is_file():
        path = root / spec.name / spec.full_dev
        return read_split(spec, path, name="test"), f"test set {path.relative_to(root)}"
    if spec.name in OTHER_SEEDS_TASKS:
        return other_seeds_test(spec, folder, k, seed, train, dev)
    raise MissingData(
        f"{spec.name}: no test set under {root} (looked for {own} and {spec.full_dev})"
    )


def other_seeds_test(
    spec: TaskSpec, folder: Path, k: int, seed: int, train: Split, dev: Split
) -> tuple[Split, str]:
    """The union of the other seeds' k-shot train and dev rows, minus any row this seed uses."""
    used = set(train.examples) | set(dev.examples)
    rows, seeds = {}, []
    for other in sorted(folder.parent.glob(f"{k}-*")):
        other_seed = other.name.split("-", 1)[1]
        if other_seed == str(seed):
            continue
        seeds.append(other_seed)
        for stem in ("train", spec.kshot_dev_file):
            for example in _read_in(spec, other, stem).examples:
                if example not in used:
                    rows.setdefault(example, None)
    if not rows:
        raise MissingData(f"{spec.name}: no other seeds' {k}-shot rows to test on for seed {seed}")
    note = (
        f"no {spec.name} dev set staged: test set = union of the {k}-shot train+dev rows of "
        f"seeds {', '.join(seeds)} ({len(rows)} distinct rows, none used by seed {seed})"
    )
    return Split("test", tuple(rows), f"{folder.parent} seeds {','.join(seeds)}"), note


def cap_split(split: Split, cap: int | None, cap_seed: int = 0) -> tuple[Split, str]:
    """At most ``cap`` examples, drawn without replacement with a fixed seed (the same rows for
    every run, so that runs stay paired), in their original order."""
    if cap is None or len(split) <= cap:
        return split, ""
    cap = require_int("test_cap", cap)
    keep = np.sort(np.random.default_rng(cap_seed).choice(len(split), size=cap, replace=False))
    capped = replace(split, examples=tuple(split.examples[i] for i in keep))
    return capped, f"; capped at {cap} of {len(split)} rows (seeded draw, cap_seed={cap_seed})"


def sample_k_shot(pool: Split, k: int, seed: int, num_classes: int) -> tuple[Split, Split]:
    """LM-BFF's sampler: shuffle the pool with ``np.random.seed(seed)``, then take the first k
    examples of each label for training and the next k of each label for model selection.

    It reproduces LM-BFF's published splits exactly when the pool is the same file in the same row
    order (checked on the staged RTE and MRPC train pools).
    """
    k = require_int("k", k)
    order = list(range(len(pool)))
    np.random.RandomState(seed).shuffle(order)
    by_label: dict[int, list[int]] = {}
    for index in order:
        by_label.setdefault(pool.examples[index].label, []).append(index)
    short = {label: len(rows) for label, rows in by_label.items() if len(rows) < 2 * k}
    if short or len(by_label) < num_classes:
        raise InvalidArgument(
            f"{pool.source}: k={k} needs {2 * k} examples of each of {num_classes} labels; "
            f"label counts {dict(sorted((lab, len(r)) for lab, r in by_label.items()))}"
        )
    train = [pool.examples[i] for rows in by_label.values() for i in rows[:k]]
    dev = [pool.examples[i] for rows in by_label.values() for i in rows[k : 2 * k]]
    source = f"{pool.source} sampled k={k} seed={seed}"
    return Split("train", tuple(train), source), Split("dev", tuple(dev), source)


def sample_from_pool(
    data_dir: str | os.PathLike,
    task: str,
    k: int,
    seed: int,
    test_cap: int | None = None,
    cap_seed: int = 0,
) -> FewShotData:
    """k-shot data drawn with the LM-BFF sampler from a full train file (SST-2, RTE, MRPC)."""
    spec = get_task(task)
    if spec.full_train is None:
        raise InvalidArgument(f"{spec.name}: no full train pool is known for this task")
    root = Path(data_dir)
    pool = read_split(spec, root / spec.name / spec.full_train, name="pool")
    train, dev = sample_k_shot(pool, k, seed, spec.num_classes)
    if spec.full_dev is None:
        raise InvalidArgument(f"{spec.name}: no full dev set is known for this task")
    test = read_split(spec, root / spec.name / spec.full_dev, name="test")
    test, cap_note = cap_split(test, test_cap, cap_seed)
    return FewShotData(spec.name, k, seed, train, dev, test, f"test set {test.source}{cap_note}")


def seed_list(task: str, count: int) -> tuple[int, ...]:
    """``count`` data seeds for ``task``: LM-BFF's five first, then 1, 2, 3, ... (drawn from the
    full train pool, so only tasks with a staged pool can have more than five)."""
    count = require_int("seed count", count)
    extra = [s for s in range(1, count + len(LM_BFF_SEEDS) + 1) if s not in LM_BFF_SEEDS]
    seeds = (LM_BFF_SEEDS + tuple(extra))[:count]
    if count > len(LM_BFF_SEEDS) and get_task(task).full_train is None:
        raise InvalidArgument(f"{task}: only the {len(LM_BFF_SEEDS)} published LM-BFF splits are "
                              f"staged (no full train pool to draw more from); asked for {count} seeds")
    return seeds


def load_seed(data_dir: str | os.PathLike | None, task: str, k: int, seed: int,
              test_cap: int | None = None) -> FewShotData:
    """The k-shot split of ``seed`` with a test set shared by every seed of the task.

    LM-BFF's published split where one is staged for the seed, else one drawn with LM-BFF's
    sampler from the full train pool (disjoint from the GLUE dev rows). Where the task has a full
    GLUE dev file, every seed is tested on it, so runs of different seeds score the same rows.
    """
    spec = get_task(task)
    root = resolve_data_dir(data_dir)
    if root != HF_DATA_DIR and seed not in LM_BFF_SEEDS and spec.full_train is not None:
        return sample_from_pool(root, spec.name, k, seed, test_cap)
    data = load_few_shot(data_dir, spec.name, k, seed, test_cap)
    if root == HF_DATA_DIR or spec.full_dev is None or not (root / spec.name / spec.full_dev).is_file():
        return data
    test = read_split(spec, root / spec.name / spec.full_dev, name="test")
    test, cap_note = cap_split(test, test_cap)
    return replace(data, test=test, test_note=f"test set {test.source}{cap_note}")


def _from_hugging_face(spec: TaskSpec, k: int, seed: int) -> tuple[Split, Split, Split, str]:
    """Sample from the Hugging Face hub copy of the task (network access needed)."""
    if spec.hf_dataset is None:
        raise MissingData(f"{spec.name}: no Hugging Face dataset is known for this task")
    try:
        datasets = importlib.import_module("datasets")
    except ImportError:
        raise MissingData(
            "--data-dir hf needs the `datasets` package (pip install datasets) and network access"
        ) from None
    path, config, text_columns, eval_split = spec.hf_dataset
    loaded = datasets.load_dataset(path, config)
    pool = hf_split(spec, loaded["train"], text_columns, "pool", f"hf:{path}/{config}/train")
    train, dev = sample_k_shot(pool, k, seed, spec.num_classes)
    test = hf_split(
        spec, loaded[eval_split], text_columns, "test", f"hf:{path}/{config}/{eval_split}"
    )
    return train, dev, test, f"test set {test.source} (Hugging Face `datasets`)"


def hf_split(spec: TaskSpec, rows, text_columns: tuple[str, ...], name: str, source: str) -> Split:
    """Convert a `datasets` split; labels are mapped by name where the dataset names them
    differently from the GLUE files (MNLI orders its classes differently)."""
    feature = rows.features["label"]
    names = list(getattr(feature, "names", None) or [])
    if names and set(names) <= set(spec.labels):
        mapping = {i: spec.labels.index(n) for i, n in enumerate(names)}
    else:
        mapping = {i: i for i in range(spec.num_classes)}
    examples = []
    for row in rows:
        if row["label"] not in mapping:  # GLUE test rows carry label -1
            continue
        texts = [row[c] for c in text_columns]
        examples.append(
            Example(texts[0], texts[1] if len(texts) > 1 else None, mapping[row["label"]])
        )
    return Split(name, tuple(examples), source)
