"""The ``lora-claims cstar`` command: settings from flags, a printed table, a JSON record.

The JSON keys are a contract: ``rho50``, ``rho95`` (interpolated thresholds, null when not reached
on the grid), ``rho50_interval``, ``rho95_interval`` (parametric bootstrap), ``rho50_grid``,
``rho95_grid`` (first grid rho reaching the level), the same for ``--level`` when it is another
value, ``grid`` (one entry per p: p, rho, successes, trials, fraction, wilson_low, wilson_high)
and ``config`` (every setting that determines the numbers). With ``--linear`` the least-squares
comparator's record sits under ``linear``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lora_claims.errors import InvalidArgument, require_int
from lora_claims.harness.cache import atomic_write_json
from lora_claims.methods.cstar.estimate import CStarConfig, CStarResult, estimate_cstar, level_key
from lora_claims.methods.cstar.solvers import GDSettings, LMSettings


def parse_grid(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidArgument(f"--grid expects comma-separated integers p, got {text!r}") from None
    for value in values:
        require_int("p (in --grid)", value)
    return values


def cstar_config_from_args(args: argparse.Namespace) -> CStarConfig:
    """Build and validate the estimator's settings; nothing runs before this succeeds."""
    if args.linear and args.linear_only:
        raise InvalidArgument("--linear and --linear-only exclude each other")
    if args.definition == "solv":
        lm = LMSettings(
            max_iterations=args.steps if args.steps is not None else LMSettings.max_iterations,
            success_tol=args.tol if args.tol is not None else LMSettings.success_tol,
        )
        gd = GDSettings()
    else:
        lm = LMSettings()
        gd = GDSettings(
            optimizer=args.optimizer,
            steps=args.steps if args.steps is not None else GDSettings.steps,
            tol=args.tol if args.tol is not None else GDSettings.tol,
            lr=args.lr if args.lr is not None else GDSettings.lr,
        )
    return CStarConfig(
        m=args.m,
        n=args.n,
        r=args.r,
        definition=args.definition,
        model="linear" if args.linear_only else "lora",
        trials=args.trials,
        seed=args.seed,
        level=args.level,
        grid=parse_grid(args.grid),
        lm=lm,
        gd=gd,
    )


def format_table(result: CStarResult, title: str) -> str:
    lines = [title, f"{'p':>6} {'rho':>7} {'successes':>11} {'fraction':>9}  Wilson 95%"]
    for point in sorted(result.points, key=lambda point: point.rho):
        low, high = point.wilson
        lines.append(
            f"{point.p:>6} {point.rho:>7.3f} {point.successes:>5}/{point.trials:<5} "
            f"{point.fraction:>9.3f}  [{low:.3f}, {high:.3f}]"
        )
    for threshold in result.thresholds:
        low, high = threshold.interval
        lines.append(
            f"{level_key(threshold.level)} = {_text(threshold.rho)}  "
            f"(bootstrap {result.config['confidence']:.0%}: [{_text(low)}, {_text(high)}]; "
            f"first grid rho: {_text(threshold.rho_grid)})"
        )
    return "\n".join(lines)


def _text(value: float) -> str:
    return f"{value:.3f}" if value != float("inf") else "not reached"


def _title(config: CStarConfig) -> str:
    model = f"least squares, D = {config.dimension}" if config.model == "linear" else "LoRA"
    settings = (
        f"{config.gd.optimizer}, N={config.gd.steps}, tol={config.gd.tol:g}"
        if config.definition == "gd"
        else f"Levenberg-Marquardt, {config.lm.restarts} restarts, tol={config.lm.success_tol:g}"
    )
    return (
        f"C*_{config.definition} for m={config.m}, n={config.n}, r={config.r} ({model}; "
        f"{settings}; d={config.dimension}, {config.trials} trials per p)"
    )


def run_cstar_command(config: CStarConfig, args: argparse.Namespace) -> int:
    configs = [config] + ([config.comparator()] if args.linear else [])
    results = [estimate_cstar(each, progress=True) for each in configs]
    for each, result in zip(configs, results, strict=True):
        print(format_table(result, _title(each)))
        print()
    record = results[0].to_json()
    if args.linear:
        record["linear"] = results[1].to_json()
    model = "linear" if args.linear_only else "lora"
    name = f"cstar_{config.definition}_{model}_m{config.m}_n{config.n}_r{config.r}.json"
    path = atomic_write_json(Path(args.out) / name, record)
    print(f"written to {path}")
    return 0
