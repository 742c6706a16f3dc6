"""The command line under hostile but fair input, end to end in a subprocess: every case ends in
exit 2 (130 when interrupted) with one line ``lora-claims CMD: error: WHAT: WHY`` naming the
argument or file, no traceback, and nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def lora_claims(*args: str, cwd: Path, env: dict[str, str] | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``python -m lora_claims ARGS`` with this checkout first on the path."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "lora_claims", *map(str, args)], cwd=cwd,
                          env=environment, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, command: str, *named: str,
                          code: int = 2) -> str:
    """Exit ``code``, one line on stderr starting ``lora-claims COMMAND: error:`` and naming
    every string of ``named``, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"lora-claims {command}: "), lines[0]
    for text in named:
        assert str(text) in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("flag", ["--ranks", "--seeds", "--tasks"])
def test_an_empty_sweep_is_refused(flag, tmp_path):
    result = lora_claims("finetune", flag, ",", cwd=tmp_path)
    assert_one_line_error(result, "finetune", f"argument {flag}", "at least one value")
    assert list(tmp_path.iterdir()) == []


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "a-file"
    path.write_text("not a folder\n")
    return path


# --- outputs and the cache are probed before any work ----------------------------------------

CSTAR = ("cstar", "--m", "4", "--n", "4", "--r", "1", "--definition", "solv", "--trials", "5")
FINETUNE = ("finetune", "--steps", "1", "--eval-every", "1", "--test-cap", "8")


