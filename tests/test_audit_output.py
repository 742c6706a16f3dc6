"""The audit's output folder (lora_claims.harness.output): report and figures arrive together or
not at all, one audit at a time, and what a killed audit left is cleaned up or finished."""

from __future__ import annotations

import pytest

from lora_claims.errors import InvalidArgument
from lora_claims.harness.output import READY_PREFIX, AuditOutput


def write_report(folder, text, figures=()):
    (folder / "report.json").write_text(text)
    (folder / "report.md").write_text(text)
    for name in figures:
        (folder / "figures").mkdir(exist_ok=True)
        (folder / "figures" / name).write_text(text)


def contents(folder):
    return {str(p.relative_to(folder)): p.read_text() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def out(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    write_report(folder, "old", figures=["a.png", "b.png"])
    return folder


def test_a_committed_audit_replaces_report_and_figures_whole(out):
    with AuditOutput(out) as output:
        write_report(output.staging, "new", figures=["a.png"])
        output.commit()
    assert contents(out) == {"report.json": "new", "report.md": "new", "figures/a.png": "new"}


def test_an_audit_that_fails_before_commit_leaves_the_old_report(out):
    with pytest.raises(RuntimeError), AuditOutput(out) as output:
        write_report(output.staging, "new", figures=["c.png"])
        raise RuntimeError("an evaluator failed")
    assert contents(out) == {"report.json": "old", "report.md": "old", "figures/a.png": "old",
                             "figures/b.png": "old"}


def test_the_folder_is_locked_while_an_audit_runs_and_free_after(out):
    with AuditOutput(out), pytest.raises(InvalidArgument, match="another audit"):
        AuditOutput(out).__enter__()
    with AuditOutput(out):
        pass
    assert not (out / ".audit.lock").exists()


@pytest.mark.parametrize("moved", [0, 1, 2, 3])
def test_a_swap_cut_short_by_a_kill_is_finished_by_the_next_audit(out, moved):
    """A kill after ``moved`` of the swap's renames: the next audit completes it before starting."""
    ready = out / f"{READY_PREFIX}killed"
    ready.mkdir()
    write_report(ready, "new", figures=["a.png"])
    steps = [lambda: (out / "figures").rename(ready / "old-figures"),
             lambda: (ready / "figures").rename(out / "figures"),
             lambda: (ready / "report.md").replace(out / "report.md")]
    for step in steps[:moved]:
        step()
    with AuditOutput(out):
        pass
    assert contents(out) == {"report.json": "new", "report.md": "new", "figures/a.png": "new"}


def test_an_audit_without_figures_drops_the_old_ones(out):
    with AuditOutput(out) as output:
        write_report(output.staging, "new")
        output.commit()
    assert contents(out) == {"report.json": "new", "report.md": "new"}
