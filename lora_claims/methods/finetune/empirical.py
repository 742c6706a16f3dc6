"""The empirical claims' decisions on a rank study: rank 1 against rank 12 (C8, C9 and their
CPU reading) and the best rank of an MNLI sweep (C10 and its CPU reading). Both read the records
at each rank's chosen learning rate; both are declared in the claims' specs before running."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from lora_claims.methods.finetune.rank_pair import (
    Rule,
    arms_from_records,
    compare,
    overall,
    pair_arms,
    table,
)
from lora_claims.methods.finetune.rank_study import (
    StudyDesign,
    chosen_learning_rates,
    run_study,
    selected_records,
)
from lora_claims.methods.per_example import best_rank_test, chance_test


def rank_pair_decision(records: list[dict], claimed_tasks: tuple[str, ...], rule: Rule) -> dict:
    """The rule's inputs: every comparison (claimed tasks in one Holm family, the others each
    on their own) with its decision, and the overall verdict of the claimed ones."""
    claimed = [r for r in records if r["task"] in claimed_tasks]
    rows = compare(pair_arms(arms_from_records([("runs", claimed)]), 1, 12), rule)
    for task in sorted({r["task"] for r in records} - set(claimed_tasks)):
        extra = [r for r in records if r["task"] == task]
        rows += [row | {"beside_the_claim": True}
                 for row in compare(pair_arms(arms_from_records([("runs", extra)]), 1, 12), rule)]
    return {"comparisons": rows, "claimed_tasks": list(claimed_tasks),
            "verdict": overall([row for row in rows if not row.get("beside_the_claim")])}


def sweep_decision(records: list[dict], task: str, margin: float, alpha: float) -> dict:
    """Per model: does the best rank beat rank 1 (simultaneous lower bound above 0), or is rank 1
    within ``margin`` of every rank (simultaneous upper bounds below margin)? Every rank is also
    tested against chance; a sweep whose ranks all sit at chance decides nothing."""
    by_model: dict[str, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for record in records:
        if record["task"] == task:
            by_model[record["model"]][record["rank"]][record["seed"]] = record
    out = {}
    for model, by_rank in by_model.items():
        seeds = sorted(next(iter(by_rank.values())))
        labels = [np.asarray(by_rank[1][s]["test_labels"]) for s in seeds]
        predictions = {rank: [np.asarray(runs[s]["test_predictions"]) for s in seeds]
                       for rank, runs in by_rank.items()}
        test = best_rank_test(predictions, labels, baseline=1, alpha=alpha)
        above_chance = {str(rank): _above_chance(predictions[rank], labels, alpha)
                        for rank in sorted(by_rank)}
        if not any(above_chance.values()):
            decision = "at_chance"
        elif max(test.lower.values()) > 0:
            decision = "above_rank_1"
        elif max(test.upper.values()) < margin:
            decision = "rank_1_within_margin"
        else:
            decision = "undecided"
        out[model] = {"decision": decision, "test": test.to_json(), "above_chance": above_chance,
                      "seeds": len(seeds), "rows": [int(y.size) for y in labels]}
    return out


def _above_chance(predictions: list[np.ndarray], labels: list[np.ndarray], alpha: float) -> bool:
    """An arm whose seeds score different rows: pooled over seeds against the pooled majority."""
    return chance_test(np.concatenate(predictions)[None, :], np.concatenate(labels),
                       "accuracy", alpha).above


def sweep_verdict(per_model: dict) -> str:
    """Supported when every model's best rank beats rank 1; not supported when rank 1 is within
    the margin of every rank for every model; inconclusive otherwise."""
    decisions = {entry["decision"] for entry in per_model.values()}
    if decisions == {"above_rank_1"}:
        return "supported"
    if decisions == {"rank_1_within_margin"}:
        return "not_supported"
    return "inconclusive"


def rank_pair_study(design, inputs, device: str, claimed_tasks: tuple[str, ...], rule: Rule,
                    substitute: str | None = None) -> tuple[dict, dict]:
    """Run a rank-1 vs rank-12 study and return the rule's inputs and the evidence."""
    selected, choice, notes = _study_at_chosen_rates(design, inputs, device, substitute)
    decision = rank_pair_decision(selected, claimed_tasks, rule) | {
        "design": design.label(), "notes": notes}
    evidence = {"design": design.to_json(), "table": table(decision["comparisons"]),
                "learning_rates": {f"{e} {t} r={r}": lr for (e, t, r), lr in choice.items()},
                "runs": [{key: record[key] for key in RUN_FIELDS} for record in selected]}
    return decision, evidence


