"""C5: the manifold condition at r = 1 on every canonical setup, binary and multi-class."""

import pytest

from lora_claims.claims import c05_rank_one_margin
from lora_claims.claims.c05_rank_one_margin import SPEC, decide
from lora_claims.harness.registry import Verdict
from lora_claims.harness.spec import Outcome
from tests.rule_support import assert_rule_replays


def test_c5_claim(audit, claim_holds):
    claim_holds(audit.result("C5"))


def test_c5_known_arithmetic(audit):
    """claims.md's figures: 1535 and 2047 at r = 1, C* KN = 86.4 (K = 2, N = 32), 194.4 (MNLI)."""
    result = audit.result("C5")
    rows = {
        (r["encoder"], r["task"], r["k"], r["K"]): r for r in result.evidence["rows"]
    }
    binary = rows[("roberta-base", "SST-2", 16, 2)]
    assert binary["d_r1_per_matrix"] == 1535
    assert binary["cstar_KN"] == pytest.approx(86.4)
    assert rows[("roberta-large", "SST-2", 16, 2)]["d_r1_per_matrix"] == 2047
    assert rows[("roberta-base", "MNLI", 16, 3)]["cstar_KN"] == pytest.approx(194.4)
    assert result.evidence["binary_canonical_holds"]
    assert result.evidence["multiclass_canonical_holds"]  # hence: it cannot separate them
    # beyond the canonical setups it fails, e.g. TREC with 64 shots per class on roberta-base
    assert not rows[("roberta-base", "TREC", 64, 6)]["holds_per_matrix"]
    assert result.figures == ["c5_rank_one_margin.png"]


def test_c5_decision_inputs_reproduce_the_verdict(audit):
    assert_rule_replays(audit.result("C5"), c05_rank_one_margin)


def _c5_inputs(large_k2_holds: bool = True, multiclass_holds: bool = True) -> dict:
    setups = {"roberta-base SST-2 K=1": True, "roberta-base SST-2 K=2": True,
              "roberta-large SST-2 K=2": large_k2_holds}
    return {
        "canonical_binary": [{"setup": setup, "holds_per_matrix": holds} for setup, holds in setups.items()],
        "multiclass_canonical_holds": multiclass_holds,
        "headline_binary": {"d_r1_per_matrix": 1535, "cstar_KN": 86.4, "ratio_per_matrix": 17.77},
        "mnli": {"cstar_KN": 194.4, "ratio_per_matrix": 7.9},
        "failures_per_matrix": ["roberta-base TREC k=64"],
    }


def test_c5_rule_holds_on_every_canonical_binary_setup_with_the_caveat():
    decision = decide(Outcome(_c5_inputs()), SPEC)
    assert decision.verdict is Verdict.SUPPORTED_WITH_CAVEATS
    assert "does not separate binary from multi-class" in decision.summary


def test_c5_rule_one_failing_canonical_binary_setup_flips_the_verdict():
    decision = decide(Outcome(_c5_inputs(large_k2_holds=False)), SPEC)
    assert decision.verdict is Verdict.NOT_SUPPORTED
    assert decision.summary.endswith("roberta-large SST-2 K=2")


def test_c5_rule_the_caveat_follows_the_multiclass_result():
    decision = decide(Outcome(_c5_inputs(multiclass_holds=False)), SPEC)
    assert decision.verdict is Verdict.SUPPORTED
    assert "does separate binary from multi-class" in decision.summary


def test_c5_rule_a_binary_failure_wins_over_the_multiclass_result():
    decision = decide(Outcome(_c5_inputs(large_k2_holds=False, multiclass_holds=False)), SPEC)
    assert decision.verdict is Verdict.NOT_SUPPORTED
