"""Run claims from the registry and collect their results."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from lora_claims.errors import InvalidArgument, NotEvaluable
from lora_claims.harness.context import AuditContext
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


def prepare_output_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir`` or fail early, before any claim has run, with a message naming it."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-probe-", delete=True)
        probe.close()
    except OSError as error:
        raise InvalidArgument(f"--out {out}: cannot write there ({error.strerror or error})") from None
    return out


def run_audit(
    specs: list[ClaimSpec],
    out_dir: str | Path,
    context_options: dict | None = None,
    progress: bool = True,
) -> list[ClaimResult]:
    """Evaluate ``specs`` and write report.md, report.json and figures into ``out_dir``.

    Figures are produced in a staging folder and moved in only when every claim has finished, and
    the two report files are written atomically, so a failed audit leaves no partial report.
    """
    out = prepare_output_dir(out_dir)
    staging = Path(tempfile.mkdtemp(prefix=".audit-staging-", dir=out))
    try:
        ctx = AuditContext(figures_dir=staging / "figures", **(context_options or {}))
        results = []
        for spec in specs:
            result = evaluate_claim(spec, ctx)
            results.append(result)
            if progress:
                print(f"{spec.id:>4}  {result.verdict.value:<24} {result.key_figure}", file=sys.stderr)
        publish_report(out, ctx.figures_dir, results, ctx)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results


def publish_report(out: Path, figures_dir: Path, results: list[ClaimResult], ctx: AuditContext) -> None:
    """Move the staged figures into ``out``/figures and write report.json and report.md."""
    if figures_dir.exists():
        (out / "figures").mkdir(parents=True, exist_ok=True)
        for figure in figures_dir.iterdir():
            figure.replace(out / "figures" / figure.name)
    write_report(out, results, ctx)
