"""C10: on MNLI the optimal LoRA rank is above one (rank sweep, best-rank test)."""

from __future__ import annotations

from lora_claims.harness.context import AuditContext
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.comparison import (
    CONTAMINATED,
    Grid,
    plan_scale,
    accuracies,
    accuracy_series,
    contamination,
    hyperparameters,
    rank_figure,
    run_encoder_grid,
    run_summaries,
    strictest_chance,
    sweep_decision,
)
from lora_claims.methods.finetune.runs import RunInputs

PAPER_ENCODERS = ("roberta-base",)
SUBSTITUTE = "minilm"
MNLI_TASK = "MNLI"

SPEC = ClaimSpec(
    id="C10",
    title="On MNLI the optimal rank is above one",
    statement="On few-shot MNLI the best LoRA rank is above 1.",
    formalization=(
        "Rank sweep {1, 2, 4, 8, 12, 16} on MNLI 16-shot, paired by seed; the best rank by "
        "mean test accuracy and the t interval of acc(best) - acc(r=1) at Bonferroni level "
        "1 - alpha / 5 (the best rank is picked from five candidates). Supported when the best "
        "rank is above 1 and the interval lies above 0; not supported when rank 1 has the best "
        "mean; inconclusive otherwise, or when no rank is above chance. With no MNLI dev set "
        "staged, each seed is tested on the other seeds' k-shot rows."
    ),
    version="1.0",
    evaluation="Real few-shot fine-tuning rank sweep (transformers + peft).",
    tolerances={"alpha": 0.05, "ranks": [1, 2, 4, 8, 12, 16]},
    rule=(
        "Per encoder, the rank with the best mean MNLI test accuracy is compared with rank 1 by a "
        "Bonferroni-corrected one-sided t interval: above_baseline when its lower end is above 0, "
        "baseline_best when rank 1 has the best mean, at chance when no rank beats chance. "
        "Supported when every encoder is above_baseline (with caveats off paper scale or with "
        "MNLI-contaminated encoders); not supported when rank 1 is best for every encoder; "
        "inconclusive otherwise."
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
    needs=Needs(device="gpu", data=(MNLI_TASK,), models=PAPER_ENCODERS[:1]),
)


def grid_for(spec: ClaimSpec, ctx: AuditContext) -> tuple[Grid, bool]:
    """The runs this profile and device plan, and whether MiniLM may stand in for a missing encoder."""
    scale, encoders, substitute = plan_scale(spec.sizes, ctx.profile, ctx.device, PAPER_ENCODERS)
    return Grid(encoders, (MNLI_TASK,), tuple(spec.tolerances["ranks"]), scale), substitute


def evaluate(spec: ClaimSpec, ctx: AuditContext) -> Outcome:
    grid, substitute = grid_for(spec, ctx)
    records, notes = run_encoder_grid(grid, RunInputs(ctx.data_dir, ctx.model_paths, ctx.cache),
                                      ctx.device, SUBSTITUTE if substitute else None)
    seeds = grid.scale.seeds
    per_encoder = {}
    for encoder in grid.encoders:
        by_rank = {r: accuracies(records, encoder, MNLI_TASK, r, seeds) for r in grid.ranks}
        runs = [records[(encoder, MNLI_TASK, r, s)] for r in grid.ranks for s in seeds]
        chance = strictest_chance(runs)
        decision, test = sweep_decision(by_rank, chance, spec.tolerances["alpha"])
        per_encoder[encoder] = {
            "best_rank": test.to_json(), "chance": chance.to_json(), "decision": decision,
            "accuracy": {str(r): v for r, v in by_rank.items()}, "test_note": runs[0]["test_note"],
        }
    caveats = list(notes)
    if grid.scale.name != "paper":
        caveats.append(f"{grid.scale.name} scale, not the paper's setup")
    models_run = {rec["model"] for rec in records.values()}
    contaminated = [m for m in sorted(models_run) if MNLI_TASK in CONTAMINATED.get(m, ())]
    if contaminated:
        caveats.append(f"{', '.join(contaminated)} saw MNLI in pre-training (sentence-transformers "
                       "AllNLI): absolute accuracy is inflated; the rank comparison stays paired")
    series, chance_by_task = accuracy_series(grid, records)
    figure = "c10_mnli_accuracy_vs_rank.png"
    rank_figure(ctx.figure_path(figure), series, chance_by_task,
                f"C10: {grid.scale.label(grid.encoders)}")
    decision = {
        "scale": grid.scale.label(grid.encoders), "caveats": caveats,
        "encoders": {e: {"decision": v["decision"], "best_rank": v["best_rank"]}
                     for e, v in per_encoder.items()},
        "test_note": per_encoder[grid.encoders[0]]["test_note"],
    }
    evidence = {"scale": grid.scale.__dict__ | {"seeds": list(seeds)}, "encoders": list(grid.encoders),
                "notes": notes, "hyperparameters": hyperparameters(grid), "per_encoder": per_encoder,
                "contamination": contamination(records), "runs": run_summaries(records)}
    return Outcome(decision=decision, evidence=evidence, figures=[figure])


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    inputs = outcome.decision
    encoders = inputs["encoders"]
    decisions = {v["decision"] for v in encoders.values()}
    caveats = inputs["caveats"]
    if decisions == {"above_baseline"}:
        verdict = Verdict.SUPPORTED_WITH_CAVEATS if caveats else Verdict.SUPPORTED
    elif decisions == {"baseline_best"}:
        verdict = Verdict.NOT_SUPPORTED
    else:
        verdict = Verdict.INCONCLUSIVE
    first_encoder, first = next(iter(encoders.items()))
    best = first["best_rank"]
    t = best["t"]
    key_figure = (f"best rank {best['best']} ({first_encoder}); "
                  f"acc(r={best['comparator']})-acc(r=1) = {t['mean']:+.3f} "
                  f"[{t['low']:+.3f}, {t['high']:+.3f}] ({t['confidence']:.1%} Bonferroni t)")
    means = "; ".join(
        f"{e}: " + ", ".join(f"r={r} {m:.3f}" for r, m in v["best_rank"]["means"].items())
        + f" -> {v['decision']}" for e, v in encoders.items())
    summary = (f"{inputs['scale']}: MNLI test accuracy by rank (mean over seeds) {means}. "
               f"{inputs['test_note']}." + (f" Caveats: {'; '.join(caveats)}." if caveats else ""))
    return Decision(verdict, summary, key_figure)
