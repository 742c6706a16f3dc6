"""Timing helpers for ratio checks that must hold on a shared, noisy machine."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


def synchronize(device: str) -> None:
    """Wait for queued CUDA work, so that a timer stops when the work is done."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def best_seconds(steps: dict[str, Callable[[], object]], repeats: int,
                 device: str = "cpu") -> dict[str, float]:
    """Fastest of ``repeats`` timed calls of each step, the steps taking turns after one warm-up each.

    Taking turns exposes every step to the same background load, and the minimum discards the
    load's positive noise (the reasoning of ``timeit``), so ratios of the results stay meaningful on
    a shared machine.
    """
    for step in steps.values():
        step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(repeats):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            best[name] = min(best[name], time.perf_counter() - start)
    return best


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: on a shared machine its worker threads wait on each other whenever
    one is descheduled, which made 2-thread LoRA steps 8x slower than 1-thread steps under a load
    of 6 on 2 cores; one thread keeps ratio checks fast and their ratios stable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
