"""Monte-Carlo estimators of the capacity constant C* in r(m+n) - r^2 > C* KN (claim C4).

The paper gives C* ~ 1.35 "under Gaussian-iid features" without (in what we have) a definition, so
two definitions are estimated with one procedure, on the LoRA model and on the linear comparator
(least squares with D = d parameters, whose exact answer is known):

- ``solv``: success = the system has an exact solution (Levenberg-Marquardt with restarts reaches a
  relative loss below 1e-16); no optimizer budget.
- ``gd``: success = a budgeted optimizer (Armijo GD, Adam, or closed-form fixed-step GD on the
  linear model) brings the relative loss below ``tol`` within ``steps`` steps.

For each p on a grid, ``trials`` seeded instances (G_j with iid N(0, 1) entries, y ~ N(0, I_p))
are solved as one batch; with rho = d / p scanned upward, rho_q is the first rho whose success
fraction reaches q, linearly interpolated from the grid point below. Each grid point gets a Wilson
interval; each threshold gets a parametric-bootstrap interval (every point's binomial count redrawn
from its observed fraction). ``rho_grid`` is the threshold without interpolation: on the integer
grid of the exact-fit definition it is the grid rho itself (1 exactly for the linear model).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lora_claims.errors import InvalidArgument, require_fraction, require_int
from lora_claims.harness.cache import CacheKind
from lora_claims.methods.counting.capacity import manifold_dim
from lora_claims.methods.cstar.problems import LoraSystem, linear_problem, lora_problem
from lora_claims.methods.cstar.solvers import GDSettings, LMSettings, levenberg_marquardt, train
from lora_claims.methods.stats import wilson_interval

SCHEMA = 1  # bump when anything that changes the numbers changes
CSTAR = CacheKind("cstar", SCHEMA)  # Gaussian-feature estimates, shared by C4 and C4-real
CSTAR_REAL = CacheKind("cstar-real", SCHEMA)  # the same estimate on real-feature instances
DEFINITIONS = ("solv", "gd")
MODELS = ("lora", "linear")
HEADLINE_LEVELS = (0.5, 0.95)
# The rho grid of the trainability sweep (research notes, section 2).
GD_RHOS = (1.0, 1.03, 1.06, 1.1, 1.15, 1.2, 1.25, 1.3, 1.35, 1.4, 1.5, 1.6, 1.8, 2.0)
# Above p = d the exact fit is impossible and just below it certain; the sweep looks closely at
# the edge (d+1, d, d-1, d-2), then at the paper's 1.35 (so that a threshold there would be
# resolved: the power of C4's design), and coarsely up to rho = 2 for the phase-transition figure.
SOLV_RHOS = (1.1, 1.2, 1.3, 1.35, 1.4, 1.5, 2.0)
# (m, n, r, p, trials, rng) -> the LoRA instances of one chunk
ProblemSampler = Callable[[int, int, int, int, int, np.random.Generator], LoraSystem]
_ELEMENTS_PER_CHUNK = 2**23  # float64 feature entries solved together (64 MiB)


@dataclass(frozen=True)
class CStarConfig:
    """One threshold estimate: the model, the definition of success, and the Monte-Carlo sizes.

    The LoRA model needs m, n, r; the linear model takes ``width`` (D) or defaults to
    D = r(m+n) - r^2 of the given shape, its natural comparator.
    """

    m: int | None = None
    n: int | None = None
    r: int | None = None
    definition: str = "solv"
    model: str = "lora"
    width: int | None = None
    trials: int = 200
    seed: int = 0
    level: float = 0.95
    grid: tuple[int, ...] | None = None  # values of p; None: the default grid of the definition
    lm: LMSettings = field(default_factory=LMSettings)
    gd: GDSettings = field(default_factory=GDSettings)
    bootstrap: int = 1000
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.definition not in DEFINITIONS:
            raise InvalidArgument(
                f"definition must be one of {', '.join(DEFINITIONS)}, got {self.definition!r}"
            )
        if self.model not in MODELS:
            raise InvalidArgument(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.model == "lora" or self.width is None:
            if None in (self.m, self.n, self.r):
                raise InvalidArgument("m, n and r are required (or, for the linear model, width D)")
            require_int("m", self.m)
            require_int("n", self.n)
            require_int("r (the LoRA rank, at most min(m, n))", self.r, maximum=min(self.m, self.n))
        if self.width is not None:
            require_int("width D", self.width)
        require_int("trials", self.trials)
        require_int("seed", self.seed, minimum=0)
        require_fraction("level", self.level)
        require_int("bootstrap", self.bootstrap)
        require_fraction("confidence", self.confidence)
        if self.grid is not None:
            if len(self.grid) == 0:
                raise InvalidArgument("grid must list at least one value of p")
            for p in self.grid:
                require_int("p", p)
            object.__setattr__(
                self, "grid", tuple(sorted(set(int(p) for p in self.grid), reverse=True))
            )
        if self.definition == "gd" and self.gd.optimizer == "fixed" and self.model != "linear":
            raise InvalidArgument(
                "optimizer 'fixed' (closed-form fixed-step GD) needs model 'linear'"
            )

    @property
    def dimension(self) -> int:
        """d: the manifold dimension (LoRA) or the parameter count D (linear)."""
        if self.model == "linear" and self.width is not None:
            return self.width
        return manifold_dim(self.r, self.m, self.n)

    @property
    def levels(self) -> tuple[float, ...]:
        return tuple(sorted(set(HEADLINE_LEVELS) | {self.level}))

    def p_grid(self) -> tuple[int, ...]:
        """Values of p, largest first (rho ascending)."""
        if self.grid is not None:
            return self.grid
        d = self.dimension
        if self.definition == "solv":
            points = {d + 1, d, d - 1, d - 2} | {math.ceil(d / rho) for rho in SOLV_RHOS}
        else:
            points = {round(d / rho) for rho in GD_RHOS}
        return tuple(sorted((p for p in points if p >= 1), reverse=True))

    def to_json(self) -> dict[str, Any]:
        """Everything that determines the numbers (the cache key and the record of the run)."""
        record = {
            "schema": SCHEMA,
            "model": self.model,
            "definition": self.definition,
            "dimension": self.dimension,
            "trials": self.trials,
            "seed": self.seed,
            "level": self.level,
            "grid": list(self.p_grid()),
            "bootstrap": self.bootstrap,
            "confidence": self.confidence,
            "settings": self.lm.to_json() if self.definition == "solv" else self.gd.to_json(),
        }
        if self.model == "lora" or self.width is None:
            record.update(m=self.m, n=self.n, r=self.r)
        return record

    def comparator(self) -> CStarConfig:
        """The same estimator on least squares with D = d parameters (a Gaussian p x D design)."""
        return replace(self, model="linear", width=self.dimension)


def threshold_crossing(rhos: np.ndarray, fractions: np.ndarray, level: float) -> np.ndarray:
    """First rho (ascending grid) whose fraction reaches ``level``, interpolated from the point
    below; inf where no grid point reaches it. Vectorized over leading axes of ``fractions``."""
    reached = fractions >= level
    first = np.argmax(reached, axis=-1)
    below = np.maximum(first - 1, 0)
    f_hi = np.take_along_axis(fractions, first[..., None], axis=-1)[..., 0]
    f_lo = np.take_along_axis(fractions, below[..., None], axis=-1)[..., 0]
    weight = np.where(first > 0, (level - f_lo) / np.where(first > 0, f_hi - f_lo, 1.0), 1.0)
    crossing = rhos[below] + weight * (rhos[first] - rhos[below])
    return np.where(reached.any(axis=-1), crossing, np.inf)


def first_grid_rho(rhos: np.ndarray, fractions: np.ndarray, level: float) -> float:
    """The first grid rho whose fraction reaches ``level`` (no interpolation); inf if none."""
    reached = np.flatnonzero(fractions >= level)
    return float(rhos[reached[0]]) if reached.size else math.inf


def bootstrap_interval(
    rhos: np.ndarray,
    successes: np.ndarray,
    trials: np.ndarray,
    level: float,
    replicates: int,
    confidence: float,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Parametric-bootstrap interval of rho_level: counts redrawn as Binomial(T, observed fraction).

    Percentiles use the nearest order statistic, so an unreached threshold (inf) in the upper tail
    gives an unbounded interval instead of a NaN.
    """
    draws = rng.binomial(trials, successes / trials, size=(replicates, len(trials))) / trials
    values = threshold_crossing(rhos, draws, level)
    tail = (1 - confidence) / 2
    return (
        float(np.quantile(values, tail, method="lower")),
        float(np.quantile(values, 1 - tail, method="higher")),
    )


