"""C9: the C8 comparison on roberta-large; GPU only (`pytest -m gpu`)."""

from __future__ import annotations

import pytest

from tests.finetune_support import assert_needs_gpu, paper_scale_result


def test_c9_is_not_evaluated_without_cuda(audit):
    assert_needs_gpu(audit, "C9")


@pytest.mark.gpu
def test_c9_paper_scale(audit, device, claim_holds):
    result = paper_scale_result(audit, "C9", device)
    assert {row["model"] for row in result.decision_inputs["comparisons"]} == {"roberta-large"}
    if device.startswith("cuda"):
        claim_holds(result)
