"""``lora-claims bench-table``: pytest-benchmark JSON in, the README's Markdown table out."""

from __future__ import annotations

import json

import pytest

from lora_claims.cli import main
from lora_claims.cli.bench_table import load_benchmark_json, render_bench_table
from lora_claims.errors import InvalidArgument

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def _stats(median: float, iqr: float = 0.01, rounds: int = 5) -> dict:
    """The ``stats`` object pytest-benchmark 5 writes (every field, so the format is the real one)."""
    return {"min": median * 0.9, "max": median * 1.2, "mean": median, "stddev": iqr / 2,
            "rounds": rounds, "median": median, "iqr": iqr, "q1": median - iqr / 2,
            "q3": median + iqr / 2, "iqr_outliers": 0, "stddev_outliers": 1, "outliers": "1;0",
            "ld15iqr": median * 0.9, "hd15iqr": median * 1.2, "ops": 1 / median,
            "total": median * rounds, "data": [median] * rounds, "iterations": 1}


def _entry(name: str, group: str, median: float, extra_info: dict) -> dict:
    return {"group": group, "name": name, "fullname": f"tests/benchmarks/test_x.py::{name}",
            "params": None, "param": None, "extra_info": extra_info,
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5, "max_time": 1.0,
                        "min_time": 5e-06, "precision": None, "confidence": None, "warmup": False},
            "stats": _stats(median)}


def _rank_info(measure: str, rank: int, **extra) -> dict:
    return {"measure": measure, "encoder": MINILM, "lora_rank": rank, "device": "cpu",
            "batch_size": {"train_step": 8, "eval_batch": 32, "save_adapter": 0}[measure],
            "seq_len": 64, **extra}


@pytest.fixture
def bench_payload() -> dict:
    benchmarks = []
    for rank in (1, 16):
        benchmarks += [
            _entry(f"test_train_step[minilm-{rank}-cpu]", "minilm-train_step-cpu", 0.5,
                   _rank_info("train_step", rank, lora_params=9_216 * rank, head_params=770,
                              optimizer_state_bytes=8 * (9_216 * rank + 770) + 104,
                              peak_memory_bytes=600 * 1024**2, peak_memory_above_start_bytes=12 * 1024**2,
                              peak_memory_kind="rss")),
            _entry(f"test_eval_batch[minilm-{rank}-cpu]", "minilm-eval_batch-cpu", 0.25,
                   _rank_info("eval_batch", rank, peak_memory_bytes=550 * 1024**2, peak_memory_kind="rss")),
            _entry(f"test_save_adapter[minilm-{rank}]", "minilm-save_adapter-cpu", 0.08,
                   _rank_info("save_adapter", rank, lora_params=9_216 * rank, head_params=770,
                              adapter_file_bytes=4 * (9_216 * rank + 770) + 3_480)),
        ]
    benchmarks.append(_entry("test_cstar_batched", "cstar", 0.0042, {}))
    benchmarks.append(_entry("test_cstar_loop", None, 1.5, {}))
    benchmarks[-1]["stats"].update(rounds=1, iqr=0.0)
    return {
        "machine_info": {"node": "vm", "machine": "x86_64", "python_version": "3.11.7",
                         "cpu": {"brand_raw": "AMD EPYC", "count": 2}},
        "commit_info": {"id": "5d257e7bc1e73900ac5cc2249bd2806e0a19e692", "dirty": False,
                        "branch": "bench"},
        "benchmarks": benchmarks,
        "datetime": "2026-11-29T03:37:48.563447+00:00",
        "version": "5.3.1",
    }


def _rows(markdown: str, prefix: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in markdown.splitlines() if line.startswith(prefix)]