@pytest.mark.parametrize("where", ["under-a-file", "unwritable"])
@pytest.mark.parametrize("command", ["cstar", "finetune", "report", "bench-table"])
def test_an_unusable_out_is_refused_up_front(command, where, a_file, tmp_path):
    out = a_file / "x" if where == "under-a-file" else Path("/proc/lora-claims-out")
    args = {"cstar": (*CSTAR, "--out", out),
            "finetune": (*FINETUNE, "--out", out),
            "report": ("report", tmp_path / "report.json", "--out", out / "report.md"),
            "bench-table": ("bench-table", tmp_path / "bench.json", "--out", out / "t.md")}[command]
    before = files_under(tmp_path)
    result = lora_claims(*args, cwd=tmp_path)
    assert_one_line_error(result, command, "--out", str(out), "cannot write there")
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("command", ["report", "bench-table"])
def test_an_out_file_that_is_a_folder_is_refused(command, tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    args = {"report": ("report", tmp_path / "report.json"),
            "bench-table": ("bench-table", tmp_path / "bench.json")}[command]
    result = lora_claims(*args, "--out", folder, cwd=tmp_path)
    assert_one_line_error(result, command, f"--out {folder}: is a folder")


@pytest.mark.parametrize("command", ["finetune", "audit"])
def test_an_unwritable_cache_dir_is_refused_before_any_run(command, a_file, tmp_path):
    args = FINETUNE if command == "finetune" else ("audit", "--claims", "C1", "--out", tmp_path / "o")
    result = lora_claims(*args, "--cache-dir", a_file / "cache", cwd=tmp_path)
    assert_one_line_error(result, command, f"--cache-dir {a_file / 'cache'}", "cannot write there")
    assert files_under(tmp_path) == {"a-file"}


# --- the device is resolved before the first claim --------------------------------------------


@pytest.mark.parametrize("device", ["tpu", "cuda", "cuda:7", "cuda:-1"])
def test_audit_refuses_a_device_this_machine_lacks(device, tmp_path):
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = lora_claims("audit", "--claims", "C1", "--device", device, "--out", tmp_path / "out",
                         "--cache-dir", tmp_path / "cache", cwd=tmp_path)
    assert_one_line_error(result, "audit", f"--device {device}")
    assert not (tmp_path / "out").exists()


# --- messages name the flags the user typed ---------------------------------------------------


@pytest.mark.parametrize(("args", "flag"), [
    ((*CSTAR, "--tol", "-1"), "--tol must be"),
    (("cstar", "--m", "4", "--n", "4", "--r", "1", "--definition", "gd", "--optimizer", "adam",
      "--lr", "0"), "--lr must be"),
    ((*FINETUNE, "--lr", "-1"), "--lr must be"),
    ((*FINETUNE, "--ranks", "0"), "--ranks must be"),
])
def test_messages_name_the_flag(args, flag, tmp_path):
    assert_one_line_error(lora_claims(*args, cwd=tmp_path), args[0], flag)


# --- the audit's output folder: whole reports, one audit at a time, no debris -----------------

AUDIT_C1 = ("audit", "--claims", "C1", "--profile", "smoke")


def test_a_second_concurrent_audit_is_refused(tmp_path):
    from lora_claims.harness.output import AuditOutput

    out = tmp_path / "out"
    with AuditOutput(out):  # an audit in progress
        result = lora_claims(*AUDIT_C1, "--out", out, "--cache-dir", tmp_path / "c", cwd=tmp_path)
    assert_one_line_error(result, "audit", f"--out {out}", "another audit", f"pid {os.getpid()}")
    assert files_under(out) == set()


def test_debris_of_killed_audits_and_stale_figures_are_cleared(tmp_path):
    out = tmp_path / "out"
    (out / ".audit-staging-dead" / "figures").mkdir(parents=True)
    (out / ".report.json.x1.tmp").write_text("{")
    (out / "figures").mkdir()
    (out / "figures" / "from-an-older-audit.png").write_bytes(b"png")
    result = lora_claims(*AUDIT_C1, "--out", out, "--cache-dir", tmp_path / "c", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert files_under(out) == {"report.json", "report.md"}  # C1 draws no figure


# --- interruptions: one line, exit 130, nothing half-written, a rerun resumes -----------------


def interrupt_after(args: tuple, marker: str, signum: int, cwd: Path) -> tuple[int, str]:
    """Start ``lora-claims ARGS``, send ``signum`` once ``marker`` shows on stderr, and return the
    exit code and the rest of stderr. The child gets the default SIGINT disposition: a test run
    started in the background by a shell inherits SIGINT ignored, and Python then keeps it so."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    process = subprocess.Popen([sys.executable, "-m", "lora_claims", *map(str, args)], cwd=cwd,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = ""
    for line in process.stderr:
        seen += line
        if marker in line:
            process.send_signal(signum)
            break
    rest = process.stderr.read()
    return process.wait(timeout=60), rest


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_audit_says_how_far_it_got_and_leaves_the_old_report(signum, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("the previous report\n")
    code, stderr = interrupt_after(("audit", "--claims", "C1,C4", "--profile", "smoke", "--out", out,
                                    "--cache-dir", tmp_path / "cache"), "C1 ", signum, tmp_path)
    lines = stderr.strip().splitlines()
    assert code == 130 and "Traceback" not in stderr, stderr
    assert lines == ["lora-claims audit: interrupted: 1 of 2 claims evaluated, their runs cached; "
                     "rerun to resume"]
    assert files_under(out) == {"report.md"} and (out / "report.md").read_text() == "the previous report\n"


def test_an_interrupted_estimate_writes_nothing(tmp_path):
    out = tmp_path / "results"
    code, stderr = interrupt_after(("cstar", "--m", "10", "--n", "10", "--r", "1", "--definition",
                                    "solv", "--trials", "1000", "--out", out), "1/", signal.SIGINT,
                                   tmp_path)
    assert code == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "lora-claims cstar: interrupted: nothing was written"
    assert files_under(out) == set()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.finetune_support import build_tiny_model, write_toy_glue

    root = tmp_path_factory.mktemp("tiny")
    return {"model": build_tiny_model(root / "tiny-bert"), "data": write_toy_glue(root / "glue")}


def test_an_interrupted_sweep_resumes_from_the_cache(tiny, tmp_path):
    cache = tmp_path / "cache"
    sweep = ("finetune", "--model", "tiny", "--model-path", f"tiny={tiny['model']}",
             "--data-dir", tiny["data"], "--ranks", "1,2", "--seeds", "13", "--steps", "40",
             "--eval-every", "20", "--max-length", "16", "--test-cap", "8", "--cache-dir", cache,
             "--engine", "peft")  # one run at a time, so the first finishes before the second
    code, stderr = interrupt_after(sweep, "40/80", signal.SIGINT, tmp_path)
    last = stderr.strip().splitlines()[-1]
    assert code == 130 and "Traceback" not in stderr, stderr
    done = len(list((cache / "finetune").glob("*.json")))
    assert last == f"lora-claims finetune: interrupted: {done} of 2 runs cached; rerun to resume"
    assert not list((cache / "finetune").glob(".*.tmp"))
    resumed = lora_claims(*sweep, "--no-progress", cwd=tmp_path)
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr
    assert len(list((cache / "finetune").glob("*.json"))) == 2


# --- bad data names the file and line ---------------------------------------------------------


@pytest.mark.parametrize(("content", "problem"), [
    (b"sentence\tlabel\ncaf\xe9\t1\n", ":2: not UTF-8 text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", ":1: not UTF-8 text"),
    (b"sentence\tlabel\n" + b"a" * 140_000 + b"\t1\n", ":2: unreadable row (field larger"),
])
def test_an_unreadable_data_file_names_its_line(tiny, tmp_path, content, problem):
    import shutil

    data = tmp_path / "glue"
    shutil.copytree(tiny["data"], data)
    train = data / "SST-2" / "k-shot" / "16-13" / "train.tsv"
    train.write_bytes(content)
    result = lora_claims(*FINETUNE, "--model", "tiny", "--model-path", f"tiny={tiny['model']}",
                         "--data-dir", data, "--seeds", "13", "--cache-dir", tmp_path / "c",
                         "--no-progress", cwd=tmp_path)
    assert_one_line_error(result, "finetune", f"{train}{problem}")
