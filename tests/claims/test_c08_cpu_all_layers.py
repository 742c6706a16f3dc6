"""C8-cpu-all-layers: C8-cpu with LoRA on every layer, evaluated under profile thorough.

Under the default profile the reading is not evaluated (kind needs_profile) and names the command
that evaluates it; under smoke it runs its code for two steps and is never a verdict. Its rule is
C8-cpu's, tested on simulated records at the design's size in tests/properties/test_rank_pair.py;
here: that this reading maps comparisons to verdicts by that rule and is not evaluated otherwise.
"""

from __future__ import annotations

import pytest

from lora_claims.claims import c08_cpu_all_layers
from lora_claims.harness.registry import get_claim
from lora_claims.harness.spec import Verdict
from tests.claims.test_c08_cpu_minilm import RULE_CASES, outcome
from tests.finetune_support import skip_unless_data_or_ci

SPEC = get_claim("C8-cpu-all-layers")


def test_under_the_default_profile_it_is_not_evaluated_and_names_the_command(audit):
    result = audit.result("C8-cpu-all-layers")
    assert result.verdict is Verdict.NOT_EVALUATED
    assert result.not_evaluable["kind"] == "needs_profile"
    assert c08_cpu_all_layers.RUN_WITH in result.summary


@pytest.mark.slow
def test_a_smoke_run_trains_every_layer_and_is_never_evaluated(audit):
    result = audit.result("C8-cpu-all-layers", profile="smoke")
    skip_unless_data_or_ci(result)
    assert result.verdict is Verdict.NOT_EVALUATED and result.not_evaluable is None
    assert result.evidence["design"]["placement"] == "all-layers"
    assert {run["task"] for run in result.evidence["runs"]} == {"SST-2"}


def test_its_runs_differ_from_c8_cpus_minilm_runs_in_the_placement_only():
    """Its design is C8-cpu's on MiniLM with every layer adapted and fewer seeds (cost)."""
    mine = SPEC.sizes_for("thorough")
    theirs = get_claim("C8-cpu").sizes_for("thorough")
    differing = {key for key in mine.keys() | theirs.keys() if mine.get(key) != theirs.get(key)}
    assert differing == {"placement", "seeds_per_task", "encoders"}
    assert mine["encoders"] == ["minilm"] and "minilm" in theirs["encoders"]
    assert all(mine["seeds_per_task"][task] <= theirs["seeds_per_task"][task]
               for task in c08_cpu_all_layers.CLAIMED_TASKS)


@pytest.mark.parametrize("accuracies, verdict", RULE_CASES)
def test_the_rule_maps_the_comparisons_to_the_verdict(accuracies, verdict):
    decision = c08_cpu_all_layers.decide(outcome(accuracies), SPEC)
    assert decision.verdict is verdict, decision.summary
    assert c08_cpu_all_layers.decide(outcome(accuracies, smoke=True), SPEC).verdict is Verdict.NOT_EVALUATED
