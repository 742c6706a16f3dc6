"""C8-cpu: what a CPU can say about C8, on the packaged MiniLM encoder (and MPNet under thorough).

Not the paper's claim (its encoders and scale need a GPU; C8 itself reads not_evaluated here):
a reading of its own, with LoRA on the last layer's query and value (Jang et al.'s default, whose
frozen prefix is computed once), many data seeds drawn with LM-BFF's sampler, full test sets and
the learning rate chosen per rank on the dev splits.
"""

from __future__ import annotations

from lora_claims.harness.context import AuditContext
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.empirical import rank_pair_study, rank_pair_verdict
from lora_claims.methods.finetune.rank_pair import Rule
from lora_claims.methods.finetune.rank_study import StudyDesign
from lora_claims.methods.finetune.runs import RunInputs

CLAIMED_TASKS = ("SST-2", "QNLI", "MRPC", "RTE")
CPU_SCALE = {"encoders": ["minilm"], "ranks": [1, 12], "steps": 500, "eval_every": 50, "batch_size": 8,
             "max_length": 128, "test_cap": 2000, "placement": "last-layer", "head": "linear-cls",
             "learning_rates": [1e-3, 3e-3]}

SPEC = ClaimSpec(
    id="C8-cpu",
    title="C8 on a CPU: rank 1 against rank 12 on MiniLM (and MPNet), last-layer LoRA",
    statement=(
        "Reading of C8 that a CPU can run: on the packaged all-MiniLM-L6-v2 encoder (and "
        "all-mpnet-base-v2 under profile thorough), LoRA at rank 1 reaches test accuracy "
        "competitive with rank 12 on SST-2, QNLI, MRPC and RTE."
    ),
    formalization=(
        "MiniLM (MiniLM and MPNet under profile thorough), LoRA on the last layer's query and "
        "value (alpha = 2r), a linear head on the first token (the dev-only pilots in "
        "docs/pilots/), AdamW with linear decay, 500 steps of batch 8, best dev checkpoint; 16-shot splits "
        "from LM-BFF's five seeds plus splits drawn with its sampler from the full train pool; the "
        "full GLUE dev set as test set (capped at 2,000 rows); per rank the learning rate of the "
        "declared grid with the best mean dev accuracy. acc(r=1) - acc(r=12) with a bootstrap over "
        "seeds and test rows together; each arm tested against the best constant predictor. CoLA "
        "is reported beside the claim."
    ),
    rule=(
        "A comparison counts only when both ranks beat chance (exact binomial, alpha). It is "
        "non-inferior when Holm's correction over the four claimed tasks rejects difference <= "
        "-margin, inferior only when both arms' training accuracy reaches the convergence bar and "
        "Holm rejects difference >= -margin, inconclusive otherwise (with the power the design had "
        "at the margin). Supported when all four are non-inferior, not supported when any is "
        "inferior, inconclusive otherwise; a smoke run is never evaluated."
    ),
    version="1.1",
    reading=(
        "MiniLM on CPU, LoRA on the last layer, 500 steps, SST-2 20 / QNLI 5 / MRPC 10 / RTE 10 "
        "seeds, full test sets (thorough: twice the drawn seeds, and MPNet beside MiniLM)"
    ),
    evaluation="Stacked-engine fine-tuning on CPU, per-example test predictions.",
    tolerances={"margin": 0.02, "alpha": 0.05, "power_target": 0.8,
                "converged_train_accuracy": 0.9},
    sizes={
        "smoke": {**CPU_SCALE, "seeds_per_task": {"SST-2": 2}, "steps": 4, "eval_every": 2,
                  "max_length": 32, "test_cap": 64, "learning_rates": [3e-3]},
        "ci": {**CPU_SCALE, "seeds_per_task": {"SST-2": 20, "QNLI": 5, "MRPC": 10, "RTE": 10,
                                               "CoLA": 5}},
        "thorough": {**CPU_SCALE, "encoders": ["minilm", "mpnet"],
                     "seeds_per_task": {"SST-2": 40, "QNLI": 5, "MRPC": 20, "RTE": 20, "CoLA": 5}},
    },
    needs=Needs(device="cpu", data=CLAIMED_TASKS + ("CoLA",), models=("minilm", "mpnet")),
)


def evaluate(spec: ClaimSpec, ctx: AuditContext) -> Outcome:
    sizes = spec.sizes_for(ctx.profile)
    design = StudyDesign.from_sizes(sizes, tuple(sizes["encoders"]))
    decision, evidence = rank_pair_study(design, RunInputs(ctx.data_dir, ctx.model_paths, ctx.cache),
                                         ctx.device, CLAIMED_TASKS, Rule(**spec.tolerances))
    return Outcome(decision=decision | {"smoke": ctx.profile == "smoke"}, evidence=evidence)


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    verdict, summary, key_figure = rank_pair_verdict(outcome.decision)
    return Decision(Verdict(verdict), summary, key_figure)
