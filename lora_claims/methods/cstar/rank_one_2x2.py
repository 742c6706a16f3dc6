"""The exact answer for the smallest exact-fit case: m = n = 2, r = 1, p = 3 equations.

Three generic linear equations <G_j, X> = y_j on 2 x 2 matrices leave an affine line
X(t) = X0 + t K of solutions. A rank-one solution B A exists iff the line meets {det X = 0}, i.e.
iff the quadratic det(X0 + t K) = det(K) t^2 + b t + det(X0) has a real root, with
b = det(X0 + K) - det(X0) - det(K). Over the reals this fails with positive probability (about
23%), which is why P(solvable) at p = d is below one; the test here is the calibration target of
the Levenberg-Marquardt estimator (which must match it and never claim a solution it lacks).
"""

from __future__ import annotations

import numpy as np

from lora_claims.errors import InvalidArgument


def rank_one_2x2_solvable(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each trial (features: T x 3 x 2 x 2, targets: T x 3), whether a rank-one fit exists."""
    features = np.asarray(features, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.float64)
    if features.shape[1:] != (3, 2, 2) or targets.shape != features.shape[:2]:
        raise InvalidArgument(
            f"the exact test needs features (T, 3, 2, 2) and targets (T, 3), got {features.shape} "
            f"and {targets.shape}"
        )
    if not (np.all(np.isfinite(features)) and np.all(np.isfinite(targets))):
        raise InvalidArgument("features G and targets y must be finite")
    rows = features.reshape(-1, 3, 4)  # <G_j, X> = rows @ vec(X), vec row-major
    particular = (
        np.swapaxes(rows, 1, 2)
        @ np.linalg.solve(rows @ np.swapaxes(rows, 1, 2), targets[..., None])
    )[..., 0]
    direction = np.linalg.svd(rows)[2][:, -1]  # spans the null space of the three equations
    det_x0, det_k = _det(particular), _det(direction)
    cross = _det(particular + direction) - det_x0 - det_k
    return cross**2 - 4 * det_k * det_x0 >= 0


def _det(vec: np.ndarray) -> np.ndarray:
    """Determinant of the 2 x 2 matrices whose row-major entries are the rows of ``vec``."""
    return vec[:, 0] * vec[:, 3] - vec[:, 1] * vec[:, 2]
