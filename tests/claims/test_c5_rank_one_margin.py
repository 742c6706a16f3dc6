"""C5: the manifold condition at r = 1 on every canonical setup, binary and multi-class."""

import pytest

from lora_claims.harness.registry import Verdict


def test_c5_holds_at_rank_one_but_does_not_separate_binary_from_multiclass(audit):
    result = audit.result("C5")
    assert result.verdict is Verdict.SUPPORTED_WITH_CAVEATS
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