def _study_at_chosen_rates(design, inputs, device: str, substitute: str | None):
    """Every run of the study, then each (encoder, task, rank)'s records at its chosen rate."""
    records, notes = run_study(design, inputs, device, substitute)
    choice = chosen_learning_rates(records)
    return selected_records(records, choice), choice, notes


def rank_pair_verdict(decision: dict) -> tuple[str, str, str]:
    """Verdict, summary and key figure of a rank-pair decision; a smoke run is never evaluated."""
    summary, key_figure = rank_pair_summary(decision)
    if decision.get("smoke"):
        return "not_evaluated", f"smoke run (plumbing only): {summary}", key_figure
    return decision["verdict"], summary, key_figure


RUN_FIELDS = ("task", "model", "rank", "seed", "learning_rate", "train_accuracy", "dev_accuracy",
              "test_accuracy", "best_step", "config_hash")


def rank_pair_summary(decision: dict) -> tuple[str, str]:
    """Summary and key figure of a rank-pair decision: each claimed comparison's decision and
    reason, and the comparison with the lowest bound."""
    claimed = [row for row in decision["comparisons"] if not row.get("beside_the_claim")]
    tally = "; ".join(f"{row['task']} ({row['model']}): {row['decision']} ({row['reason']})"
                      for row in claimed)
    worst = min(claimed, key=lambda row: row["lower"])
    key_figure = (f"{worst['task']}: acc(r=1)-acc(r=12) = {worst['difference']:+.3f}, one-sided "
                  f"bounds [{worst['lower']:+.3f}, {worst['upper']:+.3f}] vs -margin "
                  f"{-worst['margin']:+.3f} ({worst['seeds']} seeds x {worst['rows']} rows)")
    notes = f" Notes: {'; '.join(decision['notes'])}." if decision.get("notes") else ""
    return f"{decision['design']}. {tally}.{notes}", key_figure


def paper_study_design(spec, ctx, encoders: tuple[str, ...], needs_gpu: Exception):
    """The study a paper-scale claim runs here: its paper encoders at paper scale on CUDA; under
    profile smoke the same code on random-init encoders for a few steps; otherwise ``needs_gpu``."""
    smoke = ctx.profile == "smoke"
    if not smoke and not ctx.device.startswith("cuda"):
        raise needs_gpu
    return StudyDesign.from_sizes(spec.sizes_for(ctx.profile), encoders, random_init=smoke)


def sweep_study(design, inputs, device: str, task: str, tolerances: dict,
                substitute: str | None = None) -> tuple[dict, dict]:
    """Run a rank sweep and return the rule's inputs (per model: the best-rank decision) and the
    evidence (each run's accuracies at its rank's chosen learning rate)."""
    selected, choice, notes = _study_at_chosen_rates(design, inputs, device, substitute)
    per_model = sweep_decision(selected, task, tolerances["margin"], tolerances["alpha"])
    decision = {"models": per_model, "verdict": sweep_verdict(per_model),
                "design": design.label(), "notes": notes}
    evidence = {"design": design.to_json(),
                "learning_rates": {f"{e} {t} r={r}": lr for (e, t, r), lr in choice.items()},
                "runs": [{key: record[key] for key in RUN_FIELDS} for record in selected]}
    return decision, evidence


def sweep_summary(decision: dict) -> tuple[str, str]:
    """Summary and key figure of a sweep decision (the first model's best rank)."""
    model, entry = next(iter(decision["models"].items()))
    test = entry["test"]
    best = max(test["advantages"], key=test["advantages"].get)
    key_figure = (f"{model}: acc(r={best})-acc(r=1) = {test['advantages'][best]:+.3f}, simultaneous "
                  f"bounds [{test['lower'][best]:+.3f}, {test['upper'][best]:+.3f}]; "
                  f"{entry['decision']}")
    per_model = "; ".join(f"{m}: {e['decision']}" for m, e in decision["models"].items())
    notes = f" Notes: {'; '.join(decision['notes'])}." if decision.get("notes") else ""
    return f"{decision['design']}. {per_model}.{notes}", key_figure
