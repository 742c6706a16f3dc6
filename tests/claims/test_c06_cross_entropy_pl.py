"""C6: under cross-entropy, does PL remove the rank threshold? Measured: it moves it.

Expected verdict: supported_with_caveats. Rank 1 reaches the CE infimum at canonical-like binary
sizes, but the threshold is moved (rank-1 separability ends at a finite N50, a few times the
manifold dimension), global PL fails (the ratio decays like the gap), and with last-layer features
K = 3 needs rank >= 2.
"""

from __future__ import annotations

import pytest

from lora_claims.claims import c06_cross_entropy_pl
from lora_claims.claims.c06_cross_entropy_pl import SPEC, decide
from lora_claims.harness.registry import Verdict, get_claim
from lora_claims.harness.spec import Outcome
from tests.rule_support import assert_rule_replays


@pytest.fixture(scope="module")
def c6(audit):
    return audit.result("C6")


def test_verdict_and_key_figures(c6):
    assert c6.verdict == Verdict.SUPPORTED_WITH_CAVEATS, c6.summary
    figures = c6.evidence["key_figures"]
    for name in ("layer_K2", "gaussian_K2"):
        assert figures["rank1_success"][name][0] >= get_claim("C6").tolerances["success_fraction"]
    assert figures["threshold_moved"] and figures["global_pl_fails"] and figures["l2_pl_bounded"]
    assert c6.summary.startswith("The threshold is moved, not removed")
    assert set(c6.figures) == {"c6_trajectories.png", "c6_separability.png"}


def test_rank1_capacity_lies_between_the_squared_threshold_and_full_rank(c6):
    """Rank-1 CE separates far beyond KN = d (squared loss) but not beyond Cover's full-rank 2 mn."""
    for name in ("gaussian_K2", "gaussian_K3"):
        ratio = c6.evidence["key_figures"]["KN50_over_manifold_dim"][name]
        assert 2.0 < ratio < 2 * 64 / 15, ratio


def test_last_layer_features_need_rank_k_minus_1(c6):
    """Rank-1 logit updates lie on one line: three classes cannot all be separated."""
    assert c6.evidence["key_figures"]["rank1_success"]["layer_K3"][0] == 0.0
    ranks = c6.evidence["experiments"]["canonical"]["layer_K3"]["ranks"]
    assert ranks["2"]["fraction"] >= get_claim("C6").tolerances["success_fraction"]


def test_negative_control_squared_loss_cannot_reach_epsilon(c6):
    control = c6.evidence["key_figures"]["squared_control"]
    assert control["fraction"] == 0.0
    assert control["min_final_loss"] > 10 * get_claim("C6").tolerances["epsilon"]
    assert control["ce_same_instances_fraction"] >= 0.9  # the same instances are easy for CE


def test_origin_is_a_stationary_non_minimum(c6):
    figures = c6.evidence["key_figures"]
    assert figures["origin_grad_norm_max"] == 0.0 and figures["origin_min_decrease"] > 0


def test_decision_inputs_reproduce_the_verdict(c6):
    assert_rule_replays(c6, c06_cross_entropy_pl)


def _row(successes, trials=4):
    return {"successes": successes, "trials": trials, "fraction": successes / trials, "wilson": [0.4, 1.0]}


def supported_inputs() -> dict:
    """Decision inputs under which every clause of the rule holds: supported."""
    return {
        "rank1": {"layer_K2": _row(4), "gaussian_K2": _row(4), "layer_K3": _row(0)},
        "squared_control": {"successes": 0, "min_final_loss": 0.3},
        "cross_entropy_control_fraction": 1.0,
        "pl_slope_unregularized": 0.1,
        "pl_slope_l2": {"l2_rank1": 0.0, "l2_rank4": 0.05},
        "N50": {"gaussian_K2": None, "gaussian_K3": None},
        "KN50_over_manifold_dim": {"gaussian_K2": None, "gaussian_K3": None},
        "manifold_dim": 15,
        "origin_grad_norm_max": 0.0,
    }


def _control_succeeds(inputs):
    inputs["squared_control"]["successes"] = 1


def _control_reaches_epsilon(inputs):
    inputs["squared_control"]["min_final_loss"] = SPEC.tolerances["epsilon"]


def _layer_rank1_fails(inputs):
    inputs["rank1"]["layer_K2"] = _row(3)


def _gaussian_rank1_fails(inputs):
    inputs["rank1"]["gaussian_K2"] = _row(3)


def _both_transitions_found(inputs):
    inputs["N50"] = {"gaussian_K2": 37.0, "gaussian_K3": 24.0}
    inputs["KN50_over_manifold_dim"] = {"gaussian_K2": 4.9, "gaussian_K3": 4.8}


def _k2_transition_found(inputs):
    inputs["N50"]["gaussian_K2"] = 37.0


def _pl_decays(inputs):
    inputs["pl_slope_unregularized"] = SPEC.tolerances["pl_decay_slope"] + 0.1


def _pl_at_the_limit(inputs):
    inputs["pl_slope_unregularized"] = SPEC.tolerances["pl_decay_slope"]


def _pl_slope_missing(inputs):
    inputs["pl_slope_unregularized"] = None


def _control_and_rank1_fail(inputs):
    _control_succeeds(inputs)
    _layer_rank1_fails(inputs)


def _moved_and_rank1_fails(inputs):
    _both_transitions_found(inputs)
    _gaussian_rank1_fails(inputs)


@pytest.mark.parametrize("change, expected", [
    (None, Verdict.SUPPORTED),
    (_control_succeeds, Verdict.INCONCLUSIVE),
    (_control_reaches_epsilon, Verdict.INCONCLUSIVE),
    (_control_and_rank1_fail, Verdict.INCONCLUSIVE),  # the control is read first
    (_layer_rank1_fails, Verdict.NOT_SUPPORTED),
    (_gaussian_rank1_fails, Verdict.NOT_SUPPORTED),
    (_moved_and_rank1_fails, Verdict.NOT_SUPPORTED),
    (_both_transitions_found, Verdict.SUPPORTED_WITH_CAVEATS),
    (_k2_transition_found, Verdict.SUPPORTED),  # moved needs a transition at K = 2 and K = 3
    (_pl_decays, Verdict.SUPPORTED_WITH_CAVEATS),
    (_pl_at_the_limit, Verdict.SUPPORTED),
    (_pl_slope_missing, Verdict.SUPPORTED),
], ids=lambda value: getattr(value, "__name__", str(value)).lstrip("_"))
def test_each_clause_of_the_rule_can_flip_the_verdict(change, expected):
    inputs = supported_inputs()
    if change is not None:
        change(inputs)
    decision = decide(Outcome(inputs), SPEC)
    assert decision.verdict is expected, decision.summary


def test_summary_says_whether_the_threshold_moved():
    inputs = supported_inputs()
    assert decide(Outcome(inputs), SPEC).summary.startswith("No rank-1 separability limit was found")
    _both_transitions_found(inputs)
    assert decide(Outcome(inputs), SPEC).summary.startswith("The threshold is moved, not removed")
    _control_succeeds(inputs)
    assert "negative control did not fail" in decide(Outcome(inputs), SPEC).summary
