"""Random fitting problems behind the C* estimators, batched over Monte-Carlo trials.

Two models share one interface so that every solver and estimator runs unchanged on both:

- ``LoraSystem``: T instances of the rank-r system <G_j, B A> = y_j, j = 1..p, with features
  G_j in R^{m x n}, B in R^{m x r}, A in R^{r x n}; parameters are stored flat as [vec A, vec B].
- ``LinearSystem``: T instances of plain least squares X w = y with a p x D design, the
  comparator whose exact-fit threshold is known (a fit exists iff p <= D).

All arrays are float64 and carry the trial axis first, so one matrix product serves every trial.
"""

from __future__ import annotations

import functools

import numpy as np

from lora_claims.errors import InvalidArgument, require_int
from lora_claims.methods.counting.capacity import manifold_dim


def _require_finite(name: str, values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
        raise InvalidArgument(
            f"{name} must be finite, but {bad} of its {values.size} entries are not"
        )
    return values


def _require_targets(targets: np.ndarray, trials: int, equations: int) -> np.ndarray:
    targets = _require_finite("targets y", targets)
    if targets.shape != (trials, equations):
        raise InvalidArgument(
            f"targets y must have shape {(trials, equations)}, got {targets.shape}"
        )
    return targets


class LoraSystem:
    """Batched rank-r systems <G_j, B A> = y_j (features: T x p x m x n, targets: T x p)."""

    def __init__(self, features: np.ndarray, targets: np.ndarray, rank: int):
        features = _require_finite("features G", features)
        if features.ndim != 4:
            raise InvalidArgument(
                f"features G must have shape (trials, p, m, n), got {features.shape}"
            )
        trials, p, m, n = features.shape
        require_int("p", p)
        self.rank = require_int("r", rank, maximum=min(m, n))
        self.features = features
        self.targets = _require_targets(targets, trials, p)
        self.m, self.n = m, n
        self._flat = features.reshape(trials, p, m * n)

    @property
    def trials(self) -> int:
        return self.features.shape[0]

    @property
    def equations(self) -> int:
        return self.features.shape[1]

    @property
    def n_params(self) -> int:
        return self.rank * (self.m + self.n)

    @property
    def dimension(self) -> int:
        """d = r(m+n) - r^2, the dimension of the image the parameters sweep out."""
        return manifold_dim(self.rank, self.m, self.n)

    @property
    def feature_size(self) -> int:
        return self.m * self.n

    def take(self, index: np.ndarray) -> LoraSystem:
        """The sub-batch of trials ``index`` (already validated, so not checked again)."""
        subset = object.__new__(LoraSystem)
        subset.__dict__.update(self.__dict__)
        subset.features, subset.targets = self.features[index], self.targets[index]
        subset._flat = subset.features.reshape(len(subset.targets), self.equations, self.m * self.n)
        subset.__dict__.pop("_rows_by_m", None)
        return subset

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, B) with shapes (T, r, n) and (T, m, r) from flat parameters (T, r(m+n))."""
        r, n = self.rank, self.n
        return theta[:, : r * n].reshape(-1, r, n), theta[:, r * n :].reshape(-1, self.m, r)

    def residual(self, theta: np.ndarray) -> np.ndarray:
        a, b = self.split(theta)
        product = (b @ a).reshape(-1, self.m * self.n, 1)
        return (self._flat @ product)[..., 0] - self.targets

    @functools.cached_property
    def _rows_by_m(self) -> np.ndarray:
        """The features as (T, m, p n): B^T G_j for all j becomes one product per trial."""
        trials, p = self.targets.shape
        return np.swapaxes(self.features, 1, 2).reshape(trials, self.m, p * self.n)

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """d residual / d theta, shape (T, p, r(m+n)): rows are [vec(B^T G_j), vec(G_j A^T)]."""
        a, b = self.split(theta)
        trials, p = self.targets.shape
        m, n, r = self.m, self.n, self.rank
        d_a = (np.swapaxes(b, 1, 2) @ self._rows_by_m).reshape(trials, r, p, n).swapaxes(1, 2)
        d_b = (self.features.reshape(trials, p * m, n) @ np.swapaxes(a, 1, 2)).reshape(
            trials, p, m, r
        )
        return np.concatenate([d_a.reshape(trials, p, -1), d_b.reshape(trials, p, -1)], axis=2)

    def gradient(self, theta: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """Gradient of 1/2 |residual|^2 without forming the Jacobian: M = sum_j res_j G_j."""
        a, b = self.split(theta)
        weighted = (residual[:, None, :] @ self._flat).reshape(-1, self.m, self.n)
        grad_a = np.swapaxes(b, 1, 2) @ weighted
        grad_b = weighted @ np.swapaxes(a, 1, 2)
        return np.concatenate(
            [grad_a.reshape(len(theta), -1), grad_b.reshape(len(theta), -1)], axis=1
        )

    def rebalance(self, theta: np.ndarray) -> np.ndarray:
        """Rescale each rank-one component b_k a_k so |b_k| = |a_k|; B A is unchanged.

        The factorization has a scaling symmetry; drifting along it makes the Jacobian badly
        conditioned without changing the fit, so the solver re-balances periodically.
        """
        a, b = self.split(theta)
        norm_a = np.linalg.norm(a, axis=2)  # (T, r)
        norm_b = np.linalg.norm(b, axis=1)  # (T, r)
        both = (norm_a > 0) & (norm_b > 0)
        scale = np.sqrt(np.divide(norm_b, norm_a, out=np.ones_like(norm_a), where=both))
        a = a * scale[:, :, None]
        b = b / scale[:, None, :]
        return np.concatenate([a.reshape(len(theta), -1), b.reshape(len(theta), -1)], axis=1)


class LinearSystem:
    """Batched linear least-squares problems X w = y (design: T x p x D, targets: T x p)."""

    def __init__(self, design: np.ndarray, targets: np.ndarray):
        design = _require_finite("design X", design)
        if design.ndim != 3:
            raise InvalidArgument(f"design X must have shape (trials, p, D), got {design.shape}")
        trials, p, width = design.shape
        require_int("p", p)
        require_int("D", width)
        self.design = design
        self.targets = _require_targets(targets, trials, p)

    @property
    def trials(self) -> int:
        return self.design.shape[0]

    @property
    def equations(self) -> int:
        return self.design.shape[1]

    @property
    def n_params(self) -> int:
        return self.design.shape[2]

    dimension = n_params
    feature_size = n_params

    def take(self, index: np.ndarray) -> LinearSystem:
        """The sub-batch of trials ``index`` (already validated, so not checked again)."""
        subset = object.__new__(LinearSystem)
        subset.design, subset.targets = self.design[index], self.targets[index]
        return subset

    def residual(self, theta: np.ndarray) -> np.ndarray:
        return (self.design @ theta[..., None])[..., 0] - self.targets

    @functools.cached_property
    def _rows_by_m(self) -> np.ndarray:
        """The features as (T, m, p n): B^T G_j for all j becomes one product per trial."""
        trials, p = self.targets.shape
        return np.swapaxes(self.features, 1, 2).reshape(trials, self.m, p * self.n)

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        return self.design

    def gradient(self, theta: np.ndarray, residual: np.ndarray) -> np.ndarray:
        return (residual[:, None, :] @ self.design)[:, 0]

    def rebalance(self, theta: np.ndarray) -> np.ndarray:
        return theta


def lora_problem(
    m: int, n: int, r: int, p: int, trials: int, rng: np.random.Generator
) -> LoraSystem:
    """``trials`` instances with G_j iid N(0, 1) entries and y ~ N(0, I_p)."""
    m, n = require_int("m", m), require_int("n", n)
    r = require_int("r", r, maximum=min(m, n))
    p, trials = require_int("p", p), require_int("trials", trials)
    features = rng.standard_normal((trials, p, m, n))
    return LoraSystem(features, rng.standard_normal((trials, p)), r)


def linear_problem(width: int, p: int, trials: int, rng: np.random.Generator) -> LinearSystem:
    """``trials`` least-squares instances with a Gaussian p x D design and y ~ N(0, I_p)."""
    width, p, trials = require_int("D", width), require_int("p", p), require_int("trials", trials)
    design = rng.standard_normal((trials, p, width))
    return LinearSystem(design, rng.standard_normal((trials, p)))


def relative_loss(system: LoraSystem | LinearSystem, theta: np.ndarray) -> np.ndarray:
    """|residual|^2 / |y|^2 per trial: the success criterion of every definition."""
    residual = system.residual(theta)
    return np.sum(residual**2, axis=1) / np.sum(system.targets**2, axis=1)
