"""C5: The capacity condition holds at r = 1 on canonical setups."""

from __future__ import annotations

from lora_claims.claims.capacity_claims import evaluate_c5
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C5",
    title="The capacity condition holds at r = 1 on canonical setups",
    statement="r(m+n) - r^2 > C* KN is satisfied at r = 1 on the canonical few-shot setups.",
    formalization=(
        "Margin d(1) - C* KN and ratio d(1) / (C* KN) per adapted matrix, for every canonical "
        "encoder x task x k x K convention, binary and multi-class, at C* = 1.35."
    ),
    version="1.0",
    evaluation="Exact arithmetic over the canonical-setup table.",
    tolerances={"cstar": 1.35, "canonical_k": 16},
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c5(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
