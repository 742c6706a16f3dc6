"""Random small instances cut out of real Jacobian features, for the capacity claims (C4, C6).

The Gaussian-iid estimators locate their thresholds at small sizes (m = n = 8 to 20), where one can
scan the number of equations around the manifold dimension. To ask the same question of real
features, an instance restricts LoRA to an s x s block of one adapted matrix (random rows and
columns, drawn per instance) and takes a random subset of a pool of real examples, with all K
logits of each example:

    G_jk = sum_t u_jkt[rows] h_jt[cols]^T.

This keeps what makes real features different from iid ones: the K logits of an example share its
token inputs h_jt, each example's matrix is a sum of T rank-one terms, and examples are
correlated. Each instance is rescaled to unit mean-square feature entry, which changes neither
exact solvability nor separability (it rescales Delta) but keeps every solver at one scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lora_claims.errors import InvalidArgument, require_int
from lora_claims.methods.ntk.features import JacobianFeatures


@dataclass
class FeatureBlocks:
    """Factored block features of ``instances`` instances: left [I, N, K, T, s], right [I, N, T, s]."""

    left: torch.Tensor
    right: torch.Tensor
    examples: torch.Tensor  # [I, N] indices into the pool
    rows: torch.Tensor  # [I, s] rows of the matrix in each block
    cols: torch.Tensor  # [I, s] columns
    f0: torch.Tensor  # [I, N, K] the pool's base logits for the chosen examples

    def dense(self) -> torch.Tensor:
        """[I, N, K, s, s]."""
        return torch.einsum("ijktm,ijtn->ijkmn", self.left, self.right)


def _random_subsets(count: int, population: int, size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, population, generator=generator).argsort(dim=1)[:, :size]


def sample_blocks(features: JacobianFeatures, matrix: str, instances: int, n_examples: int, size: int,
                  generator: torch.Generator, dtype: torch.dtype = torch.float64) -> FeatureBlocks:
    """``instances`` random (example subset, s x s block) cuts of ``matrix``'s features."""
    if matrix not in features.matrices:
        raise InvalidArgument(
            f"matrix {matrix!r} is not among the features' matrices {list(features.matrices)}")
    pool = features.n_examples
    instances = require_int("instances", instances)
    n_examples = require_int("n_examples", n_examples, maximum=pool)
    m, n = features.shape(matrix)
    size = require_int("block size s", size, maximum=min(m, n))
    examples = _random_subsets(instances, pool, n_examples, generator)
    rows = _random_subsets(instances, m, size, generator)
    cols = _random_subsets(instances, n, size, generator)
    outputs = torch.arange(features.n_outputs)[:, None, None]
    tokens = torch.arange(features.right[matrix].shape[1])
    left = features.left[matrix][examples[:, :, None, None, None], outputs, tokens[:, None],
                                 rows[:, None, None, None, :]]
    right = features.right[matrix][examples[:, :, None, None], tokens[:, None], cols[:, None, None, :]]
    left, right = left.to(dtype), right.to(dtype)
    rms = torch.einsum("ijktm,ijtn->ijkmn", left, right).square().mean(dim=(1, 2, 3, 4)).sqrt()
    if not bool((rms > 0).all()):
        raise InvalidArgument(
            f"a block of {matrix!r} has all-zero features; the matrix does not affect the logits")
    left = left / rms.view(-1, 1, 1, 1, 1)
    return FeatureBlocks(left, right, examples, rows, cols, features.f0[examples].to(dtype))
