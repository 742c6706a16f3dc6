"""Transition shim: an evaluator still written as ``f(ctx) -> ClaimResult`` wrapped in the contract.

Its verdict travels in the outcome and ``legacy_decision`` reads it back; each claim module drops
the shim once its rule is a function of its own.
"""

from __future__ import annotations

from lora_claims.harness.spec import Decision, Outcome, Verdict

LEGACY_RULE = "Decided inside the evaluator (see the formalization); not yet a separate rule."


def legacy_outcome(result) -> Outcome:
    return Outcome(
        decision={"verdict": result.verdict.value, "summary": result.summary,
                  "key_figure": result.key_figure},
        evidence=result.evidence,
        figures=list(result.figures),
    )


def legacy_decision(outcome: Outcome) -> Decision:
    inputs = outcome.decision
    return Decision(Verdict(inputs["verdict"]), inputs["summary"], inputs["key_figure"])
