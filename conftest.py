"""Test-suite configuration: markers, options, hypothesis profiles, seeds, device gating, and the
session's audit report.

- Markers (strict): ``gpu`` (needs CUDA, paper scale), ``slow``, and ``timing`` (a wall-clock
  ratio: runs only with ``--benchmark-only``, never in the default run). GPU tests run only when ``-m``
  selects them; then a machine without CUDA fails the run loudly unless ``--device cpu`` asks for a
  smoke-scale dry run.
- ``--data-dir`` (default ``$LORA_CLAIMS_DATA``), ``--device``, ``--model-path NAME=PATH``.
- Hypothesis profiles ``dev``, ``ci``, ``thorough``: ``$LORA_CLAIMS_HYPOTHESIS_PROFILE`` picks one
  (default ``ci`` when ``$CI`` is set, else ``dev``).
- ``seed`` fixture: one fixed seed by default; ``LORA_CLAIMS_SEEDS=0-9`` (or ``1,5,7``) runs every
  test that uses it once per seed. It seeds Python, numpy and torch together.
- ``audit`` fixture: claim tests evaluate claims through it, once per session and configuration;
  at the end of the session their results are written as an audit report (``--audit-report``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, settings

from lora_claims.harness.context import DEFAULT_SEED  # the CLI audit's seed too

pytest_plugins = ["pytester"]  # tests/test_conftest_gating.py runs pytest on sample projects

SEEDS_ENV = "LORA_CLAIMS_SEEDS"
HYPOTHESIS_PROFILE_ENV = "LORA_CLAIMS_HYPOTHESIS_PROFILE"
SEEDS_KEY = pytest.StashKey[list]()

settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    phases=list(Phase),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get(HYPOTHESIS_PROFILE_ENV, "ci" if os.environ.get("CI") else "dev"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lora-claims")
    group.addoption("--device", default=None,
                    help="torch device for claim tests (GPU tests default to cuda; "
                         "--device cpu runs them as a smoke-scale dry run)")
    group.addoption("--data-dir", default=os.environ.get("LORA_CLAIMS_DATA"),
                    help="GLUE data folder (default: $LORA_CLAIMS_DATA)")
    group.addoption("--model-path", action="append", default=[], metavar="NAME=PATH",
                    help="local path for a model, repeatable")
    group.addoption("--audit-report", default="pytest-audit-report",
                    help="folder for the audit report of the claims this session evaluated")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA device; paper-scale claim verification")
    config.addinivalue_line("markers", "slow: takes minutes on a 2-core CPU")
    config.addinivalue_line("markers", "timing: asserts a wall-clock ratio; runs only with "
                                       "--benchmark-only (tox -e bench)")
    config.stash[SEEDS_KEY] = _seeds()  # checked here, so that a bad value stops the run at once


def _seeds() -> list[int]:
    text = os.environ.get(SEEDS_ENV, "").strip()
    if not text:
        return [DEFAULT_SEED]
    try:
        if "-" in text:
            first, last = (int(part) for part in text.split("-", 1))
            seeds = list(range(first, last + 1))
        else:
            seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds:  # an empty range would skip every seeded test and pass
        raise pytest.UsageError(
            f"{SEEDS_ENV} must name at least one seed, like '0-9' or '1,5,7'; got {text!r}"
        )
    return seeds


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed" in metafunc.fixturenames:
        seeds = metafunc.config.stash[SEEDS_KEY]
        metafunc.parametrize("seed", seeds, indirect=True, ids=[f"seed{s}" for s in seeds])


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """Seed Python, numpy and torch together and return the seed."""
    import torch

    value = request.param
    random.seed(value)
    np.random.seed(value % 2**32)
    torch.manual_seed(value)
    return value


def _asks_for_gpu(expression, item: pytest.Item) -> bool:
    """True when ``-m`` selects ``item`` because of its gpu marker: the expression matches the
    item's markers but not the same markers without gpu (``gpu and slow`` asks for a gpu+slow
    test; ``not slow`` selects a gpu test without asking for it)."""
    names = {mark.name for mark in item.iter_markers()}
    return expression.evaluate(lambda name, **_: name in names) and not expression.evaluate(
        lambda name, **_: name in names - {"gpu"}
    )


def _skip_timing_outside_benchmarks(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Wall-clock ratios run in the benchmark suite only: in the default run a busy neighbour can
    flip any of them, and a fresh clone must not turn red under load."""
    if config.getoption("benchmark_only", default=False):
        return
    skip = pytest.mark.skip(reason="wall-clock ratio: runs with `pytest tests/benchmarks "
                                   "--benchmark-only` (tox -e bench), not in the default run")
    for item in items:
        if item.get_closest_marker("timing"):
            item.add_marker(skip)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Decide per selected item: a GPU test asked for by ``-m`` must run (no CUDA fails the run,
    unless ``--device cpu`` asks for a dry run); any other GPU test is skipped with the reason."""
    from _pytest.mark.expression import Expression

    _skip_timing_outside_benchmarks(config, items)
    markexpr = config.getoption("-m") or ""
    expression = Expression.compile(markexpr) if markexpr else None
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    asked = [item for item in gpu_items if expression and _asks_for_gpu(expression, item)]
    skip = pytest.mark.skip(
        reason="GPU claim test: run `pytest -m gpu` on a CUDA machine "
               "(add --device cpu for a smoke-scale dry run)"
    )
    for item in gpu_items:
        if item not in asked:
            item.add_marker(skip)
    device = config.getoption("--device")
    if asked and (device is None or device.startswith("cuda")):
        import torch

        if not torch.cuda.is_available():
            raise pytest.UsageError(
                f"`-m {markexpr}` selected {len(asked)} GPU test(s), but torch sees no CUDA device "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False). Run them on a "
                "GPU machine with a CUDA build of torch, or pass --device cpu for a smoke-scale "
                "dry run of the same code."
            )


REGRESSION_FILE = Path(__file__).parent / "tests" / "claims" / "regression.json"


@pytest.fixture(scope="session")
def regression() -> dict:
    """Expected outcomes per claim reading (tests/claims/regression.json): verdict, reason,
    figures with tolerances, and the version and protocol hash they were measured under."""
    import json

    return json.loads(REGRESSION_FILE.read_text(encoding="utf-8"))["readings"]


@pytest.fixture
def claim_holds(regression):
    """``claim_holds(result)``: assert the paper's claim under the result's reading, with the
    expected outcome from regression.json applied (see harness.pytest_plugin.check_claim)."""
    from lora_claims.harness.pytest_plugin import check_claim

    return lambda result: check_claim(result, regression)


@pytest.fixture(scope="session")
def data_dir(pytestconfig: pytest.Config) -> Path | None:
    value = pytestconfig.getoption("--data-dir")
    return Path(value) if value else None


@pytest.fixture(scope="session")
def model_paths(pytestconfig: pytest.Config) -> dict[str, str]:
    from lora_claims.harness.context import parse_model_paths

    return parse_model_paths(pytestconfig.getoption("--model-path"))


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    """The device a test runs on: --device if given, else cuda for GPU tests and cpu otherwise."""
    chosen = request.config.getoption("--device")
    if chosen:
        return chosen
    return "cuda" if request.node.get_closest_marker("gpu") else "cpu"


@pytest.fixture(scope="session")
def audit(pytestconfig: pytest.Config, data_dir, model_paths, tmp_path_factory):
    """Claims evaluated once per session (at the session's seed); their report is written at the end."""
    from lora_claims.harness.pytest_plugin import SessionAudit

    session_audit = SessionAudit(tmp_path_factory.mktemp("audit-figures"), data_dir, model_paths,
                                 seed=pytestconfig.stash[SEEDS_KEY][0])
    yield session_audit
    if session_audit.results:
        report = session_audit.write_report(Path(pytestconfig.rootpath,
                                                 pytestconfig.getoption("--audit-report")))
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"lora-claims: audit report of this session's claims in {report}")
