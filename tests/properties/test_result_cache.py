"""The result cache trusts no entry it did not just verify: a damaged or edited entry is reported
in one line naming its file and recomputed; orphaned temporary files are swept."""

from __future__ import annotations

import json
import os
import time

import pytest

from lora_claims.harness.cache import ORPHAN_AGE_S, CacheKind, ResultCache

RUNS = CacheKind("finetune", 1)
CONFIG = {"task": "SST-2", "rank": 1, "ranks": (1, 12)}
RESULT = {"test_accuracy": 0.75, "per_rank": {1: 0.5, 12: 0.9}, "curve": [(1, 0.5)]}


@pytest.fixture
def cache(tmp_path):
    cache = ResultCache(tmp_path)
    cache.store(RUNS, CONFIG, RESULT)
    return cache


def test_a_stored_entry_replays(cache):
    replayed = cache.get_or_compute(RUNS, CONFIG, lambda: pytest.fail("recomputed"))
    assert replayed == json.loads(json.dumps(RESULT))


def _edit(cache, change):
    path = cache.path(RUNS, CONFIG)
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
    assert cache.get_or_compute(RUNS, CONFIG, lambda: {"test_accuracy": 0.5}) == {
        "test_accuracy": 0.5}
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and problem in lines[0], lines
    assert cache.load(RUNS, CONFIG)["result"] == {"test_accuracy": 0.5}  # replaced


def test_a_truncated_entry_is_reported_and_recomputed(cache, capsys):
    path = cache.path(RUNS, CONFIG)
    path.write_text(path.read_text()[:40])
    assert cache.load(RUNS, CONFIG) is None
    assert f"cache entry {path} not JSON" in capsys.readouterr().err


def test_orphaned_temporary_files_are_swept_and_live_ones_kept(tmp_path):
    folder = tmp_path / "finetune"
    folder.mkdir()
    orphan, live = folder / ".abc.json.x1.tmp", folder / ".def.json.x2.tmp"
    orphan.write_text("{")
    live.write_text("{")
    old = time.time() - ORPHAN_AGE_S - 10
    os.utime(orphan, (old, old))
    ResultCache(tmp_path).store(RUNS, CONFIG, RESULT)
    assert not orphan.exists() and live.exists()


def test_the_schema_is_part_of_every_key(cache):
    """Bumping a kind's schema makes its old entries miss: no stale result replays."""
    bumped = CacheKind(RUNS.name, RUNS.schema + 1)
    assert cache.load(bumped, CONFIG) is None and cache.load(RUNS, CONFIG) is not None
    assert cache.path(bumped, CONFIG) != cache.path(RUNS, CONFIG)


def test_tensor_entries_replay_and_damaged_ones_are_recomputed(tmp_path, capsys):
    import torch

    cache, calls = ResultCache(tmp_path), []
    kind = CacheKind("features", 1)

    def compute():
        calls.append(1)
        return {"left": torch.arange(6.0).reshape(2, 3), "names": ["query"], "seconds": 1.5}

    first = cache.get_or_compute_tensors(kind, CONFIG, compute)
    second = cache.get_or_compute_tensors(kind, CONFIG, compute)
    assert len(calls) == 1 and torch.equal(first["left"], second["left"]) and second["names"] == ["query"]
    path = cache.path(kind, CONFIG, ".pt")
    stored = torch.load(path, weights_only=True)
    stored["state"]["left"][0, 0] = 99.0  # an edited tensor no longer matches its checksum
    torch.save(stored, path)
    cache.get_or_compute_tensors(kind, CONFIG, compute)
    assert len(calls) == 2 and "does not match its checksum" in capsys.readouterr().err
    path.write_bytes(b"truncated")
    assert torch.equal(cache.get_or_compute_tensors(kind, CONFIG, compute)["left"], first["left"])
    assert len(calls) == 3 and f"cache entry {path} cannot be read" in capsys.readouterr().err
