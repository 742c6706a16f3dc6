"""C6: under cross-entropy, does PL remove the rank threshold? Measured: it moves it.

Expected verdict: supported_with_caveats. Rank 1 reaches the CE infimum at canonical-like binary
sizes, but the threshold is moved (rank-1 separability ends at a finite N50, a few times the
manifold dimension), global PL fails (the ratio decays like the gap), and with last-layer features
K = 3 needs rank >= 2.
"""

from __future__ import annotations

import copy

import pytest

from lora_claims.harness.registry import Verdict, get_claim
from lora_claims.claims.ntk_claims import c6_verdict


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


def test_verdict_rule_can_fail(c6):
    """The rule reports inconclusive when the negative control passes, and not_supported when rank 1
    fails at canonical sizes: the verdict is not fixed by construction."""
    tolerances = get_claim("C6").tolerances
    broken = copy.deepcopy(c6.evidence["experiments"])
    broken["negative_control"]["squared"]["ranks"]["1"].update(successes=5, min_final_loss=0.0)
    assert c6_verdict(broken, tolerances)[0] == Verdict.INCONCLUSIVE
    failing = copy.deepcopy(c6.evidence["experiments"])
    failing["canonical"]["gaussian_K2"]["ranks"]["1"].update(fraction=0.5)
    assert c6_verdict(failing, tolerances)[0] == Verdict.NOT_SUPPORTED
    removed = copy.deepcopy(c6.evidence["experiments"])
    for name in ("gaussian_K2", "gaussian_K3"):
        removed["capacity"][name].update(N50=None, KN50_over_dim=None)
    removed["pl"]["unregularized"]["parameter"]["slope_small_gap"] = 0.0
    assert c6_verdict(removed, tolerances)[0] == Verdict.SUPPORTED
