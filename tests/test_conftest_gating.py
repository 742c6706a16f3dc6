"""The suite's device gating: GPU tests are skipped by default and fail loudly without CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch  # imported before pytester snapshots sys.modules: a re-import of torch crashes

ROOT_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"

GPU_TEST = """
import pytest

@pytest.mark.gpu
def test_needs_cuda(device):
    assert device in ("cuda", "cpu")

@pytest.mark.gpu
@pytest.mark.slow
def test_needs_cuda_for_long(device):
    assert device in ("cuda", "cpu")

def test_plain():
    pass
"""


@pytest.fixture
def sample(pytester):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the no-CUDA failure cannot be observed here")
    pytester.makeconftest(ROOT_CONFTEST.read_text().replace('pytest_plugins = ["pytester"]', ""))
    pytester.makepyfile(test_sample=GPU_TEST)
    return pytester


def test_default_run_skips_gpu_tests_with_a_reason(sample):
    result = sample.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*run `pytest -m gpu` on a CUDA machine*"])


def test_selecting_gpu_without_cuda_fails_loudly(sample):
    result = sample.runpytest("-m", "gpu")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*selected 2 GPU test(s), but torch sees no CUDA device*"])


@pytest.mark.parametrize("markexpr", ["gpu and slow", "slow and gpu", "gpu and not fast"])
def test_compound_expressions_selecting_gpu_tests_fail_loudly(sample, markexpr):
    result = sample.runpytest("-m", markexpr)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*GPU test(s), but torch sees no CUDA device*"])


def test_cpu_dry_run_of_gpu_tests_runs_them(sample):
    result = sample.runpytest("-m", "gpu", "--device", "cpu")
    result.assert_outcomes(passed=2, deselected=1)


def test_not_slow_expression_does_not_count_as_asking_for_gpu(sample):
    result = sample.runpytest("-m", "not slow")
    result.assert_outcomes(passed=1, skipped=1, deselected=1)


def test_an_empty_seed_range_stops_the_run(sample, monkeypatch):
    monkeypatch.setenv("LORA_CLAIMS_SEEDS", "5-1")
    result = sample.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*LORA_CLAIMS_SEEDS must name at least one seed*'5-1'*"])


WALL_CLOCK_CHECKS = (
    "test_the_engine_reaches_its_speed_target_against_the_trainer",
    "test_both_sides_complete_the_protocol",
    "test_batched_lm_is_10x_faster_than_per_instance_loop",
    "test_batched_training_is_faster_than_one_instance_at_a_time",
    "test_rank_one_step_is_not_slower_than_rank_sixteen",
    "test_turn_taking_timer_separates_equal_from_slower_steps",
)


def test_the_default_run_holds_no_wall_clock_assertion():
    """Every ratio of wall times is a `timing` test, skipped unless --benchmark-only: a fresh clone
    must not turn red because its machine is busy."""
    root = ROOT_CONFTEST.parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/benchmarks", "-m", "timing", "-v", "-rs",
         "-p", "no:cacheprovider"],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert result.returncode == 0, result.stdout[-2000:]
    outcomes = {line.split("::")[1].split("[")[0].split()[0]: line
                for line in result.stdout.splitlines() if line.startswith("tests/benchmarks/")}
    assert set(outcomes) == set(WALL_CLOCK_CHECKS)
    assert all("SKIPPED" in line for line in outcomes.values()), outcomes
    assert result.stdout.count("--benchmark-only") >= len(WALL_CLOCK_CHECKS)
