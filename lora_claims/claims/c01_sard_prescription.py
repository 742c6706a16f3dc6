"""C1: Prior prescription r(r+1)/2 > KN gives r >= 12."""

from __future__ import annotations

from lora_claims.harness.spec import ClaimSpec, Decision, Needs, Outcome, Verdict
from lora_claims.methods.counting.capacity import (
    CANONICAL_SHOTS,
    canonical_setups,
    min_rank_sard,
    min_rank_sard_leading,
    sard_count,
)

SPEC = ClaimSpec(
    id="C1",
    title="Prior prescription r(r+1)/2 > KN gives r >= 12",
    statement=(
        "The rank condition of Jang et al. (r(r+1)/2 > KN) prescribes r >= 12 on the canonical "
        "few-shot RoBERTa setups."
    ),
    formalization=(
        "For every canonical setup (task class count, k in {16, 32, 64}, K = 1 or K = number "
        "of label-word logits) compute the smallest r with r(r+1)/2 > KN exactly, and the "
        "leading-order form r > sqrt(2KN); report which readings give 12."
    ),
    rule=(
        "Supported if the exact inequality r(r+1)/2 > KN has its minimal rank at prescribed_rank on "
        "some canonical 16-shot setup; otherwise supported with caveats if the leading-order form "
        "r > sqrt(2KN) gives prescribed_rank on some canonical setup (any k), with the exact "
        "minimum there named as the off-by-one; otherwise not supported."
    ),
    version="1.0",
    reading="exact integer arithmetic over the canonical few-shot setups (K = 1, 2, 3; k = 16, 32, 64)",
    evaluation="Exact integer arithmetic over the canonical-setup table.",
    tolerances={"prescribed_rank": 12},
    needs=Needs(device="cpu"),
)

KN_SEARCHED = range(1, 200)  # where the KN values whose exact minimal rank is the prescribed one are sought


def sard_rank_table() -> list[dict]:
    """One row per distinct (K, N): the exact and leading-order minimal Sard ranks."""
    rows: dict[tuple[int, int], dict] = {}
    for setup in canonical_setups():
        key = (setup.outputs, setup.n)
        row = rows.setdefault(key, {
            "K": setup.outputs, "N": setup.n, "KN": setup.kn,
            "r_min_exact": min_rank_sard(setup.kn),
            "r_min_sqrt_form": min_rank_sard_leading(setup.kn),
            "setups": [],
        })
        row["setups"].append(f"{setup.task} k={setup.k}")
    for row in rows.values():
        row["off_by_one"] = row["r_min_exact"] != row["r_min_sqrt_form"]
    return sorted(rows.values(), key=lambda row: (row["KN"], row["K"]))


def _binary_row(table: list[dict], outputs: int) -> dict:
    """The binary 16-shot row (N = 32) with K = ``outputs``."""
    return next(row for row in table if row["K"] == outputs and row["N"] == 2 * CANONICAL_SHOTS)


def evaluate(spec: ClaimSpec, ctx) -> Outcome:
    prescribed = spec.tolerances["prescribed_rank"]
    table = sard_rank_table()
    canonical = [row for row in table if any(f"k={CANONICAL_SHOTS}" in s for s in row["setups"])]
    exact_hits = [row for row in canonical if row["r_min_exact"] == prescribed]
    sqrt_hits = [row for row in table if row["r_min_sqrt_form"] == prescribed]
    kn_range = [kn for kn in KN_SEARCHED if min_rank_sard(kn) == prescribed]
    binary_k2, binary_k1 = _binary_row(table, 2), _binary_row(table, 1)
    exact_setups = [row["setups"] for row in exact_hits]
    readings = {
        "exact inequality, canonical 16-shot setups": exact_setups,
        "leading-order r > sqrt(2KN), any k": [
            {"K": r["K"], "N": r["N"], "setups": r["setups"]} for r in sqrt_hits
        ],
        f"KN values whose exact minimum is {prescribed}": [kn_range[0], kn_range[-1]],
    }
    decision = {
        "exact_form_setups": exact_setups,
        "sqrt_form_setups": [r["setups"] for r in sqrt_hits],
        "kn_range_exact_minimum_prescribed": [kn_range[0], kn_range[-1]],
        "binary_k2": {key: binary_k2[key] for key in ("KN", "r_min_exact", "r_min_sqrt_form")},
        "binary_k1_r_min_exact": binary_k1["r_min_exact"],
    }
    evidence = {"table": table, "readings_giving_prescribed_rank": readings,
                "prescribed_rank": prescribed}
    return Outcome(decision, evidence)


def decide(outcome: Outcome, spec: ClaimSpec) -> Decision:
    inputs, prescribed = outcome.decision, spec.tolerances["prescribed_rank"]
    binary_k2, first_kn, last_kn = inputs["binary_k2"], *inputs["kn_range_exact_minimum_prescribed"]
    if inputs["exact_form_setups"]:
        verdict = Verdict.SUPPORTED
        summary = f"The exact inequality gives r >= {prescribed} on a canonical 16-shot setup."
    elif inputs["sqrt_form_setups"]:
        verdict = Verdict.SUPPORTED_WITH_CAVEATS
        summary = (
            f"r >= {prescribed} comes only from the leading-order form r > sqrt(2KN) at KN = "
            f"{binary_k2['KN']} (binary 16-shot with K = 2 label-word logits, or 32-shot with "
            f"K = 1). The exact inequality r(r+1)/2 > KN gives {binary_k2['r_min_exact']} there "
            f"({sard_count(binary_k2['r_min_exact'])} > {binary_k2['KN']}): off by one. Exact "
            f"minimum {prescribed} needs {first_kn} <= KN <= {last_kn}, which no canonical "
            f"setup has; with K = 1 and N = 32 the exact minimum is {inputs['binary_k1_r_min_exact']}."
        )
    else:
        verdict = Verdict.NOT_SUPPORTED
        summary = f"No reading of r(r+1)/2 > KN gives r >= {prescribed} on the canonical setups."
    key_figure = (
        f"K=2, N=32: exact r_min={binary_k2['r_min_exact']}, "
        f"sqrt form {binary_k2['r_min_sqrt_form']}; K=1, N=32: {inputs['binary_k1_r_min_exact']}"
    )
    return Decision(verdict, summary, key_figure)