@dataclass
class GridPoint:
    p: int
    rho: float
    successes: int
    trials: int
    wilson: tuple[float, float]

    @property
    def fraction(self) -> float:
        return self.successes / self.trials

    def to_json(self) -> dict[str, Any]:
        return {
            "p": self.p,
            "rho": self.rho,
            "successes": self.successes,
            "trials": self.trials,
            "fraction": self.fraction,
            "wilson_low": self.wilson[0],
            "wilson_high": self.wilson[1],
        }


def monotonicity_violations(points: list[GridPoint]) -> list[tuple[int, int]]:
    """Pairs (p_small, p_large) where more equations succeed more often beyond Monte-Carlo error.

    Success can only get harder as p grows, so the Wilson interval at the larger p must reach
    below the upper end of the interval at the smaller p; a pair where it does not is a defect
    of the estimator (or of its random streams).
    """
    ordered = sorted(points, key=lambda point: point.p)
    return [
        (small.p, large.p)
        for i, small in enumerate(ordered)
        for large in ordered[i + 1 :]
        if large.wilson[0] > small.wilson[1]
    ]


@dataclass
class Threshold:
    level: float
    rho: float  # interpolated; inf if never reached on the grid
    rho_grid: float
    interval: tuple[float, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "rho": _finite_or_none(self.rho),
            "rho_grid": _finite_or_none(self.rho_grid),
            "interval": [_finite_or_none(value) for value in self.interval],
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def level_key(level: float) -> str:
    """``rho50`` for 0.5, ``rho95`` for 0.95, ``rho97.5`` for 0.975."""
    return f"rho{100 * level:.10g}"


@dataclass
class CStarResult:
    config: dict[str, Any]
    points: list[GridPoint]
    thresholds: list[Threshold]
    seconds: float

    def threshold(self, level: float) -> Threshold:
        for threshold in self.thresholds:
            if math.isclose(threshold.level, level):
                return threshold
        raise KeyError(level)

    def to_json(self) -> dict[str, Any]:
        """The JSON record: rho50 / rho95 (and rho at ``level``) with intervals, and the grid."""
        record: dict[str, Any] = {"config": self.config, "seconds": round(self.seconds, 3)}
        for threshold in self.thresholds:
            key = level_key(threshold.level)
            record[key] = _finite_or_none(threshold.rho)
            record[f"{key}_interval"] = [_finite_or_none(value) for value in threshold.interval]
            record[f"{key}_grid"] = _finite_or_none(threshold.rho_grid)
        record["thresholds"] = [threshold.to_json() for threshold in self.thresholds]
        record["grid"] = [point.to_json() for point in self.points]
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> CStarResult:
        points = [
            GridPoint(
                g["p"], g["rho"], g["successes"], g["trials"], (g["wilson_low"], g["wilson_high"])
            )
            for g in record["grid"]
        ]
        thresholds = [
            Threshold(
                t["level"],
                _none_to_inf(t["rho"]),
                _none_to_inf(t["rho_grid"]),
                (_none_to_inf(t["interval"][0]), _none_to_inf(t["interval"][1])),
            )
            for t in record["thresholds"]
        ]
        return cls(record["config"], points, thresholds, record["seconds"])


def _none_to_inf(value: float | None) -> float:
    return math.inf if value is None else float(value)


def count_successes(config: CStarConfig, p: int, sampler: ProblemSampler = lora_problem) -> int:
    """Successes among ``config.trials`` instances with p equations, solved in batched chunks.

    Each (seed, p, model) has its own random stream, so a grid point's count does not depend on
    which other points were run, and the LoRA and linear instances are independent. ``sampler``
    draws the LoRA instances (iid Gaussian features by default; real features in
    lora_claims.methods.ntk.real_capacity).
    """
    rng = np.random.default_rng([config.seed, p, MODELS.index(config.model)])
    d = config.dimension
    per_trial = p * (d if config.model == "linear" else config.m * config.n)
    chunk = max(1, min(config.trials, _ELEMENTS_PER_CHUNK // per_trial))
    successes = 0
    for start in range(0, config.trials, chunk):
        size = min(chunk, config.trials - start)
        if config.model == "linear":
            system = linear_problem(d, p, size, rng)
        else:
            system = sampler(config.m, config.n, config.r, p, size, rng)
        if config.definition == "solv":
            losses, tol = levenberg_marquardt(system, rng, config.lm), config.lm.success_tol
        else:
            losses, tol = train(system, rng, config.gd), config.gd.tol
        successes += int(np.count_nonzero(losses < tol))
    return successes


def estimate_cstar(config: CStarConfig, progress: bool = False,
                   sampler: ProblemSampler = lora_problem) -> CStarResult:
    """Run the sweep of ``config`` and read off the thresholds with their intervals.

    A custom ``sampler`` changes the numbers without changing ``config``: its caller must key
    cached results by the feature source too.
    """
    start = time.perf_counter()
    d = config.dimension
    grid = config.p_grid()
    if progress:
        from tqdm import tqdm

        grid = tqdm(
            grid, desc=f"C*_{config.definition} {config.model} d={d}", unit="p", leave=False
        )
    points = []
    for p in grid:
        successes = count_successes(config, p, sampler)
        points.append(
            GridPoint(
                p,
                d / p,
                successes,
                config.trials,
                wilson_interval(successes, config.trials, config.confidence),
            )
        )
    rhos = np.array([point.rho for point in points])
    counts = np.array([point.successes for point in points])
    trials = np.full(len(points), config.trials)
    rng = np.random.default_rng([config.seed, 2**31 - 1])
    thresholds = []
    for level in config.levels:
        fractions = counts / trials
        thresholds.append(
            Threshold(
                level=level,
                rho=float(threshold_crossing(rhos, fractions, level)),
                rho_grid=first_grid_rho(rhos, fractions, level),
                interval=bootstrap_interval(
                    rhos, counts, trials, level, config.bootstrap, config.confidence, rng
                ),
            )
        )
    return CStarResult(config.to_json(), points, thresholds, time.perf_counter() - start)
