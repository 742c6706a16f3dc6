"""The real-feature experiments on synthetic factored features with known behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lora_claims.errors import InvalidArgument
from lora_claims.methods.cstar.estimate import CStarConfig, estimate_cstar
from lora_claims.methods.cstar.problems import LoraSystem
from lora_claims.methods.ntk.features import JacobianFeatures
from lora_claims.methods.ntk.real_capacity import block_separability, rank_trainability, real_lora_sampler
from tests.ntk_support import one_torch_thread  # noqa: F401  (autouse fixture)


def token_features(pool: int = 48, tokens: int = 8, size: int = 8, seed: int = 0, scale: float = 1e-3):
    """Random factored features with many tokens per example (generic, full-rank per example),
    at a small scale, as real Jacobians are."""
    generator = torch.Generator().manual_seed(seed)
    return JacobianFeatures(("w",), {"w": scale * torch.randn(pool, 2, tokens, size, generator=generator)},
                            {"w": torch.randn(pool, tokens, size, generator=generator)},
                            0.01 * torch.randn(pool, 2, generator=generator))


def test_sampler_gives_p_equations_from_whole_examples():
    sampler = real_lora_sampler(token_features(), "w")
    system = sampler(6, 6, 1, 7, 3, np.random.default_rng(0))  # 7 equations: 4 examples, last one cut
    assert isinstance(system, LoraSystem) and system.features.shape == (3, 7, 6, 6)
    assert system.targets.shape == (3, 7)
    with pytest.raises(InvalidArgument, match="square"):
        sampler(6, 5, 1, 7, 3, np.random.default_rng(0))


def test_exact_fit_threshold_of_generic_token_features_is_one():
    """With T >= s tokens per example the features are generic: the threshold is rho = 1, as for iid."""
    config = CStarConfig(6, 6, 1, definition="solv", trials=30, bootstrap=100)
    result = estimate_cstar(config, sampler=real_lora_sampler(token_features(), "w"))
    assert result.threshold(0.95).rho_grid == pytest.approx(1.0, abs=0.1)


def test_the_sampler_is_the_one_used():
    """Negative control: p copies of one feature matrix cannot fit p > 1 different random targets."""
    def copies(m, n, r, p, trials, rng):
        one = rng.standard_normal((trials, 1, m, n))
        return LoraSystem(np.repeat(one, p, axis=1), rng.standard_normal((trials, p)), r)

    result = estimate_cstar(CStarConfig(4, 4, 1, definition="solv", trials=10, bootstrap=50), sampler=copies)
    assert all(point.successes == 0 for point in result.points if point.p > 1)


def test_rank_one_ce_fits_a_small_training_set():
    features = token_features(pool=8)
    labels = torch.tensor([0, 1] * 4)
    result = rank_trainability(features, "w", labels, ranks=[1, 2], inits=2, steps=300, epsilon=1e-3)
    assert result["ranks"]["1"]["fraction"] == 1.0
    assert result["KN"] == 16 and result["ranks"]["1"]["manifold_dim"] == 15


def test_block_separability_falls_as_n_grows():
    result = block_separability(token_features(pool=64), "w", block=4, sizes=[4, 24, 60], trials=6, steps=300)
    fractions = [row["fraction"] for row in result["rows"]]
    assert fractions[0] == 1.0 and fractions[-1] == 0.0
    assert result["N50"] is not None and 4 < result["N50"] < 60
