"""A fine-tuning rank study: every (task, data seed, rank, learning rate) run of one encoder, the
learning rate chosen per rank on the dev splits only, and the records the decisions read.

Rank is confounded with the effective learning rate (the LoRA scale alpha / r is fixed, Adam's
step is not), so no single learning rate is fair to every rank: each rank trains at every rate
of one declared grid, and each (task, rank) keeps the rate with the best mean dev accuracy over
its seeds. The test rows play no part in the choice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from lora_claims.methods.data.kshot import resolve_data_dir, seed_list
from lora_claims.methods.finetune.models import resolve_encoders
from lora_claims.methods.finetune.runs import RunConfig, RunInputs, run_sweep


@dataclass(frozen=True)
class StudyDesign:
    """What a rank study runs: declared before running, recorded with the verdict."""

    encoders: tuple[str, ...]
    seeds_per_task: dict[str, int]  # LM-BFF's splits first, then splits drawn from the pool
    ranks: tuple[int, ...]
    learning_rates: tuple[float, ...]
    steps: int
    eval_every: int
    batch_size: int
    max_length: int
    test_cap: int | None
    placement: str
    head: str
    random_init: bool = False
    heads: dict[str, str] | None = None  # per-encoder exceptions to ``head``

    @classmethod
    def from_sizes(cls, sizes: dict, encoders: tuple[str, ...], random_init: bool = False):
        fields = {k: sizes[k] for k in ("steps", "eval_every", "batch_size", "max_length",
                                        "test_cap", "placement", "head")}
        fields["heads"] = sizes.get("heads")
        return cls(encoders, dict(sizes["seeds_per_task"]), tuple(sizes["ranks"]),
                   tuple(sizes["learning_rates"]), random_init=random_init, **fields)

    def label(self) -> str:
        seeds = ", ".join(f"{task} {n}" for task, n in self.seeds_per_task.items())
        return (f"{'/'.join(self.encoders)}{' (random init)' if self.random_init else ''}, "
                f"LoRA on the {self.placement} query/value, {self.head} head, {self.steps} steps, "
                f"batch {self.batch_size}, max length {self.max_length}, seeds {seeds}, "
                f"learning rate per rank from {list(self.learning_rates)} on dev")

    def to_json(self) -> dict:
        return {**self.__dict__, "encoders": list(self.encoders), "ranks": list(self.ranks),
                "learning_rates": list(self.learning_rates)}


def run_study(design: StudyDesign, inputs: RunInputs, device: str,
              substitute: str | None = None) -> tuple[dict, list[str]]:
    """Every run of the design (replayed from the cache where done); records keyed by
    (encoder, task, rank, seed, learning rate), and notes on substituted encoders."""
    resolve_data_dir(inputs.data_dir)
    models, notes = ({e: e for e in design.encoders}, []) if design.random_init else resolve_encoders(
        design.encoders, inputs.model_paths, inputs.cache.root, substitute)
    keys, configs = [], []
    for encoder in design.encoders:
        for task, count in design.seeds_per_task.items():
            for seed in seed_list(task, count):
                for rank in design.ranks:
                    for lr in design.learning_rates:
                        keys.append((encoder, task, rank, seed, lr))
                        configs.append(RunConfig(
                            model=models[encoder], task=task, seed=seed, rank=rank, learning_rate=lr,
                            steps=design.steps, eval_every=design.eval_every,
                            batch_size=design.batch_size, max_length=design.max_length,
                            test_cap=design.test_cap, device=device, placement=design.placement,
                            head=(design.heads or {}).get(encoder, design.head),
                            random_init=design.random_init))
    records = run_sweep(configs, inputs)
    return dict(zip(keys, records, strict=True)), notes


def chosen_learning_rates(records: dict) -> dict[tuple[str, str, int], float]:
    """Per (encoder, task, rank): the learning rate with the best mean dev accuracy over seeds
    (ties go to the smaller rate)."""
    dev: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (encoder, task, rank, _, lr), record in records.items():
        dev[(encoder, task, rank)][lr].append(record["dev_accuracy"])
    return {key: max(sorted(by_lr), key=lambda lr: np.mean(by_lr[lr])) for key, by_lr in dev.items()}


def selected_records(records: dict, choice: dict) -> list[dict]:
    """The records at each (encoder, task, rank)'s chosen learning rate, in `compare`'s format."""
    return [record | {"task": task, "model": encoder, "rank": rank, "seed": seed}
            for (encoder, task, rank, seed, lr), record in records.items()
            if choice[(encoder, task, rank)] == lr]
