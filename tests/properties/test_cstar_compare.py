"""Three-way comparisons of thresholds and the simulated power (lora_claims.methods.cstar.compare),
each with a positive and a negative control."""

from __future__ import annotations

import numpy as np
import pytest

from lora_claims.methods.cstar.compare import (
    against_band,
    against_margin,
    difference_interval,
    power_to_match,
)
from lora_claims.methods.cstar.estimate import CStarResult, GridPoint

RHOS = (1.0, 1.1, 1.2, 1.3, 1.35, 1.4, 1.5, 1.6, 1.8, 2.0)


def _result(threshold: float, trials: int, width: float = 0.05) -> CStarResult:
    """A logistic success curve whose 95% point is ``threshold``, observed exactly."""
    scale = width / np.log(19)
    points = [GridPoint(0, rho, round(trials / (1 + np.exp(-(rho - threshold) / scale))), trials, (0, 1))
              for rho in RHOS]
    return CStarResult({}, points, [], 0.0)


@pytest.mark.parametrize("estimate, interval, expected", [
    (1.35, (1.32, 1.38), "inside"), (1.5, (1.45, 1.55), "outside"), (1.2, (1.1, 1.28), "outside"),
    (1.38, (1.33, 1.43), "undecided"), (1.35, (1.32, None), "undecided"), (None, (1.32, 1.38), "not_found"),
])
def test_against_band(estimate, interval, expected):
    assert against_band(estimate, interval, 1.35, 0.05) == expected


@pytest.mark.parametrize("interval, expected", [
    ((0.06, 0.2), "above"), ((-0.2, 0.05), "at_most"), ((0.0, 0.1), "undecided"), ((None, 0.04), "at_most"),
])
def test_against_margin(interval, expected):
    assert against_margin(0.05, interval, 0.05) == expected


def test_difference_interval_separates_shifted_curves_only():
    same = difference_interval(_result(1.35, 200), _result(1.35, 200), 0.95, 500, 0.95, 0)
    apart = difference_interval(_result(1.6, 200), _result(1.35, 200), 0.95, 500, 0.95, 0)
    assert same[0] <= 0.0 <= same[1]
    assert apart[0] > 0.2  # the grid interpolates a 0.25 shift to about 0.35 here


def test_power_grows_with_trials():
    """Positive control: a sharp curve with many trials matches nearly always; negative control:
    a shallow curve with few trials rarely does."""
    sharp = power_to_match(_result(1.35, 400), 0.95, 1.35, 0.05, 100, 200, 0.95, 0)
    shallow = power_to_match(_result(1.35, 20, width=0.6), 0.95, 1.35, 0.05, 100, 200, 0.95, 0)
    assert sharp >= 0.8 and shallow <= 0.3
