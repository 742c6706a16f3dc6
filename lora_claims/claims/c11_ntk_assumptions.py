"""C11: The binary guarantees rest on standard NTK assumptions.

Per task, data seed and rank, one LoRA initialization is trained on the real encoder and on its
linearization (lora_claims.methods.ntk.regime); the Jacobian features are computed once per (task, seed)
and shared by the ranks.
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from lora_claims.harness.cache import CacheKind
from lora_claims.harness.environment import on_one_torch_thread
from lora_claims.harness.plotting import new_figure, save_figure
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.models import resolve_model
from lora_claims.methods.ntk.real_features import task_features
from lora_claims.methods.ntk.regime import LoraRun, regime_run
from lora_claims.methods.stats import wilson_interval

REGIME_RUNS = CacheKind("ntk-regime", 1)  # bump the schema when regime_run's procedure changes
MODEL = "minilm"
RULE_TOLERANCES = ("agreement_min", "ntk_change_max", "fit_accuracy_min", "fit_loss_drop_min")
DECISION_FIELDS = ("task", "rank", "agreement", "agreement_ci95", "ntk_relative_change", "real_train_accuracy",
                   "real_loss_drop")  # what the rule reads of each (task, rank) cell

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
    rule=(
        "A (task, rank) cell counts only if real training fits: mean train accuracy >= fit_accuracy_min "
        "and mean training-loss drop >= fit_loss_drop_min; inconclusive if no cell counts. Supported if "
        "every counted cell has agreement >= agreement_min and eNTK change <= ntk_change_max; otherwise "
        "not supported if a counted cell's agreement Wilson upper bound is below agreement_min; "
        "otherwise supported with caveats."
    ),
    version="1.0",
    evaluation="Jacobian features of MiniLM on real k-shot tasks (lora_claims.methods.ntk.regime).",
    tolerances={
        "agreement_min": 0.9, "ntk_change_max": 0.1, "fit_accuracy_min": 0.9, "fit_loss_drop_min": 0.1,
        "ranks": (1, 12), "lr": 3e-3, "optimizer": "adam",
    },
    sizes={
        "smoke": {"tasks": ["SST-2"], "seeds": [42], "steps": 6, "test_cap": 32},
        "ci": {"tasks": ["SST-2", "MRPC"], "seeds": [42], "steps": 40, "test_cap": 200},
        "thorough": {"tasks": ["SST-2", "QNLI", "RTE", "MRPC"], "seeds": [13, 21, 42, 87, 100],
                     "steps": 100, "test_cap": 1000},
    },
    needs=Needs(device="cpu", data=("SST-2", "MRPC", "QNLI", "RTE"), models=(MODEL,)),
)


def _records(ctx, sizes: dict, tol: dict) -> list[dict]:
    """One record per (task, seed, rank): the measurements of ``regime_run``, cached by config."""
    records = []
    for task in sizes["tasks"]:
        for seed in sizes["seeds"]:
            loaded = None
            weights = resolve_model(MODEL, ctx.model_paths).fingerprint()
            for rank in tol["ranks"]:
                run = LoraRun(rank=rank, steps=sizes["steps"], lr=tol["lr"], optimizer=tol["optimizer"],
                              init_seed=seed)
                config = {"model": MODEL, "weights": weights, "task": task, "seed": seed,
                          "test_cap": sizes["test_cap"], "run": run.to_json()}

                def compute(run=run, task=task, seed=seed):
                    nonlocal loaded
                    if loaded is None:
                        loaded = task_features(task, seed, data_dir=ctx.data_dir, model_paths=ctx.model_paths,
                                               cache_root=ctx.cache.root, model_name=MODEL,
                                               test_cap=sizes["test_cap"])
                    result = regime_run(loaded.model, loaded.features, loaded.train, loaded.test, run)
                    return {**result, "extraction_seconds": loaded.features.seconds,
                            "features": loaded.config, "test_note": loaded.test_note,
                            "test_size": int(loaded.test.labels.shape[0])}

                record = ctx.cache.get_or_compute(REGIME_RUNS, config, compute)
                records.append({"task": task, "seed": seed, "rank": rank, **record})
    return records


def _cells(records: list[dict]) -> list[dict]:
    """Per (task, rank): agreement pooled over seeds with a Wilson interval, and mean changes."""
    grouped = defaultdict(list)
    for record in records:
        grouped[(record["task"], record["rank"])].append(record)
    cells = []
    for (task, rank), group in grouped.items():
        agree = sum(round(r["linearized_vs_real"]["agreement"] * r["test_size"]) for r in group)
        total = sum(r["test_size"] for r in group)
        low, high = wilson_interval(agree, total, 0.95)
        cells.append({
            "task": task, "rank": rank, "seeds": [r["seed"] for r in group],
            "agreement": agree / total, "agreement_ci95": [low, high],
            "taylor_agreement": statistics.fmean(r["taylor_vs_real"]["agreement"] for r in group),
            "logit_distance": statistics.fmean(r["linearized_vs_real"]["logit_distance"] for r in group),
            "taylor_logit_distance": statistics.fmean(r["taylor_vs_real"]["logit_distance"] for r in group),
            "ntk_relative_change": statistics.fmean(r["ntk_relative_change"] for r in group),
            "delta_relative_norm": statistics.fmean(r["real"]["delta_relative_norm"] for r in group),
            "real_train_loss": statistics.fmean(r["real"]["train_loss"] for r in group),
            "real_loss_drop": statistics.fmean(
                1 - r["real"]["train_loss"] / r["kernel_trajectory"][0]["train_loss"] for r in group),
            "real_train_accuracy": statistics.fmean(r["real"]["train_accuracy"] for r in group),
            "real_test_accuracy": statistics.fmean(r["real"]["test_accuracy"] for r in group),
            "linearized_test_accuracy": statistics.fmean(r["linearized"]["test_accuracy"] for r in group),
            "base_test_accuracy": statistics.fmean(r["base_test_accuracy"] for r in group),
        })
    return cells


def _flags(cell: dict, tol: dict) -> dict[str, bool]:
    """The rule's per-cell clauses: agreement kept, kernel constant, real training fitted."""
    return {
        "agrees": cell["agreement"] >= tol["agreement_min"],
        "kernel_stays": cell["ntk_relative_change"] <= tol["ntk_change_max"],
        "fits": cell["real_train_accuracy"] >= tol["fit_accuracy_min"]
        and cell["real_loss_drop"] >= tol["fit_loss_drop_min"],
    }


