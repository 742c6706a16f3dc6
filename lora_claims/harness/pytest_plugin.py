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


# --- claim tests: the claim asserted, expected outcomes as data ---------------------------------

SUPPORTING = (Verdict.SUPPORTED, Verdict.SUPPORTED_WITH_CAVEATS)


def reading_key(result: ClaimResult) -> str:
    """The reading a result was measured under: claim id, profile and device type."""
    device = str(result.conditions.get("device", "cpu")).split(":")[0]
    return f"{result.id}@{result.conditions.get('profile', 'ci')}-{device}"


def figure_at(tree: dict, path: str):
    """The value at a dotted path (``comparisons.0.t.low``) of a result's decision inputs."""
    value = tree
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def drifted_figures(result: ClaimResult, figures: dict) -> list[str]:
    """Recorded figures that the result no longer reproduces within their tolerance."""
    drifted = []
    for path, recorded in figures.items():
        try:
            value = figure_at(result.decision_inputs, path)
        except (KeyError, IndexError, TypeError):
            drifted.append(f"{path}: missing (recorded {recorded['value']})")
            continue
        if value is None or abs(float(value) - recorded["value"]) > recorded["tolerance"]:
            drifted.append(f"{path}: {value} vs recorded {recorded['value']} +/- {recorded['tolerance']}")
    return drifted


def check_claim(result: ClaimResult, regression: dict) -> None:
    """Assert the paper's claim under the result's reading, the expected outcome applied as data.

    With an entry for this reading in regression.json: the spec must be the one recorded (version
    and protocol hash), the recorded figures must reproduce within their tolerances and the verdict
    must be the expected one; an expected verdict other than support then ends the test as an
    expected failure with the recorded reason (a verdict that moves, in either direction, fails).
    Without an entry (paper scale on a GPU): support passes, ``not_supported`` fails with the
    evidence, ``inconclusive`` is an expected failure with the summary.
    """
    import pytest

    key = reading_key(result)
    entry = regression.get(key)
    if result.verdict is Verdict.NOT_EVALUATED:
        reason = result.not_evaluable or {"kind": "other", "reason": result.summary}
        if reason["kind"] in MISSING_INPUT_KINDS and in_ci():
            pytest.fail(f"{result.id}: CI must provide its inputs: {reason['reason']}")
        pytest.skip(f"{result.id} not evaluated ({reason['kind']}): {reason['reason']}")
    if entry is None:
        if result.verdict is Verdict.NOT_SUPPORTED:
            pytest.fail(f"{key}: the evidence refutes the claim: {result.key_figure}. {result.summary}")
        if result.verdict is Verdict.INCONCLUSIVE:
            pytest.xfail(f"{key}: inconclusive: {result.key_figure}. {result.summary}")
        return
    spec = result.spec
    if entry["version"] != spec["version"]:
        pytest.fail(f"{key}: regression.json records v{entry['version']}, the claim is "
                    f"v{spec['version']}: re-measure and record the new version's outcome")
    if entry["protocol_hash"] != spec["protocol_hash"]:
        pytest.fail(f"{key}: the spec changed without a version bump (protocol hash "
                    f"{spec['protocol_hash']}, recorded {entry['protocol_hash']})")
    drifted = drifted_figures(result, entry.get("figures", {}))
    assert not drifted, f"{key}: figures drifted: {'; '.join(drifted)}"
    expected = Verdict(entry["expected"])
    assert result.verdict is expected, (
        f"{key}: verdict moved from the recorded {expected.value} to {result.verdict.value}: "
        f"{result.key_figure}. {result.summary}")
    if expected not in SUPPORTING:
        pytest.xfail(f"{key} v{spec['version']}: {expected.value}: {entry['reason']}")


def regression_entry(result: ClaimResult, reason: str, tolerances: dict[str, float]) -> dict:
    """A regression.json entry for ``result``: its verdict, the reason it is expected, and the
    figures at ``tolerances``' dotted paths (into the decision inputs) with their noise-based
    tolerances. Recording is a deliberate act: the entry is read back by ``check_claim``."""
    return {
        "version": result.version,
        "protocol_hash": result.spec["protocol_hash"],
        "expected": result.verdict.value,
        "reason": reason,
        "figures": {path: {"value": figure_at(result.decision_inputs, path), "tolerance": tolerance}
                    for path, tolerance in tolerances.items()},
    }
