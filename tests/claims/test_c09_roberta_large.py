"""C9: the C8 comparison on roberta-large; GPU only."""

from __future__ import annotations

import pytest

from lora_claims.harness.registry import Verdict
from lora_claims.claims.c09_roberta_large import LARGE_ENCODER
from tests.finetune_support import paper_scale_result


def test_c9_is_not_evaluated_on_cpu(audit):
    result = audit.result("C9", device="cpu")
    assert result.verdict == Verdict.NOT_EVALUATED
    assert "GPU-only" in result.summary and "pytest -m gpu" in result.summary


@pytest.mark.gpu
def test_c9_paper_scale(audit, device):
    result, n_seeds = paper_scale_result(audit, "C9", device)
    assert result.evidence["encoders"] == [LARGE_ENCODER]
    rows = result.evidence["comparisons"]
    assert len(rows) == 5 and all(len(r["accuracy"]["1"]) == n_seeds for r in rows)
