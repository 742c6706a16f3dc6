"""C8, C9, C10: real few-shot LoRA fine-tuning, rank 1 against rank 12, and the MNLI rank sweep.

What runs depends on the profile and the device, and every result says which scale it is:
- ``paper`` (profile thorough on CUDA): roberta-base, bert-base-uncased and ELECTRA-base (C8),
  roberta-large (C9), five LM-BFF seeds, 1000 steps, test sets capped at 1000 rows;
- ``cpu-reduced`` (profile ci, the default and CI): the packaged MiniLM encoder (MPNet too under
  profile thorough), three seeds, few steps, short sequences, small test caps;
- ``smoke`` (profile smoke; ``pytest -m gpu --device cpu``): the paper's encoders at a few steps,
  MiniLM substituted for any encoder not available offline, plumbing only.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from lora_claims.harness.registry import ClaimResult, Verdict, get_claim
from lora_claims.harness.context import AuditContext
from lora_claims.errors import MissingModel, NeedsGPU
from lora_claims.methods.finetune.runs import RunConfig, RunInputs, run_sweep
from lora_claims.methods.data.kshot import LM_BFF_SEEDS, resolve_data_dir
from lora_claims.methods.finetune.models import resolve_model
from lora_claims.methods.stats import best_rank_test, chance_level, paired_non_inferiority

PAPER_ENCODERS = ("roberta-base", "bert-base-uncased", "google/electra-base-discriminator")
LARGE_ENCODER = "roberta-large"
SUBSTITUTE = "minilm"
CLAIMED_TASKS = ("SST-2", "QNLI", "MRPC", "RTE")
EXTRA_TASKS = ("CoLA",)  # reported beside the claim, not part of its verdict
MNLI_TASK = "MNLI"
CONTAMINATED = {"minilm": ("MNLI", "QNLI", "QQP"), "mpnet": ("MNLI", "QNLI", "QQP")}


@dataclass(frozen=True)
class Scale:
    """Training budget and evaluation size; recorded with every verdict."""

    name: str
    seeds: tuple[int, ...]
    steps: int
    eval_every: int
    batch_size: int
    learning_rate: float
    max_length: int
    test_cap: int

    def label(self, encoders) -> str:
        return (f"{self.name} scale ({', '.join(encoders)}; {len(self.seeds)} seeds, "
                f"{self.steps} steps, batch {self.batch_size}, lr {self.learning_rate:g}, "
                f"max length {self.max_length}, test cap {self.test_cap})")


# LM-BFF trains 1000 steps with batch size 2-8, max length 128, evaluating every 100 steps; its
# learning rates (1e-5..5e-5) are for full fine-tuning, and LoRA usually takes ~10x more. One
# fixed setting for every rank keeps the rank comparison fair (no per-rank tuning).
SCALES = {
    "paper": Scale("paper", LM_BFF_SEEDS, 1000, 100, 8, 5e-4, 128, 1000),
    # Sized to fit CI's budget on 2 CPU cores (README: measured cost).
    "cpu-reduced": Scale("cpu-reduced", (13, 21, 42), 30, 10, 8, 5e-3, 64, 200),
    "smoke": Scale("smoke", (13, 21), 2, 1, 4, 5e-3, 32, 16),
}


@dataclass(frozen=True)
class Plan:
    encoders: tuple[str, ...]
    tasks: tuple[str, ...]
    ranks: tuple[int, ...]
    scale: Scale
    substitute_missing: bool  # smoke on CPU: MiniLM stands in for encoders not available offline


def scale_for(ctx: AuditContext) -> Scale:
    if ctx.profile == "smoke":
        return SCALES["smoke"]
    if ctx.profile == "thorough" and ctx.device.startswith("cuda"):
        return SCALES["paper"]
    return SCALES["cpu-reduced"]


def plan_for(claim_id: str, ctx: AuditContext) -> Plan:
    scale = scale_for(ctx)
    paper_models = scale.name in ("paper", "smoke")
    smoke_on_cpu = scale.name == "smoke" and not ctx.device.startswith("cuda")
    packaged = ("minilm", "mpnet") if ctx.profile == "thorough" else ("minilm",)
    if claim_id == "C9":
        if not ctx.device.startswith("cuda") and scale.name != "smoke":
            raise NeedsGPU(
                "C9 is GPU-only: roberta-large at the LM-BFF scale needs a CUDA device; run "
                "`pytest -m gpu` (or `lora-claims audit --device cuda --profile thorough`)"
            )
        return Plan((LARGE_ENCODER,), CLAIMED_TASKS + EXTRA_TASKS, (1, 12), scale,
                    smoke_on_cpu)
    if claim_id == "C8":
        encoders = PAPER_ENCODERS if paper_models else packaged
        return Plan(encoders, CLAIMED_TASKS + EXTRA_TASKS, (1, 12), scale, smoke_on_cpu)
    ranks = tuple(get_claim("C10").tolerances["ranks"])
    encoders = PAPER_ENCODERS[:1] if paper_models else packaged
    return Plan(encoders, (MNLI_TASK,), ranks, scale, smoke_on_cpu)


def resolve_encoders(plan: Plan, ctx: AuditContext) -> tuple[dict[str, str], list[str]]:
    """Map each planned encoder to the model that runs it; notes record substitutions."""
    chosen, notes, missing = {}, [], []
    for name in plan.encoders:
        try:
            resolve_model(name, ctx.model_paths, ctx.cache.root)
            chosen[name] = name
        except MissingModel as reason:
            if plan.substitute_missing:
                chosen[name] = SUBSTITUTE
                notes.append(f"{name} not available offline: {SUBSTITUTE} substituted (smoke run)")
            else:
                missing.append(str(reason))
    if missing:
        raise MissingModel("; ".join(missing))
    return chosen, notes


def run_plan(plan: Plan, ctx: AuditContext) -> tuple[dict, list[str]]:
    """Run (or replay from the cache) every config of the plan; records keyed by
    (encoder, task, rank, seed)."""
    resolve_data_dir(ctx.data_dir)
    chosen, notes = resolve_encoders(plan, ctx)
    s = plan.scale
    keys, configs = [], []
    for encoder in plan.encoders:
        for task in plan.tasks:
            for rank in plan.ranks:
                for seed in s.seeds:
                    keys.append((encoder, task, rank, seed))
                    configs.append(RunConfig(
                        model=chosen[encoder], task=task, seed=seed, rank=rank,
                        learning_rate=s.learning_rate, steps=s.steps, eval_every=s.eval_every,
                        batch_size=s.batch_size, max_length=s.max_length, test_cap=s.test_cap,
                        device=ctx.device,
                    ))
    records = run_sweep(configs, RunInputs(ctx.data_dir, ctx.model_paths, ctx.cache))
    return dict(zip(keys, records, strict=True)), notes


def _chance(records: list[dict]):
    """The most demanding chance level among the runs' test sets (they differ per seed only
    where the test set is built from the other seeds' rows)."""
    return max((chance_level(r["test_label_counts"]) for r in records), key=lambda c: c.high)


