"""Run claims from the registry and collect their results."""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

from lora_claims.harness.registry import ClaimResult, ClaimSpec, Verdict
from lora_claims.harness.context import AuditContext
from lora_claims.errors import Interrupted, NotEvaluable
from lora_claims.harness.output import AuditOutput
from lora_claims.harness.report import write_report

Evaluator = Callable[[AuditContext], ClaimResult]


def load_evaluator(spec: ClaimSpec) -> Evaluator | None:
    if spec.evaluator is None:
        return None
    module_name, _, function_name = spec.evaluator.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def evaluate_claim(spec: ClaimSpec, ctx: AuditContext) -> ClaimResult:
    """Evaluate one claim; a claim that cannot run here comes back as ``not_evaluated``."""
    evaluator = load_evaluator(spec)
    if evaluator is None:
        return ClaimResult(
            id=spec.id,
            version=spec.version,
            verdict=Verdict.NOT_EVALUATED,
            summary=f"No evaluator yet (planned in issue {spec.issue}); no verdict is given.",
        )
    start = time.perf_counter()
    try:
        result = evaluator(ctx)
    except NotEvaluable as reason:
        result = ClaimResult(
            id=spec.id, version=spec.version, verdict=Verdict.NOT_EVALUATED, summary=str(reason)
        )
    if (result.id, result.version) != (spec.id, spec.version):
        raise RuntimeError(
            f"evaluator {spec.evaluator} returned {result.id} v{result.version}, "
            f"expected {spec.id} v{spec.version}"
        )
    result.seconds = round(time.perf_counter() - start, 3)
    result.conditions = {"profile": ctx.profile, "device": ctx.device}
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
