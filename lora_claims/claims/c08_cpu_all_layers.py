"""C8-cpu-all-layers: C8-cpu with LoRA on every layer, the placement the paper's runs use.

C8-cpu adapts the last layer only, so that its frozen prefix is computed once; this reading
changes that one thing. With nothing frozen to reuse, each step runs the whole encoder for every
adapter, hours of CPU time: it runs under ``--profile thorough`` (and, at the paper's scale, C8 on
a GPU), and is not evaluated under the default profile.
"""

from __future__ import annotations

from lora_claims.errors import NeedsProfile
from lora_claims.harness.context import AuditContext
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.empirical import rank_pair_study, rank_pair_verdict
from lora_claims.methods.finetune.rank_pair import Rule
from lora_claims.methods.finetune.rank_study import StudyDesign
from lora_claims.methods.finetune.runs import RunInputs

CLAIMED_TASKS = ("SST-2", "QNLI", "MRPC", "RTE")
# C8-cpu's CPU_SCALE with every layer adapted; LM-BFF's five published splits per task
ALL_LAYERS_SCALE = {"encoders": ["minilm"], "ranks": [1, 12], "steps": 500, "eval_every": 50, "batch_size": 8,
                    "max_length": 128, "test_cap": 2000, "placement": "all-layers", "head": "linear-cls",
                    "learning_rates": [1e-3, 3e-3]}
RUN_WITH = "lora-claims audit --profile thorough --claims C8-cpu-all-layers"

SPEC = ClaimSpec(
    id="C8-cpu-all-layers",
    title="C8 on a CPU with LoRA on every layer: rank 1 against rank 12 on MiniLM",
    statement=(
        "Reading of C8 on the packaged all-MiniLM-L6-v2 encoder with LoRA on every layer's query "
        "and value: rank 1 reaches test accuracy competitive with rank 12 on SST-2, QNLI, MRPC and "
        "RTE."
    ),
    formalization=(
        "C8-cpu's formalization with one change, the placement: LoRA on the query and value of "
        "every layer (alpha = 2r), a linear head on the first token, AdamW with linear decay, 500 "
        "steps of batch 8, best dev checkpoint; LM-BFF's five 16-shot splits per task; the full "
        "GLUE dev set as test set (capped at 2,000 rows); per rank the learning rate of C8-cpu's "
        "grid with the best mean dev accuracy; acc(r=1) - acc(r=12) with a bootstrap over seeds "
        "and test rows together, each arm tested against the best constant predictor."
    ),
    rule=(
        "C8-cpu's rule: a comparison counts only when both ranks beat chance (exact binomial, "
        "alpha). It is non-inferior when Holm's correction over the four claimed tasks rejects "
        "difference <= -margin, inferior only when both arms' training accuracy reaches the "
        "convergence bar and Holm rejects difference >= -margin, inconclusive otherwise (with the "
        "power the design had at the margin). Supported when all four are non-inferior, not "
        "supported when any is inferior, inconclusive otherwise. Evaluated under profile thorough "
        "only; a smoke run is never evaluated."
    ),
    version="1.0",
    reading="MiniLM on CPU, LoRA on every layer, 500 steps, five seeds per task, full test sets",
    evaluation="Stacked-engine fine-tuning on CPU (all-layers placement), per-example test predictions.",
    tolerances={"margin": 0.02, "alpha": 0.05, "power_target": 0.8, "converged_train_accuracy": 0.9},
    sizes={
        "smoke": {**ALL_LAYERS_SCALE, "seeds_per_task": {"SST-2": 2}, "steps": 2, "eval_every": 1,
                  "max_length": 32, "test_cap": 16, "learning_rates": [3e-3]},
        "thorough": {**ALL_LAYERS_SCALE, "seeds_per_task": {task: 5 for task in CLAIMED_TASKS}},
    },
    needs=Needs(device="cpu", data=CLAIMED_TASKS, models=("minilm",)),
)


def evaluate(spec: ClaimSpec, ctx: AuditContext) -> Outcome:
    sizes = spec.sizes_for(ctx.profile)
    if not sizes:
        raise NeedsProfile(
            f"C8-cpu-all-layers trains every layer of MiniLM for each of its 80 runs, hours on a "
            f"CPU: it runs under profile thorough (`{RUN_WITH}`); C8-cpu is the default profile's "
            f"reading")
    design = StudyDesign.from_sizes(sizes, tuple(sizes["encoders"]))
    decision, evidence = rank_pair_study(design, RunInputs(ctx.data_dir, ctx.model_paths, ctx.cache),
                                         ctx.device, CLAIMED_TASKS, Rule(**spec.tolerances))
    return Outcome(decision=decision | {"smoke": ctx.profile == "smoke"}, evidence=evidence)


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    verdict, summary, key_figure = rank_pair_verdict(outcome.decision)
    return Decision(Verdict(verdict), summary, key_figure)
