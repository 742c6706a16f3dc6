"""C11: an assumption measured: how far real LoRA fine-tuning in C8-cpu's configuration is from its
linearization, under AdamW and plain SGD. The recorded outcome (regression.json) applies at ci; the
rule's tests run on hand-made outcomes. Slow: real fine-tuning of MiniLM on CPU."""

from __future__ import annotations

import copy

import pytest

from lora_claims.claims import c08_cpu_minilm, c08_linearized, c11_ntk_assumptions
from lora_claims.claims.c11_ntk_assumptions import C8_CPU, SPEC, decide
from lora_claims.harness.spec import Outcome, Verdict
from tests.ntk_support import evaluated
from tests.rule_support import assert_rule_replays


@pytest.fixture(scope="module")
def c11(audit):
    return evaluated(audit, "C11")


@pytest.mark.slow
def test_fine_tuning_stays_near_its_linearization(c11, claim_holds):
    claim_holds(c11)


@pytest.mark.slow
def test_decision_inputs_reproduce_the_verdict(c11):
    assert_rule_replays(c11, c11_ntk_assumptions)


@pytest.mark.slow
def test_intervals_hold_their_estimates_and_cover_both_optimizers(c11):
    cells = c11.decision_inputs["cells"]
    assert {(c["optimizer"], c["rank"]) for c in cells} == {(o, r) for o in ("adamw", "sgd") for r in (1, 12)}
    for cell in cells:
        assert len(cell["seeds"]) >= 3
        assert cell["agreement_ci"][0] <= cell["agreement"] <= cell["agreement_ci"][1]
        assert cell["ntk_change_ci"][0] <= cell["ntk_change"] <= cell["ntk_change_ci"][1]


def test_configuration_is_c8_cpus():
    """Real and linearized runs must be C8-cpu's model: the copied values may not drift."""
    for name, value in C8_CPU.items():
        assert c08_cpu_minilm.CPU_SCALE[name] == value == SPEC.tolerances[name], name
        assert c08_linearized.CONFIG[name] == value, name
    assert c08_linearized.RULE == c08_cpu_minilm.SPEC.tolerances


def cell(agreement=0.97, interval=(0.94, 0.99), change=0.05, change_ci=(0.03, 0.07), train=1.0,
         optimizer="sgd", rank=1):
    return {"task": "SST-2", "optimizer": optimizer, "rank": rank, "seeds": [13, 21, 42],
            "agreement": agreement, "agreement_ci": list(interval), "ntk_change": change,
            "ntk_change_ci": list(change_ci), "train_accuracy": train}


HOLDS = [cell(), cell(rank=12), cell(optimizer="adamw"), cell(optimizer="adamw", rank=12)]


def _with(index, **changes):
    cells = copy.deepcopy(HOLDS)
    cells[index] = cell(**{"optimizer": cells[index]["optimizer"], "rank": cells[index]["rank"], **changes})
    return cells


@pytest.mark.parametrize("cells, expected", [
    (HOLDS, Verdict.SUPPORTED),
    (_with(1, agreement=0.8, interval=(0.75, 0.85)), Verdict.NOT_SUPPORTED),  # agreement below X
    (_with(1, agreement=0.9, interval=(0.85, 0.95)), Verdict.INCONCLUSIVE),  # straddles agreement_min
    (_with(2, change=0.5, change_ci=(0.3, 0.7)), Verdict.NOT_SUPPORTED),  # kernel moves beyond X
    (_with(2, change=0.1, change_ci=(0.05, 0.15)), Verdict.INCONCLUSIVE),  # straddles ntk_change_max
    (_with(3, change=0.5, change_ci=(0.3, 0.7), train=0.5), Verdict.SUPPORTED),  # unfitted cell not counted
    ([cell(train=0.5), cell(train=0.5, rank=12)], Verdict.INCONCLUSIVE),  # nothing counted
    (_with(0, agreement=0.8, interval=(0.75, 0.85)) [:1] + _with(2, change=0.1, change_ci=(0.05, 0.15))[2:],
     Verdict.NOT_SUPPORTED),  # one cell beyond X decides over an undecided one
])
def test_each_clause_of_the_rule_can_flip_the_verdict(cells, expected):
    decision = decide(Outcome({"cells": cells}), SPEC)
    assert decision.verdict is expected, decision.summary


def test_summary_words_the_assumption():
    assert decide(Outcome({"cells": HOLDS}), SPEC).summary.startswith("Assumption holds within X")
    beyond = decide(Outcome({"cells": _with(1, agreement=0.8, interval=(0.75, 0.85))}), SPEC)
    assert (beyond.summary.startswith("Assumption does not hold beyond X")
            and "SST-2 sgd r=12" in beyond.summary)
    assert beyond.key_figure.startswith("min agreement 0.800 (SST-2 sgd r=12)")
