"""C2: the Jacobian of (A, B) -> BA has rank r(m+n) - r^2."""

from lora_claims.harness.registry import REGISTRY, Verdict


def test_c2_every_shape_has_the_manifold_rank(audit):
    result = audit.result("C2")
    assert result.verdict is Verdict.SUPPORTED
    assert result.evidence["failures"] == []
    # every 1 <= r <= min(m, n) for m, n <= 8 (204 cases) plus the extra shapes' ranks
    extra = sum(min(shape) for shape in REGISTRY["C2"].tolerances["extra_shapes"])
    assert result.evidence["cases"] == 204 + extra
    assert result.evidence["min_spectral_gap"] > REGISTRY["C2"].tolerances["min_gap"]
