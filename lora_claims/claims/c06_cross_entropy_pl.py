"""C6: Under cross-entropy, PL removes the rank threshold."""

from __future__ import annotations

from lora_claims.claims.ntk_claims import evaluate_c6
from lora_claims.harness.legacy import LEGACY_RULE, legacy_decision, legacy_outcome
from lora_claims.harness.spec import ClaimSpec

SPEC = ClaimSpec(
    id="C6",
    title="Under cross-entropy, PL removes the rank threshold",
    statement=(
        "For cross-entropy in the linearized model, the Polyak-Lojasiewicz inequality removes the "
        "rank threshold entirely: gradient descent from the standard LoRA initialization (B = 0, A "
        "random) reaches the infimum of the training loss at every rank, rank 1 included."
    ),
    formalization=(
        "Three readings, measured on random-label instances of the linearized model (Gaussian iid "
        "and last-layer features G_jk = e_k h_j^T): (practical) at canonical-like sizes (K = 2, "
        "N = 32; K = 3, N = 48) rank-1 Armijo GD reaches mean CE < epsilon with 100% training "
        "accuracy in at least success_fraction of trials; (literal, 'entirely') no N at which "
        "rank-1 CE stops separating: the separability fraction as N grows, transition N50 compared "
        "with the manifold dimension m + n - 1; (mechanism) the PL ratio ||grad F||^2 / (2 (F - inf "
        "F)) along trajectories, by decade of the gap: slope of log ratio on log gap above "
        "pl_decay_slope means it decays to 0 (no global PL), below pl_bounded_slope means bounded. "
        "Supported if all three hold; supported with caveats if the practical reading holds but "
        "the threshold is only moved or global PL fails; not supported if the practical reading "
        "fails; inconclusive if the squared-loss negative control (rank 1, KN > m + n - 1) "
        "reaches epsilon."
    ),
    version="1.1",
    evaluation=(
        "Batched linearized-model training (lora_claims.methods.linearized.ce_experiments); inf F under l2 from the "
        "convex nuclear-norm problem (lora_claims.methods.linearized.convex) where its rank <= r."
    ),
    tolerances={"epsilon": 1e-3, "success_fraction": 0.9, "pl_decay_slope": 0.5,
                "pl_bounded_slope": 0.25, "weight_decay": 1e-2},
    rule=LEGACY_RULE,
)


def evaluate(spec, ctx):
    return legacy_outcome(evaluate_c6(ctx))


def decide(outcome, spec):
    return legacy_decision(outcome)
