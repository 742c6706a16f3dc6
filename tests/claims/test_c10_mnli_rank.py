"""C10: on MNLI the best LoRA rank is above one (roberta-base sweep; GPU: `pytest -m gpu`)."""

from __future__ import annotations

import pytest

from tests.finetune_support import assert_needs_gpu, paper_scale_result


def test_c10_is_not_evaluated_without_cuda(audit):
    assert_needs_gpu(audit, "C10")


@pytest.mark.gpu
def test_c10_paper_scale(audit, device, claim_holds):
    result = paper_scale_result(audit, "C10", device)
    (entry,) = result.decision_inputs["models"].values()
    test = entry["test"]
    assert all(test["lower"][r] <= test["advantages"][r] <= test["upper"][r] for r in test["lower"])
    if device.startswith("cuda"):
        claim_holds(result)
