"""C8-linearized: rank 1 against rank 12 in the linearized model of MiniLM (Jang et al.'s mode).

Measured verdict (profile ci: SST-2, the five LM-BFF seeds, 100 full-batch Adam steps, test cap
200): inconclusive. Both ranks are above chance (0.625 and 0.640 against a majority of 0.505), the
paired difference is -0.015 with a 95% t interval of [-0.038, +0.008], whose lower end is below
C8's margin of -0.02: five seeds cannot tell non-inferiority from a small loss. Slow: MiniLM
feature extraction and forward-mode test predictions.
"""

from __future__ import annotations

import pytest

from lora_claims.harness.registry import Verdict, get_claim
from tests.ntk_support import evaluated

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def c8_linearized(audit):
    return evaluated(audit, "C8-linearized")


def test_rank_one_against_rank_twelve_through_c8s_statistics(c8_linearized):
    assert c8_linearized.verdict is Verdict.INCONCLUSIVE, c8_linearized.summary
    (row,) = c8_linearized.evidence["comparisons"]
    assert row["task"] == "SST-2" and len(row["accuracy"]["1"]) == len(row["accuracy"]["12"]) == 5
    assert all(row["above_chance"].values())
    t = row["non_inferiority"]["t"]
    delta = get_claim("C8-linearized").tolerances["delta"]
    assert t["low"] < -delta < t["high"], "the interval straddles the margin: neither verdict is earned"
    assert "| SST-2 | minilm |" in c8_linearized.evidence["table"]
    assert c8_linearized.figures == ["c8_linearized_accuracy_vs_rank.png"]


def test_linearized_runs_fit_their_training_sets(c8_linearized):
    for record in c8_linearized.evidence["runs"].values():
        assert record["train_accuracy"] >= 0.9
        assert record["head_params"] == 0 and record["lora_params"] == record["rank"] * 2 * (384 + 384)
