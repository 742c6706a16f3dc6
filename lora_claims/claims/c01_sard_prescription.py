"""C1: Prior prescription r(r+1)/2 > KN gives r >= 12."""

from __future__ import annotations

from lora_claims.claims.capacity_claims import evaluate_c1
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C1",
    title="Prior prescription r(r+1)/2 > KN gives r >= 12",
    statement=(
        "The rank condition of Jang et al. (r(r+1)/2 > KN) prescribes r >= 12 on the canonical "
        "few-shot RoBERTa setups."
    ),
    formalization=(
        "For every canonical setup (task class count, k in {16, 32, 64}, K = 1 or K = number "
        "of label-word logits) compute the smallest r with r(r+1)/2 > KN exactly, and the "
        "leading-order form r > sqrt(2KN); report which readings give 12."
    ),
    version="1.0",
    evaluation="Exact integer arithmetic over the canonical-setup table.",
    tolerances={"prescribed_rank": 12},
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c1(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
