"""The facts a result must carry to be reproducible: versions, device, git commit."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import lora_claims

RECORDED_PACKAGES = ("torch", "transformers", "peft", "numpy", "scipy", "hypothesis", "matplotlib")


def package_versions(names: tuple[str, ...] = RECORDED_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def git_commit() -> dict[str, Any]:
    """The commit of the checkout lora_claims was imported from, if it is one."""
    root = Path(lora_claims.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root, capture_output=True, text=True, check=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": dirty}


def environment() -> dict[str, Any]:
    return {
        "lora_claims": lora_claims.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "device": device_description(),
        "git": git_commit(),
    }


Result = TypeVar("Result")


def on_one_torch_thread(function: Callable[..., Result]) -> Callable[..., Result]:
    """Run ``function`` with torch on one thread, then restore the thread count.

    On a shared 2-core machine a busy neighbour makes torch's second thread spin: measured here,
    small tensor ops ran tens of times slower on two threads than on one.
    """
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return wrapper
