"""C1: which reading of r(r+1)/2 > KN gives the prescribed r >= 12."""

import pytest

from lora_claims.claims import c01_sard_prescription
from lora_claims.claims.c01_sard_prescription import SPEC, decide
from lora_claims.harness.registry import Verdict
from lora_claims.harness.spec import Outcome
from tests.rule_support import assert_rule_replays


def test_c1_claim(audit, claim_holds):
    """The paper's claim; the expected outcome (supported with caveats: 12 only from the sqrt
    form) and its exact figures are in regression.json."""
    claim_holds(audit.result("C1"))


def test_c1_known_arithmetic(audit):
    """claims.md's known arithmetic: K = 2, N = 32 gives 11 exactly, 12 from ceil(sqrt(2KN))."""
    result = audit.result("C1")
    rows = {(row["K"], row["N"]): row for row in result.evidence["table"]}
    assert rows[(2, 32)]["r_min_exact"] == 11 and rows[(2, 32)]["r_min_sqrt_form"] == 12
    assert rows[(2, 32)]["off_by_one"]
    assert rows[(1, 32)]["r_min_exact"] == 8
    assert rows[(3, 48)]["r_min_exact"] == 17  # MNLI 16-shot
    readings = result.evidence["readings_giving_prescribed_rank"]
    assert readings["exact inequality, canonical 16-shot setups"] == []
    assert readings["KN values whose exact minimum is 12"] == [66, 77]


def test_c1_decision_inputs_reproduce_the_verdict(audit):
    assert_rule_replays(audit.result("C1"), c01_sard_prescription)


def _c1_inputs(exact_form_setups: list, sqrt_form_setups: list) -> dict:
    return {
        "exact_form_setups": exact_form_setups,
        "sqrt_form_setups": sqrt_form_setups,
        "kn_range_exact_minimum_prescribed": [66, 77],
        "binary_k2": {"KN": 64, "r_min_exact": 11, "r_min_sqrt_form": 12},
        "binary_k1_r_min_exact": 8,
    }


@pytest.mark.parametrize(("exact", "sqrt", "verdict"), [
    ([["SST-2 k=16"]], [["SST-2 k=16"]], Verdict.SUPPORTED),
    ([], [["SST-2 k=16"]], Verdict.SUPPORTED_WITH_CAVEATS),
    ([], [], Verdict.NOT_SUPPORTED),
], ids=["exact-form-gives-12", "only-sqrt-form-gives-12", "no-reading-gives-12"])
def test_c1_rule_each_reading_flips_the_verdict(exact, sqrt, verdict):
    decision = decide(Outcome(_c1_inputs(exact, sqrt)), SPEC)
    assert decision.verdict is verdict
    if verdict is Verdict.SUPPORTED_WITH_CAVEATS:
        assert "off by one" in decision.summary and "66 <= KN <= 77" in decision.summary
