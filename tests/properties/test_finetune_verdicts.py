"""How C8-C10 turn runs into verdicts, on synthetic run records with known answers (no training),
and which runs each profile and device plans."""

from __future__ import annotations

import numpy as np
import pytest

from lora_claims.harness.registry import Verdict, get_claim
from lora_claims.harness.context import AuditContext
from lora_claims.errors import NotEvaluable
from lora_claims.claims.finetune_claims import (
    PAPER_ENCODERS,
    compare_rank_pair,
    pair_verdict,
    plan_for,
    sweep_decision,
    sweep_verdict,
)
from lora_claims.methods.stats import chance_level

DELTA, ALPHA = get_claim("C8").tolerances["delta"], get_claim("C8").tolerances["alpha"]


def ctx(tmp_path, **options):
    return AuditContext(figures_dir=tmp_path, **options)


def fake_records(plan, accuracy_of):
    """Records as run_plan returns them, with test accuracy accuracy_of(task, rank, seed)."""
    return {
        (e, t, r, s): {"test_accuracy": accuracy_of(t, r, s), "test_label_counts": [500, 500],
                       "model": e, "test_note": "synthetic", "lora_params": 100 * r,
                       "head_params": 10}
        for e in plan.encoders for t in plan.tasks for r in plan.ranks for s in plan.scale.seeds
    }


def test_plans_by_profile_and_device(tmp_path):
    ci = plan_for("C8", ctx(tmp_path))
    assert ci.encoders == ("minilm",) and ci.scale.name == "cpu-reduced"
    assert len(ci.scale.seeds) >= 3
    paper = plan_for("C8", ctx(tmp_path, profile="thorough", device="cuda"))
    assert paper.encoders == PAPER_ENCODERS and paper.scale.name == "paper"
    assert paper.scale.seeds == (13, 21, 42, 87, 100) and paper.scale.steps == 1000
    smoke = plan_for("C8", ctx(tmp_path, profile="smoke"))
    assert smoke.encoders == PAPER_ENCODERS and smoke.substitute_missing
    assert plan_for("C8", ctx(tmp_path, profile="thorough")).encoders == ("minilm", "mpnet")
    assert plan_for("C10", ctx(tmp_path)).ranks == (1, 2, 4, 8, 12, 16)
    with pytest.raises(NotEvaluable, match="GPU-only"):
        plan_for("C9", ctx(tmp_path))


def test_c8_positive_control_equal_ranks(tmp_path):
    plan = plan_for("C8", ctx(tmp_path))
    noise = {s: 0.01 * i for i, s in enumerate(plan.scale.seeds)}
    rows = compare_rank_pair(plan, fake_records(plan, lambda t, r, s: 0.8 + noise[s]), DELTA, ALPHA)
    assert {row["decision"] for row in rows} == {"non_inferior"}
    verdict, tally = pair_verdict(plan, rows, [])
    assert verdict == Verdict.SUPPORTED_WITH_CAVEATS and "not the paper's setup" in tally


def test_c8_negative_control_rank_one_worse(tmp_path):
    plan = plan_for("C8", ctx(tmp_path))
    rng = np.random.default_rng(0)
    jitter = {s: rng.normal(0, 0.002) for s in plan.scale.seeds}
    records = fake_records(plan, lambda t, r, s: 0.8 - (0.08 if r == 1 else 0) + jitter[s])
    rows = compare_rank_pair(plan, records, DELTA, ALPHA)
    assert {row["decision"] for row in rows} == {"inferior"}
    assert pair_verdict(plan, rows, [])[0] == Verdict.NOT_SUPPORTED


def test_c8_at_chance_is_inconclusive(tmp_path):
    plan = plan_for("C8", ctx(tmp_path))
    rows = compare_rank_pair(plan, fake_records(plan, lambda t, r, s: 0.5), DELTA, ALPHA)
    assert {row["decision"] for row in rows} == {"at_chance"}
    assert pair_verdict(plan, rows, [])[0] == Verdict.INCONCLUSIVE


def test_c10_controls():
    chance = chance_level([128, 128, 128])
    rng = np.random.default_rng(1)
    seeds = rng.normal(0, 0.01, 5)
    rising = {r: 0.5 + 0.01 * min(r, 8) + seeds for r in (1, 2, 4, 8, 12, 16)}
    assert sweep_decision(rising, chance, 0.05)[0] == "above_baseline"
    assert sweep_verdict(["above_baseline"], []) == Verdict.SUPPORTED
    falling = {r: 0.6 - 0.005 * r + seeds for r in (1, 2, 4, 8, 12, 16)}
    assert sweep_decision(falling, chance, 0.05)[0] == "baseline_best"
    assert sweep_verdict(["baseline_best"], []) == Verdict.NOT_SUPPORTED
    flat = {r: 1 / 3 + seeds for r in (1, 2, 4, 8, 12, 16)}
    assert sweep_decision(flat, chance, 0.05)[0] == "at_chance"
    assert sweep_verdict(["at_chance"], []) == Verdict.INCONCLUSIVE


def test_missing_data_is_not_evaluated_with_reason(tmp_path):
    from lora_claims.harness.runner import evaluate_claim

    result = evaluate_claim(get_claim("C8"), ctx(tmp_path, data_dir=None))
    assert result.verdict == Verdict.NOT_EVALUATED and "LORA_CLAIMS_DATA" in result.summary
