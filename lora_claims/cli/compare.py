"""``lora-claims compare``: the rank-1 vs rank-12 decision applied to any fine-tuning records."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lora_claims.errors import InvalidArgument
from lora_claims.harness.cache import atomic_write_json
from lora_claims.harness.output import probe_file
from lora_claims.methods.finetune.rank_pair import Rule, arms_from_records, compare, overall, pair_arms, table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="decide rank 1 against a baseline rank on fine-tuning records (C8's rule)",
        description="Records: JSON files (one record, a list of records, or a folder of them) with "
                    "task, model, rank, seed, test_labels, test_predictions, and optionally "
                    "train_accuracy and test_row_ids.")
    parser.add_argument("records", nargs="+", type=Path, help="record files or folders")
    parser.add_argument("--rank", type=int, default=1, help="the rank under test (default: 1)")
    parser.add_argument("--baseline-rank", type=int, default=12, help="default: %(default)s")
    parser.add_argument("--margin", type=float, default=0.02,
                        help="non-inferiority margin on accuracy, in (0, 1) (default: %(default)s)")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="one-sided level, family-wise over the comparisons (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="write the decisions as JSON here")
    parser.set_defaults(handler=run)


def read_records(paths: list[Path]) -> list[tuple[str, list]]:
    """(source name, records) per file; a folder contributes its *.json files in name order."""
    files = []
    for path in paths:
        if path.is_dir():
            files += sorted(path.glob("*.json"))
        elif path.exists():
            files.append(path)
        else:
            raise InvalidArgument(f"{path}: no such file or folder")
    if not files:
        raise InvalidArgument(f"no record files in {', '.join(map(str, paths))}")
    sources = []
    for file in files:
        try:
            payload = json.loads(file.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InvalidArgument(f"{file}: not a readable JSON file ({error})") from None
        sources.append((str(file), payload if isinstance(payload, list) else [payload]))
    return sources


def run(args: argparse.Namespace) -> int:
    rule = Rule(margin=args.margin, alpha=args.alpha)
    if args.out is not None:
        probe_file("--out", args.out)
    arms = arms_from_records(read_records(args.records))
    rows = compare(pair_arms(arms, args.rank, args.baseline_rank), rule)
    verdict = overall(rows)
    print(table(rows))
    print(f"\nverdict: {verdict} (margin {rule.margin:g}, alpha {rule.alpha:g}, Holm over {len(rows)} "
          "comparisons)")
    if args.out is not None:
        atomic_write_json(args.out, {"verdict": verdict, "rule": rule.__dict__,
                                     "ranks": [args.rank, args.baseline_rank], "comparisons": rows})
    return 0
