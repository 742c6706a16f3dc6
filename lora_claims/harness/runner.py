"""Run claims from the registry and collect their results."""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lora_claims.harness.registry import ClaimResult, ClaimSpec, Verdict
from lora_claims.harness.context import AuditContext
from lora_claims.errors import InvalidArgument, NotEvaluable
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
        if ctx.figures_dir.exists():
            (out / "figures").mkdir(exist_ok=True)
            for figure in ctx.figures_dir.iterdir():
                figure.replace(out / "figures" / figure.name)
        write_report(out, results, ctx)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results