def _accuracies(records: dict, encoder: str, task: str, rank: int, seeds) -> list[float]:
    return [records[(encoder, task, rank, seed)]["test_accuracy"] for seed in seeds]


def compare_rank_pair(plan: Plan, records: dict, delta: float, alpha: float) -> list[dict]:
    """One row per (encoder, task): acc(r=1) - acc(r=12), paired by seed, against -delta."""
    low_rank, high_rank = plan.ranks
    rows = []
    for encoder in plan.encoders:
        for task in plan.tasks:
            low = _accuracies(records, encoder, task, low_rank, plan.scale.seeds)
            high = _accuracies(records, encoder, task, high_rank, plan.scale.seeds)
            runs = [records[(encoder, task, r, s)] for r in plan.ranks for s in plan.scale.seeds]
            chance = _chance(runs)
            above = {low_rank: chance.above(float(np.mean(low))),
                     high_rank: chance.above(float(np.mean(high)))}
            test = paired_non_inferiority(low, high, delta, 1.0 - alpha)
            decision = test.decision if any(above.values()) else "at_chance"
            rows.append({
                "encoder": encoder, "task": task, "claimed_task": task in CLAIMED_TASKS,
                "model_run": runs[0]["model"],
                "accuracy": {str(low_rank): low, str(high_rank): high},
                "mean": {str(low_rank): float(np.mean(low)), str(high_rank): float(np.mean(high))},
                "std": {str(low_rank): float(np.std(low, ddof=1)),
                        str(high_rank): float(np.std(high, ddof=1))},
                "above_chance": {str(r): v for r, v in above.items()},
                "chance": chance.to_json(), "non_inferiority": test.to_json(),
                "decision": decision, "test_note": runs[0]["test_note"],
                "lora_params": {str(r): records[(encoder, task, r, plan.scale.seeds[0])]
                                ["lora_params"] for r in plan.ranks},
                "head_params": runs[0]["head_params"],
            })
    return rows


