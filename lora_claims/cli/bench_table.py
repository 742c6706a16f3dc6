"""Markdown tables from a pytest-benchmark JSON file (``pytest --benchmark-json=FILE``).

The LoRA-rank benchmarks (tests/benchmarks/test_bench_lora_ranks.py) record what they measured in
``extra_info``: ``measure`` (train_step, eval_batch or save_adapter), ``encoder``, ``lora_rank``,
``device``, ``batch_size``, ``seq_len``, and counts such as ``lora_params`` or
``adapter_file_bytes``. Their entries become one row per (encoder, device, rank); every other
benchmark in the file is listed in a second table with its median time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lora_claims.errors import InvalidArgument

REQUIRED_STATS = ("median", "iqr", "rounds")
NUMERIC_EXTRA_INFO = ("lora_rank", "batch_size", "seq_len", "peak_memory_bytes",
                      "peak_memory_above_start_bytes", "optimizer_state_bytes", "lora_params",
                      "head_params", "adapter_file_bytes")
PEAK_MEMORY_KINDS = {
    "rss": "resident set of the process",
    "rss_session_peak": "resident-set peak of the whole session (could not be reset per benchmark)",
    "cuda_allocated": "torch's CUDA allocator",
}


def load_benchmark_json(path: Path) -> dict[str, Any]:
    """Read and check a pytest-benchmark JSON file; errors name the file and what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InvalidArgument(f"{path}: cannot read the benchmark JSON ({error.strerror})") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidArgument(
            f"{path}, line {error.lineno} column {error.colno}: not JSON ({error.msg}); expected the "
            "file written by pytest --benchmark-json"
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("benchmarks"), list):
        raise InvalidArgument(
            f"{path}: not pytest-benchmark JSON: expected an object with a 'benchmarks' list "
            "(the file written by pytest --benchmark-json)"
        )
    if not payload["benchmarks"]:
        raise InvalidArgument(f"{path}: holds no benchmarks (was the run made with --benchmark-skip?)")
    for index, entry in enumerate(payload["benchmarks"]):
        _check_entry(path, index, entry)
    return payload


def _check_entry(path: Path, index: int, entry: object) -> None:
    where = f"{path}: benchmarks[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InvalidArgument(f"{where}: expected an object with a 'name'")
    where += f" ({entry['name']})"
    stats = entry.get("stats")
    if not isinstance(stats, dict):
        raise InvalidArgument(f"{where}: has no 'stats' object")
    for key in REQUIRED_STATS:
        if not _is_number(stats.get(key)):
            raise InvalidArgument(f"{where}: stats.{key} must be a finite number, got {stats.get(key)!r}")
    extra_info = entry.get("extra_info", {})
    if not isinstance(extra_info, dict):
        raise InvalidArgument(f"{where}: extra_info must be an object")
    for key in NUMERIC_EXTRA_INFO:
        value = extra_info.get(key, 0)
        if not _is_number(value):
            raise InvalidArgument(f"{where}: extra_info.{key} must be a finite number, got {value!r}")


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def render_bench_table(payload: dict[str, Any]) -> str:
    """The Markdown for a checked payload: a header, the rank table, then any other benchmarks."""
    rank_entries = [e for e in payload["benchmarks"] if "lora_rank" in e.get("extra_info", {})]
    other_entries = [e for e in payload["benchmarks"] if "lora_rank" not in e.get("extra_info", {})]
    parts = [_machine_line(payload)]
    if rank_entries:
        parts.append(_rank_table(rank_entries))
    if other_entries:
        parts.append(_other_table(other_entries))
    return "\n\n".join(parts) + "\n"


def _machine_line(payload: dict[str, Any]) -> str:
    machine = _mapping(payload.get("machine_info"))
    cpu = _mapping(machine.get("cpu"))
    commit = _mapping(payload.get("commit_info"))
    facts = [
        f"CPU {cpu.get('brand_raw', machine.get('machine', '?'))} x{cpu.get('count', '?')}",
        f"Python {machine.get('python_version', '?')}",
        f"run {payload.get('datetime', '?')}",
        f"commit {str(commit.get('id') or '?')[:10]}{' (dirty)' if commit.get('dirty') else ''}",
    ]
    return "Measured on: " + ", ".join(facts) + "."


