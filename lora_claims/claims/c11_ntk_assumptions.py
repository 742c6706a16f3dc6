"""C11: the binary guarantees rest on standard NTK assumptions: an assumption measured.

Real few-shot LoRA fine-tuning in C8-cpu's configuration is run beside its linearization around
the same initial point (lora_claims.methods.ntk.regime), with C8-cpu's AdamW and with plain SGD
(Jang et al.'s and the theory's optimizer), on several LM-BFF data seeds; the features at the
initial point are computed once per (task, seed) and shared by ranks and optimizers.
"""

from __future__ import annotations

import statistics

import numpy as np
from scipy import stats

from lora_claims.harness.cache import CacheKind
from lora_claims.harness.environment import on_one_torch_thread
from lora_claims.harness.plotting import new_figure, save_figure
from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.finetune.models import resolve_model
from lora_claims.methods.ntk.real_features import run_task
from lora_claims.methods.ntk.regime import LoraRun, regime_run
from lora_claims.methods.per_example import two_level_means

REGIME_RUNS = CacheKind("ntk-regime", 3)  # bump the schema when regime_run's procedure changes
MODEL = "minilm"
# C8-cpu's configuration (lora_claims.claims.c08_cpu_minilm.CPU_SCALE), copied; a test keeps them equal.
C8_CPU = {"ranks": [1, 12], "steps": 500, "batch_size": 8, "max_length": 128, "placement": "last-layer",
          "head": "linear-cls"}

SPEC = ClaimSpec(
    id="C11",
    title="The binary guarantees rest on standard NTK assumptions",
    statement=(
        "An assumption to measure, not a claim to verify: the guarantees assume fine-tuning stays in "
        "the NTK regime; measured is how far real few-shot LoRA fine-tuning is from its linearization."
    ),
    formalization=(
        "C8-cpu's configuration: all-MiniLM-L6-v2, LoRA on the last layer's query and value (alpha = "
        "2r, A kaiming-uniform, B = 0, the fine-tuning engine's draws for the data seed), a linear "
        "head on the first token trained with the adapters, 500 steps of batch 8 on the 16-shot "
        "train split of LM-BFF data seeds, cross-entropy, end point (no dev checkpoint). Two "
        "optimizers at declared learning rates: AdamW with linear decay (C8-cpu's; one rate of its "
        "grid, not chosen on dev) and plain SGD at a constant rate (Jang et al.'s). The same "
        "initialization, minibatch order and optimizer train the linearization around the initial "
        "point, jointly in the adapted matrices and the head (f0 + sum_W <G_W, Delta_W>, head weight "
        "and bias as matrices). Per (task, optimizer, rank) over seeds: agreement of the two models' "
        "test predictions (two-level bootstrap over seeds and test rows) and the relative Frobenius "
        "change of the empirical NTK of the trained parameters on the train examples from start to "
        "end of real training (t interval over seeds); the adapted-matrix block of the kernel is "
        "reported beside it."
    ),
    rule=(
        "X: agreement >= agreement_min and eNTK change <= ntk_change_max. A (task, optimizer, rank) "
        "cell counts only if real training fits (mean train accuracy >= fit_accuracy_min). A counted "
        "cell holds within X when its agreement interval lies at or above agreement_min and its eNTK "
        "change interval at or below ntk_change_max; it does not hold beyond X when its agreement "
        "interval lies below agreement_min or its eNTK change interval above ntk_change_max. "
        "Not supported (the assumption does not hold beyond X) if any counted cell does not hold; "
        "supported (holds within X) if every counted cell holds; otherwise, or with no counted "
        "cell, inconclusive."
    ),
    version="2.0",
    reading=(
        "C8-cpu's configuration (MiniLM, last-layer LoRA, linear first-token head, 500 steps), real "
        "runs against their linearization, AdamW and SGD, ranks 1 and 12, three seeds"
    ),
    evaluation="Real and linearized LoRA runs on MiniLM's real features (lora_claims.methods.ntk.regime).",
    tolerances={
        "agreement_min": 0.9, "ntk_change_max": 0.1, "fit_accuracy_min": 0.9, "confidence": 0.95,
        "learning_rates": {"adamw": 3e-3, "sgd": 0.1}, **C8_CPU,
    },
    sizes={
        "smoke": {"tasks": ["SST-2"], "seeds": [13, 21], "steps": 4, "test_cap": 32},
        "ci": {"tasks": ["SST-2"], "seeds": [13, 21, 42], "test_cap": 200},
        "thorough": {"tasks": ["SST-2", "MRPC", "RTE", "QNLI"], "seeds": [13, 21, 42, 87, 100],
                     "test_cap": 1000},
    },
    needs=Needs(device="cpu", data=("SST-2", "MRPC", "RTE", "QNLI"), models=(MODEL,)),
)
DECISION_FIELDS = ("task", "optimizer", "rank", "seeds", "agreement", "agreement_ci", "ntk_change",
                   "ntk_change_ci", "train_accuracy")


