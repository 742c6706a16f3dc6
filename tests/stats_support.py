"""Simulated per-example predictions at the CPU design's real size and noise, for the controls of
the statistics and of the fine-tuning decision rules."""

from __future__ import annotations

import numpy as np
from scipy import stats

# SST-2's test rows, the CPU reading's seed count for SST-2, the seed-level SD of the paired
# difference measured on MiniLM, and the declared margin and alpha.
ROWS, SEEDS, SEED_SD, MARGIN, ALPHA = 872, 20, 0.04, 0.02, 0.05


def simulate(accuracies: dict, rng, rows=ROWS, seeds=SEEDS, seed_sd=SEED_SD, row_weight=0.7,
             shared=0.5):
    """Predictions (seeds x rows) per arm with mean accuracy ``accuracies[arm]``. Row difficulty
    is shared across seeds and arms, a seed's rows are partly shared by its arms (``shared``), and
    each arm's per-seed accuracy moves with its own seed effect, so the paired difference has
    seed-level SD ``seed_sd``."""
    labels = rng.integers(0, 2, rows)
    difficulty = rng.normal(size=rows)
    seed_noise = rng.normal(size=(seeds, rows))
    out = {}
    for arm, base in accuracies.items():
        noise = shared * seed_noise + np.sqrt(1 - shared**2) * rng.normal(size=(seeds, rows))
        uniform = stats.norm.cdf(row_weight * difficulty + np.sqrt(1 - row_weight**2) * noise)
        per_seed = np.clip(base + rng.normal(0, seed_sd / np.sqrt(2), seeds), 0.01, 0.99)
        out[arm] = np.where(uniform < per_seed[:, None], labels, 1 - labels)
    return out, labels


def records_of(arms: dict, labels, task: str = "SST-2", model: str = "minilm",
               train_accuracy: float | None = 1.0) -> list[dict]:
    """Finetune-style records (one per rank and seed) of simulated arms keyed by rank."""
    records = []
    for rank, predictions in arms.items():
        for seed, row in enumerate(predictions):
            record = {"task": task, "model": model, "rank": rank, "seed": seed,
                      "test_labels": labels.tolist(), "test_predictions": row.tolist()}
            if train_accuracy is not None:
                record["train_accuracy"] = train_accuracy
            records.append(record)
    return records
