"""The capacity experiments (exact fit, budgeted training, CE trainability and separability) with
real Jacobian features in place of Gaussian ones.

- ``rank_trainability``: the task's own k-shot training set and labels, the full adapted matrix
  (384 x 384 for MiniLM), base logits f0 of the real model: does rank-r Armijo GD on cross-entropy
  reach loss < epsilon with 100% training accuracy, from several LoRA initializations?
- ``real_lora_sampler``: exact-fit and budgeted-training instances from real features, for
  ``cstar.estimate_cstar``: s x s blocks, the (example, logit) equations of ceil(p / K) examples,
  targets y ~ N(0, I_p) as in the Gaussian estimator.
- ``block_separability``: rank-1 separability of random labels as N grows, on s x s blocks of the
  real features (``feature_blocks``) at the sizes of the Gaussian capacity sweep, so the transition
  N50 can be put next to the Gaussian one.

The CE experiments return JSON-ready dicts in the layout of ``ce_experiments`` (fractions with
Wilson intervals) and train with the linearized-model trainer (``lora_claims.methods.linearized.training``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch

from lora_claims.errors import InvalidArgument
from lora_claims.methods.counting.capacity import manifold_dim
from lora_claims.methods.cstar.estimate import ProblemSampler
from lora_claims.methods.cstar.problems import LoraSystem
from lora_claims.methods.linearized.ce_experiments import success_record, transition_point
from lora_claims.methods.linearized.model import DTYPE, DenseFeatures, FactoredFeatures, LinearizedProblem
from lora_claims.methods.linearized.training import TrainConfig, train
from lora_claims.methods.ntk.feature_blocks import sample_blocks
from lora_claims.methods.ntk.features import JacobianFeatures

if TYPE_CHECKING:  # real_features loads transformers; the experiments here need only tensors
    from lora_claims.methods.ntk.real_features import FeaturePool


SCHEMA = 2  # bump when the real-feature experiments change


def pool_identity(pool: FeaturePool) -> dict:
    """What identifies a pool's features in the cache keys of the experiments run on them."""
    return {"schema": SCHEMA, **pool.config, "matrix": pool.features.matrices[0],
            "pool": pool.features.n_examples, "train": pool.n_train}


def _unit_scale(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``left`` rescaled so that the features G have unit mean-square entry (see feature_blocks)."""
    dense = torch.einsum("jktm,jtn->jkmn", left, right)
    return left / dense.square().mean().sqrt()


def real_lora_sampler(pool: JacobianFeatures, matrix: str) -> ProblemSampler:
    """A ``cstar`` problem sampler drawing square blocks of ``matrix``'s real features."""

    def sample(m: int, n: int, r: int, p: int, trials: int, rng: np.random.Generator) -> LoraSystem:
        if m != n:
            raise InvalidArgument(f"real-feature blocks are square: m must equal n, got {m} x {n}")
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        blocks = sample_blocks(pool, matrix, trials, math.ceil(p / pool.n_outputs), m, generator)
        features = blocks.dense().reshape(trials, -1, m, n)[:, :p].numpy()
        return LoraSystem(features, rng.standard_normal((trials, p)), r)

    return sample


def rank_trainability(features: JacobianFeatures, matrix: str, labels: torch.Tensor, ranks: list[int],
                      inits: int, steps: int, epsilon: float, seed: int = 0) -> dict:
    """Success fraction per rank over ``inits`` LoRA initializations on the real training set.

    One initialization at a time, each stopping as soon as it is below ``epsilon``: the features are
    shared and large (N K T m numbers), so a batch over instances would only copy them.
    """
    generator = torch.Generator().manual_seed(seed)
    left = _unit_scale(features.left[matrix].to(DTYPE), features.right[matrix].to(DTYPE))
    problem = LinearizedProblem(FactoredFeatures(left, features.right[matrix].to(DTYPE)), labels.long(),
                                "cross_entropy", features.f0.to(DTYPE))
    m, n = features.shape(matrix)
    per_rank = {}
    for rank in ranks:
        runs = [train(problem, TrainConfig(rank=rank, steps=steps, stop_below=epsilon), generator=generator)
                for _ in range(inits)]
        losses = torch.cat([run.objective for run in runs])
        accuracies = torch.cat([run.accuracy for run in runs])
        per_rank[str(rank)] = {
            **success_record(int(((losses < epsilon) & (accuracies == 1)).sum()), inits),
            "median_final_loss": float(losses.median()),
            "max_final_loss": float(losses.max()),
            "median_train_accuracy": float(accuracies.median()),
            "median_steps": float(torch.tensor([float(run.steps_run) for run in runs]).median()),
            "manifold_dim": manifold_dim(rank, m, n),
        }
    return {"matrix": matrix, "K": features.n_outputs, "N": features.n_examples, "m": m, "n": n,
            "KN": features.n_outputs * features.n_examples, "epsilon": epsilon, "steps": steps,
            "ranks": per_rank}


def block_separability(pool: JacobianFeatures, matrix: str, block: int, sizes: list[int], trials: int,
                       steps: int, seed: int = 0) -> dict:
    """Fraction of (block, example subset, random labels) instances that rank-1 CE separates, per N.

    Every instance holds max(sizes) examples; a mask keeps the first N (as in the Gaussian sweep).
    f0 = 0, so only the adapted block decides the labels. An s x s block is cheaper dense (s^2
    numbers per logit) than factored (T (s + s)).
    """
    generator = torch.Generator().manual_seed(seed)
    n_max = max(sizes)
    count = len(sizes) * trials
    blocks = sample_blocks(pool, matrix, count, n_max, block, generator)
    mask = torch.zeros(count, n_max, dtype=torch.bool)
    for index, size in enumerate(sizes):
        mask[index * trials:(index + 1) * trials, :size] = True
    labels = torch.randint(0, pool.n_outputs, (count, n_max), generator=generator)
    problem = LinearizedProblem(DenseFeatures(blocks.dense()), labels, "cross_entropy", mask=mask)
    result = train(problem, TrainConfig(rank=1, steps=steps, stop_below=1e-6), generator=generator)
    separated = (result.accuracy == 1).view(len(sizes), trials).sum(dim=1).tolist()
    rows = [{"N": size, "KN": pool.n_outputs * size, **success_record(int(hits), trials)}
            for size, hits in zip(sizes, separated, strict=True)]
    dim = manifold_dim(1, block, block)
    n50 = transition_point([row["N"] for row in rows], [row["fraction"] for row in rows])
    return {"source": f"real:{matrix}", "K": pool.n_outputs, "m": block, "n": block, "manifold_dim": dim,
            "steps": steps, "pool": pool.n_examples, "rows": rows, "N50": n50,
            "KN50_over_dim": None if n50 is None else pool.n_outputs * n50 / dim}
