"""C8-linearized: rank 1 against rank 12 in C8-cpu's model linearized around its initial point,
decided by C8-cpu's rank-pair rule on per-example predictions. The recorded outcome
(regression.json) applies at ci. Slow: MiniLM features and forward-mode test predictions."""

from __future__ import annotations

import pytest

from lora_claims.claims import c08_linearized
from tests.ntk_support import evaluated
from tests.rule_support import assert_rule_replays

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def c8_linearized(audit):
    return evaluated(audit, "C8-linearized")


def test_rank_one_is_competitive_in_the_linearized_model(c8_linearized, claim_holds):
    claim_holds(c8_linearized)


def test_decision_inputs_reproduce_the_verdict(c8_linearized):
    assert_rule_replays(c8_linearized, c08_linearized)


def test_every_declared_task_is_compared_on_every_seed(c8_linearized):
    sizes = c08_linearized.SPEC.sizes_for("ci")
    rows = c8_linearized.decision_inputs["comparisons"]
    assert sorted(row["task"] for row in rows) == sorted(sizes["tasks"])
    assert all(row["seeds"] == len(sizes["seeds"]) and row["lower"] <= row["upper"] for row in rows)
