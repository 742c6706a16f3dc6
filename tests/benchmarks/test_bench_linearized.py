"""The linearized trainer (lora_claims.methods.linearized.training.train) on a batch of instances,
against a loop that trains the same instances one at a time.

The instances are C4-style Gaussian problems (N = 32 examples, K = 2 outputs, 16 x 16 features,
cross-entropy, rank 1, Armijo gradient descent for a fixed number of steps). The loop trains
slices of the batched problem, so both do exactly the same work. Everything runs on one torch
thread, as the harness's evaluators run the trainer. The two benchmarks are ``slow``
measurements; the speed-up check at the end is a ``timing`` test (``--benchmark-only`` only).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from bench_timing import best_seconds, one_torch_thread

from lora_claims.methods.linearized.instances import random_problem
from lora_claims.methods.linearized.model import DenseFeatures, LinearizedProblem
from lora_claims.methods.linearized.training import TrainConfig, train

SHAPE = {"n_examples": 32, "n_outputs": 2, "m": 16, "n": 16}
BENCH_INSTANCES, BENCH_STEPS, ROUNDS = 64, 20, 3
CHECK_INSTANCES, CHECK_STEPS = 16, 20
# Batching measured 4.5-5.9x faster than the loop at the check's size (one thread, machine load
# 5); 2x leaves room for noise while still catching a trainer that stops batching.
MIN_SPEEDUP = 2.0


def _trainers(instances: int, steps: int) -> dict[str, Callable[[], torch.Tensor]]:
    """Train ``instances`` problems batched, or one at a time; each returns the final objectives."""
    problem = random_problem("gaussian", instances, **SHAPE, seed=0)
    singles = [
        LinearizedProblem(DenseFeatures(problem.features.g[i : i + 1]), problem.target[i : i + 1],
                          problem.loss, problem.f0[i : i + 1])
        for i in range(instances)
    ]
    config = TrainConfig(rank=1, steps=steps)
    return {"batched": lambda: train(problem, config).objective,
            "loop": lambda: torch.cat([train(single, config).objective for single in singles])}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["batched", "loop"])
def test_bench_linearized_trainer(benchmark, how):
    benchmark.group = "linearized-trainer"
    benchmark.extra_info.update({"how": how, "instances": BENCH_INSTANCES, "steps": BENCH_STEPS, **SHAPE,
                                 "loss": "cross_entropy", "method": "gd", "rank": 1, "torch_threads": 1})
    with one_torch_thread():
        objectives = benchmark.pedantic(_trainers(BENCH_INSTANCES, BENCH_STEPS)[how], rounds=ROUNDS,
                                        warmup_rounds=1)
    assert objectives.shape == (BENCH_INSTANCES,) and bool(objectives.isfinite().all())


@pytest.mark.timing
def test_batched_training_is_faster_than_one_instance_at_a_time(benchmark):
    with one_torch_thread():
        best = benchmark.pedantic(best_seconds, args=(_trainers(CHECK_INSTANCES, CHECK_STEPS), 2),
                                  rounds=1, iterations=1)
    speedup = best["loop"] / best["batched"]
    assert speedup >= MIN_SPEEDUP, f"batched {best['batched']:.3f}s vs loop {best['loop']:.3f}s"
