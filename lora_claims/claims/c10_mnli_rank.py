"""C10: On MNLI the optimal rank is above one."""

from __future__ import annotations

from lora_claims.claims.finetune_claims import evaluate_c10
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C10",
    title="On MNLI the optimal rank is above one",
    statement="On few-shot MNLI the best LoRA rank is above 1.",
    formalization=(
        "Rank sweep {1, 2, 4, 8, 12, 16} on MNLI 16-shot, paired by seed; the best rank by "
        "mean test accuracy and the t interval of acc(best) - acc(r=1) at Bonferroni level "
        "1 - alpha / 5 (the best rank is picked from five candidates). Supported when the best "
        "rank is above 1 and the interval lies above 0; not supported when rank 1 has the best "
        "mean; inconclusive otherwise, or when no rank is above chance. With no MNLI dev set "
        "staged, each seed is tested on the other seeds' k-shot rows."
    ),
    version="1.0",
    evaluation="Real few-shot fine-tuning rank sweep (transformers + peft).",
    tolerances={"alpha": 0.05, "ranks": [1, 2, 4, 8, 12, 16]},
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c10(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
