"""C11: how far real few-shot LoRA fine-tuning of MiniLM is from its NTK linearization.

Measured verdict (profile ci: SST-2 and MRPC, data seed 42, Adam lr 3e-3, 40 full-batch steps):
not_supported. Where real training fits the 32 examples, the empirical NTK moves by 17-33% at rank 1
and by about 85% at rank 12, and at rank 12 the linearized model agrees with the real one on only
about 85% of the test predictions (Wilson interval below 90%). Slow: real fine-tuning on CPU.
"""

from __future__ import annotations

import pytest

from lora_claims.harness.registry import Verdict, get_claim
from tests.ntk_support import evaluated

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def c11(audit):
    return evaluated(audit, "C11")


def test_fine_tuning_that_fits_leaves_the_ntk_regime(c11):
    assert c11.verdict is Verdict.NOT_SUPPORTED, c11.summary
    cells = {(c["task"], c["rank"]): c for c in c11.evidence["cells"]}
    assert set(cells) == {(task, rank) for task in ("SST-2", "MRPC") for rank in (1, 12)}
    tol = get_claim("C11").tolerances
    assert all(cell["fits"] for cell in cells.values()), "every cell must count for this verdict"
    for task in ("SST-2", "MRPC"):
        low, high = cells[(task, 1)], cells[(task, 12)]
        assert high["ntk_relative_change"] > low["ntk_relative_change"] > tol["ntk_change_max"]
        assert high["agreement_ci95"][1] < tol["agreement_min"], high
        assert high["delta_relative_norm"] > low["delta_relative_norm"]
    assert c11.figures == ["c11_ntk_regime.png"]


def test_kernel_moves_as_training_proceeds(c11):
    for run in c11.evidence["runs"]:
        changes = [point["ntk_relative_change"] for point in run["kernel_trajectory"]]
        losses = [point["train_loss"] for point in run["kernel_trajectory"]]
        assert changes[0] == 0.0 and changes[-1] == max(changes) > 0
        assert losses[-1] < losses[0]


def test_linearized_runs_cost_less_than_real_ones(c11):
    costs = c11.evidence["costs"]
    assert costs["extraction_over_real"] < 0.5
    assert costs["linearized_over_real"] < 1.0


def test_smoke_profile_training_too_short_to_fit_is_inconclusive(audit):
    """Six steps do not fit the training set: no cell counts, so no verdict on the regime."""
    smoke = evaluated(audit, "C11", profile="smoke")
    assert smoke.verdict is Verdict.INCONCLUSIVE, smoke.summary
    assert not any(cell["fits"] for cell in smoke.evidence["cells"])
