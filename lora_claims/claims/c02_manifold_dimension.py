"""C2: The rank-r LoRA manifold has dimension r(m+n) - r^2."""

from __future__ import annotations

import math

import numpy as np

from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.counting.manifold import check_lora_manifold_rank

SPEC = ClaimSpec(
    id="C2",
    title="The rank-r LoRA manifold has dimension r(m+n) - r^2",
    statement="The set of m x n matrices B A of rank exactly r has dimension r(m+n) - r^2.",
    formalization=(
        "At random Gaussian (A, B) the Jacobian of (A, B) -> B A, in float64, has numerical rank "
        "r(m+n) - r^2 for every 1 <= r <= min(m, n), over a grid of square and rectangular shapes."
    ),
    rule=(
        "A case fails if the Jacobian's numerical rank differs from r(m+n) - r^2 or its spectral gap "
        "(last kept over first dropped singular value) is below min_gap. Supported if no case fails; "
        "not supported otherwise."
    ),
    version="1.0",
    reading="float64 Jacobian ranks at random Gaussian points, every m, n <= 8 and three larger shapes",
    evaluation="Singular values of the explicit Jacobian; rank tolerance and spectral gap recorded.",
    tolerances={"max_side": 8, "extra_shapes": [[3, 17], [12, 5], [16, 16]], "min_gap": 1e6},
    needs=Needs(device="cpu"),
)


def manifold_shapes(max_side: int, extra_shapes: list[list[int]]) -> list[tuple[int, int]]:
    shapes = [(m, n) for m in range(1, max_side + 1) for n in range(1, max_side + 1)]
    return shapes + [tuple(shape) for shape in extra_shapes if tuple(shape) not in shapes]


def _gap(case: dict) -> float:
    """A case's spectral gap; None in the record means nothing was dropped (infinite gap)."""
    return math.inf if case["gap"] is None else case["gap"]


def failing_cases(cases: list[dict], min_gap: float) -> list[dict]:
    return [case for case in cases if case["rank"] != case["expected"] or _gap(case) < min_gap]


def evaluate(spec: ClaimSpec, ctx) -> Outcome:
    tolerances = spec.tolerances
    rng = np.random.default_rng(ctx.seed)
    checks = [
        check_lora_manifold_rank(m, n, r, rng)
        for m, n in manifold_shapes(tolerances["max_side"], tolerances["extra_shapes"])
        for r in range(1, min(m, n) + 1)
    ]
    cases = [{**vars(check), "gap": check.gap if math.isfinite(check.gap) else None} for check in checks]
    evidence = {
        "cases": len(checks), "failures": failing_cases(cases, tolerances["min_gap"]),
        "min_spectral_gap": min(check.gap for check in checks),
        "rank_tolerance": "sigma_max * max(shape) * eps(float64)", "seed": ctx.seed,
    }
    return Outcome({"cases": cases}, evidence)


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    tolerances, cases = spec.tolerances, outcome.decision["cases"]
    matching = len(cases) - len(failing_cases(cases, tolerances["min_gap"]))
    smallest_gap = min(_gap(case) for case in cases)
    verdict = Verdict.SUPPORTED if matching == len(cases) else Verdict.NOT_SUPPORTED
    summary = (
        f"The Jacobian of (A, B) -> BA at random Gaussian points has rank r(m+n) - r^2 in "
        f"{matching} of {len(cases)} cases (all 1 <= r <= min(m, n), m, n <= "
        f"{tolerances['max_side']} plus {len(tolerances['extra_shapes'])} larger shapes); the "
        f"smallest gap between the last kept and first dropped singular value is {smallest_gap:.1e}."
    )
    key_figure = f"{matching}/{len(cases)} ranks match; min gap {smallest_gap:.1e}"
    return Decision(verdict, summary, key_figure)
