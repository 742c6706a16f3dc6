"""C11: The binary guarantees rest on standard NTK assumptions."""

from __future__ import annotations

from lora_claims.claims.regime_claim import evaluate_c11
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C11",
    title="The binary guarantees rest on standard NTK assumptions",
    statement=(
        "The guarantees assume fine-tuning stays in the NTK regime; measured here is how far real "
        "few-shot LoRA fine-tuning is from its linearization."
    ),
    formalization=(
        "Real encoder (all-MiniLM-L6-v2) with a fresh frozen K-logit head, LoRA (B = 0, A Gaussian, "
        "Jang et al.'s scale) on the last layer's query and value, full-batch Adam on the k-shot "
        "train split, cross-entropy; the same initialization trained on the linearization "
        "f0 + sum <G, B A> (Jacobian features at the pretrained weights). Per task and rank: "
        "agreement of the two models' test predictions (pooled over data seeds, Wilson interval), "
        "logit distance relative to the fine-tuning move, the first-order Taylor model at the real "
        "end point, and the relative Frobenius change of the empirical NTK (weight space, train "
        "examples) from start to end. Only cells where real training fits (train accuracy >= "
        "fit_accuracy_min and the training loss dropped by >= fit_loss_drop_min of its start) "
        "count; none -> inconclusive. Every counted cell agrees >= agreement_min "
        "and moves the kernel <= ntk_change_max -> supported; a cell whose agreement interval lies "
        "below agreement_min -> not_supported; otherwise (agreement kept, kernel moving) -> "
        "supported_with_caveats."
    ),
    version="1.0",
    evaluation="Jacobian features of MiniLM on real k-shot tasks (lora_claims.methods.ntk.regime).",
    tolerances={
        "agreement_min": 0.9, "ntk_change_max": 0.1, "fit_accuracy_min": 0.9, "fit_loss_drop_min": 0.1,
        "ranks": (1, 12), "lr": 3e-3, "optimizer": "adam",
    },
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c11(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
