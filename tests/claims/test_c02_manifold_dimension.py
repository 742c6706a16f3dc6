"""C2: the Jacobian of (A, B) -> BA has rank r(m+n) - r^2."""

import pytest

from lora_claims.claims import c02_manifold_dimension
from lora_claims.claims.c02_manifold_dimension import SPEC, decide
from lora_claims.harness.registry import REGISTRY, Verdict
from lora_claims.harness.spec import Outcome
from tests.rule_support import assert_rule_replays


def test_c2_claim(audit, claim_holds):
    claim_holds(audit.result("C2"))


def test_c2_covers_every_shape(audit):
    """The grid is the one stated: supported cannot come from a short list of cases."""
    result = audit.result("C2")
    # every 1 <= r <= min(m, n) for m, n <= 8 (204 cases) plus the extra shapes' ranks
    extra = sum(min(shape) for shape in REGISTRY["C2"].tolerances["extra_shapes"])
    assert result.evidence["cases"] == 204 + extra
    assert result.evidence["min_spectral_gap"] > REGISTRY["C2"].tolerances["min_gap"]


def test_c2_decision_inputs_reproduce_the_verdict(audit):
    assert_rule_replays(audit.result("C2"), c02_manifold_dimension)


def _case(rank: int = 3, gap: float | None = 1e12) -> dict:
    """One 2 x 2, r = 1 case (r(m+n) - r^2 = 3); gap None: nothing dropped."""
    return {"m": 2, "n": 2, "r": 1, "rank": rank, "expected": 3, "gap": gap}


@pytest.mark.parametrize(("failing_case", "verdict"), [
    (_case(), Verdict.SUPPORTED),
    (_case(gap=None), Verdict.SUPPORTED),
    (_case(rank=2), Verdict.NOT_SUPPORTED),
    (_case(gap=SPEC.tolerances["min_gap"] / 10), Verdict.NOT_SUPPORTED),
], ids=["all-match", "nothing-dropped", "rank-mismatch", "gap-below-min-gap"])
def test_c2_rule_rank_and_gap_each_flip_the_verdict(failing_case, verdict):
    decision = decide(Outcome({"cases": [_case(), failing_case]}), SPEC)
    assert decision.verdict is verdict
    matching = 2 if verdict is Verdict.SUPPORTED else 1
    assert decision.key_figure.startswith(f"{matching}/2 ranks match")
