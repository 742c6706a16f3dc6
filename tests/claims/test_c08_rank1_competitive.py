"""C8: rank 1 is competitive with rank 12 on four binary GLUE tasks and three encoders.

`pytest -m gpu` verifies it at the paper's scale (roberta-base, bert-base-uncased, ELECTRA-base):
pass = supported, fail = refuted with the evidence, expected failure = inconclusive. On a CPU the
claim is not evaluated (C8-cpu is the CPU reading); `pytest -m gpu --device cpu` runs the same
code on random-init encoders as a dry run.
"""

from __future__ import annotations

import pytest

from lora_claims.claims.c08_rank1_competitive import CLAIMED_TASKS, EXTRA_TASKS, PAPER_ENCODERS
from tests.finetune_support import assert_needs_gpu, paper_scale_result


def test_c8_is_not_evaluated_without_cuda_and_names_the_command(audit):
    assert_needs_gpu(audit, "C8")


@pytest.mark.gpu
def test_c8_paper_scale(audit, device, claim_holds):
    result = paper_scale_result(audit, "C8", device)
    rows = result.decision_inputs["comparisons"]
    planned = result.spec["sizes"]["seeds_per_task"]  # every task at paper scale, SST-2 in smoke
    assert {(r["model"], r["task"]) for r in rows} == {(e, t) for e in PAPER_ENCODERS for t in planned}
    assert set(planned) <= set(CLAIMED_TASKS + EXTRA_TASKS)
    for row in rows:
        assert row["lower"] <= row["difference"] <= row["upper"]
    if device.startswith("cuda"):
        claim_holds(result)
