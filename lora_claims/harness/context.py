"""What an evaluator needs to know about the run it is part of."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from lora_claims.errors import InvalidArgument
from lora_claims.harness.cache import ResultCache
from lora_claims.harness.spec import PROFILES  # smoke: plumbing in seconds; ci: the default; thorough

DATA_DIR_ENV = "LORA_CLAIMS_DATA"
DEFAULT_SEED = 0  # the audit's and the test suite's seed unless one is asked for


@dataclass
class AuditContext:
    figures_dir: Path
    profile: str = "ci"
    data_dir: Path | None = None
    device: str = "cpu"
    model_paths: dict[str, str] = field(default_factory=dict)
    cache: ResultCache = field(default_factory=ResultCache)
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise InvalidArgument(f"profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        self.figures_dir = Path(self.figures_dir)
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)

    def figure_path(self, name: str) -> Path:
        """Where an evaluator saves a figure; the report links it relative to its own folder."""
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / name


def default_data_dir() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def parse_model_paths(entries: list[str] | None) -> dict[str, str]:
    """Parse ``NAME=PATH`` entries (one per model) into a mapping."""
    paths: dict[str, str] = {}
    for entry in entries or []:
        name, sep, path = entry.partition("=")
        if not sep or not name or not path:
            raise InvalidArgument(f"--model-path expects NAME=PATH, got {entry!r}")
        paths[name] = path
    return paths