def _records(ctx, sizes: dict, tol: dict) -> list[dict]:
    """One record per (task, seed, optimizer, rank), cached by its configuration."""
    steps = sizes.get("steps", tol["steps"])
    weights = resolve_model(MODEL, ctx.model_paths).fingerprint()
    records = []
    for task in sizes["tasks"]:
        for seed in sizes["seeds"]:
            loaded = None
            for optimizer, lr in sorted(tol["learning_rates"].items()):
                for rank in tol["ranks"]:
                    run = LoraRun(rank=rank, steps=steps, lr=lr, optimizer=optimizer,
                                  batch_size=tol["batch_size"], seed=seed)
                    config = {"model": MODEL, "weights": weights, "task": task, "seed": seed,
                              "test_cap": sizes["test_cap"], "max_length": tol["max_length"],
                              "run": run.to_json()}

                    def compute(run=run, task=task, seed=seed, rank=rank):
                        nonlocal loaded
                        if loaded is None:
                            loaded = run_task(task, seed, data_dir=ctx.data_dir, model_paths=ctx.model_paths,
                                              cache_root=ctx.cache.root, model_name=MODEL,
                                              test_cap=sizes["test_cap"], max_length=tol["max_length"])
                        return regime_run(loaded.last_layer, loaded.features, loaded.train, loaded.test,
                                          loaded.init(rank), run) | {"test_note": loaded.test_note}

                    record = ctx.cache.get_or_compute(REGIME_RUNS, config, compute)
                    records.append({"task": task, "seed": seed, "optimizer": optimizer, "rank": rank,
                                    **record})
    return records


