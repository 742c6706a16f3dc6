"""C8-cpu: rank 1 against rank 12 on MiniLM with last-layer LoRA, the CPU reading of C8.

The claim test asserts C8 under this reading; where the evidence does not support it, the
expected verdict, its reason and the figures are in tests/claims/regression.json (expected
failure with the reason). The rule itself is tested on simulated records at the design's size
in tests/properties/test_rank_pair.py; here: the claim's own mapping and the smoke guard.
"""

from __future__ import annotations

import numpy as np
import pytest

from lora_claims.claims import c08_cpu_minilm
from lora_claims.harness.registry import get_claim
from lora_claims.harness.spec import Outcome, Verdict
from lora_claims.methods.finetune.empirical import rank_pair_decision
from lora_claims.methods.finetune.rank_pair import Rule
from tests.stats_support import records_of, simulate

SPEC = get_claim("C8-cpu")


@pytest.mark.slow
def test_c8_cpu_claim(audit, claim_holds):
    """The paper's C8 under the CPU reading (about 8 minutes of fine-tuning on 2 cores)."""
    result = audit.result("C8-cpu")
    rows = result.decision_inputs["comparisons"]
    assert {row["task"] for row in rows} == {"SST-2", "QNLI", "MRPC", "RTE", "CoLA"}
    for row in rows:
        assert row["lower"] <= row["difference"] <= row["upper"] and 0 <= row["power"] <= 1
    claim_holds(result)


def outcome(accuracies: dict, smoke=False, seed=0) -> Outcome:
    rng = np.random.default_rng(seed)
    records = []
    for task in c08_cpu_minilm.CLAIMED_TASKS:
        arms, labels = simulate(accuracies, rng, rows=872, seeds=20, seed_sd=0.01)
        records += records_of(arms, labels, task=task)
    decision = rank_pair_decision(records, c08_cpu_minilm.CLAIMED_TASKS, Rule(**SPEC.tolerances))
    return Outcome(decision=decision | {"design": "simulated", "notes": [], "smoke": smoke})


RULE_CASES = [  # simulated accuracies per rank, and the verdict C8-cpu's rule must give
    ({1: 0.85, 12: 0.85}, Verdict.SUPPORTED),
    ({1: 0.75, 12: 0.85}, Verdict.NOT_SUPPORTED),
    ({1: 0.5, 12: 0.5}, Verdict.INCONCLUSIVE),
]


@pytest.mark.parametrize("accuracies, verdict", RULE_CASES)
def test_the_rule_maps_the_comparisons_to_the_verdict(accuracies, verdict):
    decision = c08_cpu_minilm.decide(outcome(accuracies), SPEC)
    assert decision.verdict is verdict, decision.summary


def test_a_smoke_run_is_never_evaluated():
    assert c08_cpu_minilm.decide(outcome({1: 0.85, 12: 0.85}, smoke=True), SPEC).verdict is (
        Verdict.NOT_EVALUATED)
