"""The claim registry: every claim and reading lora-claims audits, found in its own module.

Each claim lives in ``lora_claims/claims/<module>.py`` with its spec, evaluator and rule; the
registry only lists the modules, in report order, and loads them on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator, Mapping
from types import ModuleType

from lora_claims.errors import InvalidArgument
from lora_claims.harness.spec import ClaimResult, ClaimSpec, Verdict

__all__ = ["REGISTRY", "ClaimResult", "ClaimSpec", "Verdict", "claim_module", "get_claim",
           "parse_claim_ids"]

CLAIM_MODULES = (
    "c01_sard_prescription",
    "c02_manifold_dimension",
    "c03_count_comparison",
    "c04_cstar_gaussian",
    "c05_rank_one_margin",
    "c06_cross_entropy_pl",
    "c07_rademacher_rank",
    "c08_rank1_competitive",
    "c09_roberta_large",
    "c10_mnli_rank",
    "c11_ntk_assumptions",
    "c04_real_features",
    "c06_real_features",
    "c08_cpu_minilm",
    "c08_cpu_all_layers",
    "c08_linearized",
    "c10_cpu_minilm",
)


class _Registry(Mapping):
    """Claim id -> spec, loaded lazily so that claim modules may import the registry."""

    def __init__(self) -> None:
        self._specs: dict[str, ClaimSpec] | None = None
        self._modules: dict[str, ModuleType] = {}

    def _load(self) -> dict[str, ClaimSpec]:
        if self._specs is None:
            specs = {}
            for name in CLAIM_MODULES:
                module = importlib.import_module(f"lora_claims.claims.{name}")
                spec = dataclasses.replace(module.SPEC, module=module.__name__)
                specs[spec.id] = spec
                self._modules[spec.id] = module
            self._specs = specs
        return self._specs

    def module(self, claim_id: str) -> ModuleType:
        self._load()
        return self._modules[claim_id]

    def __getitem__(self, claim_id: str) -> ClaimSpec:
        return self._load()[claim_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


REGISTRY = _Registry()


def claim_module(spec: ClaimSpec) -> ModuleType:
    """The module holding ``spec``'s evaluator and rule."""
    return REGISTRY.module(spec.id)


def get_claim(claim_id: str) -> ClaimSpec:
    """The claim with this id, in any letter case (``c4-real`` finds ``C4-real``)."""
    by_upper = {known.upper(): spec for known, spec in REGISTRY.items()}
    try:
        return REGISTRY.get(claim_id) or by_upper[claim_id.upper()]
    except KeyError:
        raise InvalidArgument(
            f"unknown claim id {claim_id!r}; known claims: {', '.join(REGISTRY)}"
        ) from None


def parse_claim_ids(text: str | None) -> list[ClaimSpec]:
    """Parse a comma-separated selection such as ``"C1,C3"`` (case-insensitive); None means all."""
    if text is None:
        return list(REGISTRY.values())
    ids = [part.strip().upper() for part in text.split(",") if part.strip()]
    if not ids:
        raise InvalidArgument("--claims must name at least one claim, e.g. --claims C1,C3")
    return [get_claim(claim_id) for claim_id in dict.fromkeys(ids)]  # drop repeats, keep order
