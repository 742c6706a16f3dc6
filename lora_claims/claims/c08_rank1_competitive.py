"""C8: rank 1 is competitive with rank 12 on four binary GLUE tasks and three encoders.

What runs depends on the profile and the device, and every result says which scale it is:
``paper`` (profile thorough on CUDA: roberta-base, bert-base-uncased, ELECTRA-base, five LM-BFF
seeds, 1000 steps), ``cpu-reduced`` (profile ci and CI: the packaged MiniLM, MPNet too under
thorough) and ``smoke`` (the paper's encoders at a few steps, MiniLM standing in for any encoder
not available offline: plumbing only).
"""

from __future__ import annotations

from lora_claims.harness.context import AuditContext
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.comparison import (
    Grid,
    plan_scale,
    rank_pair_experiment,
    rank_pair_verdict,
)
from lora_claims.methods.finetune.runs import RunInputs

PAPER_ENCODERS = ("roberta-base", "bert-base-uncased", "google/electra-base-discriminator")
SUBSTITUTE = "minilm"
CLAIMED_TASKS = ("SST-2", "QNLI", "MRPC", "RTE")
EXTRA_TASKS = ("CoLA",)  # reported beside the claim, not part of its verdict

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
    rule=(
        "Each (encoder, task) comparison is non-inferior when the 95% t interval of "
        "acc(r=1) - acc(r=12) lies above -delta, inferior when it lies below, inconclusive otherwise, "
        "and at chance when neither rank's mean beats chance. Not supported when any claimed "
        "comparison is inferior; supported when every one is non-inferior (with caveats off paper "
        "scale, with substituted encoders, or when the bootstrap interval disagrees); inconclusive "
        "otherwise."
    ),
    sizes={
        "smoke": {"name": "smoke", "seeds": [13, 21], "steps": 2, "eval_every": 1, "batch_size": 4,
                  "learning_rate": 5e-3, "max_length": 32, "test_cap": 16},
        # Sized to fit CI's budget on 2 CPU cores (README: measured cost).
        "ci": {"name": "cpu-reduced", "seeds": [13, 21, 42], "steps": 30, "eval_every": 10,
               "batch_size": 8, "learning_rate": 5e-3, "max_length": 64, "test_cap": 200},
        # LM-BFF: 1000 steps, batch 8, max length 128, dev every 100 steps; LoRA takes about 10x
        # the full fine-tuning learning rate. Paper scale needs CUDA; on CPU thorough runs the ci
        # sizes on both packaged encoders.
        "thorough": {"name": "paper", "seeds": [13, 21, 42, 87, 100], "steps": 1000,
                     "eval_every": 100, "batch_size": 8, "learning_rate": 5e-4, "max_length": 128,
                     "test_cap": 1000},
    },
    needs=Needs(device="gpu", data=CLAIMED_TASKS + EXTRA_TASKS, models=PAPER_ENCODERS),
)


def grid_for(spec: ClaimSpec, ctx: AuditContext) -> tuple[Grid, bool]:
    """The runs this profile and device plan, and whether MiniLM may stand in for a missing encoder."""
    scale, encoders, substitute = plan_scale(spec.sizes, ctx.profile, ctx.device, PAPER_ENCODERS)
    return Grid(encoders, CLAIMED_TASKS + EXTRA_TASKS, tuple(spec.tolerances["ranks"]), scale), substitute


def evaluate(spec: ClaimSpec, ctx: AuditContext) -> Outcome:
    grid, substitute = grid_for(spec, ctx)
    figure = "c8_accuracy_vs_rank.png"
    decision, evidence = rank_pair_experiment(
        grid, RunInputs(ctx.data_dir, ctx.model_paths, ctx.cache), ctx.device,
        SUBSTITUTE if substitute else None, spec.tolerances["delta"], spec.tolerances["alpha"],
        CLAIMED_TASKS, ctx.figure_path(figure), spec.id)
    return Outcome(decision=decision, evidence=evidence, figures=[figure])


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    verdict, summary, key_figure = rank_pair_verdict(outcome.decision)
    return Decision(Verdict(verdict), summary, key_figure)
