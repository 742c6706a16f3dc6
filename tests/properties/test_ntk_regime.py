"""The C11 measurements on a tiny random BERT: initialization, the two trainings, and controls.

Positive control: at a tiny learning rate the real model stays in its linear regime, so the
linearized model predicts what the real one predicts and the kernel barely moves. Negative control:
at a large learning rate the same measurements must show the regime breaking down.
"""

from __future__ import annotations

import pytest
import torch

from lora_claims.errors import InvalidArgument
from lora_claims.methods.ntk.features import extract_features, select_matrices
from lora_claims.methods.ntk.regime import (
    EncodedSplit,
    LoraRun,
    compare_predictions,
    init_factors,
    regime_run,
    relative_change,
    train_linearized,
    train_real,
)
from tests.ntk_support import encodings, one_torch_thread, tiny_bert  # noqa: F401  (one_torch_thread: autouse)


@pytest.fixture(scope="module")
def setup():
    model = tiny_bert(num_labels=2, dtype=torch.float32)
    for param in model.parameters():
        param.requires_grad_(False)
    generator = torch.Generator().manual_seed(5)
    train = EncodedSplit(encodings(rows=12, seed=2), torch.randint(0, 2, (12,), generator=generator))
    test = EncodedSplit(encodings(rows=40, seed=3), torch.randint(0, 2, (40,), generator=generator))
    features = extract_features(model, train.encodings, select_matrices(model), n_outputs=2)
    return model, train, test, features


def test_lora_initialization_is_b_zero_and_scaled_gaussian_a():
    factors = init_factors({"w": (64, 200)}, rank=4, seed=0)
    b, a = factors["w"]
    assert b.shape == (64, 4) and not b.any()
    assert a.shape == (4, 200)
    assert float(a.std()) == pytest.approx(1 / (2 * 200), rel=0.1)
    assert torch.equal(a, init_factors({"w": (64, 200)}, rank=4, seed=0)["w"][1])


def test_rank_beyond_the_matrix_fails():
    with pytest.raises(InvalidArgument, match=r"rank must lie in 1..min\(m, n\) = 8"):
        init_factors({"w": (8, 8)}, rank=9, seed=0)


@pytest.mark.parametrize("field, value", [("optimizer", "lbfgs"), ("lr", 0.0), ("rank", 0), ("steps", -1)])
def test_bad_run_settings_fail(field, value):
    with pytest.raises(InvalidArgument, match=field):
        LoraRun(**{field: value})


def test_compare_predictions_on_known_cases():
    base = torch.zeros(4, 2)
    reference = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    same = compare_predictions(reference, reference.clone(), base)
    assert same == {"agreement": 1.0, "logit_distance": 0.0, "rms_logit_error": 0.0}
    flipped = compare_predictions(reference, reference.flip(1), base)
    assert flipped["agreement"] == 0.0 and flipped["logit_distance"] == pytest.approx(2**0.5)
    assert relative_change(torch.ones(3), 2 * torch.ones(3)) == pytest.approx(1.0)


def test_both_trainings_start_from_the_same_model(setup):
    model, train, _, features = setup
    run = LoraRun(rank=2, steps=1, lr=1e-2)
    real = train_real(model, train, features.matrices, run)
    linear = train_linearized(features, train.labels, run)
    assert real.losses[0] == pytest.approx(linear.losses[0], rel=1e-5)
    assert real.losses[-1] < real.losses[0] and linear.losses[-1] < linear.losses[0]


def test_positive_control_small_steps_stay_linear(setup):
    model, train, test, features = setup
    result = regime_run(model, features, train, test, LoraRun(rank=1, steps=20, lr=1e-3))
    assert result["linearized_vs_real"]["agreement"] == 1.0
    assert result["linearized_vs_real"]["logit_distance"] < 0.05
    assert result["taylor_vs_real"]["logit_distance"] < 0.05
    assert result["ntk_relative_change"] < 0.05


def test_negative_control_large_steps_leave_the_linear_regime(setup):
    model, train, test, features = setup
    result = regime_run(model, features, train, test, LoraRun(rank=1, steps=20, lr=0.2))
    assert result["real"]["delta_relative_norm"] > 1
    assert result["taylor_vs_real"]["logit_distance"] > 0.5
    assert result["ntk_relative_change"] > 0.3
