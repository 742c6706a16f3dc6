"""The audit command line: the files it writes, and its errors on bad input."""

from __future__ import annotations

import json

import pytest

from lora_claims.cli import main
from lora_claims.errors import InvalidArgument
from lora_claims.harness import runner as audit_module
from lora_claims.harness.registry import get_claim, parse_claim_ids


def test_audit_writes_report_json_and_markdown(tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["audit", "--claims", "C1,C2,C3,C5", "--out", str(out)]) == 0
    payload = json.loads((out / "report.json").read_text())
    verdicts = {claim["id"]: claim["verdict"] for claim in payload["claims"]}
    assert verdicts == {
        "C1": "supported_with_caveats", "C2": "supported",
        "C3": "supported", "C5": "supported_with_caveats",
    }
    for claim in payload["claims"]:
        assert {"id", "version", "verdict", "summary", "evidence"} <= claim.keys()
    assert {"packages", "device", "git"} <= payload["environment"].keys()
    assert payload["environment"]["packages"]["torch"]
    markdown = (out / "report.md").read_text()
    assert "| C3 " in markdown and "supported_with_caveats" in markdown
    assert (out / "figures" / "c5_rank_one_margin.png").stat().st_size > 1000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no staging left behind
    assert "C5" in capsys.readouterr().out


def test_a_claim_that_cannot_run_is_not_evaluated_with_its_kind(monkeypatch, tmp_path):
    from lora_claims.errors import MissingData
    from lora_claims.harness.context import AuditContext

    module = audit_module.claim_module(get_claim("C1"))

    def no_data(spec, ctx):
        raise MissingData("no GLUE data here")

    monkeypatch.setattr(module, "evaluate", no_data)
    result = audit_module.evaluate_claim(get_claim("C1"), AuditContext(figures_dir=tmp_path, seed=7))
    assert result.verdict.value == "not_evaluated"
    assert result.not_evaluable == {"kind": "missing_data", "reason": "no GLUE data here"}
    assert result.conditions["seed"] == 7 and result.spec["version"] == get_claim("C1").version


@pytest.mark.parametrize("claims", ["C1,C99", "", "X"])
def test_unknown_claim_ids_are_refused(claims, tmp_path, capsys):
    assert main(["audit", "--claims", claims, "--out", str(tmp_path / "r")]) == 2
    assert "claim" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_unwritable_output_directory_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["audit", "--claims", "C1", "--out", str(blocker / "report")]) == 2
    assert "--out" in capsys.readouterr().err


def test_a_failing_evaluator_leaves_no_partial_report(tmp_path, monkeypatch):
    def explode(spec, ctx):
        raise RuntimeError("evaluator bug")

    monkeypatch.setattr(audit_module.claim_module(get_claim("C2")), "evaluate", explode)
    out = tmp_path / "report"
    with pytest.raises(RuntimeError, match="evaluator bug"):
        audit_module.run_audit(parse_claim_ids("C1,C2"), out, progress=False)
    assert list(out.iterdir()) == []


def test_report_command_rerenders_markdown(tmp_path):
    out = tmp_path / "report"
    assert main(["audit", "--claims", "C1", "--out", str(out)]) == 0
    (out / "report.md").unlink()
    assert main(["report", str(out / "report.json")]) == 0
    assert "C1" in (out / "report.md").read_text()


def test_claim_selection_is_case_insensitive_and_deduplicated():
    assert [spec.id for spec in parse_claim_ids("c3, C1,c3")] == ["C3", "C1"]
    with pytest.raises(InvalidArgument, match="unknown claim id 'C0'"):
        parse_claim_ids("C0")
