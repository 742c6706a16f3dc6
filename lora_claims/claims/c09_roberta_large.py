"""C9: Rank 1 is competitive with r = 12 on RoBERTa-large."""

from __future__ import annotations

from lora_claims.claims.finetune_claims import evaluate_c9
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C9",
    title="Rank 1 is competitive with r = 12 on RoBERTa-large",
    statement="The C8 comparison holds at scale, on roberta-large.",
    formalization="As C8, on roberta-large (GPU only; not evaluated on CPU).",
    version="1.0",
    evaluation="Real few-shot fine-tuning of roberta-large on a GPU.",
    tolerances={"delta": 0.02, "alpha": 0.05, "ranks": [1, 12]},
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c9(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
