"""Rank comparisons over a grid of fine-tuning runs: the grid, the paired tests, tables and figures.

A grid is (encoder, task, rank, seed); its records are the run records of ``runs.run_finetune``
(or any record with the same fields, such as the linearized runs). Runs are paired by data seed:
one seed gives both ranks the same k-shot split and the same test rows.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lora_claims.methods.data.kshot import resolve_data_dir
from lora_claims.methods.finetune.models import resolve_encoders
from lora_claims.methods.finetune.runs import RunConfig, RunInputs, run_sweep
from lora_claims.methods.stats import best_rank_test, chance_level, paired_non_inferiority

# Encoders whose pre-training saw these GLUE tasks (their own training lists): sentence-transformers
# AllNLI holds MNLI, and their QNLI/QQP pairs come from the same sources.
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

    @classmethod
    def from_sizes(cls, sizes: dict) -> Scale:
        return cls(**{**sizes, "seeds": tuple(sizes["seeds"])})

    def label(self, encoders) -> str:
        return (f"{self.name} scale ({', '.join(encoders)}; {len(self.seeds)} seeds, "
                f"{self.steps} steps, batch {self.batch_size}, lr {self.learning_rate:g}, "
                f"max length {self.max_length}, test cap {self.test_cap})")


@dataclass(frozen=True)
class Grid:
    encoders: tuple[str, ...]
    tasks: tuple[str, ...]
    ranks: tuple[int, ...]
    scale: Scale


def plan_scale(sizes_by_profile: dict, profile: str, device: str,
               paper_encoders: tuple[str, ...]) -> tuple[Scale, tuple[str, ...], bool]:
    """The scale and encoders a profile and device plan, and whether MiniLM may stand in.

    Paper scale needs CUDA: under profile thorough on a CPU the ci sizes run on both packaged
    encoders; smoke runs the paper's encoders at a few steps, substituting missing ones on CPU.
    """
    on_gpu = device.startswith("cuda")
    scale = Scale.from_sizes(sizes_by_profile["ci" if profile == "thorough" and not on_gpu else profile])
    if scale.name in ("paper", "smoke"):
        encoders = paper_encoders
    else:
        encoders = ("minilm", "mpnet") if profile == "thorough" else ("minilm",)
    return scale, encoders, scale.name == "smoke" and not on_gpu


def run_grid(grid: Grid, models: dict[str, str], inputs: RunInputs, device: str,
             progress: bool = True) -> dict:
    """Run (or replay from the cache) every config of the grid; records keyed by
    (encoder, task, rank, seed). ``models`` maps each encoder to the model that runs it."""
    s = grid.scale
    keys, configs = [], []
    for encoder in grid.encoders:
        for task in grid.tasks:
            for rank in grid.ranks:
                for seed in s.seeds:
                    keys.append((encoder, task, rank, seed))
                    configs.append(RunConfig(
                        model=models[encoder], task=task, seed=seed, rank=rank,
                        learning_rate=s.learning_rate, steps=s.steps, eval_every=s.eval_every,
                        batch_size=s.batch_size, max_length=s.max_length, test_cap=s.test_cap,
                        device=device,
                    ))
    records = run_sweep(configs, inputs, progress=progress)
    return dict(zip(keys, records, strict=True))


def strictest_chance(records: list[dict]):
    """The most demanding chance level among the runs' test sets (they differ per seed only
    where the test set is built from the other seeds' rows)."""
    return max((chance_level(r["test_label_counts"]) for r in records), key=lambda c: c.high)


def accuracies(records: dict, encoder: str, task: str, rank: int, seeds) -> list[float]:
    return [records[(encoder, task, rank, seed)]["test_accuracy"] for seed in seeds]


