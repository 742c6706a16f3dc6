"""C8: rank 1 against rank 12 on binary GLUE tasks (paired non-inferiority, margin in the registry).

Default run (CPU, slow): MiniLM at the reduced scale on the staged data. `pytest -m gpu`: the
paper's three encoders at LM-BFF scale; with --device cpu the same test at smoke scale, MiniLM
standing in for encoders not available offline.
"""

from __future__ import annotations

import pytest

from lora_claims.harness.registry import Verdict
from lora_claims.claims.c08_rank1_competitive import CLAIMED_TASKS, EXTRA_TASKS, PAPER_ENCODERS
from lora_claims.methods.finetune.models import MissingModel, mpnet_parts
from tests.finetune_support import paper_scale_result, skip_unless_data_or_ci

# Measured on the staged data, MiniLM at the cpu-reduced scale (README, "Few-shot fine-tuning"):
# SST-2 rank 1 is inferior (0.557 vs 0.632; 95% t interval of the difference [-0.108, -0.042],
# entirely below -delta = -0.02); QNLI, MRPC and RTE sit at chance. At 30 training steps rank 1
# learns more slowly than rank 12; this is not the paper's 1000-step scale, and says so.
EXPECTED_CPU_VERDICT = Verdict.NOT_SUPPORTED


def _check_grid(result, encoders, n_seeds):
    rows = result.evidence["comparisons"]
    assert {(r["encoder"], r["task"]) for r in rows} == {
        (e, t) for e in encoders for t in CLAIMED_TASKS + EXTRA_TASKS
    }
    for row in rows:
        assert len(row["accuracy"]["1"]) == len(row["accuracy"]["12"]) == n_seeds
        assert row["lora_params"]["12"] == 12 * row["lora_params"]["1"]
        t = row["non_inferiority"]["t"]
        assert t["low"] <= t["mean"] <= t["high"]
    assert result.figures and "| task | encoder |" in result.evidence["table"]


@pytest.mark.slow
def test_c8_cpu_reduced_scale_minilm(audit, device):
    result = audit.result("C8", device=device)
    skip_unless_data_or_ci(result)
    assert result.evidence["scale"]["name"] == "cpu-reduced", result.summary
    _check_grid(result, ["minilm"], 3)
    assert "cpu-reduced scale (minilm" in result.summary
    assert result.verdict == EXPECTED_CPU_VERDICT, result.summary


@pytest.mark.slow
def test_c8_cpu_reduced_scale_with_mpnet(audit, device):
    try:
        mpnet_parts()
    except MissingModel as reason:
        pytest.skip(str(reason))
    result = audit.result("C8", profile="thorough", device=device)
    skip_unless_data_or_ci(result)
    _check_grid(result, ["minilm", "mpnet"], 3)
    assert result.verdict != Verdict.NOT_EVALUATED, result.summary


@pytest.mark.gpu
def test_c8_paper_scale(audit, device):
    result, n_seeds = paper_scale_result(audit, "C8", device)
    _check_grid(result, list(PAPER_ENCODERS), n_seeds)
    if result.evidence["scale"]["name"] == "smoke":
        assert result.verdict != Verdict.SUPPORTED  # a smoke run never supports the claim
