"""Is rank 1 competitive with rank 12? The decision on per-example fine-tuning records.

One comparison is one (task, model) pair: the low-rank arm against the baseline arm, each a set of
runs paired by data seed and scored on the same test rows. The decision, declared before running:

- each arm is tested against the best constant predictor on its rows (``chance_test``); a
  comparison counts only when both arms beat chance;
- the paired difference acc(low) - acc(baseline) gets a bootstrap over seeds and test rows together;
  its one-sided p-values against -margin are Holm-corrected across the comparisons that count;
- non-inferior when the corrected test rejects "difference <= -margin"; inferior only when both arms
  beat chance, both arms' training converged, and the corrected test rejects "difference >= -margin";
  otherwise inconclusive, with the reason and the power the design had at the margin.

Records are plain dicts (this tool's finetune records, or a user's own runs in the same format):
``task``, ``model``, ``rank``, ``seed``, ``test_labels``, ``test_predictions``; optionally
``test_row_ids`` and ``train_accuracy`` (without it, convergence is unknown and no comparison can
be called inferior).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from lora_claims.errors import InvalidArgument, require_fraction
from lora_claims.methods.data.glue import get_task
from lora_claims.methods.per_example import (
    chance_test,
    holm,
    non_inferiority_power,
    paired_difference,
)

REQUIRED_FIELDS = ("task", "model", "rank", "seed", "test_labels", "test_predictions")
GLUE_METRIC = {"CoLA": "mcc", "MRPC": "f1"}  # accuracy is reported for every task


@dataclass(frozen=True)
class Rule:
    """The declared parameters of the decision."""

    margin: float = 0.02
    alpha: float = 0.05
    power_target: float = 0.8
    converged_train_accuracy: float = 0.9  # both arms' mean training accuracy must reach this

    def __post_init__(self) -> None:
        if not (isinstance(self.margin, (int, float)) and 0 < self.margin < 1):
            raise InvalidArgument(f"--margin must lie in (0, 1), got {self.margin!r}")
        require_fraction("--alpha", self.alpha)
        require_fraction("power target", self.power_target)


@dataclass(frozen=True)
class Arm:
    task: str
    model: str
    rank: int
    seeds: tuple[int, ...]
    predictions: np.ndarray  # seeds x rows
    labels: np.ndarray
    train_accuracy: float | None  # mean over seeds; None when a record lacks it


def _where(source: str, index: int) -> str:
    return f"{source}[{index}]"


def check_record(record: object, where: str) -> dict:
    """One record's fields, or an error naming the record and the field."""
    if not isinstance(record, dict):
        raise InvalidArgument(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in record:
            raise InvalidArgument(f"{where}: missing field {name!r}")
    try:
        spec = get_task(str(record["task"]))
    except InvalidArgument as error:
        raise InvalidArgument(f"{where}: field 'task': {error}") from None
    labels, predictions = record["test_labels"], record["test_predictions"]
    if not isinstance(labels, list) or not isinstance(predictions, list) or len(labels) != len(predictions):
        raise InvalidArgument(f"{where}: fields 'test_labels' and 'test_predictions' must be lists "
                              "of the same length")
    classes = set(range(spec.num_classes))
    for name, values in (("test_labels", labels), ("test_predictions", predictions)):
        outside = sorted({v for v in values if v not in classes}, key=str)
        if outside:
            raise InvalidArgument(f"{where}: field {name!r} holds {outside[:3]}, outside "
                                  f"{spec.name}'s classes 0..{spec.num_classes - 1}")
    for name in ("rank", "seed"):
        if isinstance(record[name], bool) or not isinstance(record[name], int):
            raise InvalidArgument(f"{where}: field {name!r} must be an integer, got {record[name]!r}")
    if "train_accuracy" in record and record["train_accuracy"] is not None:
        if not isinstance(record["train_accuracy"], (int, float)):
            raise InvalidArgument(f"{where}: field 'train_accuracy' must be a number")
    return {**record, "task": spec.name}


def arms_from_records(sources: list[tuple[str, list]]) -> dict[tuple[str, str, int], Arm]:
    """Group records into arms by (task, model, rank); every arm's seeds are scored on the same
    rows. ``sources`` pairs a name (a file) with its records, for error messages."""
    grouped: dict[tuple[str, str, int], list[tuple[str, dict]]] = defaultdict(list)
    for source, records in sources:
        for index, record in enumerate(records):
            checked = check_record(record, _where(source, index))
            grouped[(checked["task"], str(checked["model"]), checked["rank"])].append(
                (_where(source, index), checked))
    arms = {}
    for key, members in grouped.items():
        members.sort(key=lambda item: item[1]["seed"])
        seeds = [record["seed"] for _, record in members]
        if len(set(seeds)) != len(seeds):
            raise InvalidArgument(f"{members[0][0]}: seed {seeds[0]} appears twice for {key}")
        first_where, first = members[0]
        for where, record in members[1:]:
            if record["test_labels"] != first["test_labels"] or (
                    record.get("test_row_ids") != first.get("test_row_ids")):
                raise InvalidArgument(f"{where}: field 'test_labels' (or 'test_row_ids') differs from "
                                      f"{first_where}: the runs of one arm must share their test rows")
        train = [record.get("train_accuracy") for _, record in members]
        arms[key] = Arm(key[0], key[1], key[2], tuple(seeds),
                        np.array([record["test_predictions"] for _, record in members]),
                        np.array(first["test_labels"]),
                        None if any(v is None for v in train) else float(np.mean(train)))
    return arms


def pair_arms(arms: dict, low_rank: int, baseline_rank: int) -> list[tuple[Arm, Arm]]:
    """(low, baseline) arm pairs per (task, model), checked to be paired seed by seed."""
    pairs = []
    for (task, model, rank), low in sorted(arms.items(), key=lambda item: (item[0][0], item[0][1])):
        if rank != low_rank:
            continue
        base = arms.get((task, model, baseline_rank))
        if base is None:
            raise InvalidArgument(f"{task}, {model}: no records at the baseline rank {baseline_rank}")
        if low.seeds != base.seeds:
            missing = sorted(set(low.seeds) ^ set(base.seeds))
            raise InvalidArgument(f"{task}, {model}: seed(s) {missing} present in one arm only: "
                                  "arms are paired by seed")
        if not np.array_equal(low.labels, base.labels):
            raise InvalidArgument(f"{task}, {model}: the rank-{low_rank} and rank-{baseline_rank} "
                                  "arms were scored on different test rows")
        if len(low.seeds) < 2:
            raise InvalidArgument(f"{task}, {model}: a single seed per arm; a paired comparison "
                                  "needs at least 2")
        pairs.append((low, base))
    if not pairs:
        raise InvalidArgument(f"no records at rank {low_rank}: nothing to compare")
    return pairs


def compare(pairs: list[tuple[Arm, Arm]], rule: Rule, seed: int = 0) -> list[dict]:
    """Decide every comparison (see the module docstring); one JSON-ready dict each."""
    rows = []
    for low, base in pairs:
        metric = GLUE_METRIC.get(low.task)
        chance = {str(arm.rank): chance_test(arm.predictions, arm.labels, "accuracy", rule.alpha)
                  for arm in (low, base)}
        glue = ({str(arm.rank): chance_test(arm.predictions, arm.labels, metric, rule.alpha, seed)
                 for arm in (low, base)} if metric else {})
        difference = paired_difference(low.predictions, base.predictions, low.labels, rule.margin,
                                       rule.alpha, seed=seed)
        converged = None
        if low.train_accuracy is not None and base.train_accuracy is not None:
            converged = min(low.train_accuracy, base.train_accuracy) >= rule.converged_train_accuracy
        rows.append({
            "task": low.task, "model": low.model, "ranks": [low.rank, base.rank],
            "seeds": len(low.seeds), "rows": int(low.labels.size),
            "difference": difference.mean, "lower": difference.lower, "upper": difference.upper,
            "margin": rule.margin, "standard_error": difference.standard_error,
            "p_non_inferior": difference.p_below_margin, "p_inferior": difference.p_above_margin,
            "chance": {rank: test.to_json() for rank, test in chance.items()},
            "glue_metric": {rank: test.to_json() for rank, test in glue.items()},
            "both_above_chance": all(test.above for test in chance.values()),
            "train_accuracy": {str(low.rank): low.train_accuracy, str(base.rank): base.train_accuracy},
            "converged": converged,
        })
    counting = [row for row in rows if row["both_above_chance"]]
    non_inferior = holm([row["p_non_inferior"] for row in counting], rule.alpha)
    inferior = holm([row["p_inferior"] for row in counting], rule.alpha)
    for row, shows_ni, shows_inf in zip(counting, non_inferior, inferior, strict=True):
        row["holm"] = {"non_inferior": shows_ni, "inferior": shows_inf, "family": len(counting)}
    alpha_each = rule.alpha / max(len(counting), 1)  # Holm's first, strictest step
    for row in rows:
        row["power"] = non_inferiority_power(row["standard_error"], rule.margin, alpha_each)
        row["decision"], row["reason"] = _decide(row, rule)
    return rows


def _decide(row: dict, rule: Rule) -> tuple[str, str]:
    if not row["both_above_chance"]:
        at_chance = [rank for rank, test in row["chance"].items() if not test["above"]]
        return "inconclusive", f"rank {' and '.join(at_chance)} not above chance"
    if row["holm"]["non_inferior"]:
        return "non_inferior", f"lower bound {row['lower']:+.3f} above -margin (Holm)"
    if row["holm"]["inferior"]:
        if row["converged"]:
            return "inferior", f"upper bound {row['upper']:+.3f} below -margin (Holm)"
        why = "unknown (no training accuracy)" if row["converged"] is None else "not reached"
        return "inconclusive", f"upper bound below -margin but convergence {why}"
    power = row["power"]
    if power < rule.power_target:
        return "inconclusive", f"underpowered: power {power:.2f} at margin {rule.margin:g}"
    return "inconclusive", "the interval straddles -margin"


def overall(rows: list[dict]) -> str:
    """Not supported when any comparison is inferior; supported when every one is non-inferior;
    inconclusive otherwise."""
    decisions = {row["decision"] for row in rows}
    if "inferior" in decisions:
        return "not_supported"
    if decisions == {"non_inferior"}:
        return "supported"
    return "inconclusive"


def table(rows: list[dict]) -> str:
    low, high = rows[0]["ranks"] if rows else (1, 12)
    lines = [f"| task | model | seeds x rows | acc r={low} | acc r={high} | diff [one-sided bounds] "
             "| GLUE metric | power | decision |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        glue = row["glue_metric"]
        metric = (" / ".join(f"{test['metric']} {test['score']:.3f}" for test in glue.values())
                  if glue else "")
        lines.append(
            f"| {row['task']} | {row['model']} | {row['seeds']} x {row['rows']} "
            f"| {row['chance'][str(low)]['score']:.3f} | {row['chance'][str(high)]['score']:.3f} "
            f"| {row['difference']:+.3f} [{row['lower']:+.3f}, {row['upper']:+.3f}] | {metric} "
            f"| {row['power']:.2f} | {row['decision']}: {row['reason']} |")
    return "\n".join(lines)
