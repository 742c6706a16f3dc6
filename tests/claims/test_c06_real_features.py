"""C6-real: rank-1 cross-entropy training with MiniLM's real Jacobian features, decided through the
Wilson interval of the rank-1 success fraction over LoRA initializations against C6's level. The
claim tests need MiniLM's features and C6's Gaussian sweeps (slow); the rule's run on hand-made
outcomes."""

from __future__ import annotations

import pytest

from lora_claims.claims import c06_cross_entropy_pl, c06_real_features
from lora_claims.claims.c06_real_features import SPEC, decide
from lora_claims.harness.spec import PROFILES, Outcome, Verdict
from lora_claims.methods.linearized.ce_experiments import level_power, success_record
from tests.ntk_support import evaluated
from tests.rule_support import assert_rule_replays
from tests.seed_support import assert_claim_at_seed


@pytest.mark.slow
def test_rank_one_reaches_the_ce_infimum_on_real_features(audit, claim_holds, regression, seed):
    """The claim. At seed 0 its recorded outcome applies (regression.json: verdict and figures with
    binomial and bootstrap noise tolerances); at other seeds (LORA_CLAIMS_SEEDS) it must not reverse
    (tests/seed_support.py)."""
    assert_claim_at_seed(evaluated(audit, "C6-real", seed=seed), seed, claim_holds, regression)


@pytest.mark.slow
def test_decision_inputs_reproduce_the_verdict_and_intervals_are_ordered(audit, seed):
    result = evaluated(audit, "C6-real", seed=seed)
    assert_rule_replays(result, c06_real_features)
    rank1 = result.decision_inputs["rank1"]
    assert rank1["wilson"][0] <= rank1["fraction"] <= rank1["wilson"][1]
    assert result.decision_inputs["design_power"]["trials"] == rank1["trials"]
    for budgets in result.decision_inputs["transition"].values():
        for found in budgets.values():
            low, high = found["interval"]
            if None not in (low, high, found["N50"]):
                assert low <= found["N50"] <= high


@pytest.mark.parametrize("profile", PROFILES)
def test_gaussian_column_is_c6s_own_run(profile):
    """C6-real copies C6's sizes and tolerances, so its Gaussian runs are C6's cached ones."""
    c6 = c06_cross_entropy_pl.SPEC
    own, theirs = SPEC.sizes_for(profile), c6.sizes_for(profile)
    for key in ("trials", "steps", "capacity_trials", "capacity_steps"):
        assert own[key] == theirs[key], key
    assert own["capacity_sizes"] == theirs["capacity_sizes"]["K2"]
    assert all(SPEC.tolerances[key] == c6.tolerances[key] for key in SPEC.tolerances)


def _found(n50, low, high, steps):
    return {"N50": n50, "interval": [low, high], "not_found_share": 0.0, "sweep": [8, 56], "draws": 2000,
            "confidence": 0.95, "steps": steps, "KN50_over_dim": None if n50 is None else 2 * n50 / 15}


def inputs(successes: int = 60, inits: int = 60, real=None, real_single=None) -> dict:
    """By default rank 1 trains from 60/60 initializations and no transition is found: supported."""
    tol = SPEC.tolerances
    none = _found(None, None, None, 1000)
    return {
        "steps": 400,
        "rank1": {**success_record(successes, inits), "median_final_loss": 1e-4},
        "design_power": level_power(inits, tol["success_fraction"], tol["power_alternative"]),
        "gaussian_rank1": success_record(60, 60),
        "transition": {"real": {"steps": real_single or _found(None, None, None, 500),
                                "double_steps": real or none},
                       "gaussian": {"steps": _found(40.0, 38.0, 43.0, 500),
                                    "double_steps": _found(40.0, 38.0, 43.0, 1000)}},
    }


FOUND = _found(31.0, 29.0, 36.0, 1000)


@pytest.mark.parametrize("changes, expected", [
    ({}, Verdict.SUPPORTED),
    ({"real": FOUND}, Verdict.SUPPORTED_WITH_CAVEATS),
    ({"real": _found(50.0, 44.0, None, 1000)}, Verdict.SUPPORTED),  # interval reaches beyond the sweep
    ({"real_single": FOUND}, Verdict.SUPPORTED),  # only the doubled budget decides
    ({"successes": 59}, Verdict.SUPPORTED),  # Wilson lower end 0.91 clears 0.9
    ({"successes": 5, "inits": 6}, Verdict.INCONCLUSIVE),  # the old 5/6: Wilson [0.44, 0.97]
    ({"successes": 56}, Verdict.INCONCLUSIVE),
    ({"successes": 48}, Verdict.NOT_SUPPORTED),  # Wilson upper end below 0.9
    ({"successes": 48, "real": FOUND}, Verdict.NOT_SUPPORTED),
])
def test_each_clause_of_the_rule_can_flip_the_verdict(changes, expected):
    decision = decide(Outcome(inputs(**changes)), SPEC)
    assert decision.verdict is expected, decision.summary


def test_six_initializations_are_labelled_underpowered():
    """With 6 initializations not even 6/6 clears 0.9 (power 0): the design cannot decide."""
    decision = decide(Outcome(inputs(successes=6, inits=6)), SPEC)
    assert decision.verdict is Verdict.INCONCLUSIVE and "inconclusive: underpowered" in decision.summary
    assert "underpowered" not in decide(Outcome(inputs(successes=56)), SPEC).summary
