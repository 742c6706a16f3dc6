"""The cached cross-entropy experiment set: one run per configuration, under the keys older caches hold."""

from __future__ import annotations

from lora_claims.harness.cache import ResultCache
from lora_claims.methods.linearized import ce_experiments as ce
from lora_claims.methods.linearized import ce_suite
from tests.ntk_support import one_torch_thread  # noqa: F401  (autouse fixture)


def test_each_configuration_runs_once(tmp_path):
    cache, calls = ResultCache(tmp_path), []

    def experiment(size: int, seed: int) -> dict:
        calls.append((size, seed))
        return {"size": size}

    for _ in range(2):
        assert ce_suite.cached_run(cache, experiment, size=3, seed=0) == {"size": 3}
    ce_suite.cached_run(cache, experiment, size=4, seed=0)
    assert calls == [(3, 0), (4, 0)]
    key = {"function": "experiment", "size": 3, "seed": 0}
    assert cache.path(ce_suite.C6_RUNS, key).exists()


def test_cover_calibration_puts_covers_formula_beside_each_size(tmp_path):
    sizes = [2, 12]
    run = ce_suite.cover_calibration(ResultCache(tmp_path), sizes, trials=2, steps=5, seed=0)
    assert [row["N"] for row in run["rows"]] == sizes
    assert run["cover"] == [ce.cover_fraction(size, ce_suite.SMALL_SIDE) for size in sizes]
