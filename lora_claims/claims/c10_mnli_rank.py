"""C10: on MNLI the optimal LoRA rank is above one (rank sweep on roberta-base).

The paper's claim, at its scale: roberta-base at LM-BFF's protocol needs a GPU, so on a CPU C10 is
not evaluated (C10-cpu is what a CPU can say). ``--profile smoke`` runs the same code on a
random-init roberta-base for a few steps (plumbing, never a verdict).
"""

from __future__ import annotations

from lora_claims.errors import NeedsGPU
from lora_claims.harness.context import AuditContext
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.empirical import paper_study_design, sweep_study, sweep_summary
from lora_claims.methods.finetune.runs import RunInputs

TASK = "MNLI"
PAPER_ENCODERS = ("roberta-base",)
PAPER_SCALE = {
    "ranks": [1, 2, 4, 8, 12, 16], "seeds_per_task": {TASK: 5}, "steps": 1000, "eval_every": 100,
    "batch_size": 8, "max_length": 128, "test_cap": 1000, "placement": "all-layers",
    "head": "native", "learning_rates": [1e-4, 3e-4, 1e-3],
}

SPEC = ClaimSpec(
    id="C10",
    title="On MNLI the optimal rank is above one",
    statement="On few-shot MNLI the best LoRA rank is above 1.",
    formalization=(
        "roberta-base, LoRA on every layer's query and value, ranks 1, 2, 4, 8, 12, 16, each at the "
        "learning rate of the declared grid with the best mean dev accuracy; LM-BFF's five 16-shot "
        "MNLI splits (48 train and 48 dev rows), each tested on the other seeds' rows (no MNLI dev "
        "set is staged); 1000 steps of batch 8. acc(r) - acc(1) for every rank with simultaneous "
        "one-sided bootstrap bounds over seeds and rows (selection-corrected)."
    ),
    rule=(
        "Inconclusive when no rank beats chance. Supported when the largest simultaneous lower "
        "bound of acc(r) - acc(1) is above 0; not supported when every simultaneous upper bound "
        "is below the margin (rank 1 within the margin of the best); inconclusive otherwise. "
        "Without CUDA it is not evaluated; a smoke run (random-init encoder) is never evaluated."
    ),
    version="2.0",
    reading="roberta-base at LM-BFF scale on CUDA, MNLI, ranks 1-16",
    evaluation="Stacked-engine fine-tuning on a CUDA device (pytest -m gpu).",
    tolerances={"margin": 0.02, "alpha": 0.05},
    sizes={
        "smoke": {**PAPER_SCALE, "seeds_per_task": {TASK: 2}, "ranks": [1, 4], "steps": 2,
                  "eval_every": 1, "max_length": 32, "test_cap": 16, "learning_rates": [1e-3]},
        "ci": PAPER_SCALE,
        "thorough": PAPER_SCALE,
    },
    needs=Needs(device="gpu", data=(TASK,), models=PAPER_ENCODERS),
)


def evaluate(spec: ClaimSpec, ctx: AuditContext) -> Outcome:
    design = paper_study_design(spec, ctx, PAPER_ENCODERS, NeedsGPU(
        "C10 needs roberta-base at LM-BFF scale on a CUDA device: run `pytest -m gpu` or "
        "`lora-claims audit --claims C10 --device cuda` (C10-cpu is the CPU reading)"))
    decision, evidence = sweep_study(design, RunInputs(ctx.data_dir, ctx.model_paths, ctx.cache),
                                     ctx.device, TASK, spec.tolerances)
    return Outcome(decision=decision | {"smoke": design.random_init}, evidence=evidence)


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    summary, key_figure = sweep_summary(outcome.decision)
    if outcome.decision["smoke"]:
        return Decision(Verdict.NOT_EVALUATED, f"smoke run on a random-init encoder (plumbing "
                        f"only). {summary}", key_figure)
    return Decision(Verdict(outcome.decision["verdict"]), summary, key_figure)
