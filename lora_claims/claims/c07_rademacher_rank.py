"""C7: Rademacher bound: rank one is variance-optimal when the bias is saturated."""

from __future__ import annotations

from lora_claims.claims.ntk_claims import evaluate_c7
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C7",
    title="Rademacher bound: rank one is variance-optimal when the bias is saturated",
    statement=(
        "A Rademacher bound on the rank-r class predicts that rank 1 minimizes the test-loss "
        "bound for binary classification (bias saturated at r = 1) but not for K > 2."
    ),
    formalization=(
        "Bound: test(r) <= bias(r) + 4 sqrt(r) rho E||(1/N) sum sigma_jk G_jk||_op (rank-r class "
        "with ||Delta||_F <= rho inside the nuclear ball of radius sqrt(r) rho; CE contraction "
        "factor 2), bias(r) = CE of rank-r training on a sample bias_factor times larger; "
        "predicted rank = its argmin. Simulation: Gaussian-feature teacher of rank K - 1 (K = 2, "
        "3, 4) and a K = 3 rank-1-teacher control, student CE GD constrained to the teacher's "
        "norm, held-out test CE by rank with t-intervals over trials. Supported if the measured "
        "optimum is 1 for K = 2 and above 1 for K > 2 (test(1) - test(best) > 0 with its "
        "interval) and the bound predicts the same; supported with caveats if only the measured "
        "pattern holds; inconclusive if the control's optimum is not 1."
    ),
    version="1.1",
    evaluation="Bound plus linearized teacher-student simulation (lora_claims.methods.linearized.generalization).",
    tolerances={"teacher_norm": 3.0, "confidence": 0.95},
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c7(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
