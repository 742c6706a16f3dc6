"""C9: the C8 comparison on roberta-large; GPU only (`pytest -m gpu`)."""

from __future__ import annotations

import pytest

from lora_claims.harness.spec import Verdict
from tests.finetune_support import paper_scale_result


def test_c9_is_not_evaluated_without_cuda(audit):
    result = audit.result("C9", device="cpu")
    assert result.verdict is Verdict.NOT_EVALUATED
    if result.not_evaluable["kind"] == "missing_data":
        pytest.skip(result.summary)
    assert result.not_evaluable["kind"] == "needs_gpu" and "pytest -m gpu" in result.summary


@pytest.mark.gpu
def test_c9_paper_scale(audit, device, claim_holds):
    result = paper_scale_result(audit, "C9", device)
    assert {row["model"] for row in result.decision_inputs["comparisons"]} == {"roberta-large"}
    if device.startswith("cuda"):
        claim_holds(result)
