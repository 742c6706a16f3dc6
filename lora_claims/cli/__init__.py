"""Command line: ``lora-claims audit | list | report | compare | cstar | finetune | bench-table``.

Every failure the user can act on ends in one line, ``lora-claims CMD: error: WHAT: WHY``, with
exit 2; what can be checked up front (outputs writable, cache writable, device present) is
checked before any expensive work. Ctrl-C or SIGTERM ends in one line saying how far the command
got, with exit 130; finished runs are cached, so a rerun resumes.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from lora_claims.cli import compare
from lora_claims.errors import Interrupted, InvalidArgument, LoraClaimsError
from lora_claims.harness.cache import ResultCache, atomic_write_text, to_json
from lora_claims.harness.context import DEFAULT_SEED, PROFILES, default_data_dir, parse_model_paths
from lora_claims.harness.output import probe_file, probe_folder
from lora_claims.harness.registry import REGISTRY, parse_claim_ids

INTERRUPTED_EXIT = 130  # the shell's code for a command ended by SIGINT

# Library field names as the flags that set them, so that a message names what the user typed.
CSTAR_FLAGS = {"success_tol": "--tol", "tol": "--tol", "lr": "--lr", "steps": "--steps",
               "max_iterations": "--steps", "m": "--m", "n": "--n", "trials": "--trials",
               "seed": "--seed", "level": "--level", "p": "--grid"}
FINETUNE_FLAGS = {"learning_rate": "--lr", "rank": "--ranks", "seed": "--seeds", "k": "--k",
                  "alpha": "--alpha", "steps": "--steps", "eval_every": "--eval-every",
                  "batch_size": "--batch-size", "max_length": "--max-length",
                  "test_cap": "--test-cap"}


@contextmanager
def flag_names(flags: dict[str, str]) -> Iterator[None]:
    """Re-raise an ``InvalidArgument`` about a library field as one about its flag."""
    try:
        yield
    except InvalidArgument as error:
        flag = flags.get(error.argument)
        if flag is None:
            raise
        raise InvalidArgument(str(error).replace(error.argument, flag, 1), flag) from None


def _cache_for(args: argparse.Namespace) -> ResultCache:
    """The result cache, checked writable now: a finished run must never be lost to it."""
    cache = ResultCache(args.cache_dir)
    probe_folder("--cache-dir", cache.root)
    return cache


def _check_device(device: str) -> None:
    from lora_claims.methods.finetune.runs import resolve_device

    resolve_device(device)


def _add_audit(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit", help="evaluate claims and write report.md, report.json and figures"
    )
    parser.add_argument("--claims", help=f"comma-separated ids (default: all of {', '.join(REGISTRY)})")
    parser.add_argument("--out", default="audit-report", help="output folder (default: %(default)s)")
    parser.add_argument("--profile", choices=PROFILES, default="ci",
                        help="experiment sizes: smoke, ci (default, fits a 2-core CPU) or thorough")
    _add_run_inputs(parser)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of the Monte-Carlo claims, recorded in the report (default: %(default)s)")
    parser.set_defaults(handler=_run_audit)


def _add_run_inputs(parser: argparse.ArgumentParser) -> None:
    """Where data, models and cached results are, and the device: shared by audit and finetune."""
    parser.add_argument("--data-dir", default=None,
                        help="GLUE data folder (default: $LORA_CLAIMS_DATA; 'hf' for `datasets`)")
    parser.add_argument("--device", default="cpu", help="torch device for fine-tuning (default: cpu)")
    parser.add_argument("--model-path", action="append", metavar="NAME=PATH",
                        help="local path of a model, repeatable")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="result cache (default: $LORA_CLAIMS_CACHE or ~/.cache/lora-claims)")


def _run_audit(args: argparse.Namespace) -> int:
    from lora_claims.harness.runner import run_audit

    specs = parse_claim_ids(args.claims)
    options = {
        "profile": args.profile,
        "data_dir": args.data_dir or default_data_dir(),
        "device": args.device,
        "model_paths": parse_model_paths(args.model_path),
        "cache": _cache_for(args),
        "seed": args.seed,
    }
    _check_device(args.device)  # before the first claim, not when a fine-tuning claim starts
    results = run_audit(specs, args.out, options)
    width = max(len(r.id) for r in results)
    print(f"{'claim':<{width}}  {'verdict':<24} key figure")
    for result in results:
        print(f"{result.id:<{width}}  {result.verdict.value:<24} {result.key_figure}")
    print(f"\nreport written to {Path(args.out) / 'report.md'} and report.json")
    return 0


def _add_list(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list", help="every claim and reading: id, version, title, what it needs, where its code is"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document for scripts")
    parser.set_defaults(handler=_run_list)


def _run_list(args: argparse.Namespace) -> int:
    specs = list(REGISTRY.values())
    if args.json:
        print(to_json([{**spec.to_json(), "module_path": _module_path(spec.module)} for spec in specs]),
              end="")
        return 0
    rows = [(s.id, s.version, s.needs.describe(), _module_path(s.module), s.title) for s in specs]
    widths = [max(len(row[i]) for row in rows + [("claim", "version", "needs", "module", "")])
              for i in range(4)]
    header = ("claim", "version", "needs", "module", "title")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[4])
    return 0


def _module_path(module: str) -> str:
    return module.replace(".", "/") + ".py"


def _add_report(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="re-render report.md from a report.json")
    parser.add_argument("report_json", type=Path)
    parser.add_argument("--out", type=Path, help="Markdown file (default: beside the JSON)")
    parser.set_defaults(handler=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from lora_claims.harness.report import load_report, render_markdown

    out = probe_file("--out", args.out or args.report_json.with_suffix(".md"))
    payload = load_report(args.report_json)
    atomic_write_text(out, render_markdown(payload))
    print(out)
    return 0


def _add_cstar(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cstar",
        help="Monte-Carlo estimate of the capacity threshold C* (claim C4)",
        description="Success fraction of random rank-r systems <G_j, B A> = y_j over a grid of "
        "p, and the thresholds rho50 / rho95 of rho = (r(m+n) - r^2) / p with intervals.",
    )
    parser.add_argument("--m", type=int, required=True, help="rows of G_j and of B A")
    parser.add_argument("--n", type=int, required=True, help="columns of G_j and of B A")
    parser.add_argument("--r", type=int, required=True, help="LoRA rank, 1 <= r <= min(m, n)")
    parser.add_argument("--definition", choices=("solv", "gd"), required=True,
                        help="solv: exact fit (Levenberg-Marquardt with restarts); "
                             "gd: relative loss below --tol within a step budget")
    parser.add_argument("--optimizer", choices=("armijo", "adam", "fixed"), default="armijo",
                        help="gd only: Armijo GD (default), Adam, or closed-form fixed-step GD "
                             "(least squares only, with --linear-only)")
    parser.add_argument("--steps", type=int, default=None,
                        help="gd: step budget (default 300); solv: LM iterations per restart "
                             "(default 200)")
    parser.add_argument("--tol", type=float, default=None,
                        help="success threshold on the relative loss (default: 1e-6 for gd, "
                             "1e-16 for solv)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-2)")
    parser.add_argument("--level", type=float, default=0.95,
                        help="success level of the headline threshold, in (0, 1) (default 0.95; "
                             "rho50 and rho95 are always reported)")
    parser.add_argument("--trials", type=int, default=200, help="instances per grid point")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", default=None, metavar="P1,P2,...",
                        help="values of p (default: the definition's grid around p = d)")
    parser.add_argument("--linear", action="store_true",
                        help="also run the least-squares comparator with D = r(m+n) - r^2")
    parser.add_argument("--linear-only", action="store_true",
                        help="run only the least-squares model with D = r(m+n) - r^2")
    parser.add_argument("--out", type=Path, default=Path("cstar-results"),
                        help="folder for the JSON result (default: %(default)s)")
    parser.set_defaults(handler=_run_cstar)


def _run_cstar(args: argparse.Namespace) -> int:
    from lora_claims.cli.cstar import cstar_config_from_args, run_cstar_command

    with flag_names(CSTAR_FLAGS):
        config = cstar_config_from_args(args)
    probe_folder("--out", args.out)
    return run_cstar_command(config, args)


def _name_list(text: str) -> list[str]:
    """Comma-separated values; an empty list would make a sweep that runs nothing."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected at least one value, got {text!r}")
    return names


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in _name_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _add_finetune(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="few-shot LoRA fine-tuning: one config, or a sweep over lists"
    )
    parser.add_argument("--model", default="minilm",
                        help="minilm, mpnet, a hub id in the local cache, or a --model-path name")
    parser.add_argument("--tasks", type=_name_list, default=["SST-2"],
                        help="comma-separated, e.g. SST-2,RTE,MNLI")
    parser.add_argument("--ranks", type=_int_list, default=[1], help="comma-separated, e.g. 1,12")
    parser.add_argument("--seeds", type=_int_list, default=[42], help="e.g. 13,21,42,87,100")
    parser.add_argument("--k", type=int, default=16, help="examples per class (default: 16)")
    parser.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: 2 * rank)")
    parser.add_argument("--rslora", action="store_true", help="scale alpha / sqrt(r)")
    parser.add_argument("--engine", choices=("stacked", "peft"), default="stacked",
                        help="stacked: runs sharing an encoder train in one pass (default); "
                             "peft: one run at a time through peft, the reference")
    parser.add_argument("--placement", choices=("all-layers", "last-layer"), default="all-layers",
                        help="LoRA on query/value of every layer (default) or of the last layer "
                             "only (Jang et al.'s default; its frozen prefix is cached)")
    parser.add_argument("--head", choices=("native", "linear-cls", "linear-mean"), default="native",
                        help="the architecture's classification head (default), or a linear head "
                             "on the first token or on the token mean")
    parser.add_argument("--random-init", action="store_true",
                        help="the architecture with random weights (shipped configs: roberta-base, "
                             "roberta-large, bert-base-uncased): plumbing and speed, never a verdict")
    parser.add_argument("--lr", type=float, default=5e-4, help="learning rate (default: 5e-4)")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--test-cap", type=int, default=1000, help="0: the whole test set")
    _add_run_inputs(parser)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder: one JSON record per run (the format `compare` reads)")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(handler=_run_finetune)


