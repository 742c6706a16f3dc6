"""Calibrations of the C* estimators on cases with a known answer.

- exact fit on least squares: threshold exactly 1 (a fit iff p <= D), by lstsq and by the LM path;
- m = n = 2, r = 1, p = 3: P(solvable) = 0.774 by the exact algebraic test, matched by LM with no
  false positives;
- fixed-step GD on least squares: the threshold approaches the Marchenko-Pastur limit as D grows;
- Armijo GD on least squares: between the Krylov optimum and fixed-step GD per instance at large D,
  its threshold near the research notes' large-size value; the (16, 16, 2) anchor (slow).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from lora_claims.methods.cstar.estimate import CStarConfig, estimate_cstar
from lora_claims.methods.cstar.marchenko_pastur import limit_relative_loss, limit_threshold
from lora_claims.methods.cstar.problems import LoraSystem, linear_problem, lora_problem
from lora_claims.methods.cstar.rank_one_2x2 import rank_one_2x2_solvable
from lora_claims.methods.cstar.solvers import (
    GDSettings,
    LMSettings,
    fixed_step_linear_loss,
    levenberg_marquardt,
    train,
)

# P(solvable) at m = n = 2, r = 1, p = 3 from the research notes (4000 trials, discriminant test).
P_SOLVABLE_2X2 = 0.774


@pytest.mark.parametrize("width", [3, 12, 30])
def test_linear_exact_fit_threshold_is_exactly_one(width, seed):
    config = CStarConfig(
        definition="solv",
        model="linear",
        width=width,
        trials=40,
        seed=seed,
        grid=(width + 1, width, width - 1, max(1, width // 2)),
    )
    result = estimate_cstar(config)
    for point in result.points:
        expected = point.trials if point.p <= width else 0
        assert point.successes == expected, f"p={point.p}, D={width}"
    for level in (0.5, 0.95):
        threshold = result.threshold(level)
        assert threshold.rho_grid == 1.0
        # Interpolation runs between the grid points p = D + 1 and p = D, nothing else.
        assert width / (width + 1) < threshold.rho <= 1.0


@pytest.mark.parametrize("width", [5, 20])
def test_lstsq_agrees_that_a_fit_exists_iff_p_at_most_d(width, seed):
    rng = np.random.default_rng(seed)
    for p, solvable in ((width - 1, True), (width, True), (width + 1, False)):
        system = linear_problem(width, p, 30, rng)
        for design, target in zip(system.design, system.targets, strict=True):
            solution = np.linalg.lstsq(design, target, rcond=None)[0]
            relative = np.sum((design @ solution - target) ** 2) / np.sum(target**2)
            assert (relative < 1e-16) == solvable, f"p={p}, D={width}, relative loss {relative}"


def test_rank_one_2x2_matches_exact_algebraic_test(seed):
    rng = np.random.default_rng(seed)
    system = lora_problem(2, 2, 1, 3, 3000, rng)
    exact = rank_one_2x2_solvable(system.features, system.targets)
    found = levenberg_marquardt(system, rng, LMSettings()) < LMSettings.success_tol
    assert not np.any(found & ~exact), "LM reported a fit the algebraic test rules out"
    assert np.count_nonzero(exact & ~found) <= 0.01 * exact.size, "LM missed too many fits"
    # The exact fraction agrees with the reference within Monte-Carlo error (99.9% interval) ...
    interval = stats.binomtest(int(exact.sum()), exact.size).proportion_ci(0.999, "wilson")
    assert interval.low <= P_SOLVABLE_2X2 <= interval.high
    # ... and that interval has teeth: values 0.05 away are excluded.
    assert not interval.low <= P_SOLVABLE_2X2 - 0.05 and not P_SOLVABLE_2X2 + 0.05 <= interval.high


def test_exact_2x2_test_accepts_planted_rank_one_fits(seed):
    """Positive control: targets made by a rank-one matrix always have a fit, and LM finds it."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((200, 3, 2, 2))
    planted = rng.standard_normal((200, 2, 1)) @ rng.standard_normal((200, 1, 2))
    targets = np.einsum("tjmn,tmn->tj", features, planted)
    assert rank_one_2x2_solvable(features, targets).all()
    system = LoraSystem(features, targets, 1)
    assert (levenberg_marquardt(system, rng, LMSettings()) < 1e-16).all()