def _t_interval(values: list[float], confidence: float) -> list[float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return [float("-inf"), float("inf")]
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return [mean - half, mean + half]


def _cells(records: list[dict], confidence: float) -> list[dict]:
    """Per (task, optimizer, rank): agreement and eNTK change with intervals over seeds."""
    keys = sorted({(r["task"], r["optimizer"], r["rank"]) for r in records})
    cells = []
    for task, optimizer, rank in keys:
        group = sorted((r for r in records
                        if (r["task"], r["optimizer"], r["rank"]) == (task, optimizer, rank)),
                       key=lambda r: r["seed"])
        same = np.array([r["same_prediction"] for r in group], dtype=float)
        low, high = np.quantile(two_level_means(same), [(1 - confidence) / 2, (1 + confidence) / 2])
        change = [r["ntk_relative_change"] for r in group]
        cells.append({
            "task": task, "optimizer": optimizer, "rank": rank, "seeds": [r["seed"] for r in group],
            "agreement": float(same.mean()), "agreement_ci": [float(low), float(high)],
            "ntk_change": statistics.fmean(change), "ntk_change_ci": _t_interval(change, confidence),
            "adapted_ntk_change": statistics.fmean(r["adapted_ntk_relative_change"] for r in group),
            "logit_distance": statistics.fmean(r["linearized_vs_real"]["logit_distance"] for r in group),
            "train_accuracy": statistics.fmean(r["real"]["train_accuracy"] for r in group),
            "real_test_accuracy": statistics.fmean(r["real"]["test_accuracy"] for r in group),
            "linearized_test_accuracy": statistics.fmean(r["linearized"]["test_accuracy"] for r in group),
        })
    return cells


@on_one_torch_thread
def evaluate(spec: ClaimSpec, ctx) -> Outcome:
    tol = spec.tolerances
    sizes = spec.sizes_for(ctx.profile)
    records = _records(ctx, sizes, tol)
    cells = _cells(records, tol["confidence"])
    evidence = {
        "protocol": {**sizes, "model": MODEL, **{k: tol[k] for k in (*C8_CPU, "learning_rates")},
                     "differs_from_c8_cpu": "learning rate declared per optimizer (C8-cpu chooses it "
                     "on dev); end point, no dev checkpoint; plain SGD beside AdamW; test set capped"},
        "cells": cells,
        "runs": [{k: v for k, v in r.items() if k != "same_prediction"} for r in records],
    }
    decision = {"cells": [{name: cell[name] for name in DECISION_FIELDS} for cell in cells]}
    return Outcome(decision, evidence, [_figure(ctx, cells, tol)])


def _state(cell: dict, tol: dict) -> str:
    """``not counted``, ``holds``, ``does not hold`` or ``undecided``: the rule's per-cell clauses."""
    if cell["train_accuracy"] < tol["fit_accuracy_min"]:
        return "not counted"
    (a_low, a_high), (k_low, k_high) = cell["agreement_ci"], cell["ntk_change_ci"]
    if a_high < tol["agreement_min"] or k_low > tol["ntk_change_max"]:
        return "does not hold"
    if a_low >= tol["agreement_min"] and k_high <= tol["ntk_change_max"]:
        return "holds"
    return "undecided"


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    tol = spec.tolerances
    cells = outcome.decision["cells"]
    states = [_state(cell, tol) for cell in cells]
    x = f"X = (agreement >= {tol['agreement_min']:.0%}, eNTK change <= {tol['ntk_change_max']:.0%})"

    def named(state):
        return ", ".join(f"{c['task']} {c['optimizer']} r={c['rank']}"
                         for c, s in zip(cells, states, strict=False) if s == state)

    detail = "; ".join(
        f"{c['task']} {c['optimizer']} r={c['rank']}: {s} (agreement {c['agreement']:.3f} "
        f"[{c['agreement_ci'][0]:.3f}, {c['agreement_ci'][1]:.3f}], eNTK change {c['ntk_change']:.2f} "
        f"[{c['ntk_change_ci'][0]:.2f}, {c['ntk_change_ci'][1]:.2f}])"
        for c, s in zip(cells, states, strict=False))
    if "does not hold" in states:
        verdict, head = (Verdict.NOT_SUPPORTED,
                         f"Assumption does not hold beyond {x} in {named('does not hold')}.")
    elif states and all(s == "holds" for s in states if s != "not counted") and "holds" in states:
        verdict, head = Verdict.SUPPORTED, f"Assumption holds within {x}."
    elif "holds" not in states and "undecided" not in states:
        verdict, head = Verdict.INCONCLUSIVE, ("Inconclusive: real training fitted the training set in no "
                                               "cell, and a model that barely moved says nothing.")
    else:
        verdict, head = Verdict.INCONCLUSIVE, f"Inconclusive: intervals straddle {x} in {named('undecided')}."
    worst = min(cells, key=lambda c: c["agreement"])
    moving = max(cells, key=lambda c: c["ntk_change"])
    key = (f"min agreement {worst['agreement']:.3f} "
           f"({worst['task']} {worst['optimizer']} r={worst['rank']}); "
           f"max eNTK change {moving['ntk_change']:.2f} ({moving['task']} {moving['optimizer']} "
           f"r={moving['rank']})")
    return Decision(verdict, f"{head} {detail}.", key)


def _figure(ctx, cells: list[dict], tol: dict) -> str:
    fig, (ax_agree, ax_ntk) = new_figure(2)
    labels = [f"{c['task']}\n{c['optimizer']} r={c['rank']}" for c in cells]
    positions = list(range(len(cells)))
    for ax, field, threshold, name in ((ax_agree, "agreement", tol["agreement_min"],
                                        "test prediction agreement"),
                                       (ax_ntk, "ntk_change", tol["ntk_change_max"], "relative eNTK change")):
        values = [c[field] for c in cells]
        interval = [c[f"{field}_ci"] for c in cells]
        ax.errorbar(positions, values, yerr=[[v - i[0] for v, i in zip(values, interval, strict=False)],
                                             [i[1] - v for v, i in zip(values, interval, strict=False)]],
                    fmt="o", capsize=3)
        ax.axhline(threshold, color="grey", ls="--", lw=1)
        ax.set(xticks=positions, ylabel=name)
        ax.set_xticklabels(labels, fontsize=7)
    name = "c11_ntk_regime.png"
    save_figure(fig, ctx.figure_path(name))
    return name