def _run_finetune(args: argparse.Namespace) -> int:
    from lora_claims.methods.finetune.runs import RunConfig, RunInputs, run_sweep

    with flag_names(FINETUNE_FLAGS):
        configs = [
            RunConfig(model=args.model, task=task, k=args.k, seed=seed, rank=rank,
                      alpha=args.alpha, rslora=args.rslora,
                      learning_rate=args.lr, steps=args.steps, eval_every=args.eval_every,
                      batch_size=args.batch_size, max_length=args.max_length,
                      test_cap=args.test_cap or None, device=args.device, engine=args.engine,
                      placement=args.placement, head=args.head, random_init=args.random_init)
            for task in args.tasks
            for rank in args.ranks
            for seed in args.seeds
        ]
    if args.out:
        probe_folder("--out", args.out)
    cache = _cache_for(args)
    _check_device(args.device)
    inputs = RunInputs(args.data_dir or default_data_dir(), parse_model_paths(args.model_path), cache)
    records = run_sweep(configs, inputs, progress=not args.no_progress)
    print(f"{'task':<6} {'rank':>4} {'seed':>4} {'train':>6} {'dev':>6} {'test':>6} {'step':>5} "
          f"{'lora':>8} {'head':>7} {'sec':>7}")
    for config, record in zip(configs, records, strict=True):
        print(f"{config.task:<6} {config.rank:>4} {config.seed:>4} "
              f"{record['train_accuracy']:6.3f} {record['dev_accuracy']:6.3f} "
              f"{record['test_accuracy']:6.3f} "
              f"{record['best_step']:>5} {record['lora_params']:>8} {record['head_params']:>7} "
              f"{record['wall_seconds']:7.1f}")
    if args.out:
        for record in records:
            config = record["config"]
            name = (f"{config['task']}_{record['model'].replace('/', '-')}_r{config['rank']}_"
                    f"seed{config['seed']}_{record['config_hash']}.json")
            atomic_write_text(args.out / name, to_json(record))
        print(f"{len(records)} records written to {args.out}/")
    return 0


