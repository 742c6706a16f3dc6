"""C7: does a Rademacher bound predict rank-1 optimality for binary and not for K > 2?

Expected verdict: supported_with_caveats. In the teacher-student simulation the test-loss optimum is
r = 1 for K = 2 and r = K - 1 > 1 for K = 3, 4, as claimed; but the bound itself, with its
constants, predicts r = 1 for every K at few-shot N (its sqrt(r) variance term dwarfs the bias gain).
"""

from __future__ import annotations

import copy

import pytest

from lora_claims.harness.registry import Verdict
from lora_claims.claims.ntk_claims import c7_verdict


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


def test_verdict_rule_can_fail(c7):
    results = copy.deepcopy(c7.evidence["experiments"])
    results["K3"]["measured_rank"] = 1
    assert c7_verdict(results)[0] == Verdict.NOT_SUPPORTED
    results = copy.deepcopy(c7.evidence["experiments"])
    results["K3_rank1_teacher_control"]["measured_rank"] = 2
    assert c7_verdict(results)[0] == Verdict.INCONCLUSIVE
    results = copy.deepcopy(c7.evidence["experiments"])
    for name in ("K3", "K4"):
        results[name]["predicted_rank"] = 2
    assert c7_verdict(results)[0] == Verdict.SUPPORTED