@on_one_torch_thread
def evaluate(spec: ClaimSpec, ctx) -> Outcome:
    tol = spec.tolerances
    sizes = spec.sizes_for(ctx.profile)
    records = _records(ctx, sizes, tol)
    cells = [{**cell, **_flags(cell, tol)} for cell in _cells(records)]
    evidence = {
        "protocol": {**sizes, "model": MODEL, "ranks": tol["ranks"], "lr": tol["lr"],
                     "optimizer": tol["optimizer"], "adapted": "last layer query and value",
                     "head": "fresh seeded K-logit head, frozen", "dropout": "off (eval mode)"},
        "verdict_rule": {name: tol[name] for name in RULE_TOLERANCES},
        "cells": cells,
        "costs": _costs(records),
        "runs": [{k: v for k, v in r.items() if k not in ("real", "linearized")} |
                 {"real": _without_losses(r["real"]), "linearized": _without_losses(r["linearized"])}
                 for r in records],
    }
    decision = {"cells": [{name: cell[name] for name in DECISION_FIELDS} for cell in cells]}
    return Outcome(decision, evidence, [_figure(ctx, records, cells, tol)])


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    tol = spec.tolerances
    cells = [{**cell, **_flags(cell, tol)} for cell in outcome.decision["cells"]]
    counted = [c for c in cells if c["fits"]]
    unfit = ", ".join(f"{c['task']} r={c['rank']}" for c in cells if not c["fits"])
    caveat = (f" Not counted (real training below {tol['fit_accuracy_min']:.0%} train accuracy or "
              f"a training-loss drop below {tol['fit_loss_drop_min']:.0%}): {unfit}." if unfit else "")
    if not counted:
        verdict = Verdict.INCONCLUSIVE
        summary = ("Real fine-tuning fitted the training set in no cell: a model that barely moved says "
                   "nothing about the regime." + caveat)
    elif all(c["agrees"] and c["kernel_stays"] for c in counted):
        verdict = Verdict.SUPPORTED
        summary = ("Real LoRA fine-tuning of MiniLM stays in the NTK regime: the linearized model "
                   "reproduces the real predictions and the empirical NTK barely moves." + caveat)
    elif any(c["agreement_ci95"][1] < tol["agreement_min"] for c in counted):
        verdict = Verdict.NOT_SUPPORTED
        off = ", ".join(f"{c['task']} r={c['rank']}" for c in counted
                        if c["agreement_ci95"][1] < tol["agreement_min"])
        moved = max(c["ntk_relative_change"] for c in counted)
        summary = (f"Real LoRA fine-tuning leaves the NTK regime in {off}: the linearized model's test "
                   f"predictions agree with the real model's on clearly fewer than "
                   f"{tol['agreement_min']:.0%}, and the empirical NTK moves by up to {moved:.0%}."
                   + caveat)
    else:
        verdict = Verdict.SUPPORTED_WITH_CAVEATS
        moved = ", ".join(f"{c['task']} r={c['rank']} ({c['ntk_relative_change']:.0%})" for c in counted
                          if not c["kernel_stays"])
        summary = ("The linearized model predicts about what the real one predicts (agreement not "
                   f"significantly below {tol['agreement_min']:.0%}), but the empirical NTK moves by more "
                   f"than {tol['ntk_change_max']:.0%} in {moved}: the kernel is not constant." + caveat)
    worst = min(cells, key=lambda c: c["agreement"])
    moving = max(cells, key=lambda c: c["ntk_relative_change"])
    key = (f"min agreement {worst['agreement']:.3f} ({worst['task']} r={worst['rank']}); "
           f"max eNTK change {moving['ntk_relative_change']:.3f} ({moving['task']} r={moving['rank']})")
    return Decision(verdict, summary, key)