def _add_bench_table(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench-table", help="Markdown table (rank vs time, memory, parameters, adapter size) "
                            "from a pytest --benchmark-json file"
    )
    parser.add_argument("bench_json", type=Path, help="file written by pytest --benchmark-json")
    parser.add_argument("--out", type=Path, help="write the Markdown here (default: print it)")
    parser.set_defaults(handler=_run_bench_table)


def _run_bench_table(args: argparse.Namespace) -> int:
    from lora_claims.cli.bench_table import load_benchmark_json, render_bench_table

    if args.out:
        probe_file("--out", args.out)
    markdown = render_bench_table(load_benchmark_json(args.bench_json))
    if args.out:
        atomic_write_text(args.out, markdown)
        print(args.out)
    else:
        print(markdown, end="")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage mistakes end in one line, like every other error (``--help`` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lora-claims", description="Audit the claims of arXiv 2605.03724 about LoRA rank."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_audit(subparsers)
    _add_list(subparsers)
    compare.add_parser(subparsers)
    _add_report(subparsers)
    _add_cstar(subparsers)
    _add_finetune(subparsers)
    _add_bench_table(subparsers)
    return parser


def _interrupt(signum: int, frame) -> NoReturn:
    """SIGTERM ends a command as Ctrl-C does: cleanup runs, the cache keeps finished runs."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.handler(args)
    except KeyboardInterrupt as interrupt:
        how_far = str(interrupt) if isinstance(interrupt, Interrupted) else "nothing was written"
        print(f"lora-claims {args.command}: interrupted: {how_far}", file=sys.stderr)
        return INTERRUPTED_EXIT
    except LoraClaimsError as error:
        message = str(error)
    except OSError as error:
        message = f"{error.filename}: {error.strerror}" if error.filename else str(error)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"lora-claims {args.command}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
