"""C6-real: C6 on real NTK features: rank-1 cross-entropy training."""

from __future__ import annotations

from lora_claims.claims.real_feature_claims import evaluate_c6_real
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C6-real",
    title="C6 on real NTK features: rank-1 cross-entropy training",
    statement=(
        "With real Jacobian features, cross-entropy gradient descent from the LoRA initialization "
        "reaches the training-loss infimum at rank 1, as C6 states for the linearized model."
    ),
    formalization=(
        "C6's practical and literal readings with real features: rank-r Armijo GD on CE in the "
        "linearized model with MiniLM's last-layer value Jacobian (384 x 384) on the SST-2 16-shot "
        "train split (N = 32, K = 2, real f0), with the task's labels and with random labels; "
        "success = loss < C6's epsilon and 100% training accuracy, fraction over LoRA "
        "initializations with Wilson intervals. Rank-1 separability of random labels as N grows on "
        "8 x 8 blocks, N50 and KN50 / d next to C6's Gaussian sweep. Rank-1 success >= C6's "
        "success_fraction with task labels and no separability limit -> supported; success but a "
        "finite N50 -> supported_with_caveats; no success -> not_supported."
    ),
    version="1.0",
    evaluation="lora_claims.methods.linearized.training on real features (lora_claims.methods.ntk.real_capacity).",
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c6_real(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
