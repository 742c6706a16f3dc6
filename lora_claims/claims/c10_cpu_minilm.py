"""C10-cpu: what a CPU can say about C10, on the packaged MiniLM encoder (MNLI rank sweep; MPNet
beside it under profile thorough).

MiniLM's sentence-transformers pre-training included MNLI (AllNLI), so absolute accuracy is
inflated; the rank comparison stays paired. Not the paper's claim: C10 itself needs roberta-base.
"""

from __future__ import annotations

from lora_claims.harness.context import AuditContext
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.empirical import sweep_study, sweep_summary
from lora_claims.methods.finetune.rank_study import StudyDesign
from lora_claims.methods.finetune.runs import RunInputs

TASK = "MNLI"
CPU_SCALE = {"encoders": ["minilm"], "ranks": [1, 2, 4, 8, 12, 16], "steps": 500, "eval_every": 50,
             "batch_size": 8, "max_length": 128, "test_cap": 2000, "placement": "last-layer",
             "head": "linear-cls", "learning_rates": [1e-3, 3e-3]}

SPEC = ClaimSpec(
    id="C10-cpu",
    title="C10 on a CPU: the best MNLI rank on MiniLM, last-layer LoRA",
    statement=(
        "Reading of C10 that a CPU can run: on the packaged all-MiniLM-L6-v2 encoder (and "
        "all-mpnet-base-v2 under profile thorough), the LoRA rank with the best MNLI test "
        "accuracy is above one."
    ),
    formalization=(
        "MiniLM (MiniLM and MPNet under profile thorough, each decided), LoRA on the last layer's "
        "query and value, a linear head on the first token, 500 "
        "steps of batch 8, ranks 1, 2, 4, 8, 12, 16, each at the learning rate of the declared "
        "grid with the best mean dev accuracy; LM-BFF's five 16-shot MNLI splits, each tested on "
        "the other seeds' rows (no MNLI dev set is staged). acc(r) - acc(1) for every rank with "
        "simultaneous one-sided bootstrap bounds over seeds and rows (selection-corrected)."
    ),
    rule=(
        "Per encoder: inconclusive when no rank beats chance; above rank 1 when the largest "
        "simultaneous lower bound of acc(r) - acc(1) is above 0; rank 1 within the margin when "
        "every simultaneous upper bound is below the margin; inconclusive otherwise. Supported "
        "when every encoder is above rank 1, not supported when rank 1 is within the margin for "
        "every encoder, inconclusive otherwise. A smoke run is never evaluated."
    ),
    version="1.1",
    reading="MiniLM on CPU, LoRA on the last layer, MNLI, five seeds, ranks 1-16 (thorough: MPNet too)",
    evaluation="Stacked-engine fine-tuning on CPU, per-example test predictions.",
    tolerances={"margin": 0.02, "alpha": 0.05},
    sizes={
        "smoke": {**CPU_SCALE, "seeds_per_task": {TASK: 2}, "ranks": [1, 4], "steps": 4,
                  "eval_every": 2, "max_length": 32, "test_cap": 64, "learning_rates": [3e-3]},
        "ci": {**CPU_SCALE, "seeds_per_task": {TASK: 5}},
        "thorough": {**CPU_SCALE, "encoders": ["minilm", "mpnet"], "seeds_per_task": {TASK: 5}},
    },
    needs=Needs(device="cpu", data=(TASK,), models=("minilm", "mpnet")),
)


def evaluate(spec: ClaimSpec, ctx: AuditContext) -> Outcome:
    sizes = spec.sizes_for(ctx.profile)
    design = StudyDesign.from_sizes(sizes, tuple(sizes["encoders"]))
    decision, evidence = sweep_study(design, RunInputs(ctx.data_dir, ctx.model_paths, ctx.cache),
                                     ctx.device, TASK, spec.tolerances)
    return Outcome(decision=decision | {"smoke": ctx.profile == "smoke"}, evidence=evidence)


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    summary, key_figure = sweep_summary(outcome.decision)
    summary += (" MNLI is in MiniLM's pre-training (AllNLI): absolute accuracy is inflated, the "
                "rank comparison stays paired.")
    if outcome.decision["smoke"]:
        return Decision(Verdict.NOT_EVALUATED, f"smoke run (plumbing only). {summary}", key_figure)
    return Decision(Verdict(outcome.decision["verdict"]), summary, key_figure)
