"""C2: The rank-r LoRA manifold has dimension r(m+n) - r^2."""

from __future__ import annotations

from lora_claims.claims.capacity_claims import evaluate_c2
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C2",
    title="The rank-r LoRA manifold has dimension r(m+n) - r^2",
    statement="The set of m x n matrices B A of rank exactly r has dimension r(m+n) - r^2.",
    formalization=(
        "At random Gaussian (A, B) the Jacobian of (A, B) -> B A, in float64, has numerical rank "
        "r(m+n) - r^2 for every 1 <= r <= min(m, n), over a grid of square and rectangular shapes."
    ),
    version="1.0",
    evaluation="Singular values of the explicit Jacobian; rank tolerance and spectral gap recorded.",
    tolerances={"max_side": 8, "extra_shapes": [[3, 17], [12, 5], [16, 16]], "min_gap": 1e6},
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c2(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