def test_rank_table_has_one_row_per_rank_with_every_measure(bench_payload):
    markdown = render_bench_table(bench_payload)
    rows = _rows(markdown, "| all-MiniLM-L6-v2 ")
    assert [row[2] for row in rows] == ["1", "16"]
    rank1 = rows[0]
    assert rank1[1] == "cpu"
    assert rank1[3] == "500 ms ± 10 ms"
    assert rank1[4] == "128.0"  # 32 sentences in 0.25 s
    assert rank1[5] == "600.0 MiB"  # a resident set's share "above start" depends on earlier tests
    assert rank1[6] == f"{(8 * (9_216 + 770) + 104) / 1024:,.1f} KiB"
    assert rank1[7:9] == ["9,216", "770"]
    assert rank1[9] == f"{(4 * 9_986 + 3_480) / 1024:,.1f} KiB"
    assert rows[1][7] == "147,456"
    assert "train_step: batch 8 x 64 tokens" in markdown
    assert "eval_batch: batch 32 x 64 tokens" in markdown
    assert "Peak memory: resident set of the process." in markdown
    assert "CPU AMD EPYC x2" in markdown and "commit 5d257e7bc1" in markdown


def test_benchmarks_without_a_rank_are_listed_separately(bench_payload):
    markdown = render_bench_table(bench_payload)
    assert _rows(markdown, "| test_cstar_") == [["test_cstar_loop", "", "1.5 s", "–", "1"],
                                                ["test_cstar_batched", "cstar", "4.2 ms", "10 ms", "5"]]


def test_cuda_rows_show_the_steps_own_allocation(bench_payload):
    for entry in bench_payload["benchmarks"]:
        if "peak_memory_kind" in entry["extra_info"]:
            entry["extra_info"].update(device="cuda", peak_memory_kind="cuda_allocated")
    markdown = render_bench_table(bench_payload)
    rows = _rows(markdown, "| all-MiniLM-L6-v2 | cuda ")
    assert rows[0][5] == "600.0 MiB (step: 12.0)"
    assert "Peak memory: torch's CUDA allocator." in markdown


def test_missing_measures_show_as_dashes(bench_payload):
    bench_payload["benchmarks"] = [e for e in bench_payload["benchmarks"] if "eval" not in e["name"]]
    rows = _rows(render_bench_table(bench_payload), "| all-MiniLM-L6-v2 ")
    assert [row[4] for row in rows] == ["–", "–"]


def test_cli_prints_the_table_and_writes_it_with_out(bench_payload, tmp_path, capsys):
    source = tmp_path / "results.json"
    source.write_text(json.dumps(bench_payload))
    assert main(["bench-table", str(source)]) == 0
    printed = capsys.readouterr().out
    assert printed == render_bench_table(load_benchmark_json(source))
    out = tmp_path / "table.md"
    assert main(["bench-table", str(source), "--out", str(out)]) == 0
    assert out.read_text() == printed


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("# lora-claims\n", "line 1 column 1: not JSON", id="markdown"),
        pytest.param('{"benchmarks": [\n  {"name": "x",}\n]}', "line 2 column", id="broken-json"),
        pytest.param('{"claims": []}', "expected an object with a 'benchmarks' list", id="report-json"),
        pytest.param('[1, 2]', "expected an object with a 'benchmarks' list", id="a-list"),
        pytest.param('{"benchmarks": []}', "holds no benchmarks", id="empty"),
        pytest.param('{"benchmarks": [{"name": "t", "stats": {"median": 1, "iqr": 0}}]}',
                     "benchmarks[0] (t): stats.rounds must be a finite number", id="no-rounds"),
        pytest.param('{"benchmarks": [{"name": "t"}]}', "benchmarks[0] (t): has no 'stats'", id="no-stats"),
        pytest.param('{"benchmarks": [{"stats": {}}]}', "benchmarks[0]: expected an object with a 'name'",
                     id="no-name"),
        pytest.param('{"benchmarks": [{"name": "t", "stats": {"median": 1, "iqr": 0, "rounds": 5},\n'
                     '"extra_info": {"lora_rank": "one"}}]}',
                     "benchmarks[0] (t): extra_info.lora_rank must be a finite number, got 'one'",
                     id="rank-not-a-number"),
    ],
)
def test_bad_input_is_a_clear_error_naming_the_file(tmp_path, capsys, content, message):
    source = tmp_path / "bench.json"
    source.write_text(content)
    with pytest.raises(InvalidArgument) as error:
        load_benchmark_json(source)
    assert str(error.value).startswith(str(source)) and message in str(error.value)
    out = tmp_path / "table.md"
    assert main(["bench-table", str(source), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["bench-table", str(tmp_path / "absent.json")]) == 2
    assert "absent.json: cannot read the benchmark JSON" in capsys.readouterr().err
