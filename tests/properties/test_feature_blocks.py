"""Blocks cut out of Jacobian features: the right entries, unit scale, clear errors."""

from __future__ import annotations

import pytest
import torch

from lora_claims.errors import InvalidArgument
from lora_claims.methods.ntk.feature_blocks import sample_blocks
from lora_claims.methods.ntk.features import JacobianFeatures
from tests.ntk_support import one_torch_thread  # noqa: F401  (autouse fixture)

POOL, K, TOKENS, M, N = 10, 2, 5, 7, 6


def random_features(seed: int = 0) -> JacobianFeatures:
    generator = torch.Generator().manual_seed(seed)
    return JacobianFeatures(("w",), {"w": torch.randn(POOL, K, TOKENS, M, generator=generator)},
                            {"w": torch.randn(POOL, TOKENS, N, generator=generator)},
                            torch.randn(POOL, K, generator=generator))


def test_blocks_are_rescaled_sub_blocks_of_the_dense_features():
    features = random_features()
    blocks = sample_blocks(features, "w", instances=4, n_examples=3, size=2,
                           generator=torch.Generator().manual_seed(1))
    dense, full = blocks.dense(), features.dense("w").double()
    assert dense.shape == (4, 3, K, 2, 2)
    for i in range(4):
        block = full[blocks.examples[i]][:, :, blocks.rows[i]][:, :, :, blocks.cols[i]]
        torch.testing.assert_close(dense[i], block / block.square().mean().sqrt(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(blocks.f0, features.f0[blocks.examples].double())


def test_subsets_have_distinct_examples():
    blocks = sample_blocks(random_features(), "w", 20, 10, 3, torch.Generator().manual_seed(2))
    assert all(len(set(row.tolist())) == 10 for row in blocks.examples)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_examples": POOL + 1}, "n_examples must be <= 10"),
    ({"size": 7}, "block size s must be <= 6"),
    ({"matrix": "v"}, "not among the features' matrices"),
])
def test_bad_requests_fail_clearly(kwargs, message):
    request = {"matrix": "w", "instances": 2, "n_examples": 3, "size": 2, **kwargs}
    with pytest.raises(InvalidArgument, match=message):
        sample_blocks(random_features(), generator=torch.Generator(), **request)


def test_a_matrix_without_influence_is_refused():
    features = random_features()
    features.left["w"].zero_()
    with pytest.raises(InvalidArgument, match="all-zero features"):
        sample_blocks(features, "w", 2, 3, 2, torch.Generator())
