"""Run claims from the registry and collect their results."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from lora_claims.errors import Interrupted, NotEvaluable
from lora_claims.harness.context import AuditContext
from lora_claims.harness.output import AuditOutput
from lora_claims.harness.registry import claim_module
from lora_claims.harness.report import write_report
from lora_claims.harness.spec import ClaimResult, ClaimSpec, Verdict


def evaluate_claim(spec: ClaimSpec, ctx: AuditContext) -> ClaimResult:
    """Measure ``spec`` with its evaluator, decide with its rule, and build the one result.

    A claim that cannot run here comes back ``not_evaluated`` with the reason and its kind.
    """
    module = claim_module(spec)
    start = time.perf_counter()
    result = ClaimResult(id=spec.id, version=spec.version, verdict=Verdict.NOT_EVALUATED, summary="",
                         spec=spec.to_json(ctx.profile))
    try:
        outcome = module.evaluate(spec, ctx)
    except NotEvaluable as reason:
        result.summary = str(reason)
        result.key_figure = f"not evaluated ({reason.kind.replace('_', ' ')}): {reason}"
        result.not_evaluable = {"kind": reason.kind, "reason": str(reason)}
    else:
        decision = module.decide(outcome, spec)
        result.verdict, result.summary, result.key_figure = (
            decision.verdict, decision.summary, decision.key_figure)
        result.evidence, result.figures = outcome.evidence, list(outcome.figures)
        result.decision_inputs = outcome.decision
    result.seconds = round(time.perf_counter() - start, 3)
    result.conditions = {"profile": ctx.profile, "device": ctx.device, "seed": ctx.seed}
    return result


def run_audit(
    specs: list[ClaimSpec],
    out_dir: str | Path,
    context_options: dict | None = None,
    progress: bool = True,
) -> list[ClaimResult]:
    """Evaluate ``specs`` and write report.md, report.json and figures into ``out_dir``.

    Everything is staged and swapped in only when every claim has finished (harness.output), so a
    failed or interrupted audit leaves no partial report; Ctrl-C ends in ``Interrupted`` saying
    how far it got (finished runs are cached, so a rerun resumes).
    """
    with AuditOutput(out_dir) as output:
        ctx = AuditContext(figures_dir=output.figures_dir, **(context_options or {}))
        results = []
        try:
            for spec in specs:
                result = evaluate_claim(spec, ctx)
                results.append(result)
                if progress:
                    print(f"{spec.id:>4}  {result.verdict.value:<24} {result.key_figure}",
                          file=sys.stderr)
        except KeyboardInterrupt:
            raise Interrupted(f"{len(results)} of {len(specs)} claims evaluated, their runs "
                              "cached; rerun to resume") from None
        write_report(output.staging, results, ctx)
        output.commit()
    return results


def publish_report(out: Path, figures_dir: Path, results: list[ClaimResult], ctx: AuditContext) -> None:
    """Write report.json, report.md and the figures in ``figures_dir`` into ``out`` as one whole:
    staged, then swapped in (harness.output)."""
    with AuditOutput(out) as output:
        if figures_dir.exists():
            shutil.copytree(figures_dir, output.figures_dir)
        write_report(output.staging, results, ctx)
        output.commit()