def markdown_table(rows: list[dict], ranks) -> str:
    low, high = (str(r) for r in ranks)
    lines = [f"| task | encoder | r={low} mean (std) | r={high} mean (std) | "
             "diff [t 95%] | [bootstrap 95%] | chance | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        t, b = row["non_inferiority"]["t"], row["non_inferiority"]["bootstrap"]
        lines.append(
            f"| {row['task']} | {row['encoder']} | {row['mean'][low]:.3f} ({row['std'][low]:.3f}) "
            f"| {row['mean'][high]:.3f} ({row['std'][high]:.3f}) | {t['mean']:+.3f} "
            f"[{t['low']:+.3f}, {t['high']:+.3f}] | [{b['low']:+.3f}, {b['high']:+.3f}] "
            f"| {row['chance']['majority']:.3f} | {row['decision']} |"
        )
    return "\n".join(lines)


def rank_figure(ctx: AuditContext, name: str, series: dict, chance: dict, title: str) -> str:
    """Test accuracy against rank (mean and std over seeds, seeds as dots), one panel per task."""
    from lora_claims.harness.plotting import new_figure, save_figure

    tasks = list(series)
    fig, axes = new_figure(ncols=len(tasks), width=3.4, height=3.2)
    for ax, task in zip(axes, tasks, strict=True):
        for encoder, by_rank in series[task].items():
            ranks = sorted(by_rank)
            means = [np.mean(by_rank[r]) for r in ranks]
            stds = [np.std(by_rank[r], ddof=1) for r in ranks]
            line = ax.errorbar(ranks, means, yerr=stds, marker="o", capsize=3, label=encoder)
            for r in ranks:
                ax.scatter([r] * len(by_rank[r]), by_rank[r], s=8, alpha=0.4,
                           color=line[0].get_color())
        ax.axhline(chance[task], color="grey", linestyle="--", linewidth=1, label="majority class")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({r for e in series[task].values() for r in e}))
        ax.get_xaxis().set_major_formatter("{x:g}")
        ax.set_title(task)
        ax.set_xlabel("LoRA rank")
    axes[0].set_ylabel("test accuracy")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    save_figure(fig, ctx.figure_path(name))
    return name


def _series(plan: Plan, records: dict) -> tuple[dict, dict]:
    series: dict = defaultdict(dict)
    chance = {}
    for task in plan.tasks:
        for encoder in plan.encoders:
            series[task][encoder] = {
                r: _accuracies(records, encoder, task, r, plan.scale.seeds) for r in plan.ranks
            }
        chance[task] = _chance([v for k, v in records.items() if k[1] == task]).majority
    return dict(series), chance


def pair_verdict(plan: Plan, rows: list[dict], notes: list[str]) -> tuple[Verdict, str]:
    claimed = [row for row in rows if row["claimed_task"]]
    counts = defaultdict(int)
    for row in claimed:
        counts[row["decision"]] += 1
    caveats = list(notes)
    if plan.scale.name != "paper":
        caveats.append(f"{plan.scale.name} scale, not the paper's setup")
    if any(row["non_inferiority"]["decision"] != row["non_inferiority"]["bootstrap_decision"]
           for row in claimed):
        caveats.append("the bootstrap interval disagrees with the t interval on some comparison")
    if counts["inferior"]:
        verdict = Verdict.NOT_SUPPORTED
    elif counts["non_inferior"] == len(claimed):
        verdict = Verdict.SUPPORTED_WITH_CAVEATS if caveats else Verdict.SUPPORTED
    else:
        verdict = Verdict.INCONCLUSIVE
    tally = ", ".join(f"{n} {d}" for d, n in sorted(counts.items()))
    return verdict, f"{len(claimed)} claimed comparisons: {tally}" + (
        f"; caveats: {'; '.join(caveats)}" if caveats else "")


