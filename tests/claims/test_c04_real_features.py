"""C4-real: C4's estimators on blocks of MiniLM's real Jacobian features, next to Gaussian ones.

Measured verdict (profile ci): supported_with_caveats. The exact-fit threshold is the same on real
features as on Gaussian ones (rho_95 = 1.00 at 10 x 10 r = 1 and 6 x 6 r = 2), but the budgeted
reading (Armijo GD, 300 steps, 95%) that gives ~1.35 on Gaussian features is not reached anywhere
on the grid (rho <= 2) on real features. The tests that evaluate the claim are slow (MiniLM feature
extraction and LM sweeps); the rule's tests run on hand-made outcomes.
"""

from __future__ import annotations

import pytest

from lora_claims.claims import c04_real_features
from lora_claims.claims.c04_real_features import SPEC, decide
from lora_claims.harness.registry import Verdict, get_claim
from lora_claims.harness.spec import Outcome
from tests.ntk_support import evaluated
from tests.rule_support import assert_rule_replays


@pytest.fixture(scope="module")
def c4_real(audit):
    return evaluated(audit, "C4-real")


@pytest.mark.slow
def test_exact_fit_constant_transfers_but_the_budgeted_one_does_not(c4_real):
    assert c4_real.verdict is Verdict.SUPPORTED_WITH_CAVEATS, c4_real.summary
    band = get_claim("C4-real").tolerances["match_band"]
    exact = [row for row in c4_real.evidence["rows"] if row["definition"] == "exact fit"]
    assert exact and all(row["transfers"] for row in exact)
    for row in exact:
        assert abs(row["real"]["rho"] - 1.0) <= band
    budgeted = c4_real.evidence["rows"][-1]
    assert budgeted["definition"].startswith("Armijo GD")
    assert not budgeted["transfers"]
    assert budgeted["gaussian"]["rho"] == pytest.approx(1.35, abs=0.1)
    assert c4_real.figures == ["c4_real_features.png"]


@pytest.mark.slow
def test_real_instances_come_from_the_real_pool(c4_real):
    features = c4_real.evidence["features"]
    assert features["model"] == "minilm" and features["task"] == "SST-2"
    assert features["matrix"].endswith("attention.self.value")
    assert features["pool"] > features["train"] == 32


@pytest.mark.slow
def test_decision_inputs_reproduce_the_verdict(c4_real):
    assert_rule_replays(c4_real, c04_real_features)


def _row(definition: str, real_rho, gaussian_rho) -> dict:
    return {"definition": definition, "shape": "6x6 r=1", "real_rho": real_rho, "gaussian_rho": gaussian_rho,
            "real_best_point": {"rho": 2.0, "fraction": 0.8}}


def inputs(exact=(1.0, 0.99), second_exact=(1.0, 1.0), budgeted=(1.36, 1.35)) -> dict:
    """By default every threshold transfers: supported."""
    return {"level": 0.95, "pool_examples": 72,
            "rows": [_row("exact fit", *exact), _row("exact fit", *second_exact),
                     _row("Armijo GD N=300", *budgeted)]}


@pytest.mark.parametrize("changes, expected", [
    ({}, Verdict.SUPPORTED),
    ({"budgeted": (1.45, 1.35)}, Verdict.SUPPORTED_WITH_CAVEATS),
    ({"budgeted": (None, 1.35)}, Verdict.SUPPORTED_WITH_CAVEATS),
    ({"budgeted": (1.35, None)}, Verdict.SUPPORTED_WITH_CAVEATS),
    ({"second_exact": (1.1, 1.0)}, Verdict.NOT_SUPPORTED),
    ({"exact": (None, 1.0)}, Verdict.NOT_SUPPORTED),
    ({"exact": (1.0, None), "budgeted": (1.45, 1.35)}, Verdict.NOT_SUPPORTED),
    ({"exact": (1.04, 1.0)}, Verdict.SUPPORTED),  # within match_band
])
def test_each_clause_of_the_rule_can_flip_the_verdict(changes, expected):
    decision = decide(Outcome(inputs(**changes)), SPEC)
    assert decision.verdict is expected, decision.summary


def test_a_threshold_not_reached_is_reported_with_its_best_point():
    decision = decide(Outcome(inputs(budgeted=(None, 1.35))), SPEC)
    assert "real not reached on the grid (best: 80% at rho = 2.00)" in decision.summary
    assert decision.key_figure.endswith("C*_GD real/Gaussian not reached on the grid/1.350")