def compare_rank_pair(grid: Grid, records: dict, delta: float, alpha: float,
                      claimed_tasks: tuple[str, ...]) -> list[dict]:
    """One row per (encoder, task): acc(low rank) - acc(high rank), paired by seed, against -delta."""
    low_rank, high_rank = grid.ranks
    seeds = grid.scale.seeds
    rows = []
    for encoder in grid.encoders:
        for task in grid.tasks:
            low = accuracies(records, encoder, task, low_rank, seeds)
            high = accuracies(records, encoder, task, high_rank, seeds)
            runs = [records[(encoder, task, r, s)] for r in grid.ranks for s in seeds]
            chance = strictest_chance(runs)
            above = {low_rank: chance.above(float(np.mean(low))),
                     high_rank: chance.above(float(np.mean(high)))}
            test = paired_non_inferiority(low, high, delta, 1.0 - alpha)
            decision = test.decision if any(above.values()) else "at_chance"
            rows.append({
                "encoder": encoder, "task": task, "claimed_task": task in claimed_tasks,
                "model_run": runs[0]["model"],
                "accuracy": {str(low_rank): low, str(high_rank): high},
                "mean": {str(low_rank): float(np.mean(low)), str(high_rank): float(np.mean(high))},
                "std": {str(low_rank): float(np.std(low, ddof=1)),
                        str(high_rank): float(np.std(high, ddof=1))},
                "above_chance": {str(r): v for r, v in above.items()},
                "chance": chance.to_json(), "non_inferiority": test.to_json(),
                "decision": decision, "test_note": runs[0]["test_note"],
                "lora_params": {str(r): records[(encoder, task, r, seeds[0])]["lora_params"]
                                for r in grid.ranks},
                "head_params": runs[0]["head_params"],
            })
    return rows


def sweep_decision(by_rank: dict[int, list[float]], chance, alpha: float):
    """The best-rank test of one encoder's sweep; ``at_chance`` when no rank beats chance."""
    test = best_rank_test(by_rank, baseline=1, alpha=alpha)
    if not any(chance.above(mean) for mean in test.means.values()):
        return "at_chance", test
    return test.decision, test


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


def accuracy_series(grid: Grid, records: dict) -> tuple[dict, dict]:
    """Per task and encoder, the test accuracies by rank; and each task's majority fraction."""
    series: dict = defaultdict(dict)
    chance = {}
    for task in grid.tasks:
        for encoder in grid.encoders:
            series[task][encoder] = {
                r: accuracies(records, encoder, task, r, grid.scale.seeds) for r in grid.ranks
            }
        chance[task] = strictest_chance([v for k, v in records.items() if k[1] == task]).majority
    return dict(series), chance


def rank_figure(path: Path, series: dict, chance: dict, title: str) -> None:
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
    save_figure(fig, path)


def contamination(records: dict) -> dict:
    """Tasks that the models actually run saw in pre-training."""
    tasks = {key[1] for key in records}
    models_run = sorted({rec["model"] for rec in records.values()})
    return {m: [t for t in CONTAMINATED[m] if t in tasks] for m in models_run if m in CONTAMINATED}


def run_summaries(records: dict) -> list[dict]:
    return [{"encoder": e, "task": t, "rank": r, "seed": s, "model_run": rec["model"],
             "test": rec["test_accuracy"], "dev": rec["dev_accuracy"],
             "train": rec["train_accuracy"], "best_step": rec["best_step"],
             "lora_params": rec["lora_params"], "head_params": rec["head_params"],
             "seconds": rec["wall_seconds"], "config_hash": rec["config_hash"]}
            for (e, t, r, s), rec in records.items()]


def hyperparameters(grid: Grid) -> dict:
    s = grid.scale
    return {"optimizer": "AdamW, linear decay to 0, no warmup, weight decay 0",
            "lora": "alpha = 2r (scale 2 at every rank), dropout 0, query and value of every layer",
            "head": "trained (peft modules_to_save), counted separately",
            "selection": f"best k-shot dev accuracy, evaluated every {s.eval_every} steps",
            "k": 16, "ranks": list(grid.ranks), "steps": s.steps, "batch_size": s.batch_size,
            "learning_rate": s.learning_rate, "max_length": s.max_length, "test_cap": s.test_cap,
            "seeds": list(s.seeds)}