def evaluate_rank_pair(claim_id: str, ctx: AuditContext) -> ClaimResult:
    spec = get_claim(claim_id)
    plan = plan_for(claim_id, ctx)
    delta, alpha = spec.tolerances["delta"], spec.tolerances["alpha"]
    records, notes = run_plan(plan, ctx)
    rows = compare_rank_pair(plan, records, delta, alpha)
    verdict, tally = pair_verdict(plan, rows, notes)
    series, chance = _series(plan, records)
    label = plan.scale.label(plan.encoders)
    figure = rank_figure(ctx, f"{claim_id.lower()}_accuracy_vs_rank.png", series, chance,
                         f"{claim_id}: {label}")
    extra = [r for r in rows if not r["claimed_task"]]
    extra_text = "; ".join(f"{r['task']} ({r['encoder']}): {r['decision']}" for r in extra)
    claimed = [r for r in rows if r["claimed_task"]]
    informative = [r for r in claimed if r["decision"] != "at_chance"] or claimed
    worst = min(informative, key=lambda r: r["non_inferiority"]["t"]["high"])
    t = worst["non_inferiority"]["t"]
    key_figure = (f"acc(r=1)-acc(r=12) = {t['mean']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}] "
                  f"({worst['task']}, {worst['encoder']}, {worst['decision']}) vs -delta = "
                  f"{-delta:+.3f}")
    summary = (f"{label}: rank 1 vs rank 12, paired by seed, non-inferiority margin "
               f"{delta:g} declared in the registry; {tally}."
               + (f" Extra task {extra_text}." if extra else ""))
    return ClaimResult(
        id=spec.id, version=spec.version, verdict=verdict, summary=summary, key_figure=key_figure,
        evidence={
            "scale": asdict(plan.scale), "encoders": list(plan.encoders), "notes": notes,
            "hyperparameters": _hyperparameters(plan), "table": markdown_table(rows, plan.ranks),
            "comparisons": rows, "contamination": _contamination(records),
            "runs": _run_summaries(records),
        },
        figures=[figure],
    )


def evaluate_c8(ctx: AuditContext) -> ClaimResult:
    return evaluate_rank_pair("C8", ctx)


def evaluate_c9(ctx: AuditContext) -> ClaimResult:
    return evaluate_rank_pair("C9", ctx)


