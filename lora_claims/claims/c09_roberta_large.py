"""C9: the C8 comparison at scale, on roberta-large; its own setup needs a GPU."""

from __future__ import annotations

from lora_claims.errors import NeedsGPU
from lora_claims.harness.context import AuditContext
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.comparison import Grid, Scale, rank_pair_experiment, rank_pair_verdict
from lora_claims.methods.finetune.runs import RunInputs

LARGE_ENCODER = "roberta-large"
SUBSTITUTE = "minilm"
CLAIMED_TASKS = ("SST-2", "QNLI", "MRPC", "RTE")
EXTRA_TASKS = ("CoLA",)  # reported beside the claim, not part of its verdict

SPEC = ClaimSpec(
    id="C9",
    title="Rank 1 is competitive with r = 12 on RoBERTa-large",
    statement="The C8 comparison holds at scale, on roberta-large.",
    formalization="As C8, on roberta-large (GPU only; not evaluated on CPU).",
    version="1.0",
    evaluation="Real few-shot fine-tuning of roberta-large on a GPU.",
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
    needs=Needs(device="gpu", data=CLAIMED_TASKS + EXTRA_TASKS, models=(LARGE_ENCODER,)),
)


def evaluate(spec: ClaimSpec, ctx: AuditContext) -> Outcome:
    on_gpu = ctx.device.startswith("cuda")
    if not on_gpu and ctx.profile != "smoke":
        raise NeedsGPU(
            "C9 is GPU-only: roberta-large at the LM-BFF scale needs a CUDA device; run "
            "`pytest -m gpu` (or `lora-claims audit --device cuda --profile thorough`)"
        )
    scale = Scale.from_sizes(spec.sizes_for(ctx.profile))
    grid = Grid((LARGE_ENCODER,), CLAIMED_TASKS + EXTRA_TASKS, tuple(spec.tolerances["ranks"]), scale)
    figure = "c9_accuracy_vs_rank.png"
    decision, evidence = rank_pair_experiment(
        grid, RunInputs(ctx.data_dir, ctx.model_paths, ctx.cache), ctx.device,
        None if on_gpu else SUBSTITUTE, spec.tolerances["delta"], spec.tolerances["alpha"],
        CLAIMED_TASKS, ctx.figure_path(figure), spec.id)
    return Outcome(decision=decision, evidence=evidence, figures=[figure])


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    verdict, summary, key_figure = rank_pair_verdict(outcome.decision)
    return Decision(Verdict(verdict), summary, key_figure)
