"""The types a claim is made of: its spec, what its evaluator measures, and what the rule decides.

A claim module (``lora_claims/claims/cNN_*.py``) holds three things:

- ``SPEC``: a :class:`ClaimSpec`, our statement of the claim, the formalization we compute, the
  decision rule in words, the tolerances the rule reads, the sizes per profile and what it needs;
- ``evaluate(spec, ctx) -> Outcome``: the measurements (evidence, figures, and the figures the rule
  reads, under ``decision``);
- ``decide(outcome, spec) -> Decision``: the rule, a pure function of the outcome and the spec.

Only the runner turns these into a :class:`ClaimResult`, so an evaluator cannot report another
claim's id or a stale version, and the rule can be tested on hand-made outcomes.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

PROFILES = ("smoke", "ci", "thorough")


class Verdict(str, enum.Enum):
    SUPPORTED = "supported"
    SUPPORTED_WITH_CAVEATS = "supported_with_caveats"
    NOT_SUPPORTED = "not_supported"
    INCONCLUSIVE = "inconclusive"
    NOT_EVALUATED = "not_evaluated"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Needs:
    """What a claim needs to run: the device class, GLUE tasks and encoders."""

    device: str = "cpu"  # "cpu": runs anywhere; "gpu": its own setup needs CUDA
    data: tuple[str, ...] = ()
    models: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [self.device]
        if self.data:
            parts.append("data " + ",".join(self.data))
        if self.models:
            parts.append("models " + ",".join(self.models))
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "data": list(self.data), "models": list(self.models)}


@dataclass(frozen=True)
class ClaimSpec:
    id: str
    title: str
    statement: str
    formalization: str
    rule: str  # the decision rule, in words; ``decide`` implements exactly this
    version: str
    evaluation: str  # how it is measured, in one line
    reading: str = ""  # the scale, features and configuration the verdict holds under
    tolerances: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)  # per profile
    needs: Needs = Needs()
    module: str = ""  # filled in by the registry: where the evaluator and rule live

    def sizes_for(self, profile: str) -> dict[str, Any]:
        """The sizes of ``profile``; a claim with one size for all profiles lists none."""
        return dict(self.sizes.get(profile, {}))

    def protocol(self) -> dict[str, Any]:
        """What a version number stands for: changing any of it must bump the version."""
        return {
            "statement": self.statement,
            "formalization": self.formalization,
            "rule": self.rule,
            "tolerances": self.tolerances,
            "sizes": self.sizes,
        }

    def protocol_hash(self) -> str:
        text = json.dumps(self.protocol(), sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def to_json(self, profile: str | None = None) -> dict[str, Any]:
        """The spec as evaluated, for report.json: a report renders from this alone."""
        record = {
            "id": self.id,
            "title": self.title,
            "version": self.version,
            "statement": self.statement,
            "formalization": self.formalization,
            "rule": self.rule,
            "reading": self.reading,
            "evaluation": self.evaluation,
            "tolerances": self.tolerances,
            "needs": self.needs.to_json(),
            "module": self.module,
            "protocol_hash": self.protocol_hash(),
        }
        if profile is not None:
            record["sizes"] = self.sizes_for(profile)
        return record


@dataclass
class Outcome:
    """What an evaluator measured: ``decision`` holds exactly the figures the rule reads."""

    decision: dict[str, Any]
    evidence: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    summary: str
    key_figure: str = ""


@dataclass
class ClaimResult:
    id: str
    version: str
    verdict: Verdict
    summary: str
    key_figure: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    seconds: float | None = None
    conditions: dict[str, Any] = field(default_factory=dict)  # profile, device and seed it ran under
    spec: dict[str, Any] = field(default_factory=dict)  # the spec as evaluated
    decision_inputs: dict[str, Any] = field(default_factory=dict)
    not_evaluable: dict[str, str] | None = None  # {"kind": ..., "reason": ...}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "verdict": self.verdict.value,
            "summary": self.summary,
            "key_figure": self.key_figure,
            "rule": self.spec.get("rule", ""),
            "reading": self.spec.get("reading", ""),
            "evidence": self.evidence,
            "decision_inputs": self.decision_inputs,
            "figures": list(self.figures),
            "seconds": self.seconds,
            "conditions": self.conditions,
            "spec": self.spec,
            "not_evaluable": self.not_evaluable,
        }
