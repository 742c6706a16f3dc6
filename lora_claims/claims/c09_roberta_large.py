"""C9: the C8 comparison at scale, on roberta-large.

The paper's claim, at its scale: roberta-large and LM-BFF's protocol need a GPU, so on a CPU C9 is
not evaluated. ``--profile smoke`` runs the same code on
random-init encoders for a few steps (plumbing, never a verdict).
"""

from __future__ import annotations

from lora_claims.errors import NeedsGPU
from lora_claims.harness.context import AuditContext
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.empirical import paper_study_design, rank_pair_study, rank_pair_verdict
from lora_claims.methods.finetune.rank_pair import Rule
from lora_claims.methods.finetune.runs import RunInputs

PAPER_ENCODERS = ("roberta-large",)
CLAIMED_TASKS = ("SST-2", "QNLI", "MRPC", "RTE")
EXTRA_TASKS = ("CoLA",)  # reported beside the claim, not part of its verdict
PAPER_SCALE = {
    # LM-BFF's protocol: five seeds, 1000 steps of batch 8, dev every 100 steps, max length 128,
    # test sets capped at 1,000 rows (Jang et al.'s code). Learning rates for all-layers LoRA.
    "steps": 1000, "eval_every": 100, "batch_size": 8, "max_length": 128, "test_cap": 1000,
    "placement": "all-layers", "head": "native", "learning_rates": [1e-4, 3e-4, 1e-3],
    "ranks": [1, 12], "seeds_per_task": {task: 5 for task in CLAIMED_TASKS + EXTRA_TASKS},
}

SPEC = ClaimSpec(
    id="C9",
    title="Rank 1 is competitive with r = 12 on RoBERTa-large",
    statement="The C8 comparison holds at scale, on roberta-large.",
    formalization=(
        "roberta-large; LoRA on every layer's query and value "
        "(alpha = 2r); LM-BFF's 16-shot splits of seeds 13, 21, 42, 87, 100; 1000 steps of batch 8; "
        "best dev checkpoint; per rank the learning rate of the declared grid with the best mean dev "
        "accuracy; acc(r=1) - acc(r=12) with a bootstrap over seeds and test rows together, each "
        "arm tested against the best constant predictor. CoLA is reported beside the claim."
    ),
    rule=(
        "As C8-cpu's rule on roberta-large at paper scale: a comparison counts only when "
        "both ranks beat chance; non-inferior when Holm's correction over the claimed (task, "
        "encoder) comparisons rejects difference <= -margin; inferior only when both arms "
        "converged and Holm rejects difference >= -margin; inconclusive otherwise, with the power "
        "the design had. Supported when all are non-inferior, not supported when any is inferior, "
        "inconclusive otherwise. Without CUDA it is not evaluated; a smoke run (random-init "
        "encoders) is never evaluated."
    ),
    version="2.0",
    reading="roberta-large at LM-BFF scale on CUDA, LoRA on every layer",
    evaluation="Stacked-engine fine-tuning on a CUDA device (pytest -m gpu).",
    tolerances={"margin": 0.02, "alpha": 0.05, "power_target": 0.8, "converged_train_accuracy": 0.9},
    sizes={
        "smoke": {**PAPER_SCALE, "seeds_per_task": {"SST-2": 2}, "steps": 2, "eval_every": 1,
                  "max_length": 32, "test_cap": 16, "learning_rates": [1e-3]},
        "ci": PAPER_SCALE,
        "thorough": PAPER_SCALE,
    },
    needs=Needs(device="gpu", data=CLAIMED_TASKS + EXTRA_TASKS, models=PAPER_ENCODERS),
)


def evaluate(spec: ClaimSpec, ctx: AuditContext) -> Outcome:
    design = paper_study_design(spec, ctx, PAPER_ENCODERS, NeedsGPU(
        "C9 needs roberta-large at LM-BFF scale on a CUDA device: run `pytest -m gpu` or "
        "`lora-claims audit --claims C9 --device cuda`"))
    decision, evidence = rank_pair_study(design, RunInputs(ctx.data_dir, ctx.model_paths, ctx.cache),
                                         ctx.device, CLAIMED_TASKS, Rule(**spec.tolerances))
    return Outcome(decision=decision | {"smoke": design.random_init}, evidence=evidence)


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    verdict, summary, key_figure = rank_pair_verdict(outcome.decision)
    return Decision(Verdict(verdict), summary, key_figure)