def rank_pair_study(grid: Grid, records: dict, delta: float, alpha: float,
                    claimed_tasks: tuple[str, ...], notes: list[str]) -> tuple[dict, dict]:
    """The inputs of the rank-pair rule (``rank_pair_verdict``) and the evidence behind them."""
    rows = compare_rank_pair(grid, records, delta, alpha, claimed_tasks)
    caveats = list(notes)
    if grid.scale.name != "paper":
        caveats.append(f"{grid.scale.name} scale, not the paper's setup")
    if any(row["non_inferiority"]["decision"] != row["non_inferiority"]["bootstrap_decision"]
           for row in rows if row["claimed_task"]):
        caveats.append("the bootstrap interval disagrees with the t interval on some comparison")
    decision = {
        "delta": delta,
        "scale": grid.scale.label(grid.encoders),
        "caveats": caveats,
        "comparisons": [{"task": row["task"], "encoder": row["encoder"],
                         "claimed": row["claimed_task"], "decision": row["decision"],
                         "t": row["non_inferiority"]["t"]} for row in rows],
    }
    evidence = {"scale": grid.scale.__dict__ | {"seeds": list(grid.scale.seeds)},
                "encoders": list(grid.encoders), "notes": notes,
                "table": markdown_table(rows, grid.ranks), "comparisons": rows}
    return decision, evidence


def rank_pair_verdict(decision: dict) -> tuple[str, str, str]:
    """Verdict, summary and key figure of a rank-pair study.

    Not supported when any claimed comparison is inferior; supported when every one is
    non-inferior (with caveats when there are any); inconclusive otherwise.
    """
    comparisons = decision["comparisons"]
    claimed = [c for c in comparisons if c["claimed"]]
    counts: dict[str, int] = defaultdict(int)
    for comparison in claimed:
        counts[comparison["decision"]] += 1
    caveats = decision["caveats"]
    if counts["inferior"]:
        verdict = "not_supported"
    elif counts["non_inferior"] == len(claimed):
        verdict = "supported_with_caveats" if caveats else "supported"
    else:
        verdict = "inconclusive"
    tally = ", ".join(f"{n} {d}" for d, n in sorted(counts.items()))
    tally = f"{len(claimed)} claimed comparisons: {tally}" + (
        f"; caveats: {'; '.join(caveats)}" if caveats else "")
    informative = [c for c in claimed if c["decision"] != "at_chance"] or claimed
    worst = min(informative, key=lambda c: c["t"]["high"])
    t, delta = worst["t"], decision["delta"]
    key_figure = (f"acc(r=1)-acc(r=12) = {t['mean']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}] "
                  f"({worst['task']}, {worst['encoder']}, {worst['decision']}) vs -delta = "
                  f"{-delta:+.3f}")
    extra = "; ".join(f"{c['task']} ({c['encoder']}): {c['decision']}"
                      for c in comparisons if not c["claimed"])
    summary = (f"{decision['scale']}: rank 1 vs rank 12, paired by seed, non-inferiority margin "
               f"{delta:g} declared in the spec; {tally}." + (f" Extra task {extra}." if extra else ""))
    return verdict, summary, key_figure


def run_encoder_grid(grid: Grid, inputs: RunInputs, device: str,
                     substitute: str | None = None) -> tuple[dict, list[str]]:
    """Check the data, find the encoders (``substitute`` standing in for missing ones, if given)
    and run the grid; returns the records and notes on substitutions."""
    resolve_data_dir(inputs.data_dir)
    models, notes = resolve_encoders(grid.encoders, inputs.model_paths, inputs.cache.root, substitute)
    return run_grid(grid, models, inputs, device), notes


def rank_pair_experiment(grid: Grid, inputs: RunInputs, device: str, substitute: str | None,
                         delta: float, alpha: float, claimed_tasks: tuple[str, ...],
                         figure_path: Path, title: str) -> tuple[dict, dict]:
    """Rank 1 against rank 12 over a grid: the rule's inputs, the evidence, and the figure."""
    records, notes = run_encoder_grid(grid, inputs, device, substitute)
    decision, evidence = rank_pair_study(grid, records, delta, alpha, claimed_tasks, notes)
    series, chance = accuracy_series(grid, records)
    rank_figure(figure_path, series, chance, f"{title}: {grid.scale.label(grid.encoders)}")
    evidence |= {"hyperparameters": hyperparameters(grid), "contamination": contamination(records),
                 "runs": run_summaries(records)}
    return decision, evidence
