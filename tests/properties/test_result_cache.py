"""The result cache trusts no entry it did not just verify: a damaged or edited entry is reported
in one line naming its file and recomputed; orphaned temporary files are swept."""

from __future__ import annotations

import json
import os
import time

import pytest

from lora_claims.harness.cache import ORPHAN_AGE_S, ResultCache

CONFIG = {"task": "SST-2", "rank": 1, "ranks": (1, 12)}
RESULT = {"test_accuracy": 0.75, "per_rank": {1: 0.5, 12: 0.9}, "curve": [(1, 0.5)]}


@pytest.fixture
def cache(tmp_path):
    cache = ResultCache(tmp_path)
    cache.store("finetune", CONFIG, RESULT)
    return cache


def test_a_stored_entry_replays(cache):
    replayed = cache.get_or_compute("finetune", CONFIG, lambda: pytest.fail("recomputed"))
    assert replayed == json.loads(json.dumps(RESULT))


def _edit(cache, change):
    path = cache.path("finetune", CONFIG)
    record = json.loads(path.read_text())
    path.write_text(json.dumps(change(record)))
    return path


@pytest.mark.parametrize(("change", "problem"), [
    (lambda record: [record], "is not a JSON object (a list)"),
    (lambda record: {k: v for k, v in record.items() if k != "result"}, "lacks result"),
    (lambda record: {**record, "result": [1, 2]}, "holds no result object"),
    (lambda record: {k: v for k, v in record.items() if k != "checksum"}, "lacks checksum"),
    (lambda record: {**record, "result": {**record["result"], "test_accuracy": 0.99}},
     "does not match its checksum"),
], ids=["list", "no-result", "result-not-object", "no-checksum", "edited-accuracy"])
def test_a_bad_entry_is_reported_and_recomputed(cache, capsys, change, problem):
    path = _edit(cache, change)
    assert cache.get_or_compute("finetune", CONFIG, lambda: {"test_accuracy": 0.5}) == {
        "test_accuracy": 0.5}
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and problem in lines[0], lines
    assert cache.load("finetune", CONFIG)["result"] == {"test_accuracy": 0.5}  # replaced


def test_a_truncated_entry_is_reported_and_recomputed(cache, capsys):
    path = cache.path("finetune", CONFIG)
    path.write_text(path.read_text()[:40])
    assert cache.load("finetune", CONFIG) is None
    assert f"cache entry {path} not JSON" in capsys.readouterr().err


def test_orphaned_temporary_files_are_swept_and_live_ones_kept(tmp_path):
    folder = tmp_path / "finetune"
    folder.mkdir()
    orphan, live = folder / ".abc.json.x1.tmp", folder / ".def.json.x2.tmp"
    orphan.write_text("{")
    live.write_text("{")
    old = time.time() - ORPHAN_AGE_S - 10
    os.utime(orphan, (old, old))
    ResultCache(tmp_path).store("finetune", CONFIG, RESULT)
    assert not orphan.exists() and live.exists()
