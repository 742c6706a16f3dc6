"""How C8-C10 turn runs into verdicts, on synthetic run records with known answers (no training),
and which runs each profile and device plans."""

from __future__ import annotations

import numpy as np
import pytest

from lora_claims.claims import c08_rank1_competitive as c08
from lora_claims.claims import c10_mnli_rank as c10
from lora_claims.errors import NeedsGPU
from lora_claims.harness.context import AuditContext
from lora_claims.harness.registry import get_claim
from lora_claims.harness.spec import Outcome, Verdict
from lora_claims.methods.finetune.comparison import rank_pair_study, sweep_decision
from lora_claims.methods.stats import chance_level

C8 = get_claim("C8")
DELTA, ALPHA = C8.tolerances["delta"], C8.tolerances["alpha"]


def ctx(tmp_path, **options):
    return AuditContext(figures_dir=tmp_path, **options)


def fake_records(grid, accuracy_of):
    """Records as run_grid returns them, with test accuracy accuracy_of(task, rank, seed)."""
    return {
        (e, t, r, s): {"test_accuracy": accuracy_of(t, r, s), "test_label_counts": [500, 500],
                       "model": e, "test_note": "synthetic", "lora_params": 100 * r,
                       "head_params": 10}
        for e in grid.encoders for t in grid.tasks for r in grid.ranks for s in grid.scale.seeds
    }


def c8_verdict(grid, records, notes=()):
    decision, _ = rank_pair_study(grid, records, DELTA, ALPHA, c08.CLAIMED_TASKS, list(notes))
    return c08.decide(Outcome(decision=decision), C8)


def test_plans_by_profile_and_device(tmp_path):
    ci, substitute = c08.grid_for(C8, ctx(tmp_path))
    assert ci.encoders == ("minilm",) and ci.scale.name == "cpu-reduced" and not substitute
    assert len(ci.scale.seeds) >= 3
    paper, _ = c08.grid_for(C8, ctx(tmp_path, profile="thorough", device="cuda"))
    assert paper.encoders == c08.PAPER_ENCODERS and paper.scale.name == "paper"
    assert paper.scale.seeds == (13, 21, 42, 87, 100) and paper.scale.steps == 1000
    smoke, substitute = c08.grid_for(C8, ctx(tmp_path, profile="smoke"))
    assert smoke.encoders == c08.PAPER_ENCODERS and substitute
    assert c08.grid_for(C8, ctx(tmp_path, profile="thorough"))[0].encoders == ("minilm", "mpnet")
    assert c10.grid_for(get_claim("C10"), ctx(tmp_path))[0].ranks == (1, 2, 4, 8, 12, 16)


def test_c9_needs_a_gpu_off_smoke(tmp_path):
    from lora_claims.claims import c09_roberta_large as c09

    with pytest.raises(NeedsGPU, match="GPU-only"):
        c09.evaluate(get_claim("C9"), ctx(tmp_path))


def test_c8_positive_control_equal_ranks(tmp_path):
    grid, _ = c08.grid_for(C8, ctx(tmp_path))
    noise = {s: 0.01 * i for i, s in enumerate(grid.scale.seeds)}
    decision = c8_verdict(grid, fake_records(grid, lambda t, r, s: 0.8 + noise[s]))
    assert decision.verdict == Verdict.SUPPORTED_WITH_CAVEATS
    assert "not the paper's setup" in decision.summary


def test_c8_negative_control_rank_one_worse(tmp_path):
    grid, _ = c08.grid_for(C8, ctx(tmp_path))
    rng = np.random.default_rng(0)
    jitter = {s: rng.normal(0, 0.002) for s in grid.scale.seeds}
    records = fake_records(grid, lambda t, r, s: 0.8 - (0.08 if r == 1 else 0) + jitter[s])
    assert c8_verdict(grid, records).verdict == Verdict.NOT_SUPPORTED


def test_c8_at_chance_is_inconclusive(tmp_path):
    grid, _ = c08.grid_for(C8, ctx(tmp_path))
    assert c8_verdict(grid, fake_records(grid, lambda t, r, s: 0.5)).verdict == Verdict.INCONCLUSIVE


def test_c8_supported_without_caveats_only_at_paper_scale(tmp_path):
    grid, _ = c08.grid_for(C8, ctx(tmp_path, profile="thorough", device="cuda"))
    noise = {s: 0.01 * i for i, s in enumerate(grid.scale.seeds)}
    decision = c8_verdict(grid, fake_records(grid, lambda t, r, s: 0.8 + noise[s]))
    assert decision.verdict == Verdict.SUPPORTED


def c10_decision(decisions, caveats=()):
    best = {"best": 4, "comparator": 4, "means": {"1": 0.5, "4": 0.6},
            "t": {"mean": 0.1, "low": 0.05, "high": 0.15, "confidence": 0.99}}
    inputs = {"scale": "test", "caveats": list(caveats), "test_note": "synthetic",
              "encoders": {f"e{i}": {"decision": d, "best_rank": best} for i, d in enumerate(decisions)}}
    return c10.decide(Outcome(decision=inputs), get_claim("C10")).verdict


def test_c10_controls():
    chance = chance_level([128, 128, 128])
    rng = np.random.default_rng(1)
    seeds = rng.normal(0, 0.01, 5)
    rising = {r: 0.5 + 0.01 * min(r, 8) + seeds for r in (1, 2, 4, 8, 12, 16)}
    assert sweep_decision(rising, chance, 0.05)[0] == "above_baseline"
    assert c10_decision(["above_baseline"]) == Verdict.SUPPORTED
    assert c10_decision(["above_baseline"], ["cpu scale"]) == Verdict.SUPPORTED_WITH_CAVEATS
    falling = {r: 0.6 - 0.005 * r + seeds for r in (1, 2, 4, 8, 12, 16)}
    assert sweep_decision(falling, chance, 0.05)[0] == "baseline_best"
    assert c10_decision(["baseline_best"]) == Verdict.NOT_SUPPORTED
    flat = {r: 1 / 3 + seeds for r in (1, 2, 4, 8, 12, 16)}
    assert sweep_decision(flat, chance, 0.05)[0] == "at_chance"
    assert c10_decision(["at_chance"]) == Verdict.INCONCLUSIVE
    assert c10_decision(["above_baseline", "baseline_best"]) == Verdict.INCONCLUSIVE


def test_missing_data_is_not_evaluated_with_its_kind(tmp_path):
    from lora_claims.harness.runner import evaluate_claim

    result = evaluate_claim(C8, ctx(tmp_path, data_dir=None))
    assert result.verdict == Verdict.NOT_EVALUATED and "LORA_CLAIMS_DATA" in result.summary
    assert result.not_evaluable["kind"] == "missing_data"
