"""C7: does a Rademacher bound predict rank-1 optimality for binary and not for K > 2?

Expected verdict: supported_with_caveats. In the teacher-student simulation the test-loss optimum is
r = 1 for K = 2 and r = K - 1 > 1 for K = 3, 4, as claimed; but the bound itself, with its
constants, predicts r = 1 for every K at few-shot N (its sqrt(r) variance term dwarfs the bias gain).
"""

from __future__ import annotations

import pytest

from lora_claims.claims import c07_rademacher_rank
from lora_claims.claims.c07_rademacher_rank import SPEC, decide
from lora_claims.harness.registry import Verdict
from lora_claims.harness.spec import Outcome
from tests.rule_support import assert_rule_replays


@pytest.fixture(scope="module")
def c7(audit):
    return audit.result("C7")


def test_verdict_and_key_figures(c7):
    assert c7.verdict == Verdict.SUPPORTED_WITH_CAVEATS, c7.summary
    figures = c7.evidence["key_figures"]
    assert figures["K2"]["measured_rank"] == 1 and figures["K2"]["predicted_rank"] == 1
    for name in ("K3", "K4"):
        assert figures[name]["measured_rank"] > 1
        assert figures[name]["test_loss_r1_minus_best"]["ci"][0] > 0
        assert figures[name]["predicted_rank"] == 1  # the bound's looseness, recorded as a finding
        assert figures[name]["bound_flip_N"] > 10 * figures[name]["N"]
    assert figures["K2"]["test_loss_second_rank_minus_r1"]["ci"][0] > 0
    assert c7.figures == ["c7_rank.png"]


def test_control_rank1_teacher_has_rank1_optimum(c7):
    """Negative control: with a rank-1 teacher, K = 3 alone does not make rank 2 better."""
    control = c7.evidence["key_figures"]["K3_rank1_teacher_control"]
    assert control["measured_rank"] == 1
    assert control["test_loss_second_rank_minus_r1"]["mean"] > 0


def test_bias_is_saturated_at_the_teacher_rank(c7):
    for name, run in c7.evidence["experiments"].items():
        bias = {row["rank"]: row["bias"] for row in run["per_rank"]}
        teacher = run["teacher_rank"]
        if teacher > 1:
            assert bias[1] - bias[teacher] > 0.1, (name, bias)
        assert bias[teacher] - bias[max(bias)] < 0.05, (name, bias)


def test_decision_inputs_reproduce_the_verdict(c7):
    assert_rule_replays(c7, c07_rademacher_rank)


def _case(measured: int, predicted: int, gain_low: float = 0.01) -> dict:
    return {"predicted_rank": predicted, "measured_rank": measured,
            "test_loss_r1_minus_best": {"mean": gain_low + 0.02, "ci": [gain_low, gain_low + 0.04]},
            "test_loss_second_rank_minus_r1": {"mean": 0.02, "ci": [0.01, 0.03]},
            "bound_flip_N": 900.0, "N": 60, "second_rank": 2}


def supported_inputs() -> dict:
    """Measured and predicted optima as claimed, control at rank 1: supported."""
    return {"K2": _case(1, 1), "K3": _case(2, 2), "K4": _case(3, 3), "K3_rank1_teacher_control": _case(1, 1)}


@pytest.mark.parametrize("case, field, value, expected", [
    (None, None, None, Verdict.SUPPORTED),
    ("K3_rank1_teacher_control", "measured_rank", 2, Verdict.INCONCLUSIVE),
    ("K2", "measured_rank", 2, Verdict.NOT_SUPPORTED),
    ("K3", "measured_rank", 1, Verdict.NOT_SUPPORTED),
    ("K4", "measured_rank", 1, Verdict.NOT_SUPPORTED),
    ("K4", "test_loss_r1_minus_best", {"mean": 0.01, "ci": [0.0, 0.02]}, Verdict.NOT_SUPPORTED),
    ("K2", "predicted_rank", 2, Verdict.SUPPORTED_WITH_CAVEATS),
    ("K3", "predicted_rank", 1, Verdict.SUPPORTED_WITH_CAVEATS),
    ("K4", "predicted_rank", 1, Verdict.SUPPORTED_WITH_CAVEATS),
])
def test_each_clause_of_the_rule_can_flip_the_verdict(case, field, value, expected):
    inputs = supported_inputs()
    if case is not None:
        inputs[case][field] = value
    decision = decide(Outcome(inputs), SPEC)
    assert decision.verdict is expected, decision.summary


def test_control_is_read_before_the_pattern():
    inputs = supported_inputs()
    inputs["K3"]["measured_rank"] = 1
    inputs["K3_rank1_teacher_control"]["measured_rank"] = 2
    assert decide(Outcome(inputs), SPEC).verdict is Verdict.INCONCLUSIVE