def test_fixed_step_closed_form_matches_iterating_gradient_descent(seed):
    rng = np.random.default_rng(seed)
    system = linear_problem(12, 9, 5, rng)
    steps = 40
    weights = np.zeros((5, 12))
    for index in range(5):
        design, target = system.design[index], system.targets[index]
        step = 1 / np.linalg.eigvalsh(design.T @ design)[-1]
        for _ in range(steps):
            weights[index] -= step * design.T @ (design @ weights[index] - target)
    iterated = np.sum((np.einsum("tpd,td->tp", system.design, weights) - system.targets) ** 2, 1)
    iterated /= np.sum(system.targets**2, axis=1)
    np.testing.assert_allclose(fixed_step_linear_loss(system, steps), iterated, rtol=1e-8)


@pytest.mark.parametrize(
    "steps, tol, reference",
    [(300, 1e-6, 1.589), (1000, 1e-6, 1.275), (3000, 1e-6, 1.145), (1000, 1e-8, 1.357)],
)
def test_marchenko_pastur_limit_matches_research_notes(steps, tol, reference):
    assert limit_threshold(steps, tol) == pytest.approx(reference, abs=1.5e-3)


def test_marchenko_pastur_integral_matches_sampled_spectrum(seed):
    """The integral against the average over a large sampled spectrum (theoretical edge)."""
    rng = np.random.default_rng(seed)
    width, p, steps = 1000, 500, 3
    design = rng.standard_normal((p, width))
    eigenvalues = np.linalg.eigvalsh(design @ design.T) / width
    upper = (1 + math.sqrt(p / width)) ** 2
    sampled = np.mean(np.clip(1 - eigenvalues / upper, 0, 1) ** (2 * steps))
    assert limit_relative_loss(width / p, steps) == pytest.approx(sampled, rel=0.02)
    assert limit_relative_loss(width / p, 0) == pytest.approx(1.0, rel=1e-9)


def _fixed_step_rho50(width: int, steps: int, trials: int, rhos, seed: int) -> float:
    grid = tuple(sorted({round(width / rho) for rho in rhos}))
    config = CStarConfig(
        definition="gd",
        model="linear",
        width=width,
        trials=trials,
        seed=seed,
        grid=grid,
        gd=GDSettings(optimizer="fixed", steps=steps, tol=1e-6),
        bootstrap=200,
    )
    return estimate_cstar(config).threshold(0.5).rho


def test_fixed_step_threshold_approaches_marchenko_pastur_limit(seed):
    """At N = 3000, tol = 1e-6 (limit 1.145), D = 150 is within 0.02 and closer than D = 30."""
    limit = limit_threshold(3000, 1e-6)
    rhos = (1.0, 1.04, 1.08, 1.12, 1.16, 1.2, 1.25, 1.3)
    small = _fixed_step_rho50(30, 3000, 80, rhos, seed)
    large = _fixed_step_rho50(150, 3000, 40, (1.08, 1.11, 1.13, 1.15, 1.17, 1.2), seed)
    assert abs(large - limit) < 0.02
    assert abs(large - limit) < abs(small - limit)


@pytest.mark.slow
def test_fixed_step_threshold_at_d400_is_within_002_of_limit(seed):
    """The research notes' criterion |rho50(D=400) - limit| < 0.02 at N = 1000 (limit 1.275)."""
    steps = 1000
    limit = limit_threshold(steps, 1e-6)
    rhos = [limit + offset for offset in (-0.06, -0.04, -0.02, -0.01, 0.0, 0.01, 0.02, 0.04)]
    assert abs(_fixed_step_rho50(400, steps, 60, rhos, seed) - limit) < 0.02


