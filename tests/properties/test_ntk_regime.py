"""The C11 measurements on a tiny random BERT with a first-token head: the two trainings, the
minibatch replay, and controls.

Positive control: at a tiny learning rate the real model stays in its linear regime, so the
linearized model predicts what the real one predicts and the kernel barely moves. Negative control:
at a large learning rate the same measurements must show the regime breaking down.
"""

from __future__ import annotations

import pytest
import torch

from lora_claims.claims.c11_ntk_assumptions import SPEC
from lora_claims.errors import InvalidArgument
from lora_claims.methods.ntk.features import frozen_prefix, select_matrices, trimmed
from lora_claims.methods.ntk.last_layer import LastLayerModel
from lora_claims.methods.ntk.real_features import HEAD_MATRICES, FirstTokenClassifier
from lora_claims.methods.ntk.regime import (
    EncodedSplit,
    Init,
    LoraRun,
    compare_predictions,
    minibatch_order,
    regime_run,
    relative_change,
    train_features,
    train_linearized,
    train_real,
)
from tests.ntk_support import encodings, one_torch_thread, tiny_bert  # noqa: F401  (one_torch_thread: autouse)


@pytest.fixture(scope="module")
def setup():
    model = FirstTokenClassifier(tiny_bert(num_labels=2, dtype=torch.float32).bert, 2).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    generator = torch.Generator().manual_seed(5)
    train = EncodedSplit(encodings(rows=12, seed=2), torch.randint(0, 2, (12,), generator=generator))
    test = EncodedSplit(encodings(rows=40, seed=3), torch.randint(0, 2, (40,), generator=generator))
    adapted = [name for name in select_matrices(model) if name.startswith("encoder.")]
    init = Init({name: (torch.zeros(8, 2), torch.randn(2, 8, generator=generator) * 0.3) for name in adapted},
                {"head": torch.randn(2, 8, generator=generator) * 0.3, "head_bias": torch.zeros(2, 1)})
    features = train_features(model, train, init, 2)
    assert set(features.matrices) == set(adapted) | set(HEAD_MATRICES)
    return LastLayerModel(model, adapted), train, test, init, features


@pytest.mark.parametrize("field, value", [("optimizer", "adam"), ("lr", 0.0), ("rank", 0), ("steps", -1),
                                          ("batch_size", 0)])
def test_bad_run_settings_fail(field, value):
    with pytest.raises(InvalidArgument, match=field):
        LoraRun(**{field: value})


def test_each_epoch_visits_every_row_once():
    order = minibatch_order(10, LoraRun(steps=7, batch_size=4, seed=3))
    assert [len(rows) for rows in order] == [4, 4, 2, 4, 4, 2, 4]
    assert sorted(torch.cat(order[:3]).tolist()) == list(range(10))
    assert all(torch.equal(a, b)
               for a, b in zip(order, minibatch_order(10, LoraRun(steps=7, batch_size=4, seed=3)),
                               strict=False))


def test_replayed_prefix_gives_the_rows_full_forward_pass(setup):
    model, train, *_ = setup
    model = model.classifier
    batch = trimmed(train.encodings)
    rows = torch.tensor([7, 2, 9])
    full = model(**{key: value[rows] for key, value in batch.items()}).logits
    with frozen_prefix(model, [name for name in setup[3].factors], batch) as select:
        assert select is not None
        select(rows)
        replayed = model(**{key: value[rows] for key, value in batch.items()}).logits
    torch.testing.assert_close(replayed, full, rtol=1e-5, atol=1e-6)


def test_compare_predictions_on_known_cases():
    base = torch.zeros(4, 2)
    reference = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    assert compare_predictions(reference, reference.clone(), base) == {"agreement": 1.0,
                                                                       "logit_distance": 0.0}
    flipped = compare_predictions(reference, reference.flip(1), base)
    assert flipped["agreement"] == 0.0 and flipped["logit_distance"] == pytest.approx(2**0.5)
    assert relative_change(torch.ones(3), 2 * torch.ones(3)) == pytest.approx(1.0)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_both_trainings_start_from_the_same_model(setup, optimizer):
    model, train, _, init, features = setup
    run = LoraRun(rank=2, steps=6, lr=1e-2, optimizer=optimizer, batch_size=4)
    real = train_real(model, train, init, run)
    linear = train_linearized(features, train.labels, init, run)
    assert real.losses[0] == pytest.approx(linear.losses[0], rel=1e-5)
    assert set(real.deltas) == set(linear.deltas) == set(features.matrices)


def test_positive_control_small_steps_stay_linear(setup):
    model, train, test, init, features = setup
    result = regime_run(model, features, train, test, init,
                        LoraRun(rank=2, steps=20, lr=1e-3, optimizer="sgd"))
    assert result["linearized_vs_real"]["agreement"] == 1.0 and all(result["same_prediction"])
    assert result["linearized_vs_real"]["logit_distance"] < 0.05
    assert result["ntk_relative_change"] < 0.05


def test_negative_control_large_steps_leave_the_linear_regime(setup):
    model, train, test, init, features = setup
    result = regime_run(model, features, train, test, init,
                        LoraRun(rank=2, steps=40, lr=0.5, optimizer="adamw"))
    assert result["ntk_relative_change"] > 2 * SPEC.tolerances["ntk_change_max"]
    assert result["linearized_vs_real"]["logit_distance"] > 0.3
