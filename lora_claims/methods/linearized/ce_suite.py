"""The cross-entropy experiments of ``ce_experiments`` at fixed configurations, through a result cache.

Each function names one experiment of the set (canonical-like rank sweeps, the squared-loss control,
PL profiles, separability sweeps, the origin check) and takes its sizes explicitly, so two callers
that ask for the same experiment at the same sizes share one cached run.
"""

from __future__ import annotations

from lora_claims.harness.cache import CacheKind, ResultCache
from lora_claims.methods.linearized import ce_experiments as ce

C6_RUNS = CacheKind("c6", 3)  # bump the schema when an experiment's code changes
CANONICAL_RANKS = [1, 2, 4, 12]
GAUSSIAN_SIDE = 64  # m = n of the canonical-like Gaussian instances
SMALL_SIDE = 8  # m = n of the control, PL and separability instances


def cached_run(cache: ResultCache, function, **config) -> dict:
    """``function(**config)``, computed once per configuration."""
    key = {"function": function.__name__, **config}
    return cache.get_or_compute(C6_RUNS, key, lambda: function(**config))


def canonical_success(cache: ResultCache, source: str, n_outputs: int, side: int, trials: int,
                      steps: int, epsilon: float, seed: int, ranks: list[int] = CANONICAL_RANKS) -> dict:
    """Rank sweep at 16 examples per class on ``side`` x ``side`` features."""
    return cached_run(cache, ce.rank_success, source=source, n_outputs=n_outputs,
                      n_examples=16 * n_outputs, m=side, n=side, ranks=ranks, trials=trials,
                      steps=steps, epsilon=epsilon, seed=seed)


def gaussian_canonical_success(cache: ResultCache, n_outputs: int, trials: int, steps: int,
                               epsilon: float, seed: int) -> dict:
    return canonical_success(cache, "gaussian", n_outputs, GAUSSIAN_SIDE, trials, steps, epsilon, seed)


def loss_control(cache: ResultCache, loss: str, trials: int, steps: int, epsilon: float, seed: int) -> dict:
    """Rank 1 at K = 2, N = 20 on 8 x 8 Gaussian features: KN = 40 exceeds the manifold dimension 15."""
    return cached_run(cache, ce.rank_success, source="gaussian", n_outputs=2, n_examples=20,
                      m=SMALL_SIDE, n=SMALL_SIDE, ranks=[1], trials=trials, steps=steps,
                      epsilon=epsilon, loss=loss, seed=seed)


def pl_runs(cache: ResultCache, trials: int, steps: int, weight_decay: float, seed: int) -> dict:
    """PL profiles: rank 1 unregularized at ``steps`` and twice that (the budget check), and ranks 1
    and 4 with l2 (half the steps)."""
    common = {"source": "gaussian", "n_outputs": 2, "n_examples": 16, "m": SMALL_SIDE, "n": SMALL_SIDE,
              "trials": trials, "seed": seed}
    runs = {name: cached_run(cache, ce.pl_profile, rank=1, steps=budget, **common)
            for name, budget in (("unregularized", steps), ("unregularized_double_steps", 2 * steps))}
    for rank in (1, 4):
        runs[f"l2_rank{rank}"] = cached_run(cache, ce.pl_profile, rank=rank, steps=steps // 2,
                                            weight_decay=weight_decay, **common)
    return runs


def gaussian_separability(cache: ResultCache, n_outputs: int, sizes: list[int], trials: int, steps: int,
                          seed: int) -> dict:
    """Rank-1 CE separability of random labels on 8 x 8 Gaussian features, per N in ``sizes``."""
    return cached_run(cache, ce.separability_capacity, source="gaussian", n_outputs=n_outputs,
                      m=SMALL_SIDE, n=SMALL_SIDE, sizes=sizes, trials=trials, steps=steps, seed=seed)


def cover_calibration(cache: ResultCache, sizes: list[int], trials: int, steps: int, seed: int) -> dict:
    """Separability with last-layer features (m = 2, n = 8, f0 = 0) next to Cover's formula."""
    run = cached_run(cache, ce.separability_capacity, source="layer", n_outputs=2, m=2, n=SMALL_SIDE,
                     sizes=sizes, trials=trials, steps=steps, f0_scale=0.0, seed=seed)
    return {**run, "cover": [ce.cover_fraction(size, SMALL_SIDE) for size in sizes]}


def origin_check(cache: ResultCache, seed: int) -> dict:
    return cached_run(cache, ce.origin_saddle, source="gaussian", n_outputs=2, n_examples=16,
                      m=SMALL_SIDE, n=SMALL_SIDE, trials=4, seed=seed)