# Armijo GD on least squares: the estimator behind "least squares needs as much or more" (C4).
# From w = 0 every gradient method's iterate lies in the Krylov space K_N(X^T X, X^T y), so no step
# rule can beat the Krylov-optimal residual (CGLS, computed here independently); and the Armijo
# step with constant 1/2 is never longer than the exact line-search step, which in practice makes
# it no worse than fixed step 1/lambda_max (closed form). Both are checked per instance at large D.


def _krylov_optimal_loss(design: np.ndarray, target: np.ndarray, steps: int) -> float:
    """The smallest relative loss over the N-dimensional Krylov space (CGLS from 0)."""
    weights, residual = np.zeros(design.shape[1]), target.copy()
    gradient = design.T @ residual
    direction, norm = gradient.copy(), gradient @ gradient
    for _ in range(steps):
        image = design @ direction
        alpha = norm / (image @ image)
        weights += alpha * direction
        residual -= alpha * image
        gradient = design.T @ residual
        new_norm = gradient @ gradient
        if new_norm < 1e-300:
            break
        direction, norm = gradient + (new_norm / norm) * direction, new_norm
    return float(np.sum((target - design @ weights) ** 2) / np.sum(target**2))


@pytest.mark.parametrize("p, steps", [(300, 30), (330, 100)])
def test_armijo_on_least_squares_lies_between_krylov_optimum_and_fixed_step(p, steps, seed):
    rng = np.random.default_rng(seed)
    system = linear_problem(400, p, 12, rng)
    armijo = train(system, rng, GDSettings(steps=steps, tol=1e-300))
    krylov = np.array([_krylov_optimal_loss(x, y, steps)
                       for x, y in zip(system.design, system.targets, strict=True)])
    fixed = fixed_step_linear_loss(system, steps)
    assert np.all(armijo >= krylov * (1 - 1e-6)), "Armijo beat the Krylov optimum: a loss is misreported"
    assert np.all(armijo <= fixed), "Armijo did worse than fixed step 1/lambda_max"
    # the sandwich has teeth: the two references are far apart here
    assert np.all(fixed > 10 * krylov)


def test_armijo_least_squares_threshold_at_large_d(seed):
    """At D = 400, N = 300, tol 1e-6: rho50 near the research notes' large-size value (1.27 at
    D = 144, 1.25-1.28 as sizes grow) and far below the fixed-step limit 1.589 it must not exceed."""
    width = 400
    config = CStarConfig(definition="gd", model="linear", width=width, trials=30, seed=seed,
                         grid=tuple(sorted({round(width / rho) for rho in
                                            (1.15, 1.2, 1.25, 1.3, 1.35, 1.4)})),
                         gd=GDSettings(optimizer="armijo", steps=300, tol=1e-6), bootstrap=200)
    rho50 = estimate_cstar(config).threshold(0.5).rho
    assert abs(rho50 - 1.27) < 0.05
    assert rho50 < limit_threshold(300, 1e-6) - 0.2


@pytest.mark.slow
def test_research_anchor_16x16_rank2_armijo():
    """The research notes' anchor (m, n, r) = (16, 16, 2), Armijo GD, N = 300, tol 1e-6, 200
    trials: rho95 = 1.35 [1.33, 1.37] for LoRA and 1.41 [1.39, 1.45] for least squares, D = 60.
    Tolerances: about 3 Monte-Carlo SEs (SE ~ 0.01 from the published interval widths)."""
    config = CStarConfig(16, 16, 2, definition="gd", trials=200, seed=0, level=0.95,
                         gd=GDSettings(optimizer="armijo", steps=300, tol=1e-6), bootstrap=300)
    assert abs(estimate_cstar(config).threshold(0.95).rho - 1.35) <= 0.03
    assert abs(estimate_cstar(config.comparator()).threshold(0.95).rho - 1.41) <= 0.04
