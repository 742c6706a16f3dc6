"""The suite's device gating: GPU tests are skipped by default and fail loudly without CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT_CONFTEST = Path(__file__).resolve().parent.parent / "conftest.py"

GPU_TEST = """
import pytest

@pytest.mark.gpu
def test_needs_cuda(device):
    assert device in ("cuda", "cpu")

def test_plain():
    pass
"""


@pytest.fixture
def sample(pytester):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the no-CUDA failure cannot be observed here")
    pytester.makeconftest(ROOT_CONFTEST.read_text().replace('pytest_plugins = ["pytester"]', ""))
    pytester.makepyfile(test_sample=GPU_TEST)
    return pytester


def test_default_run_skips_gpu_tests_with_a_reason(sample):
    result = sample.runpytest("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*run `pytest -m gpu` on a CUDA machine*"])


def test_selecting_gpu_without_cuda_fails_loudly(sample):
    result = sample.runpytest("-m", "gpu")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*selected 1 GPU test(s), but torch sees no CUDA device*"])


def test_cpu_dry_run_of_gpu_tests_runs_them(sample):
    result = sample.runpytest("-m", "gpu", "--device", "cpu")
    result.assert_outcomes(passed=1, deselected=1)


def test_not_slow_expression_does_not_count_as_asking_for_gpu(sample):
    result = sample.runpytest("-m", "not slow")
    result.assert_outcomes(passed=1, skipped=1)
