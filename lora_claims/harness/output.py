"""Where results are written: destinations probed before any work, and the audit's output folder.

A command checks that it can write its output before it computes anything, so that a typo in
``--out`` never costs a finished run. The audit writes report.json, report.md and figures/ into a
staging folder inside ``--out`` and swaps them in together at the end: a failed or interrupted
audit leaves the previous report as it was, and figures of earlier audits do not linger beside a
new report. A lock file refuses a second audit into the same folder while one is running, and
what a killed audit left behind (staging folders, temporary files, a swap it had begun) is
cleaned up or finished by the next one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from lora_claims.errors import InvalidArgument
from lora_claims.harness.cache import remove_temp_orphans

LOCK_NAME = ".audit.lock"
STAGING_PREFIX = ".audit-staging-"
READY_PREFIX = ".audit-ready-"  # a complete staging folder whose swap has begun
FIGURES = "figures"
REPORT_FILES = ("report.md", "report.json")  # swapped in this order: report.json last


def probe_folder(flag: str, path: str | os.PathLike) -> Path:
    """Create folder ``path`` if needed and check that files can be written in it, or raise
    ``InvalidArgument`` naming ``flag`` and the reason."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe-").close()
    except OSError as error:
        raise InvalidArgument(f"{flag} {folder}: cannot write there ({error.strerror or error})") from None
    return folder


def probe_file(flag: str, path: str | os.PathLike) -> Path:
    """Check that file ``path`` can be written (its folder is created if needed), or raise
    ``InvalidArgument`` naming ``flag`` and the reason."""
    path = Path(path)
    if path.is_dir():
        raise InvalidArgument(f"{flag} {path}: is a folder; expected a file name")
    try:
        probe_folder(flag, path.parent)
    except InvalidArgument:
        raise InvalidArgument(
            f"{flag} {path}: cannot write there (its folder {path.parent} is not writable)"
        ) from None
    return path


class AuditOutput:
    """The audit's output folder, held for one audit::

        with AuditOutput(out) as output:
            ... figures into output.figures_dir, report files into output.staging ...
            output.commit()

    Leaving the block without ``commit`` (an error, Ctrl-C) discards the staged files.
    """

    def __init__(self, out_dir: str | os.PathLike, flag: str = "--out"):
        self.flag = flag
        self.out = probe_folder(flag, out_dir)
        self.staging: Path | None = None
        self._lock: int | None = None

    @property
    def figures_dir(self) -> Path:
        return self.staging / FIGURES

    def __enter__(self) -> AuditOutput:
        self._lock = self._acquire_lock()
        try:
            self._clean_up_after_killed_audits()
            self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out))
        except BaseException:
            self._release_lock()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            if self.staging is not None:
                shutil.rmtree(self.staging, ignore_errors=True)
        finally:
            self._release_lock()

    def commit(self) -> None:
        """Swap the staged report and figures in for the folder's previous ones."""
        (self.staging / FIGURES).mkdir(exist_ok=True)
        ready = self.staging.rename(self.out / self.staging.name.replace(STAGING_PREFIX, READY_PREFIX))
        self.staging = ready
        _swap_in(ready, self.out)

    def _clean_up_after_killed_audits(self) -> None:
        """Under the lock, whatever an earlier audit left is stale: a swap it had begun is finished
        (its report is complete), its staging folders and temporary files are removed."""
        for ready in sorted(self.out.glob(f"{READY_PREFIX}*")):
            _swap_in(ready, self.out)
        for staging in self.out.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(staging, ignore_errors=True)
        remove_temp_orphans(self.out)

    def _acquire_lock(self) -> int:
        """An exclusive ``flock`` on the lock file; the kernel releases it when a process dies, so
        a killed audit never leaves the folder locked."""
        path = self.out / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise InvalidArgument(
                    f"{self.flag} {self.out}: another audit (pid {holder}) is writing there; "
                    f"wait for it to finish or choose another {self.flag}"
                ) from None
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(os.fstat(fd), current):
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                return fd
            os.close(fd)  # locked a file its holder had just removed: take the new one

    def _release_lock(self) -> None:
        if self._lock is not None:
            (self.out / LOCK_NAME).unlink(missing_ok=True)
            os.close(self._lock)
            self._lock = None


def _swap_in(ready: Path, out: Path) -> None:
    """Move a complete report from ``ready`` into ``out``: figures first (the old folder is
    dropped whole, so no stale figure stays), report.json last. Each step is a rename and the
    steps can be repeated, so a swap interrupted by a kill is finished by the next audit."""
    new_figures, old_figures = ready / FIGURES, ready / f"old-{FIGURES}"
    if new_figures.exists():
        if (out / FIGURES).exists():
            (out / FIGURES).rename(old_figures)
        new_figures.rename(out / FIGURES)
    for name in REPORT_FILES:
        if (ready / name).exists():
            os.replace(ready / name, out / name)
    shutil.rmtree(ready, ignore_errors=True)
    if (out / FIGURES).is_dir() and not any((out / FIGURES).iterdir()):
        (out / FIGURES).rmdir()
