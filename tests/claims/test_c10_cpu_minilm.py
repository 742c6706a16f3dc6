"""C10-cpu: the best MNLI rank on MiniLM with last-layer LoRA, the CPU reading of C10.

Claim test with its expected outcome in tests/claims/regression.json; rule conformance of the
sweep decision on simulated MNLI-like records (seeds tested on their own rows)."""

from __future__ import annotations

import numpy as np
import pytest

from lora_claims.claims import c10_cpu_minilm
from lora_claims.harness.registry import get_claim
from lora_claims.harness.spec import Outcome, Verdict
from lora_claims.methods.finetune.empirical import sweep_decision, sweep_verdict
from tests.stats_support import simulate

SPEC = get_claim("C10-cpu")
RANKS = (1, 2, 4, 8)


@pytest.mark.slow
def test_c10_cpu_claim(audit, claim_holds):
    """The paper's C10 under the CPU reading (a few minutes of fine-tuning on 2 cores)."""
    result = audit.result("C10-cpu")
    (entry,) = result.decision_inputs["models"].values()
    test = entry["test"]
    assert sorted(int(r) for r in test["lower"]) == [2, 4, 8, 12, 16]
    assert all(test["lower"][r] <= test["advantages"][r] <= test["upper"][r] for r in test["lower"])
    claim_holds(result)


def sweep_records(accuracy_of_rank: dict, seed: int = 0, rows: int = 384) -> list[dict]:
    """MNLI-like records: 5 seeds, each tested on its own rows, 3 classes."""
    rng = np.random.default_rng(seed)
    records = []
    for data_seed in range(5):
        arms, labels = simulate(accuracy_of_rank, rng, rows=rows, seeds=1, seed_sd=0.01)
        labels = labels + rng.integers(0, 2, rows)  # three classes
        for rank, predictions in arms.items():
            predicted = np.where(predictions[0] == labels - (labels > 1), labels, (labels + 1) % 3)
            records.append({"task": "MNLI", "model": "sim", "rank": rank, "seed": data_seed,
                            "test_labels": labels.tolist(), "test_predictions": predicted.tolist()})
    return records


@pytest.mark.parametrize("accuracies, expected", [
    ({1: 0.50, 2: 0.60, 4: 0.70, 8: 0.72}, "supported"),
    ({1: 0.70, 2: 0.66, 4: 0.64, 8: 0.62}, "not_supported"),
    ({1: 0.30, 2: 0.30, 4: 0.30, 8: 0.30}, "inconclusive"),
])
def test_each_clause_of_the_sweep_rule(accuracies, expected):
    per_model = sweep_decision(sweep_records(accuracies), "MNLI", margin=0.02, alpha=0.05)
    assert sweep_verdict(per_model) == expected, per_model["sim"]["decision"]


def test_a_smoke_run_is_never_evaluated():
    per_model = sweep_decision(sweep_records({1: 0.5, 2: 0.6, 4: 0.7, 8: 0.72}), "MNLI", 0.02, 0.05)
    inputs = {"models": per_model, "verdict": "supported", "design": "simulated", "notes": []}
    assert c10_cpu_minilm.decide(Outcome(decision=inputs | {"smoke": False}), SPEC).verdict is (
        Verdict.SUPPORTED)
    assert c10_cpu_minilm.decide(Outcome(decision=inputs | {"smoke": True}), SPEC).verdict is (
        Verdict.NOT_EVALUATED)
