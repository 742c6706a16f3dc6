"""The large-size limit of the budgeted linear threshold, from the Marchenko-Pastur law.

For least squares with a Gaussian p x D design, D = rho p, gradient descent with step
1/lambda_max from w = 0 leaves a relative loss that, as D grows with rho fixed, converges to

    F(rho, N) = integral of (1 - lambda / lambda_+)^(2N) dMP_c(lambda),    c = 1 / rho,

where MP_c is the Marchenko-Pastur law of the eigenvalues of X X^T / D (support
[(1 - sqrt c)^2, (1 + sqrt c)^2]) and y is isotropic, so every eigendirection carries the same
weight. The threshold rho*(N, tol) solves F(rho, N) = tol; every success level (50%, 95%) of the
finite-size estimator converges to it. Both the integral and the root are computed numerically
(scipy.integrate.quad, scipy.optimize.brentq), never tabulated.
"""

from __future__ import annotations

import math

from scipy import integrate, optimize

from lora_claims.errors import InvalidArgument, require_int, require_positive_float


def limit_relative_loss(rho: float, steps: int) -> float:
    """F(rho, N): the D -> infinity relative loss after N fixed steps at D / p = rho >= 1."""
    rho = require_positive_float("rho", rho)
    steps = require_int("steps", steps, minimum=0)
    if rho < 1:
        raise InvalidArgument(f"rho must be >= 1 (more parameters than equations), got {rho}")
    ratio = 1.0 / rho
    lower, upper = (1 - math.sqrt(ratio)) ** 2, (1 + math.sqrt(ratio)) ** 2
    half_width = (upper - lower) / 2

    def integrand(angle: float) -> float:
        # lambda = lower + half_width (1 - cos angle) removes the square-root endpoints.
        eigenvalue = lower + half_width * (1 - math.cos(angle))
        density_times_jacobian = (half_width * math.sin(angle)) ** 2 / (
            2 * math.pi * ratio * eigenvalue
        )
        return density_times_jacobian * (1 - eigenvalue / upper) ** (2 * steps)

    value, _ = integrate.quad(integrand, 0.0, math.pi, limit=400, epsabs=0.0, epsrel=1e-10)
    return value


def limit_threshold(steps: int, tol: float) -> float:
    """rho*(N, tol): the ratio D / p at which the limit relative loss equals ``tol``."""
    steps = require_int("steps", steps)
    tol = require_positive_float("tol", tol)
    if tol >= 1:
        raise InvalidArgument(f"tol must be < 1 (GD from 0 starts at relative loss 1), got {tol}")
    lower, upper = 1.0 + 1e-12, 2.0
    if limit_relative_loss(lower, steps) <= tol:  # the budget suffices right at the edge
        return 1.0
    while limit_relative_loss(upper, steps) > tol:  # widen until the root is bracketed
        upper *= 2
    return optimize.brentq(
        lambda rho: limit_relative_loss(rho, steps) - tol, lower, upper, xtol=1e-10
    )
