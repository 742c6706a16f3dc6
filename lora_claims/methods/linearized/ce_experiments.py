"""Experiments on whether cross-entropy training removes the rank threshold of the linearized model.

Each function runs one experiment batched over trials (and ranks, or sample sizes, through
per-instance ranks and example masks) and returns a JSON-ready dict; ``ce_suite`` runs them at
fixed configurations through a result cache.

- ``rank_success``: fraction of instances whose training reaches loss < epsilon with 100% training
  accuracy, per rank, with Wilson intervals. With ``loss="squared"`` on sizes where KN exceeds the
  rank-1 manifold dimension it is the negative control: the same machinery must report failure.
- ``pl_profile``: the PL ratio ||grad F||^2 / (2 (F - inf F)) along trajectories, by decade of the
  gap F - inf F, with and without l2 regularization.
- ``separability_capacity``: the fraction of instances rank-1 CE training separates as N grows.
- ``origin_saddle``: at A = B = 0 the gradient vanishes, yet the objective decreases along
  B = -eps u, A = eps v^T (u, v the top singular pair of grad_Delta L(0)).

The statistics the claims decide from: ``level_decision`` (a success fraction's Wilson interval
against a declared level), ``level_power`` (the chance a design reaches that level when the true
success rate is some alternative) and ``transition_interval`` (a bootstrap interval for N50).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats

from lora_claims.methods.counting.capacity import manifold_dim
from lora_claims.methods.linearized.convex import solve_nuclear
from lora_claims.methods.linearized.instances import random_problem
from lora_claims.methods.linearized.model import DenseFeatures, FactoredFeatures, LinearizedProblem, objective
from lora_claims.methods.linearized.training import TrainConfig, train
from lora_claims.methods.stats import wilson_interval


def success_record(successes: int, trials: int) -> dict:
    """A success count as a fraction with its Wilson interval."""
    low, high = wilson_interval(successes, trials)
    return {
        "successes": successes,
        "trials": trials,
        "fraction": successes / trials,
        "wilson": [low, high],
    }


def level_decision(record: dict, level: float) -> str:
    """``above`` if the Wilson interval of a success record clears ``level`` (lower end >= level),
    ``below`` if its upper end falls below it, ``straddles`` otherwise."""
    low, high = record["wilson"]
    if low >= level:
        return "above"
    return "below" if high < level else "straddles"


def level_power(trials: int, level: float, alternative: float) -> dict:
    """The design's operating characteristic: with ``trials`` Bernoulli(``alternative``) outcomes,
    the probability that the Wilson lower end reaches ``level`` (the fewest successes that do, and
    that probability; 0 when even trials/trials cannot)."""
    needed = next((k for k in range(trials + 1) if wilson_interval(k, trials)[0] >= level), None)
    power = 0.0 if needed is None else float(stats.binom.sf(needed - 1, trials, alternative))
    return {"trials": trials, "level": level, "alternative": alternative,
            "successes_needed": needed, "power": power}


def rank_success(
    source: str,
    n_outputs: int,
    n_examples: int,
    m: int,
    n: int,
    ranks: list[int],
    trials: int,
    steps: int,
    epsilon: float,
    loss: str = "cross_entropy",
    seed: int = 0,
) -> dict:
    """Train every (trial, rank) pair on the same ``trials`` instances; success = loss < epsilon
    (and 100% training accuracy for label losses)."""
    problem = random_problem(source, trials, n_examples, n_outputs, m, n, loss=loss, seed=seed)
    batch = _repeat(problem, len(ranks))
    rank_of = torch.tensor(ranks).repeat_interleave(trials)
    result = train(
        batch,
        TrainConfig(rank=max(ranks), steps=steps, stop_below=epsilon),
        ranks=rank_of,
        generator=torch.Generator().manual_seed(seed + 1),
    )
    reached = result.objective < epsilon
    if result.accuracy is not None:
        reached &= result.accuracy == 1
    per_rank = {}
    for index, rank in enumerate(ranks):
        part = slice(index * trials, (index + 1) * trials)
        final = result.objective[part]
        per_rank[str(rank)] = {
            **success_record(int(reached[part].sum()), trials),
            "median_final_loss": float(final.median()),
            "min_final_loss": float(final.min()),
            "manifold_dim": manifold_dim(rank, m, n),
        }
    return {
        "source": source,
        "loss": loss,
        "K": n_outputs,
        "N": n_examples,
        "m": m,
        "n": n,
        "KN": n_outputs * n_examples,
        "epsilon": epsilon,
        "steps": steps,
        "steps_run": result.steps_run,
        "ranks": per_rank,
    }


def _repeat(problem, copies: int):
    """The same instances ``copies`` times along the instance axis (for a sweep over ranks)."""

    def rep(tensor):
        return None if tensor is None else tensor.repeat(copies, *([1] * (tensor.ndim - 1)))

    features = problem.features
    if isinstance(features, DenseFeatures):
        features = DenseFeatures(rep(features.g))
    elif isinstance(features, FactoredFeatures):
        features = FactoredFeatures(
            features.left if features.left.shape[0] == 1 else rep(features.left),
            rep(features.right),
        )
    return LinearizedProblem(
        features, rep(problem.target), problem.loss, rep(problem.f0), rep(problem.mask)
    )


def _band_minima(gap: np.ndarray, ratio: np.ndarray, decades: list[int]) -> list[float | None]:
    """min of ratio over trajectory points with 10^(d-1) < gap <= 10^d, per decade d."""
    out = []
    for decade in decades:
        inside = (gap <= 10.0**decade) & (gap > 10.0 ** (decade - 1))
        out.append(float(ratio[inside].min()) if inside.any() else None)
    return out


def _slope(gap: np.ndarray, ratio: np.ndarray, low: float, high: float) -> float | None:
    """Least-squares slope of log ratio on log gap over low < gap <= high (ratio ~ gap^slope)."""
    keep = (gap > low) & (gap <= high) & (ratio > 0)
    if keep.sum() < 3:
        return None
    return float(np.polyfit(np.log(gap[keep]), np.log(ratio[keep]), 1)[0])


def _slope_interval(gap: np.ndarray, ratio: np.ndarray, valid: np.ndarray, low: float, high: float,
                    draws: int = 1000, confidence: float = 0.95, seed: int = 0) -> list[float] | None:
    """Percentile bootstrap interval of the pooled slope, resampling whole trajectories (the columns
    of [steps, trials] arrays); None when a tenth of the redraws leave too few points for a fit."""
    trials = gap.shape[1]
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(draws):
        pick = rng.integers(trials, size=trials)
        keep = valid[:, pick]
        slope = _slope(gap[:, pick][keep], ratio[:, pick][keep], low, high)
        if slope is not None:
            slopes.append(slope)
    if len(slopes) < 0.9 * draws:
        return None
    tail = (1 - confidence) / 2
    return [float(np.quantile(slopes, tail)), float(np.quantile(slopes, 1 - tail))]


def pl_profile(
    source: str,
    n_outputs: int,
    n_examples: int,
    m: int,
    n: int,
    rank: int,
    trials: int,
    steps: int,
    weight_decay: float = 0.0,
    convex_steps: int = 2000,
    gap_floor: float = 1e-10,
    seed: int = 0,
) -> dict:
    """PL ratios along GD trajectories from the LoRA initialization.

    inf F: 0 without regularization (CE on separable data; checked by the run reaching accuracy
    1). With weight_decay > 0: P*, the optimum of the convex nuclear-norm problem, where its
    solution has rank <= ``rank`` (then P* = inf F: a certified value); otherwise the lowest F of
    the run, i.e. the ratio is measured against the trajectory's own limit. Gaps below
    ``gap_floor`` are left out: there the estimate of inf F, not the landscape, decides the ratio.
    """
    problem = random_problem(source, trials, n_examples, n_outputs, m, n, seed=seed)
    config = TrainConfig(
        rank=rank,
        steps=steps,
        weight_decay=weight_decay,
        stop_below=gap_floor / 10,
        record_delta_grad=weight_decay == 0,
    )
    result = train(problem, config, generator=torch.Generator().manual_seed(seed + 1))
    history = result.history["objective"].numpy()
    if weight_decay:
        convex = solve_nuclear(problem, weight_decay, convex_steps)
        tight = convex.rank <= rank
        lowest = history.min(axis=0)
        infimum = np.where(tight.numpy(), np.minimum(convex.value.numpy(), lowest), lowest)
        inf_info = {
            "method": "P* (convex nuclear-norm optimum) where its rank <= r, else the lowest F "
            "of the run (a stationary value of the rank-r problem)",
            "convex_value": convex.value.tolist(),
            "convex_rank": convex.rank.tolist(),
            "lowest_F": lowest.tolist(),
            "tight": tight.tolist(),
        }
    else:
        infimum = np.zeros(trials)
        inf_info = {"method": "0 (cross-entropy infimum on separable data)"}
    gap = history - infimum
    ratios = {"parameter": result.history["grad_sq"].numpy() / (2 * np.maximum(gap, 1e-300))}
    if "delta_grad_sq" in result.history:
        ratios["delta"] = result.history["delta_grad_sq"].numpy() / (2 * np.maximum(gap, 1e-300))
    decades = list(range(0, int(math.log10(gap_floor)) - 1, -1))
    out = {
        "source": source,
        "K": n_outputs,
        "N": n_examples,
        "m": m,
        "n": n,
        "rank": rank,
        "trials": trials,
        "steps_run": result.steps_run,
        "weight_decay": weight_decay,
        "infimum": inf_info,
        "final_accuracy": None if result.accuracy is None else result.accuracy.tolist(),
        "min_gap": float(gap.min()),
        "decades": decades,
        "gap_floor": gap_floor,
        "trajectories": {"gap": gap[:, : min(trials, 4)].T.tolist()},
    }
    valid = gap > gap_floor
    for space, ratio in ratios.items():
        out[space] = {
            "band_min": _band_minima(gap[valid], ratio[valid], decades),
            "sublevel_min": [
                float(ratio[valid & (gap <= 10.0**d)].min())
                if (valid & (gap <= 10.0**d)).any()
                else None
                for d in decades
            ],
            "slope_small_gap": _slope(gap[valid], ratio[valid], gap_floor, 1e-2),
            "slope_interval": _slope_interval(gap, ratio, valid, gap_floor, 1e-2, seed=seed),
        }
        out["trajectories"][space] = ratio[:, : min(trials, 4)].T.tolist()
    return out


def separability_capacity(
    source: str,
    n_outputs: int,
    m: int,
    n: int,
    sizes: list[int],
    trials: int,
    steps: int,
    f0_scale: float = 0.5,
    seed: int = 0,
) -> dict:
    """Fraction of instances that rank-1 CE training separates (100% training accuracy), per N.

    All sizes share one tensor: every instance holds max(sizes) examples and a mask keeps the first
    N. The transition N50 is where the fraction crosses 1/2 (linear interpolation between sizes).
    """
    n_max = max(sizes)
    mask = torch.zeros(len(sizes) * trials, n_max, dtype=torch.bool)
    for index, size in enumerate(sizes):
        mask[index * trials : (index + 1) * trials, :size] = True
    problem = random_problem(
        source, len(sizes) * trials, n_max, n_outputs, m, n, f0_scale=f0_scale, seed=seed, mask=mask
    )
    result = train(
        problem,
        TrainConfig(rank=1, steps=steps, stop_below=1e-6),
        generator=torch.Generator().manual_seed(seed + 1),
    )
    separated = (result.accuracy == 1).view(len(sizes), trials).sum(dim=1).tolist()
    rows = [
        {"N": size, "KN": n_outputs * size, **success_record(int(count), trials)}
        for size, count in zip(sizes, separated, strict=True)
    ]
    dim = manifold_dim(1, m, n)
    n50 = transition_point([row["N"] for row in rows], [row["fraction"] for row in rows])
    return {
        "source": source,
        "K": n_outputs,
        "m": m,
        "n": n,
        "manifold_dim": dim,
        "steps": steps,
        "f0_scale": f0_scale,
        "rows": rows,
        "N50": n50,
        "KN50_over_dim": None if n50 is None else n_outputs * n50 / dim,
        "N50_over_dim": None if n50 is None else n50 / dim,
    }


def transition_point(
    sizes: list[float], fractions: list[float], level: float = 0.5
) -> float | None:
    """The first size where ``fractions`` falls through ``level``, linearly interpolated."""
    for (x0, y0), (x1, y1) in zip(
        zip(sizes, fractions, strict=True), zip(sizes[1:], fractions[1:], strict=True), strict=False
    ):
        if y0 >= level > y1:
            return x0 + (y0 - level) / (y0 - y1) * (x1 - x0)
    return None


def transition_interval(rows: list[dict], level: float = 0.5, draws: int = 2000,
                        confidence: float = 0.95, seed: int = 0) -> dict:
    """N50 with a percentile bootstrap interval: each size's successes are redrawn from
    Binomial(trials, observed fraction) (resampling the trials of that size) and the transition
    recomputed. A redraw without a crossing lies beyond the sweep (above its largest N, or below
    its smallest when it starts under ``level``); an interval end there is None ("not within the
    sweep"), and so is the estimate when the observed fractions do not cross."""
    sizes = [row["N"] for row in rows]
    fractions = np.array([row["fraction"] for row in rows])
    trials = np.array([row["trials"] for row in rows])
    rng = np.random.default_rng(seed)
    redrawn = rng.binomial(trials, fractions, size=(draws, len(rows))) / trials
    points = np.empty(draws)
    for index, sample in enumerate(redrawn):
        point = transition_point(sizes, sample.tolist(), level)
        points[index] = point if point is not None else (-np.inf if sample[0] < level else np.inf)
    tail = (1 - confidence) / 2
    low = float(np.quantile(points, tail, method="lower"))
    high = float(np.quantile(points, 1 - tail, method="higher"))

    def finite(value):
        return value if np.isfinite(value) else None

    return {"N50": transition_point(sizes, fractions.tolist(), level),
            "interval": [finite(low), finite(high)],
            "not_found_share": float(np.mean(~np.isfinite(points))), "sweep": [min(sizes), max(sizes)],
            "draws": draws, "confidence": confidence}


def cover_fraction(n_points: int, dim: int) -> float:
    """Cover (1965): the probability that N points in general position in R^d, with random labels,
    are separable by a hyperplane through the origin: 2^(1-N) sum_{k<d} C(N-1, k)."""
    return math.fsum(math.comb(n_points - 1, k) for k in range(dim)) / 2 ** (n_points - 1)


def origin_saddle(
    source: str,
    n_outputs: int,
    n_examples: int,
    m: int,
    n: int,
    trials: int,
    eps: float = 1e-3,
    seed: int = 0,
) -> dict:
    """Gradient norm at A = B = 0, and the objective change along the top singular direction."""
    problem = random_problem(source, trials, n_examples, n_outputs, m, n, seed=seed)
    zero_b, zero_a = (
        torch.zeros(trials, m, 1, dtype=torch.float64),
        torch.zeros(trials, 1, n, dtype=torch.float64),
    )
    value, grad_b, grad_a = objective(problem, zero_b, zero_a)
    grad_norm = (grad_b.square().sum(dim=(1, 2)) + grad_a.square().sum(dim=(1, 2))).sqrt()
    delta_grad = problem.features.adjoint(problem.loss_at(problem.f0.expand(trials, -1, -1)).grad)
    u, s, vh = torch.linalg.svd(delta_grad, full_matrices=False)
    moved, _, _ = objective(problem, -eps * u[:, :, :1], eps * vh[:, :1, :], with_grad=False)
    return {
        "grad_norm_at_origin": grad_norm.tolist(),
        "top_singular_value": s[:, 0].tolist(),
        "decrease_along_saddle_direction": (value - moved).tolist(),
        "predicted_decrease": (eps**2 * s[:, 0]).tolist(),
        "eps": eps,
    }
