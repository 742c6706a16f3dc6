"""C8-linearized: C8 in the linearized model of a real encoder (Jang et al.'s experiment mode)."""

from __future__ import annotations

from lora_claims.claims.linearized_rank_claim import evaluate_c8_linearized
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C8-linearized",
    title="C8 in the linearized model of a real encoder (Jang et al.'s experiment mode)",
    statement=(
        "In the NTK-linearized model of a real pretrained encoder, rank-1 LoRA is competitive with "
        "rank 12 on few-shot binary tasks (the setting of Jang et al.'s experiments)."
    ),
    formalization=(
        "Linearized LoRA f0 + sum <G, B A> with the Jacobians of MiniLM's K logits w.r.t. its last "
        "layer's query and value (frozen seeded head), full-batch Adam on cross-entropy from the "
        "LoRA initialization, test predictions by forward-mode products; then C8's comparison: "
        "acc(r=1) - acc(r=12) paired by LM-BFF data seed, non-inferior when the lower 95% bound "
        "lies above -delta (C8's declared margin), at chance -> no rank conclusion."
    ),
    version="1.0",
    evaluation="lora_claims.methods.ntk.linearized_finetune runs through C8's statistics and report path.",
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c8_linearized(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
