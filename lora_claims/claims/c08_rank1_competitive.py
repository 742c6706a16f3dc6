"""C8: Rank 1 is competitive with r = 12 on binary GLUE tasks."""

from __future__ import annotations

from lora_claims.claims.finetune_claims import evaluate_c8
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C8",
    title="Rank 1 is competitive with r = 12 on binary GLUE tasks",
    statement=(
        "On four binary GLUE tasks (SST-2, QNLI, MRPC, RTE) and three encoders, LoRA at rank 1 "
        "reaches test accuracy competitive with rank 12."
    ),
    formalization=(
        "Per (encoder, task): LM-BFF 16-shot runs at r = 1 and r = 12 (same seeds, same test "
        "rows); the 95% t interval of the mean paired difference acc(r=1) - acc(r=12) is "
        "compared with -delta (delta declared here before running): non-inferior when its "
        "lower end is above -delta, inferior when its upper end is below -delta, inconclusive "
        "otherwise; a percentile-bootstrap interval is reported beside it. A comparison where "
        "neither arm's mean accuracy exceeds the upper end of the 95% Wilson interval of the "
        "majority-class accuracy is at chance. Supported when every claimed comparison is "
        "non-inferior, not supported when any is inferior, inconclusive otherwise; CoLA is "
        "reported beside the four claimed tasks."
    ),
    version="1.0",
    evaluation=(
        "Real few-shot fine-tuning with transformers + peft: paper scale on a GPU "
        "(roberta-base, bert-base-uncased, ELECTRA-base), reduced scale on MiniLM on CPU."
    ),
    tolerances={"delta": 0.02, "alpha": 0.05, "ranks": [1, 12]},
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c8(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
