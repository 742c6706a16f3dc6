"""The rank-1 vs rank-12 decision on per-example records: each clause of the rule can flip the
decision, and bad records are refused naming the record and the field."""

from __future__ import annotations

import numpy as np
import pytest

from lora_claims.errors import InvalidArgument
from lora_claims.methods.finetune.rank_pair import (
    Rule,
    arms_from_records,
    compare,
    overall,
    pair_arms,
)
from tests.stats_support import records_of, simulate

RULE = Rule()


def decide(records, rule=RULE):
    rows = compare(pair_arms(arms_from_records([("records.json", records)]), 1, 12), rule)
    return rows, overall(rows)


def test_equal_arms_are_non_inferior_and_support_the_claim():
    arms, labels = simulate({1: 0.85, 12: 0.85}, np.random.default_rng(0), seed_sd=0.01)
    (row,), verdict = decide(records_of(arms, labels))
    assert row["decision"] == "non_inferior" and verdict == "supported"
    assert row["lower"] > -RULE.margin and row["holm"]["family"] == 1


def test_a_worse_rank_one_is_inferior_only_with_converged_training():
    arms, labels = simulate({1: 0.75, 12: 0.85}, np.random.default_rng(1), seed_sd=0.01)
    (row,), verdict = decide(records_of(arms, labels))
    assert row["decision"] == "inferior" and verdict == "not_supported"
    (row,), verdict = decide(records_of(arms, labels, train_accuracy=0.6))  # not converged
    assert row["decision"] == "inconclusive" and "convergence not reached" in row["reason"]
    (row,), verdict = decide(records_of(arms, labels, train_accuracy=None))  # unknown
    assert row["decision"] == "inconclusive" and "unknown" in row["reason"]
    assert verdict == "inconclusive"


def test_an_arm_at_chance_makes_the_comparison_inconclusive():
    rng = np.random.default_rng(2)
    arms, labels = simulate({1: 0.85, 12: 0.85}, rng, seed_sd=0.01)
    majority = int(np.mean(labels) >= 0.5)
    arms[1] = np.full_like(arms[1], majority)  # rank 1 collapsed onto the majority class
    (row,), verdict = decide(records_of(arms, labels))
    assert not row["chance"]["1"]["above"] and row["chance"]["12"]["above"]
    assert row["decision"] == "inconclusive" and "rank 1 not above chance" in row["reason"]
    arms[12] = np.full_like(arms[12], majority)
    (row,), _ = decide(records_of(arms, labels))
    assert "1 and 12" in row["reason"]


def test_a_noisy_small_design_is_inconclusive_and_says_underpowered():
    arms, labels = simulate({1: 0.80, 12: 0.81}, np.random.default_rng(3), rows=120, seeds=3,
                            seed_sd=0.06)
    (row,), verdict = decide(records_of(arms, labels))
    assert row["decision"] == "inconclusive" and row["reason"].startswith("underpowered")
    assert row["power"] < RULE.power_target and verdict == "inconclusive"


def test_holm_can_turn_a_lone_success_into_inconclusive():
    """A comparison that clears alpha alone but not alpha / 4 flips once three undecided
    comparisons join its family (Holm tests the smallest p-value at alpha / 4 first)."""
    rng = np.random.default_rng(4)
    for _ in range(200):
        arms, labels = simulate({1: 0.83, 12: 0.83}, rng, rows=400, seeds=8, seed_sd=0.02)
        records = records_of(arms, labels)
        (row,), _ = decide(records)
        if 0.05 / 4 < row["p_non_inferior"] < 0.05:
            break
    else:
        pytest.fail("no borderline design found")
    assert row["decision"] == "non_inferior"
    family = list(records)
    for task in ("QNLI", "MRPC", "RTE"):
        noisy, noisy_labels = simulate({1: 0.77, 12: 0.80}, rng, rows=200, seeds=3, seed_sd=0.02)
        family += records_of(noisy, noisy_labels, task=task)
    rows, _ = decide(family)
    sst2 = next(r for r in rows if r["task"] == "SST-2")
    assert all(r["p_non_inferior"] > sst2["p_non_inferior"] for r in rows if r is not sst2)
    assert sst2["holm"]["family"] == 4 and sst2["decision"] == "inconclusive"


def test_glue_metric_reported_beside_accuracy():
    arms, labels = simulate({1: 0.85, 12: 0.85}, np.random.default_rng(5), rows=300, seeds=3)
    (row,), _ = decide(records_of(arms, labels, task="MRPC"))
    assert {test["metric"] for test in row["glue_metric"].values()} == {"f1"}
    (row,), _ = decide(records_of(arms, labels, task="CoLA"))
    assert {test["metric"] for test in row["glue_metric"].values()} == {"mcc"}


@pytest.mark.parametrize("mutate, message", [
    (lambda rs: rs[0].pop("test_predictions"), r"records.json\[0\]: missing field 'test_predictions'"),
    (lambda rs: rs[1].__setitem__("test_labels", [5] * len(rs[1]["test_labels"])),
     r"records.json\[1\]: field 'test_labels' holds \[5\]"),
    (lambda rs: rs[1].__setitem__("test_labels", rs[1]["test_labels"][::-1]),
     r"records.json\[1\]: field 'test_labels' .* must share their test rows"),
    (lambda rs: rs[0].__setitem__("task", "nonsense"), r"records.json\[0\]: field 'task'"),
    (lambda rs: rs[0].__setitem__("rank", "one"), r"records.json\[0\]: field 'rank' must be an integer"),
    (lambda rs: rs.pop(0), r"seed\(s\) \[0\] present in one arm only"),
])
def test_bad_records_name_the_record_and_field(mutate, message):
    arms, labels = simulate({1: 0.8, 12: 0.8}, np.random.default_rng(6), rows=40, seeds=3)
    records = records_of(arms, labels)
    records[1]["test_labels"] = list(records[1]["test_labels"])
    mutate(records)
    with pytest.raises(InvalidArgument, match=message):
        decide(records)


def test_a_single_seed_and_bad_rule_parameters_are_refused():
    arms, labels = simulate({1: 0.8, 12: 0.8}, np.random.default_rng(7), rows=40, seeds=1)
    with pytest.raises(InvalidArgument, match="single seed"):
        decide(records_of(arms, labels))
    with pytest.raises(InvalidArgument, match="--margin"):
        Rule(margin=0)
    with pytest.raises(InvalidArgument, match="--alpha"):
        Rule(alpha=1.5)
