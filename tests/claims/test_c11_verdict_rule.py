"""C11's verdict rule on constructed cells: each verdict has a case that must produce it."""

from __future__ import annotations

import pytest

from lora_claims.harness.registry import Verdict, get_claim
from lora_claims.claims.regime_claim import regime_verdict

TOL = get_claim("C11").tolerances


def cell(agreement=0.97, interval=(0.94, 0.99), kernel=0.05, fits=True, rank=1):
    return {"task": "SST-2", "rank": rank, "agreement": agreement, "agreement_ci95": list(interval),
            "ntk_relative_change": kernel, "agrees": agreement >= TOL["agreement_min"],
            "kernel_stays": kernel <= TOL["ntk_change_max"], "fits": fits}


@pytest.mark.parametrize("cells, expected", [
    ([cell(), cell(rank=12)], Verdict.SUPPORTED),
    ([cell(), cell(kernel=0.4, rank=12)], Verdict.SUPPORTED_WITH_CAVEATS),
    ([cell(), cell(agreement=0.89, interval=(0.85, 0.93), kernel=0.4, rank=12)],
     Verdict.SUPPORTED_WITH_CAVEATS),  # below 0.9 but not significantly: the kernel decides
    ([cell(), cell(agreement=0.8, interval=(0.74, 0.85), kernel=0.9, rank=12)], Verdict.NOT_SUPPORTED),
    ([cell(fits=False), cell(fits=False, rank=12)], Verdict.INCONCLUSIVE),
    ([cell(), cell(agreement=0.5, interval=(0.4, 0.6), fits=False, rank=12)], Verdict.SUPPORTED),
])
def test_verdict_rule(cells, expected):
    verdict, summary = regime_verdict(cells, TOL)
    assert verdict is expected, summary


def test_cells_that_do_not_fit_are_named():
    _, summary = regime_verdict([cell(), cell(fits=False, rank=12)], TOL)
    assert "Not counted" in summary and "SST-2 r=12" in summary
