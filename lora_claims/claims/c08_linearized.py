"""C8-linearized: rank 1 against rank 12 in the linearized model of a real encoder (Jang et al.'s mode).

The runs are C8-cpu's model linearized around its initial point (lora_claims.methods.ntk.
linearized_finetune); their records carry per-example test predictions, so the decision is C8-cpu's
own (lora_claims.methods.finetune.empirical.rank_pair_decision) with its rule's parameters copied
into this spec (a reading is versioned on its own).
"""

from __future__ import annotations

from lora_claims.harness.cache import CacheKind
from lora_claims.harness.context import AuditContext
from lora_claims.harness.environment import on_one_torch_thread
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.empirical import rank_pair_decision, rank_pair_summary
from lora_claims.methods.finetune.models import resolve_model
from lora_claims.methods.finetune.rank_pair import Rule, table
from lora_claims.methods.ntk.linearized_finetune import linearized_runs
from lora_claims.methods.ntk.real_features import run_task
from lora_claims.methods.ntk.regime import LoraRun

LINEARIZED_RUNS = CacheKind("linearized-finetune", 3)
MODEL = "minilm"
RULE = {"margin": 0.02, "alpha": 0.05, "power_target": 0.8, "converged_train_accuracy": 0.9}  # C8-cpu's
CONFIG = {"ranks": [1, 12], "steps": 500, "batch_size": 8, "max_length": 128, "placement": "last-layer",
          "head": "linear-cls"}  # C8-cpu's CPU_SCALE, copied
LEARNING_RATE = 3e-3

SPEC = ClaimSpec(
    id="C8-linearized",
    title="C8 in the linearized model of a real encoder (Jang et al.'s experiment mode)",
    statement=(
        "In the NTK-linearized model of a real pretrained encoder, rank-1 LoRA is competitive with "
        "rank 12 on few-shot binary tasks (the setting of Jang et al.'s experiments)."
    ),
    formalization=(
        "C8-cpu's model (MiniLM, LoRA on the last layer's query and value, alpha = 2r, A "
        "kaiming-uniform, B = 0, a linear head on the first token, the fine-tuning engine's draws "
        "for the data seed) linearized around its initial point jointly in the adapted matrices and "
        "the head, trained like C8-cpu (AdamW with linear decay, 500 steps of batch 8, "
        "cross-entropy) on the 16-shot splits of LM-BFF's five seeds; per-example test predictions "
        "on the GLUE dev set (capped). Differs from C8-cpu: one declared learning rate (3e-3, the "
        "middle of C8-cpu's grid) instead of one chosen on dev, the end point instead of the best "
        "dev checkpoint, fewer seeds and a smaller test cap (the linearized test pass is a "
        "forward-mode product per rank). Then C8-cpu's comparison on these records."
    ),
    rule=(
        "C8-cpu's rule: a comparison counts only when both ranks beat chance (exact binomial, alpha). "
        "It is non-inferior when Holm's correction over the declared tasks rejects difference <= "
        "-margin (bootstrap over seeds and test rows together), inferior only when both arms' "
        "training accuracy reaches the convergence bar and Holm rejects difference >= -margin, "
        "inconclusive otherwise (with the power the design had at the margin). Supported when all "
        "are non-inferior, not supported when any is inferior, inconclusive otherwise; a smoke run "
        "is never evaluated."
    ),
    version="2.0",
    reading=(
        "C8-cpu's model linearized around its initial point (MiniLM last-layer LoRA and head), SST-2,"
        " MRPC and RTE, five seeds"
    ),
    evaluation="lora_claims.methods.ntk.linearized_finetune runs, decided by C8-cpu's rank-pair rule.",
    tolerances={**RULE, **CONFIG, "learning_rate": LEARNING_RATE},
    sizes={
        "smoke": {"tasks": ["SST-2"], "seeds": [13, 21], "steps": 4, "test_cap": 32},
        "ci": {"tasks": ["SST-2", "MRPC", "RTE"], "seeds": [13, 21, 42, 87, 100], "test_cap": 500},
        "thorough": {"tasks": ["SST-2", "QNLI", "MRPC", "RTE"], "seeds": [13, 21, 42, 87, 100],
                     "test_cap": 2000},
    },
    needs=Needs(device="cpu", data=("SST-2", "QNLI", "RTE", "MRPC"), models=(MODEL,)),
)


def _records(ctx: AuditContext, sizes: dict, tol: dict) -> list[dict]:
    """One record per (task, rank, seed); the features and the test pass are shared by the ranks."""
    run = LoraRun(rank=1, steps=sizes.get("steps", tol["steps"]), lr=tol["learning_rate"], optimizer="adamw",
                  batch_size=tol["batch_size"])
    weights = resolve_model(MODEL, ctx.model_paths).fingerprint()
    records = []
    for task in sizes["tasks"]:
        for seed in sizes["seeds"]:
            seeded = LoraRun(**{**run.to_json(), "seed": seed})
            config = {"model": MODEL, "weights": weights, "task": task, "seed": seed, "ranks": tol["ranks"],
                      "run": seeded.to_json(), "test_cap": sizes["test_cap"], "max_length": tol["max_length"]}

            def compute(task=task, seed=seed, seeded=seeded):
                loaded = run_task(task, seed, data_dir=ctx.data_dir, model_paths=ctx.model_paths,
                                  cache_root=ctx.cache.root, model_name=MODEL, test_cap=sizes["test_cap"],
                                  max_length=tol["max_length"])
                return {str(rank): record
                        for rank, record in linearized_runs(loaded, tol["ranks"], seeded).items()}

            by_rank = ctx.cache.get_or_compute(LINEARIZED_RUNS, config, compute)
            records += [{**by_rank[str(rank)], "model": MODEL} for rank in tol["ranks"]]
    return records


@on_one_torch_thread
def evaluate(spec: ClaimSpec, ctx: AuditContext) -> Outcome:
    sizes = spec.sizes_for(ctx.profile)
    records = _records(ctx, sizes, spec.tolerances)
    rule = Rule(**{name: spec.tolerances[name] for name in RULE})
    decision = rank_pair_decision(records, tuple(sizes["tasks"]), rule) | {
        "design": f"linearized MiniLM, {len(sizes['seeds'])} LM-BFF seeds, test cap {sizes['test_cap']}",
        "notes": [], "smoke": ctx.profile == "smoke"}
    evidence = {"table": table(decision["comparisons"]),
                "runs": [{k: v for k, v in r.items() if k not in ("test_predictions", "test_labels")}
                         for r in records]}
    return Outcome(decision=decision, evidence=evidence)


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    summary, key_figure = rank_pair_summary(outcome.decision)
    if outcome.decision["smoke"]:
        return Decision(Verdict.NOT_EVALUATED, f"smoke run (plumbing only): {summary}", key_figure)
    return Decision(Verdict(outcome.decision["verdict"]), f"Linearized C8-cpu model: {summary}", key_figure)
