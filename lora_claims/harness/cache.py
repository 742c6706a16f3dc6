"""Atomic file writes and a result cache keyed by a hash of the run's configuration.

Expensive runs (Monte-Carlo sweeps, fine-tuning) are cached on disk so that the audit and the test
suite can share them, and an interrupted sweep resumes where it stopped. Every write goes to a
temporary file in the target folder first and is then renamed, so a reader never sees half a file;
a temporary file that a killed process left behind is swept later. An entry carries a checksum of
its configuration and result, so that a damaged or edited entry is recomputed, never replayed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_ENV = "LORA_CLAIMS_CACHE"
TEMP_PATTERN = ".*.tmp"  # the temporary files of atomic_write_bytes
ORPHAN_AGE_S = 3600  # a write takes milliseconds: a temporary file this old lost its writer
ENTRY_KEYS = ("config", "config_hash", "result", "checksum")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that the file is either absent, old, or complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_temp_orphans(folder: str | os.PathLike, min_age_s: float = 0.0) -> None:
    """Delete the temporary files of atomic writes in ``folder`` at least ``min_age_s`` old (a
    younger one may belong to a writer still at work)."""
    now = time.time()
    for temp in Path(folder).glob(TEMP_PATTERN):
        try:
            if now - temp.stat().st_mtime >= min_age_s:
                temp.unlink()
        except FileNotFoundError:  # another process swept it first
            pass


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def to_json(obj: Any) -> str:
    """Serialize with stable key order; numpy scalars and paths become plain JSON values."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, to_json(obj))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot serialize {type(value).__name__} to JSON")


def config_hash(config: dict[str, Any]) -> str:
    """A short, stable hash of a JSON-serializable configuration."""
    canonical = json.dumps(config, sort_keys=True, default=_json_default, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$LORA_CLAIMS_CACHE``, else ``~/.cache/lora-claims``: where results and unpacked models go."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lora-claims")


def _checksum(config: dict[str, Any], result: dict[str, Any]) -> str:
    """A hash of an entry's content as it reads back from disk (JSON turns tuples into lists and
    keys into strings), so that a stored entry checks out against its own bytes."""
    content = json.loads(to_json({"config": config, "result": result}))
    return hashlib.sha256(to_json(content).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheKind:
    """A family of cached results and the version of what it stores. Every expensive result is
    cached under one kind; bump ``schema`` when what is stored, or how it is computed, changes:
    the schema is part of every key, so old entries then simply miss."""

    name: str
    schema: int


class ResultCache:
    """Results on disk, one file per (kind, configuration hash): JSON for records, a torch file for
    tensors (``get_or_compute_tensors``); both are checked on read and written atomically."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self._swept: set[str] = set()

    @staticmethod
    def key(kind: CacheKind, config: dict[str, Any]) -> dict[str, Any]:
        return {"schema": kind.schema, **config}

    def path(self, kind: CacheKind, config: dict[str, Any], suffix: str = ".json") -> Path:
        return self.root / kind.name / f"{config_hash(self.key(kind, config))}{suffix}"

    def load(self, kind: CacheKind, config: dict[str, Any]) -> dict[str, Any] | None:
        """The entry for ``config``, or None when there is none or it is damaged; a damaged entry
        is reported in one line and left to be overwritten by the recomputed one."""
        path = self.path(kind, config)
        config = self.key(kind, config)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            problem = f"not JSON ({error})"
        else:
            problem = _entry_problem(record, config)
        if problem:
            print(f"lora-claims: cache entry {path} {problem}; recomputing it", file=sys.stderr)
            return None
        return record

    def store(self, kind: CacheKind, config: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        self._sweep(kind)
        path, config = self.path(kind, config), self.key(kind, config)
        record = {"config": config, "config_hash": config_hash(config), "result": result,
                  "checksum": _checksum(config, result)}
        atomic_write_json(path, record)
        return record

    def get_or_compute(
        self, kind: CacheKind, config: dict[str, Any], compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """Return the cached result for ``config``, computing and storing it on a miss."""
        record = self.load(kind, config)
        if record is None:
            record = self.store(kind, config, compute())
        return record["result"]

    def get_or_compute_tensors(
        self, kind: CacheKind, config: dict[str, Any], compute: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The same for a dict of tensors (and plain values), stored with torch.save; an entry is
        checked for its configuration and a checksum of its tensors' bytes."""
        import torch

        path, key = self.path(kind, config, ".pt"), to_json(self.key(kind, config))
        if path.exists():
            try:
                stored = torch.load(path, weights_only=True)
                problem = ("holds another configuration" if stored.get("config") != key else
                           None if stored.get("checksum") == _tensor_checksum(stored["state"]) else
                           "does not match its checksum (edited or damaged)")
            except Exception as error:  # noqa: BLE001  (truncated or foreign: recompute, say why)
                problem = f"cannot be read ({type(error).__name__})"
            if problem is None:
                return stored["state"]
            print(f"lora-claims: cache entry {path} {problem}; recomputing it", file=sys.stderr)
        state = compute()
        self._sweep(kind)
        buffer = io.BytesIO()
        torch.save({"config": key, "checksum": _tensor_checksum(state), "state": state}, buffer)
        atomic_write_bytes(path, buffer.getvalue())
        return state

    def _sweep(self, kind: CacheKind) -> None:
        """Once per kind and process: remove what an interrupted writer left behind."""
        if kind.name not in self._swept:
            remove_temp_orphans(self.root / kind.name, ORPHAN_AGE_S)
            self._swept.add(kind.name)


def _tensor_checksum(state: Any) -> str:
    """A hash of every tensor's bytes and every plain value in a (nested) state dict."""
    import torch

    digest = hashlib.sha256()

    def visit(value: Any) -> None:
        if hasattr(value, "detach"):
            digest.update(str((value.dtype, tuple(value.shape))).encode())
            digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for name in sorted(value):
                digest.update(str(name).encode())
                visit(value[name])
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        else:
            digest.update(repr(value).encode())

    visit(state)
    return digest.hexdigest()


def _entry_problem(record: Any, config: dict[str, Any]) -> str | None:
    """What is wrong with a cache entry read from disk, or None when it is sound."""
    if not isinstance(record, dict):
        return f"is not a JSON object (a {type(record).__name__})"
    missing = [key for key in ENTRY_KEYS if key not in record]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not isinstance(record["result"], dict):
        return "holds no result object"
    if record["config"] != json.loads(to_json(config)):
        return "holds another configuration"
    if record["checksum"] != _checksum(record["config"], record["result"]):
        return "does not match its checksum (edited or damaged)"
    return None
