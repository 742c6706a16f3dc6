"""C3: The manifold count is weaker than the Sard-form count."""

from __future__ import annotations

from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.counting.comparison import (
    critical_constant,
    inequality_equality_cases,
    rank_comparison_violations,
    smallest_out_of_domain_failure,
)

SPEC = ClaimSpec(
    id="C3",
    title="The manifold count is weaker than the Sard-form count",
    statement=(
        "r(m+n) - r^2 >= r(r+1)/2 with equality only at m = n = r = 1, and the minimal rank "
        "under r(m+n) - r^2 > C KN never exceeds the minimal rank under r(r+1)/2 > KN."
    ),
    formalization=(
        "Exhaustive check over m, n <= max_side of the inequality on 1 <= r <= min(m, n); the "
        "rank comparison on the domain where the Sard rank fits the matrix (r_sard <= min(m, n)), "
        "with the critical constant C above which it first fails located exactly."
    ),
    rule=(
        "Supported if, over 1 <= r <= min(m, n) with m, n <= max_side, r(m+n) - r^2 >= r(r+1)/2 never "
        "fails, equality holds only at m = n = r = 1, and at C = cstar no (m, n, KN) of the domain "
        "r_sard(KN) <= min(m, n) (m, n <= 24) has a manifold rank above the Sard rank; not supported "
        "if any of the three fails."
    ),
    version="1.0",
    reading="exact rational arithmetic, every m, n <= 48; the rank comparison on r_sard(KN) <= min(m, n)",
    evaluation="Exact rational arithmetic over an exhaustive grid; hypothesis hunts the boundary.",
    tolerances={"max_side": 48, "cstar": 1.35},
    needs=Needs(device="cpu"),
)

COMPARISON_MAX_SIDE = 24  # the rank comparison calls the exact solver per case


def evaluate(spec: ClaimSpec, ctx) -> Outcome:
    max_side, cstar = spec.tolerances["max_side"], spec.tolerances["cstar"]
    equality, inequality_failures = inequality_equality_cases(max_side)
    comparison_side = min(max_side, COMPARISON_MAX_SIDE)
    decision = {
        "equality_cases": [list(case) for case in equality],
        "inequality_failures": inequality_failures,
        "violations_at_cstar": rank_comparison_violations(comparison_side, cstar),
        "comparison_max_side": comparison_side,
        "critical_constant": critical_constant(max_side),
        "first_failure_outside_domain": smallest_out_of_domain_failure(max_side),
    }
    evidence = {**decision, "equality_cases": equality, "max_side": max_side}
    return Outcome(decision, evidence)


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    inputs, max_side, cstar = outcome.decision, spec.tolerances["max_side"], spec.tolerances["cstar"]
    equality = [tuple(case) for case in inputs["equality_cases"]]
    violations, critical = inputs["violations_at_cstar"], inputs["critical_constant"]
    holds = equality == [(1, 1, 1)] and inputs["inequality_failures"] == 0 and violations == 0
    verdict = Verdict.SUPPORTED if holds else Verdict.NOT_SUPPORTED
    summary = (
        f"For 1 <= r <= min(m, n) (m, n <= {max_side}) r(m+n) - r^2 >= r(r+1)/2 held in every case, "
        f"with equality only at {equality}. Domain of the rank comparison: the Sard rank fits the "
        f"matrix (r_sard(KN) <= min(m, n)); there the manifold rank never exceeds the Sard rank "
        f"for C < {critical['C']} = {critical['C_float']:.4f} (provably for C <= 1), so at "
        f"C* = {cstar} it holds ({violations} violations, m, n <= {inputs['comparison_max_side']}). "
        f"Boundary: at C = {critical['C']}, m = n = {critical['m']}, KN = {critical['KN']} gives "
        f"d({critical['r_sard']}) = {critical['d(r_sard)']} = C KN, not strictly more. Outside the "
        f"domain r > min(m, n) the inequality fails, first at {inputs['first_failure_outside_domain']}."
    )
    key_figure = f"equality only at m=n=r=1; holds for C < {critical['C']} (C*={cstar} inside)"
    return Decision(verdict, summary, key_figure)
