"""report.json is self-contained: `lora-claims report` renders it without today's registry."""

from __future__ import annotations

import json

from lora_claims.cli import main


def test_a_report_of_an_older_claim_version_renders_as_written(tmp_path):
    out = tmp_path / "report"
    assert main(["audit", "--claims", "C1", "--out", str(out), "--seed", "5"]) == 0
    payload = json.loads((out / "report.json").read_text())
    assert payload["seed"] == 5 and payload["claims"][0]["conditions"]["seed"] == 5
    claim = payload["claims"][0]
    assert claim["spec"]["version"] == claim["version"] and claim["rule"] == claim["spec"]["rule"]
    # As a previous version would have written it: another version, a rule since rewritten, and a
    # claim id the registry no longer has.
    claim["version"] = claim["spec"]["version"] = "0.9"
    claim["spec"]["rule"] = "an old rule that the registry no longer states"
    removed = json.loads(json.dumps(claim)) | {"id": "C0-retired"}
    payload["claims"].append(removed)
    (out / "report.json").write_text(json.dumps(payload))
    assert main(["report", str(out / "report.json"), "--out", str(tmp_path / "old.md")]) == 0
    markdown = (tmp_path / "old.md").read_text()
    assert "(v0.9)" in markdown and "an old rule that the registry no longer states" in markdown
    assert "## C0-retired" in markdown


def test_a_report_without_specs_still_renders(tmp_path):
    out = tmp_path / "report"
    assert main(["audit", "--claims", "C1", "--out", str(out)]) == 0
    payload = json.loads((out / "report.json").read_text())
    for claim in payload["claims"]:  # the first report format had no spec, rule or seed
        for key in ("spec", "rule", "not_evaluable", "decision_inputs"):
            claim.pop(key)
    payload.pop("seed")
    (out / "report.json").write_text(json.dumps(payload))
    assert main(["report", str(out / "report.json")]) == 0
    assert "| C1 " in (out / "report.md").read_text()


def test_list_names_every_claim_with_its_module(capsys):
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    ids = [entry["id"] for entry in listed]
    assert ids[:11] == [f"C{i}" for i in range(1, 12)]
    assert {"C4-real", "C6-real", "C8-linearized"} <= set(ids)
    for entry in listed:
        assert entry["module_path"].startswith("lora_claims/claims/c") and entry["version"]
        assert entry["needs"]["device"] in ("cpu", "gpu")
    assert main(["list"]) == 0
    assert "lora_claims/claims/c08_linearized.py" in capsys.readouterr().out


def test_report_input_is_checked_with_one_line_errors(tmp_path, capsys):
    cases = {
        "list.json": json.dumps([1, 2]),
        "other-schema.json": json.dumps({"results": []}),
        "missing-key.json": json.dumps({"claims": [{"id": "C1", "version": "1.0"}],
                                        "generated_at": "x", "profile": "ci", "device": "cpu"}),
        "not-json.json": "{claims: [",
    }
    expected = {"list.json": "got a list", "other-schema.json": "'claims' is missing",
                "missing-key.json": "claims[0] lacks key(s) verdict", "not-json.json": "not valid JSON"}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    expected["binary.json"] = "not a text file"
    for name, message in expected.items():
        assert main(["report", str(tmp_path / name)]) == 2, name
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (name, err)
        assert "Traceback" not in err
    assert not list(tmp_path.glob("*.md"))
