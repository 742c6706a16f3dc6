"""C3: the manifold count is weaker than the Sard-form count, on a stated domain."""

from fractions import Fraction

import pytest

from lora_claims.claims import c03_count_comparison
from lora_claims.claims.c03_count_comparison import SPEC, decide
from lora_claims.harness.registry import Verdict
from lora_claims.harness.spec import Outcome
from tests.rule_support import assert_rule_replays


def test_c3_claim(audit, claim_holds):
    claim_holds(audit.result("C3"))


def test_c3_finds_the_boundary(audit):
    """Known answers: equality only at (1, 1, 1); the critical constant 16/9 (m = n = 3)."""
    result = audit.result("C3")
    evidence = result.evidence
    assert evidence["equality_cases"] == [(1, 1, 1)]
    assert evidence["inequality_failures"] == 0
    assert evidence["violations_at_cstar"] == 0
    assert Fraction(evidence["critical_constant"]["C"]) == Fraction(16, 9)
    outside = evidence["first_failure_outside_domain"]
    assert outside["r"] > min(outside["m"], outside["n"])


def test_c3_decision_inputs_reproduce_the_verdict(audit):
    assert_rule_replays(audit.result("C3"), c03_count_comparison)


def _c3_inputs(**changes) -> dict:
    inputs = {
        "equality_cases": [[1, 1, 1]],
        "inequality_failures": 0,
        "violations_at_cstar": 0,
        "comparison_max_side": 24,
        "critical_constant": {"C": "16/9", "C_float": 16 / 9, "m": 3, "n": 3, "KN": 9, "r_sard": 4,
                              "d(r_sard)": 16},
        "first_failure_outside_domain": {"m": 1, "n": 2, "r": 2, "r(m+n)-r^2": 2, "r(r+1)/2": 3},
    }
    return {**inputs, **changes}


@pytest.mark.parametrize(("changes", "verdict"), [
    ({}, Verdict.SUPPORTED),
    ({"inequality_failures": 1}, Verdict.NOT_SUPPORTED),
    ({"equality_cases": [[1, 1, 1], [2, 2, 2]]}, Verdict.NOT_SUPPORTED),
    ({"violations_at_cstar": 3}, Verdict.NOT_SUPPORTED),
], ids=["all-hold", "inequality-fails", "another-equality-case", "rank-comparison-fails-at-cstar"])
def test_c3_rule_each_clause_flips_the_verdict(changes, verdict):
    assert decide(Outcome(_c3_inputs(**changes)), SPEC).verdict is verdict
