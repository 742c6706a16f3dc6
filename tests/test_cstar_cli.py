"""The ``lora-claims cstar`` command: its JSON contract and its one-line errors on bad input."""

from __future__ import annotations

import json

import pytest

from lora_claims.cli import main

CONTRACT_KEYS = {"rho50", "rho95", "rho50_interval", "rho95_interval", "grid", "config"}


def test_cstar_writes_the_json_contract(tmp_path, capsys):
    argv = [
        "cstar",
        "--m",
        "3",
        "--n",
        "3",
        "--r",
        "1",
        "--definition",
        "gd",
        "--optimizer",
        "armijo",
        "--steps",
        "100",
        "--tol",
        "1e-6",
        "--level",
        "0.9",
        "--trials",
        "12",
        "--seed",
        "3",
        "--linear",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    table = capsys.readouterr().out
    assert "rho50 =" in table and "rho95 =" in table and "least squares, D = 5" in table
    record = json.loads((tmp_path / "cstar_gd_lora_m3_n3_r1.json").read_text())
    assert CONTRACT_KEYS <= set(record) and CONTRACT_KEYS <= set(record["linear"])
    assert {"rho90", "rho90_interval"} <= set(record)
    for point in record["grid"]:
        assert {"p", "rho", "successes", "trials"} <= set(point)
        assert point["trials"] == 12 and 0 <= point["successes"] <= 12
        assert point["rho"] == pytest.approx(5 / point["p"])
    settings = record["config"]["settings"]
    assert (settings["optimizer"], settings["steps"], settings["tol"]) == ("armijo", 100, 1e-6)
    assert record["config"]["seed"] == 3 and record["config"]["level"] == 0.9


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--r", "5"], "r (the LoRA rank, at most min(m, n)) must be <= 3"),
        (["--r", "1", "--tol", "0"], "tol must be a finite number > 0"),
        (["--r", "1", "--level", "1.5"], "level must lie strictly between 0 and 1"),
        (["--r", "1", "--grid", "4,0"], "p (in --grid) must be >= 1"),
        (["--r", "1", "--grid", "4,x"], "--grid expects comma-separated integers"),
    ],
)
def test_cli_reports_bad_input_in_one_line(flags, message, tmp_path, capsys):
    argv = ["cstar", "--m", "3", "--n", "4", "--definition", "gd", "--out", str(tmp_path), *flags]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not any(tmp_path.iterdir()), "no result file may be written on bad input"
