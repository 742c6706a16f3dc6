"""C3: The manifold count is weaker than the Sard-form count."""

from __future__ import annotations

from lora_claims.claims.capacity_claims import evaluate_c3
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

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
    version="1.0",
    evaluation="Exact rational arithmetic over an exhaustive grid; hypothesis hunts the boundary.",
    tolerances={"max_side": 48, "cstar": 1.35},
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c3(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
