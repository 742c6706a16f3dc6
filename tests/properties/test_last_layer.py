"""The last-layer model on cached rows against the full classifier it stands for.

C11's real runs and the linearized test predictions use ``LastLayerModel``; these tests pin it to
the full forward pass of the same first-token classifier (with the head and LoRA update applied as
weights), and its forward-mode linearization to the Jacobian features' f0 + <G, Delta>.
"""

from __future__ import annotations

import pytest
import torch

from lora_claims.errors import InvalidArgument
from lora_claims.methods.ntk.features import select_matrices, shifted_weights, trimmed
from lora_claims.methods.ntk.last_layer import LastLayerModel, take
from lora_claims.methods.ntk.real_features import FirstTokenClassifier
from lora_claims.methods.ntk.regime import EncodedSplit, Init, _to_init, train_features
from tests.ntk_support import encodings, logits_at, one_torch_thread, tiny_bert  # noqa: F401  (one_torch_thread: autouse)


@pytest.fixture(scope="module")
def setup():
    classifier = FirstTokenClassifier(tiny_bert(num_labels=2, dtype=torch.float64).bert, 2).double().eval()
    classifier.requires_grad_(False)
    adapted = [name for name in select_matrices(classifier) if name.startswith("encoder.")]
    generator = torch.Generator().manual_seed(11)
    init = Init({name: (torch.zeros(8, 3, dtype=torch.float64), torch.randn(3, 8, generator=generator,
                                                                          dtype=torch.float64))
                 for name in adapted},
                {"head": torch.randn(2, 8, generator=generator, dtype=torch.float64),
                 "head_bias": torch.zeros(2, 1, dtype=torch.float64)})
    trained = ({name: (torch.randn(8, 3, generator=generator, dtype=torch.float64) * 0.3, a)
                for name, (_, a) in init.factors.items()},
               {name: value + 0.2 * torch.randn(value.shape, generator=generator, dtype=torch.float64)
                for name, value in init.full.items()})
    return classifier, LastLayerModel(classifier, adapted), init, trained, encodings(rows=9, seed=4)


def _deltas(init, factors, full, scale):
    return ({name: scale * b @ a for name, (b, a) in factors.items()}
            | {name: full[name] - init.full[name] for name in full})


def test_logits_on_cached_rows_equal_the_full_forward_pass(setup):
    classifier, model, init, (factors, full), batch = setup
    rows = model.cached_rows(batch)
    shift = _to_init(classifier, init)
    with shifted_weights(classifier, shift):
        expected = logits_at(classifier, trimmed(batch), _deltas(init, factors, full, 2.0))
    torch.testing.assert_close(model.logits(rows, factors, full, 2.0), expected)
    torch.testing.assert_close(model.logits(take(rows, [4, 1]), factors, full, 2.0), expected[[4, 1]])


def test_linearized_logits_equal_the_jacobian_features(setup):
    classifier, model, init, (factors, full), batch = setup
    features = train_features(classifier, EncodedSplit(batch, torch.zeros(9, dtype=torch.long)), init, 2)
    f0, moved = model.linearized_logits(model.cached_rows(batch), factors, full, init.full, 0.5)
    torch.testing.assert_close(f0, features.f0)
    torch.testing.assert_close(moved, features.f0 + features.inner(_deltas(init, factors, full, 0.5)))
    factored = features.inner_factored(factors, 0.5, {name: full[name] - init.full[name] for name in full})
    torch.testing.assert_close(factored, features.inner(_deltas(init, factors, full, 0.5)))


def test_only_the_last_layers_query_and_value_can_be_adapted(setup):
    classifier = setup[0]
    with pytest.raises(InvalidArgument, match="encoder.encoder.layer.0.attention.self.query"):
        LastLayerModel(classifier, ["encoder.encoder.layer.0.attention.self.query"])
    with pytest.raises(InvalidArgument, match="attention.self.key"):
        LastLayerModel(classifier, ["encoder.encoder.layer.1.attention.self.key"])
