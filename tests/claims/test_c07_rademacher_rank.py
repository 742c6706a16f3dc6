"""C7: does the Rademacher bound predict the optimal LoRA rank (1 iff K = 2)? Graded: the bound's
predicted rank against the simulated optimum's selection-corrected confidence set, in teacher-student
cases whose teacher rank varies independently of K."""

from __future__ import annotations

import pytest

from lora_claims.claims import c07_rademacher_rank
from lora_claims.claims.c07_rademacher_rank import CASES, SPEC, decide
from lora_claims.harness.spec import Outcome, Verdict
from tests.rule_support import assert_rule_replays
from tests.seed_support import assert_claim_at_seed


def test_the_bound_predicts_the_optimal_rank(audit, claim_holds, regression, seed):
    """The claim. At seed 0 its recorded outcome applies (regression.json: verdict, the predicted
    ranks exactly, and test-loss gaps within three standard errors over trials); at other seeds
    (LORA_CLAIMS_SEEDS) it must not reverse (tests/seed_support.py)."""
    assert_claim_at_seed(audit.result("C7", seed=seed), seed, claim_holds, regression)


def test_decision_inputs_reproduce_the_verdict_and_sets_are_well_formed(audit, seed):
    result = audit.result("C7", seed=seed)
    assert_rule_replays(result, c07_rademacher_rank)
    ranks = SPEC.sizes_for("ci")["ranks"]
    assert set(result.decision_inputs) == set(CASES)
    for case in result.decision_inputs.values():
        found = case["best_rank_set"]
        assert found["best"] in found["set"] and set(found["set"]) <= set(ranks)  # the set holds its argmin
        gap = case["test_loss_r1_minus_best"]
        assert gap["ci"][0] <= gap["mean"] <= gap["ci"][1]


def _case(k: int, predicted: int, best_set: list[int], power: float = 0.9) -> dict:
    return {"K": k, "teacher_rank": best_set[0], "teacher_decay": None, "predicted_rank": predicted,
            "test_loss_r1_minus_best": {"mean": 0.1, "ci": [0.05, 0.15]}, "bound_flip_N": 900.0, "N": 30 * k,
            "best_rank_set": {"set": best_set, "best": best_set[0], "alpha": 0.05, "critical_t": 2.7,
                              "power": power}}


def supported_inputs() -> dict:
    """Each prediction singled out by the simulation, rank 1 exactly for K = 2: supported."""
    return {"K2_teacher1": _case(2, 1, [1]), "K3_teacher2": _case(3, 2, [2]), "K4_teacher3": _case(4, 3, [3]),
            "K2_fullrank_decay": _case(2, 1, [1])}


@pytest.mark.parametrize("case, changes, expected", [
    (None, {}, Verdict.SUPPORTED),
    ("K3_teacher2", {"predicted_rank": 1}, Verdict.NOT_SUPPORTED),  # the bound's rank is beaten
    ("K2_teacher1", {"best_rank_set": {"set": [2], "best": 2, "power": 0.9}}, Verdict.NOT_SUPPORTED),
    ("K4_teacher3", {"best_rank_set": {"set": [2, 3], "best": 3, "power": 0.9}}, Verdict.INCONCLUSIVE),
    ("K2_fullrank_decay", {"best_rank_set": {"set": [1, 2], "best": 2, "power": 0.9}}, Verdict.INCONCLUSIVE),
    ("K4_teacher3", {"predicted_rank": 1, "best_rank_set": {"set": [1], "best": 1, "power": 0.9}},
     Verdict.SUPPORTED_WITH_CAVEATS),  # correct, but rank 1 at K = 4
    ("K2_teacher1", {"predicted_rank": 2, "best_rank_set": {"set": [2], "best": 2, "power": 0.9}},
     Verdict.SUPPORTED_WITH_CAVEATS),  # correct, but rank 2 at K = 2
])
def test_each_clause_of_the_rule_can_flip_the_verdict(case, changes, expected):
    inputs = supported_inputs()
    if case is not None:
        inputs[case].update(changes)
    decision = decide(Outcome(inputs), SPEC)
    assert decision.verdict is expected, decision.summary


def test_a_wrong_prediction_outweighs_an_undecided_case():
    inputs = supported_inputs()
    inputs["K3_teacher2"]["predicted_rank"] = 1
    inputs["K4_teacher3"]["best_rank_set"] = {"set": [2, 3], "best": 3, "power": 0.9}
    assert decide(Outcome(inputs), SPEC).verdict is Verdict.NOT_SUPPORTED


def test_an_undecided_case_is_labelled_underpowered_only_when_its_design_is():
    inputs = supported_inputs()
    inputs["K4_teacher3"]["best_rank_set"] = {"set": [2, 3], "best": 3, "power": 0.9}
    assert "underpowered" not in decide(Outcome(inputs), SPEC).summary
    inputs["K4_teacher3"]["best_rank_set"]["power"] = SPEC.tolerances["min_power"] - 0.01
    assert "inconclusive: underpowered" in decide(Outcome(inputs), SPEC).summary
