"""Shared check of the claim tests: a claim's rule is a function of the outcome's decision inputs."""

from __future__ import annotations

import json
from types import ModuleType

from lora_claims.harness.spec import ClaimResult, Outcome


def assert_rule_replays(result: ClaimResult, claim: ModuleType) -> None:
    """``claim.decide`` on the result's decision inputs, sent through JSON, gives back its decision:
    the rule reads nothing else, and report.json holds all it reads."""
    inputs = json.loads(json.dumps(result.decision_inputs))
    decision = claim.decide(Outcome(inputs), claim.SPEC)
    assert (decision.verdict, decision.summary, decision.key_figure) == (
        result.verdict, result.summary, result.key_figure)
