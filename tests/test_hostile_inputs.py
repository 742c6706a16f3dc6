"""The command line under hostile but fair input, end to end in a subprocess: every case ends in
exit 2 (130 when interrupted) with one line ``lora-claims CMD: error: WHAT: WHY`` naming the
argument or file, no traceback, and nothing left behind."""

from __future__ import annotations

import os
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
