"""The architecture the package layout promises, checked on the source: methods know no claim, no
registry and no audit context; no claim module imports another; every claim has its module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lora_claims
from lora_claims.harness.registry import CLAIM_MODULES, REGISTRY

PACKAGE = Path(lora_claims.__file__).parent
FORBIDDEN_IN_METHODS = ("lora_claims.claims", "lora_claims.harness.registry",
                        "lora_claims.harness.context", "lora_claims.harness.runner")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "methods").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_methods_know_no_claim_registry_or_context(path):
    offending = {name for name in imported_modules(path)
                 if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_METHODS)}
    assert not offending, f"{path.relative_to(PACKAGE)} imports {sorted(offending)}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "claims").glob("c*.py")), ids=lambda p: p.name)
def test_no_claim_module_imports_another(path):
    own = f"lora_claims.claims.{path.stem}"
    others = {name for name in imported_modules(path)
              if name.startswith("lora_claims.claims.") and not name.startswith(own)}
    assert not others, f"{path.name} imports {sorted(others)}"


def test_every_claim_lives_in_a_module_named_by_its_id():
    assert len(REGISTRY) == len(CLAIM_MODULES)
    for claim_id, spec in REGISTRY.items():
        number = int(claim_id.split("-")[0][1:])
        stem = spec.module.rsplit(".", 1)[1]
        assert stem.startswith(f"c{number:02d}_"), (claim_id, stem)
        assert (PACKAGE / "claims" / f"{stem}.py").exists()


def test_every_claim_has_a_test_module_of_its_own():
    tests = {p.stem for p in (Path(__file__).parent / "claims").glob("test_c*.py")}
    for spec in REGISTRY.values():
        assert f"test_{spec.module.rsplit('.', 1)[1]}" in tests, spec.id
