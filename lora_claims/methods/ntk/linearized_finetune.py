"""Linearized LoRA fine-tuning on real features: Jang et al.'s experiment mode on a real encoder.

The model is the fine-tuning runs' model (first-token linear head, LoRA on the last layer's query
and value) linearized around its initial point, f0 + sum_W <G_W, Delta_W>, jointly in the adapted
matrices and the head, trained with the runs' minibatches and optimizer; test predictions come
from forward-mode products, so no test Jacobian is stored. The features are computed once per
(task, data seed) and every rank reuses them.
"""

from __future__ import annotations

from dataclasses import replace

from lora_claims.methods.ntk.real_features import RunTask
from lora_claims.methods.ntk.regime import LoraRun, accuracy, test_logits, train_linearized


def linearized_runs(loaded: RunTask, ranks: list[int], run: LoraRun) -> dict[int, dict]:
    """One record per rank, in the fine-tuning records' format: per-example test predictions and
    labels, training accuracy, test accuracy."""
    features, train, test = loaded.features, loaded.train, loaded.test
    trained = {rank: train_linearized(features, train.labels, loaded.init(rank), replace(run, rank=rank))
               for rank in ranks}
    logits = test_logits(loaded.last_layer, test, loaded.init(ranks[0]),
                         linearized={str(rank): result for rank, result in trained.items()})
    records = {}
    for rank, result in trained.items():
        train_logits = features.f0 + features.inner(result.deltas)
        records[rank] = {
            "task": loaded.task, "seed": loaded.seed, "rank": rank, "learning_rate": run.lr,
            "run": replace(run, rank=rank).to_json(),
            "train_accuracy": accuracy(train_logits, train.labels),
            "test_accuracy": accuracy(logits[str(rank)], test.labels),
            "base_test_accuracy": accuracy(logits["base"], test.labels),
            "test_predictions": logits[str(rank)].argmax(1).tolist(), "test_labels": test.labels.tolist(),
            "test_note": loaded.test_note,
        }
    return records