def _costs(records: list[dict]) -> dict:
    """Median cost of feature extraction and of one linearized run, relative to one real run."""
    real = [r["real"]["train_seconds"] + r["real"]["test_seconds"] for r in records]
    linear = [r["linearized"]["train_seconds"] + r["linearized"]["test_seconds"] for r in records]
    extraction = [r["extraction_seconds"] for r in records]
    return {
        "real_run_seconds": statistics.median(real),
        "linearized_run_seconds": statistics.median(linear),
        "extraction_seconds": statistics.median(extraction),
        "linearized_over_real": statistics.median(lin / rl for lin, rl in zip(linear, real, strict=True)),
        "extraction_over_real": statistics.median(ex / rl for ex, rl in zip(extraction, real, strict=True)),
        "note": "wall time in one process; real = full-batch training + test forward pass, "
                "linearized = training on the cached features + test predictions by jvp",
    }


def _figure(ctx, records: list[dict], cells: list[dict], tol: dict) -> str:
    fig, (ax_agree, ax_ntk, ax_traj) = new_figure(3)
    labels = [f"{c['task']}\nr={c['rank']}" for c in cells]
    positions = range(len(cells))
    ax_agree.errorbar(positions, [c["agreement"] for c in cells],
                      yerr=[[c["agreement"] - c["agreement_ci95"][0] for c in cells],
                            [c["agreement_ci95"][1] - c["agreement"] for c in cells]],
                      fmt="o", capsize=3, label="linearized vs real (95% CI)")
    ax_agree.plot(positions, [c["taylor_agreement"] for c in cells], "s", mfc="none",
                  label="Taylor at real end")
    ax_agree.axhline(tol["agreement_min"], color="grey", ls="--", lw=1, label="threshold")
    ax_agree.set(xticks=list(positions), ylabel="test prediction agreement", ylim=(0, 1.02))
    ax_agree.set_xticklabels(labels, fontsize=8)
    ax_agree.legend(fontsize=7)
    ax_ntk.bar(positions, [c["ntk_relative_change"] for c in cells], color="tab:orange")
    ax_ntk.axhline(tol["ntk_change_max"], color="grey", ls="--", lw=1)
    ax_ntk.set(xticks=list(positions), ylabel="relative eNTK change (train)")
    ax_ntk.set_xticklabels(labels, fontsize=8)
    for record in records:
        points = record["kernel_trajectory"]
        ax_traj.plot([p["train_loss"] for p in points], [p["ntk_relative_change"] for p in points], "o-",
                     ms=3, label=f"{record['task']} s{record['seed']} r={record['rank']}")
    ax_traj.axhline(tol["ntk_change_max"], color="grey", ls="--", lw=1)
    ax_traj.invert_xaxis()
    ax_traj.set(xlabel="real training loss (right = later)", ylabel="relative eNTK change")
    ax_traj.legend(fontsize=6)
    name = "c11_ntk_regime.png"
    save_figure(fig, ctx.figure_path(name))
    return name


def _without_losses(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "losses"}
