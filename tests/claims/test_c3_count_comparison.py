"""C3: the manifold count is weaker than the Sard-form count, on a stated domain."""

from fractions import Fraction

from lora_claims.harness.registry import Verdict


def test_c3_holds_on_its_domain_and_finds_the_boundary(audit):
    result = audit.result("C3")
    assert result.verdict is Verdict.SUPPORTED
    evidence = result.evidence
    assert evidence["equality_cases"] == [(1, 1, 1)]
    assert evidence["inequality_failures"] == 0
    assert evidence["violations_at_cstar"] == 0
    assert Fraction(evidence["critical_constant"]["C"]) == Fraction(16, 9)
    outside = evidence["first_failure_outside_domain"]
    assert outside["r"] > min(outside["m"], outside["n"])
