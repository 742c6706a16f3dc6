"""What the test suite's conftest.py uses: claims evaluated once per session, and their report.

Claim tests ask the session audit for a claim's result under some options; each (claim, options)
pair is evaluated once, through the same runner the CLI uses, and at the end of the session the
results are written as an ordinary audit report.
"""

from __future__ import annotations

import os
from pathlib import Path

from lora_claims.harness.context import AuditContext
from lora_claims.harness.registry import get_claim
from lora_claims.harness.runner import evaluate_claim, publish_report
from lora_claims.harness.spec import ClaimResult, Verdict

# Kinds of "not evaluable" that mean the environment lacks an input the suite was promised: a
# claim test skips on them locally and fails in CI (where .ci/run provides the data).
MISSING_INPUT_KINDS = ("missing_data",)


class SessionAudit:
    """Evaluates claims once per (claim, options) and keeps the results for the session report."""

    def __init__(self, figures_dir: Path, data_dir: Path | None, model_paths: dict[str, str],
                 seed: int = 0):
        self.figures_dir = figures_dir
        self.defaults = {"data_dir": data_dir, "model_paths": model_paths, "seed": seed}
        self.results: dict[tuple, ClaimResult] = {}

    def result(self, claim_id: str, **options) -> ClaimResult:
        """The result of ``claim_id`` under ``options`` (AuditContext fields)."""
        key = (claim_id, tuple(sorted((k, repr(v)) for k, v in options.items())))
        if key not in self.results:
            ctx = AuditContext(figures_dir=self.figures_dir, **{**self.defaults, **options})
            self.results[key] = evaluate_claim(get_claim(claim_id), ctx)
        return self.results[key]

    def write_report(self, out: Path) -> Path:
        """Write the session's results as an audit report (report.md, report.json, figures)."""
        ctx = AuditContext(figures_dir=self.figures_dir, **self.defaults)
        publish_report(out, self.figures_dir, list(self.results.values()), ctx)
        return out / "report.md"


def missing_input(result: ClaimResult) -> str | None:
    """The reason when ``result`` could not run for lack of an input the suite was promised."""
    if result.verdict is Verdict.NOT_EVALUATED and result.not_evaluable:
        if result.not_evaluable["kind"] in MISSING_INPUT_KINDS:
            return result.not_evaluable["reason"]
    return None


def in_ci() -> bool:
    return bool(os.environ.get("CI"))
