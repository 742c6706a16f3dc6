"""`lora-claims compare` on hand-made records: table, JSON output, one-line errors."""

from __future__ import annotations

import json

import numpy as np

from lora_claims.cli import main
from tests.stats_support import records_of, simulate


def write(path, records):
    path.write_text(json.dumps(records))
    return path


def test_compare_decides_and_writes_json(tmp_path, capsys):
    arms, labels = simulate({1: 0.85, 12: 0.85}, np.random.default_rng(0), seed_sd=0.01)
    folder = tmp_path / "runs"
    folder.mkdir()
    for index, record in enumerate(records_of(arms, labels)):  # one record per file, as finetune --out
        write(folder / f"run-{index:03d}.json", record)
    out = tmp_path / "decision.json"
    assert main(["compare", str(folder), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| SST-2 | minilm |" in printed and "verdict: supported" in printed
    payload = json.loads(out.read_text())
    assert payload["verdict"] == "supported"
    (row,) = payload["comparisons"]
    assert {"task", "model", "decision", "difference", "lower", "upper", "margin", "chance"} <= row.keys()
    assert row["decision"] == "non_inferior" and row["margin"] == 0.02


def test_compare_errors_are_one_line(tmp_path, capsys):
    arms, labels = simulate({1: 0.8, 12: 0.8}, np.random.default_rng(1), rows=30, seeds=2)
    records = records_of(arms, labels)
    records[3]["seed"] = 7
    bad = write(tmp_path / "bad.json", records)
    assert main(["compare", str(bad)]) == 2
    assert "present in one arm only" in capsys.readouterr().err
    good = write(tmp_path / "good.json", records_of(arms, labels))
    assert main(["compare", str(good), "--margin", "0"]) == 2
    assert "--margin" in capsys.readouterr().err
    assert main(["compare", str(good), "--alpha", "1"]) == 2
    assert "--alpha" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "absent.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    assert main(["compare", str(tmp_path / "binary.json")]) == 2
    err = capsys.readouterr().err
    assert "binary.json: not a readable JSON file" in err and len(err.strip().splitlines()) == 1