def evaluate_c10(ctx: AuditContext) -> ClaimResult:
    spec = get_claim("C10")
    plan = plan_for("C10", ctx)
    alpha = spec.tolerances["alpha"]
    records, notes = run_plan(plan, ctx)
    label = plan.scale.label(plan.encoders)
    per_encoder, decisions = {}, []
    for encoder in plan.encoders:
        by_rank = {r: _accuracies(records, encoder, MNLI_TASK, r, plan.scale.seeds)
                   for r in plan.ranks}
        runs = [records[(encoder, MNLI_TASK, r, s)] for r in plan.ranks for s in plan.scale.seeds]
        chance = _chance(runs)
        decision, test = sweep_decision(by_rank, chance, alpha)
        decisions.append(decision)
        per_encoder[encoder] = {
            "best_rank": test.to_json(), "chance": chance.to_json(), "decision": decision,
            "accuracy": {str(r): v for r, v in by_rank.items()}, "test_note": runs[0]["test_note"],
        }
    caveats = list(notes)
    if plan.scale.name != "paper":
        caveats.append(f"{plan.scale.name} scale, not the paper's setup")
    models_run = {rec["model"] for rec in records.values()}
    contaminated = [m for m in sorted(models_run) if MNLI_TASK in CONTAMINATED.get(m, ())]
    if contaminated:
        caveats.append(f"{', '.join(contaminated)} saw MNLI in pre-training (sentence-transformers "
                       "AllNLI): absolute accuracy is inflated; the rank comparison stays paired")
    verdict = sweep_verdict(decisions, caveats)
    first = per_encoder[plan.encoders[0]]["best_rank"]
    key_figure = (f"best rank {first['best']} ({plan.encoders[0]}); "
                  f"acc(r={first['comparator']})-acc(r=1) = "
                  f"{first['t']['mean']:+.3f} [{first['t']['low']:+.3f}, {first['t']['high']:+.3f}]"
                  f" ({first['t']['confidence']:.1%} Bonferroni t)")
    means = "; ".join(
        f"{e}: " + ", ".join(f"r={r} {m:.3f}" for r, m in v["best_rank"]["means"].items())
        + f" -> {v['decision']}" for e, v in per_encoder.items())
    summary = (f"{label}: MNLI test accuracy by rank (mean over seeds) {means}. "
               f"{per_encoder[plan.encoders[0]]['test_note']}."
               + (f" Caveats: {'; '.join(caveats)}." if caveats else ""))
    series, chance = _series(plan, records)
    figure = rank_figure(ctx, "c10_mnli_accuracy_vs_rank.png", series, chance, f"C10: {label}")
    return ClaimResult(
        id=spec.id, version=spec.version, verdict=verdict, summary=summary, key_figure=key_figure,
        evidence={"scale": asdict(plan.scale), "encoders": list(plan.encoders), "notes": notes,
                  "hyperparameters": _hyperparameters(plan), "per_encoder": per_encoder,
                  "contamination": _contamination(records), "runs": _run_summaries(records)},
        figures=[figure],
    )


def sweep_decision(by_rank: dict[int, list[float]], chance, alpha: float):
    """The best-rank test of one encoder's sweep; ``at_chance`` when no rank beats chance."""
    test = best_rank_test(by_rank, baseline=1, alpha=alpha)
    if not any(chance.above(mean) for mean in test.means.values()):
        return "at_chance", test
    return test.decision, test


def sweep_verdict(decisions: list[str], caveats: list[str]) -> Verdict:
    """Supported when every encoder's best rank is significantly above rank 1; not supported when
    rank 1 is best everywhere; inconclusive otherwise."""
    if set(decisions) == {"above_baseline"}:
        return Verdict.SUPPORTED_WITH_CAVEATS if caveats else Verdict.SUPPORTED
    if set(decisions) == {"baseline_best"}:
        return Verdict.NOT_SUPPORTED
    return Verdict.INCONCLUSIVE


def _hyperparameters(plan: Plan) -> dict:
    s = plan.scale
    return {"optimizer": "AdamW, linear decay to 0, no warmup, weight decay 0",
            "lora": "alpha = 2r (scale 2 at every rank), dropout 0, query and value of every layer",
            "head": "trained (peft modules_to_save), counted separately",
            "selection": f"best k-shot dev accuracy, evaluated every {s.eval_every} steps",
            "k": 16, "ranks": list(plan.ranks), "steps": s.steps, "batch_size": s.batch_size,
            "learning_rate": s.learning_rate, "max_length": s.max_length, "test_cap": s.test_cap,
            "seeds": list(s.seeds)}


def _contamination(records: dict) -> dict:
    """Tasks that the models actually run saw in pre-training (their own training lists)."""
    tasks = {key[1] for key in records}
    models_run = sorted({rec["model"] for rec in records.values()})
    return {m: [t for t in CONTAMINATED[m] if t in tasks] for m in models_run if m in CONTAMINATED}


def _run_summaries(records: dict) -> list[dict]:
    return [{"encoder": e, "task": t, "rank": r, "seed": s, "model_run": rec["model"],
             "test": rec["test_accuracy"], "dev": rec["dev_accuracy"],
             "train": rec["train_accuracy"], "best_step": rec["best_step"],
             "lora_params": rec["lora_params"], "head_params": rec["head_params"],
             "seconds": rec["wall_seconds"], "config_hash": rec["config_hash"]}
            for (e, t, r, s), rec in records.items()]
