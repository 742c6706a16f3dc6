"""C6: under cross-entropy, does PL remove the rank threshold? Decided for K = 2 (the abstract's
binary regime) under the reading "rank 1 reaches the CE infimum on canonical-size binary problems";
the literal "removed entirely" is false a priori, and where the threshold moved is a caveat."""

from __future__ import annotations

import copy

import pytest

from lora_claims.claims import c06_cross_entropy_pl
from lora_claims.claims.c06_cross_entropy_pl import SPEC, decide
from lora_claims.harness.spec import Outcome, Verdict
from lora_claims.methods.linearized.ce_experiments import level_power, success_record
from tests.rule_support import assert_rule_replays
from tests.seed_support import assert_claim_at_seed


def test_rank_one_reaches_the_ce_infimum_on_binary_problems(audit, claim_holds, regression, seed):
    """The claim under its decided reading. At seed 0 its recorded outcome applies (regression.json:
    verdict and figures with binomial and bootstrap noise tolerances); at other seeds
    (LORA_CLAIMS_SEEDS) it must not reverse (tests/seed_support.py)."""
    assert_claim_at_seed(audit.result("C6", seed=seed), seed, claim_holds, regression)


def test_decision_inputs_reproduce_the_verdict(audit, seed):
    assert_rule_replays(audit.result("C6", seed=seed), c06_cross_entropy_pl)


def test_intervals_are_ordered_and_hold_their_estimates(audit, seed):
    inputs = audit.result("C6", seed=seed).decision_inputs
    for record in (*inputs["binary_rank1"].values(), *inputs["contrast_K3"].values()):
        if "wilson" in record:
            assert record["wilson"][0] <= record["fraction"] <= record["wilson"][1]
    for found in (*inputs["transition_K2"].values(), inputs["contrast_K3"]["transition"]):
        low, high = found["interval"]
        if None not in (low, high, found["N50"]):
            assert low <= found["N50"] <= high
    for run in inputs["pl_slope"].values():
        if run["interval"] is not None:
            assert run["interval"][0] <= run["interval"][1]
    assert inputs["design_power"]["trials"] == inputs["binary_rank1"]["layer_K2"]["trials"]


def _found(n50, low, high, steps):
    return {"N50": n50, "interval": [low, high], "not_found_share": 0.0, "sweep": [8, 56], "draws": 2000,
            "confidence": 0.95, "steps": steps, "KN50_over_dim": None if n50 is None else 2 * n50 / 15}


def _slope(slope, interval):
    return {"slope": slope, "interval": interval, "steps": 100}


def supported_inputs() -> dict:
    """Every binary run 60/60, the control failing, no transition or PL decay found: supported."""
    tol = SPEC.tolerances
    return {
        "binary_rank1": {"layer_K2": success_record(60, 60), "gaussian_K2": success_record(60, 60)},
        "design_power": level_power(60, tol["success_fraction"], tol["power_alternative"]),
        "squared_control": {"successes": 0, "min_final_loss": 0.2},
        "cross_entropy_control_fraction": 1.0,
        "transition_K2": {"steps": _found(None, None, None, 500),
                          "double_steps": _found(None, None, None, 1000)},
        "pl_slope": {"steps": _slope(None, None), "double_steps": _slope(None, None),
                     "l2_rank1": _slope(0.0, [-0.05, 0.05])},
        "contrast_K3": {"layer_rank1": success_record(0, 12), "layer_rank2": success_record(12, 12),
                        "transition": _found(23.0, 21.0, 25.0, 500)},
        "manifold_dim": 15,
        "origin_min_decrease": 1e-6,
    }


def _set(path, value):
    def change(inputs):
        *parents, last = path.split(".")
        target = inputs
        for part in parents:
            target = target[part]
        target[last] = value
    change.__name__ = f"{path}={value}"
    return change


FOUND = _found(40.0, 38.0, 43.0, 1000)
OPEN_ENDED = _found(52.0, 44.0, None, 1000)
TWELVE_TRIALS = level_power(12, 0.9, 0.99)


@pytest.mark.parametrize("changes, expected", [
    ([], Verdict.SUPPORTED),
    ([_set("squared_control.successes", 1)], Verdict.INCONCLUSIVE),
    ([_set("squared_control.min_final_loss", SPEC.tolerances["epsilon"])], Verdict.INCONCLUSIVE),
    ([_set("squared_control.successes", 1), _set("binary_rank1.layer_K2", success_record(40, 60))],
     Verdict.INCONCLUSIVE),  # the control is read first
    ([_set("binary_rank1.layer_K2", success_record(48, 60))], Verdict.NOT_SUPPORTED),  # upper end < 0.9
    ([_set("binary_rank1.gaussian_K2", success_record(48, 60))], Verdict.NOT_SUPPORTED),
    ([_set("binary_rank1.layer_K2", success_record(56, 60))], Verdict.INCONCLUSIVE),  # interval holds 0.9
    ([_set("binary_rank1.gaussian_K2", success_record(59, 60))], Verdict.SUPPORTED),  # lower end 0.91
    ([_set("transition_K2.double_steps", FOUND)], Verdict.SUPPORTED_WITH_CAVEATS),
    ([_set("transition_K2.double_steps", OPEN_ENDED)], Verdict.SUPPORTED),  # reaches outside the sweep
    ([_set("transition_K2.steps", FOUND)], Verdict.SUPPORTED),  # only the doubled budget decides
    ([_set("pl_slope.double_steps", _slope(0.9, [0.85, 0.95]))], Verdict.SUPPORTED_WITH_CAVEATS),
    ([_set("pl_slope.double_steps", _slope(0.55, [0.45, 0.65]))], Verdict.SUPPORTED),  # straddles
    ([_set("pl_slope.steps", _slope(0.9, [0.85, 0.95]))], Verdict.SUPPORTED),
    ([_set("contrast_K3.layer_rank2", success_record(0, 12))], Verdict.SUPPORTED),  # K = 3 decides nothing
    ([_set("binary_rank1.layer_K2", success_record(48, 60)), _set("transition_K2.double_steps", FOUND)],
     Verdict.NOT_SUPPORTED),
], ids=lambda value: ",".join(change.__name__.split("=")[0] for change in value) or "none"
   if isinstance(value, list) else str(value))
def test_each_clause_of_the_rule_can_flip_the_verdict(changes, expected):
    inputs = supported_inputs()
    for change in changes:
        change(inputs)
    decision = decide(Outcome(inputs), SPEC)
    assert decision.verdict is expected, decision.summary


def test_an_undecided_level_is_labelled_underpowered_only_when_the_design_is():
    inputs = supported_inputs()
    inputs["binary_rank1"]["layer_K2"] = success_record(12, 12)  # Wilson [0.76, 1]: cannot clear 0.9
    powered = decide(Outcome(copy.deepcopy(inputs)), SPEC)
    inputs["design_power"] = TWELVE_TRIALS
    underpowered = decide(Outcome(inputs), SPEC)
    assert powered.verdict is underpowered.verdict is Verdict.INCONCLUSIVE
    assert "underpowered" not in powered.summary and "inconclusive: underpowered" in underpowered.summary
