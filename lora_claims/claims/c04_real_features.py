"""C4-real: C4 on real NTK features: does the Gaussian-iid constant transfer?."""

from __future__ import annotations

from lora_claims.claims.real_feature_claims import evaluate_c4_real
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C4-real",
    title="C4 on real NTK features: does the Gaussian-iid constant transfer?",
    statement=(
        "The capacity constant C* of r(m+n) - r^2 > C* KN, measured under Gaussian-iid features (C4), "
        "is the same when the features are the Jacobians of a real pretrained encoder."
    ),
    formalization=(
        "C4's estimators (exact fit by Levenberg-Marquardt with restarts; Armijo GD at the paper "
        "setting, N = 300, tol 1e-6, 95% level) on instances cut from real features: s x s blocks "
        "(random rows and columns) of the Jacobian of MiniLM's K = 2 logits w.r.t. its last-layer "
        "value matrix, over all logits of random subsets of real SST-2 examples, targets y ~ N(0, I). "
        "A threshold transfers if the real rho is within match_band of the Gaussian one at the same "
        "shape and level. All transfer -> supported; exact fit transfers but not the budgeted "
        "threshold -> supported_with_caveats; exact fit does not transfer -> not_supported."
    ),
    version="1.0",
    evaluation="lora_claims.methods.cstar.estimate with a real-feature sampler (lora_claims.methods.ntk.real_capacity).",
    tolerances={"match_band": 0.05},
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c4_real(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
