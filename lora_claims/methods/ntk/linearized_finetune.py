"""Linearized LoRA fine-tuning on real features: Jang et al.'s experiment mode on a real encoder.

The model is f0 + sum_W <G_W, B_W A_W> with the Jacobian features G of the encoder's K logits w.r.t.
its last layer's query and value at the pretrained weights, trained by full-batch cross-entropy from
the LoRA initialization; test predictions come from forward-mode products, so no test Jacobian is
stored. The features are computed once per (task, data seed) and every rank reuses them, and the
test set is read once for all ranks (one pass of the frozen layers, one jvp per rank).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

from lora_claims.methods.ntk.regime import LoraRun, accuracy, prefix_predictions, train_linearized
from lora_claims.methods.ntk.real_features import TaskFeatures


def linearized_runs(loaded: TaskFeatures, ranks: list[int], run: LoraRun) -> dict[int, dict]:
    """One record per rank: training loss and accuracy, test accuracy, timings."""
    features, train, test = loaded.features, loaded.train, loaded.test
    trained = {rank: train_linearized(features, train.labels, replace(run, rank=rank)) for rank in ranks}
    start = time.perf_counter()
    logits = prefix_predictions(loaded.model, features.matrices, test.encodings,
                                linearized={str(rank): result.deltas() for rank, result in trained.items()})
    test_seconds = time.perf_counter() - start
    counts = Counter(test.labels.tolist())
    records = {}
    for rank, result in trained.items():
        train_logits = features.f0 + features.inner(result.deltas())
        records[rank] = {
            "task": loaded.task, "seed": loaded.seed, "rank": rank, "run": replace(run, rank=rank).to_json(),
            "train_loss": result.losses[-1], "train_accuracy": accuracy(train_logits, train.labels),
            "test_accuracy": accuracy(logits[str(rank)], test.labels),
            "base_test_accuracy": accuracy(logits["base"], test.labels),
            "train_seconds": result.seconds, "test_seconds_all_ranks": test_seconds,
            "extraction_seconds": features.seconds,
            "test_label_counts": [counts[label] for label in sorted(counts)],
            "test_note": loaded.test_note,
        }
    return records