def _rank_table(entries: list[dict[str, Any]]) -> str:
    rows: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for entry in entries:
        info = entry["extra_info"]
        key = (str(info.get("encoder", "?")), str(info.get("device", "?")), int(info["lora_rank"]))
        rows.setdefault(key, {})[str(info.get("measure", entry["name"]))] = entry
    lines = [
        "| encoder | device | r | train step (median ± IQR) | eval (sentences/s) "
        "| train peak memory | optimizer state | LoRA params | head params | adapter file |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (encoder, device, rank), measures in sorted(rows.items()):
        train = measures.get("train_step")
        evaluation = measures.get("eval_batch")
        counts = {**_info(measures.get("save_adapter")), **_info(train)}
        cells = [
            encoder.rsplit("/", 1)[-1], device, str(rank),
            _time_cell(train),
            _throughput_cell(evaluation),
            _peak_memory_cell(_info(train)),
            _bytes(_info(train).get("optimizer_state_bytes"), "KiB"),
            _count(counts.get("lora_params")),
            _count(counts.get("head_params")),
            _bytes(counts.get("adapter_file_bytes"), "KiB"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _workload_notes(entries)


def _workload_notes(entries: list[dict[str, Any]]) -> str:
    shapes = sorted({
        f"{e['extra_info']['measure']}: batch {e['extra_info'].get('batch_size', '?')} x "
        f"{e['extra_info'].get('seq_len', '?')} tokens"
        for e in entries if e["extra_info"].get("measure") in ("train_step", "eval_batch")
    })
    kinds = sorted({e["extra_info"]["peak_memory_kind"] for e in entries
                    if "peak_memory_kind" in e["extra_info"]})
    rounds = sorted({int(e["stats"]["rounds"]) for e in entries})
    notes = [f"Workload: {'; '.join(shapes) or 'not recorded'}.",
             f"Rounds per benchmark: {', '.join(map(str, rounds))}."]
    if kinds:
        notes.append("Peak memory: " + "; ".join(PEAK_MEMORY_KINDS.get(k, k) for k in kinds) + ".")
    return " ".join(notes)


def _other_table(entries: list[dict[str, Any]]) -> str:
    lines = ["| benchmark | group | median | IQR | rounds |", "|---|---|---:|---:|---:|"]
    for entry in sorted(entries, key=lambda e: (str(e.get("group") or ""), e["name"])):
        stats = entry["stats"]
        spread = _seconds(stats["iqr"]) if stats["rounds"] > 1 else "–"  # one round has no spread
        lines.append(f"| {entry['name']} | {entry.get('group') or ''} | {_seconds(stats['median'])} "
                     f"| {spread} | {int(stats['rounds'])} |")
    return "\n".join(lines)


def _mapping(value: object) -> dict[str, Any]:
    """Machine and commit facts are informative only: anything but an object counts as absent."""
    return value if isinstance(value, dict) else {}


def _info(entry: dict[str, Any] | None) -> dict[str, Any]:
    return entry.get("extra_info", {}) if entry else {}


def _time_cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "–"
    return f"{_seconds(entry['stats']['median'])} ± {_seconds(entry['stats']['iqr'])}"


def _throughput_cell(entry: dict[str, Any] | None) -> str:
    batch = _info(entry).get("batch_size")
    if entry is None or not batch or entry["stats"]["median"] <= 0:
        return "–"
    return f"{batch / entry['stats']['median']:.1f}"


def _peak_memory_cell(info: dict[str, Any]) -> str:
    """The peak, and on CUDA the step's own share of it: torch's allocator counts exactly what the
    step allocated, while a process's resident set also holds what earlier tests left behind."""
    if "peak_memory_bytes" not in info:
        return "–"
    cell = _bytes(info["peak_memory_bytes"], "MiB")
    if info.get("peak_memory_kind") == "cuda_allocated" and "peak_memory_above_start_bytes" in info:
        cell += f" (step: {info['peak_memory_above_start_bytes'] / 1024**2:,.1f})"
    return cell


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value / 1e-9:.3g} ns"


def _bytes(value: Any, unit: str) -> str:
    if value is None:
        return "–"
    scale = {"KiB": 1024, "MiB": 1024**2}[unit]
    return f"{value / scale:,.1f} {unit}"


def _count(value: Any) -> str:
    return "–" if value is None else f"{int(value):,}"
