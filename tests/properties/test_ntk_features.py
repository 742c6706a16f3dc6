"""Jacobian features of a real architecture (a tiny, randomly initialised BERT): finite differences,
inner products against the explicit features, the kernel, the cache and bad input."""

from __future__ import annotations

import pytest
import torch

from lora_claims.errors import InvalidArgument
from lora_claims.harness.cache import ResultCache
from lora_claims.methods.ntk.features import (
    FeaturesTooLarge,
    cached_features,
    checked_logits,
    extract_features,
    feature_bytes,
    frozen_prefix,
    select_matrices,
    shifted_weights,
)
from tests.ntk_support import encodings, headless_copy, logits_at, one_torch_thread, tiny_bert  # noqa: F401  (one_torch_thread: autouse)


def test_default_matrices_are_the_last_layer_query_and_value():
    model = tiny_bert()
    assert select_matrices(model) == ("bert.encoder.layer.1.attention.self.query",
                                      "bert.encoder.layer.1.attention.self.value")
    assert len(select_matrices(model, layers="all")) == 4
    assert select_matrices(model, kinds=("key",), layers=[0]) == ("bert.encoder.layer.0.attention.self.key",)


def test_features_match_central_finite_differences():
    model = tiny_bert()
    enc = encodings()
    matrices = select_matrices(model, layers="all")
    features = extract_features(model, enc, matrices, n_outputs=3, batch_size=2)  # 3 ragged batches
    params = dict(model.named_parameters())
    generator = torch.Generator().manual_seed(2)
    eps = 1e-5
    for name in matrices:
        dense = features.dense(name)
        weight = params[f"{name}.weight"]
        for _ in range(3):
            i, j = (int(torch.randint(0, size, (1,), generator=generator)) for size in weight.shape)
            with torch.no_grad():
                weight[i, j] += eps
                up = model(**enc).logits
                weight[i, j] -= 2 * eps
                down = model(**enc).logits
                weight[i, j] += eps
            numeric = (up - down) / (2 * eps)
            assert numeric.abs().max() > 1e-4, "the entry must move the logits for the check to mean anything"
            torch.testing.assert_close(dense[:, :, i, j], numeric, rtol=1e-6, atol=1e-8)


def test_padding_positions_carry_no_feature():
    model = tiny_bert()
    enc = encodings()
    features = extract_features(model, enc, select_matrices(model), n_outputs=3, batch_size=2)
    padding = enc["attention_mask"] == 0
    assert padding.any()
    for name in features.matrices:
        assert features.right[name][padding].abs().max() == 0
        assert features.left[name].transpose(1, 2)[padding].abs().max() == 0


def test_inner_products_equal_the_explicit_features():
    model = tiny_bert()
    enc = encodings(rows=6)
    features = extract_features(model, enc, select_matrices(model, layers="all"), n_outputs=3)
    generator = torch.Generator().manual_seed(3)
    deltas = {name: 0.1 * torch.randn(8, 8, generator=generator, dtype=torch.float64)
              for name in features.matrices}
    explicit = features.f0 + sum(torch.einsum("jkmn,mn->jk", features.dense(name), delta)
                                 for name, delta in deltas.items())
    torch.testing.assert_close(features.f0, logits_at(model, enc))
    torch.testing.assert_close(features.f0 + features.inner(deltas), explicit)


def test_linearization_error_is_second_order():
    """|f(W + t D) - f_lin(W + t D)| shrinks like t^2: the features are the true first derivative."""
    model = tiny_bert()
    enc = encodings()
    features = extract_features(model, enc, select_matrices(model), n_outputs=3)
    generator = torch.Generator().manual_seed(4)
    direction = {name: torch.randn(8, 8, generator=generator, dtype=torch.float64)
                 for name in features.matrices}
    errors = []
    for step in (1e-2, 1e-3):
        deltas = {name: step * d for name, d in direction.items()}
        linear = features.f0 + features.inner(deltas)
        errors.append(float((logits_at(model, enc, deltas) - linear).abs().max()))
    assert errors[0] > 0
    assert errors[1] / errors[0] == pytest.approx(1e-2, rel=0.2)


def test_shifted_weights_restores_the_model():
    model = tiny_bert()
    matrix = select_matrices(model)[0]
    weight = dict(model.named_parameters())[f"{matrix}.weight"]
    before = weight.detach().clone()
    with shifted_weights(model, {matrix: torch.ones(8, 8, dtype=torch.float64)}):
        assert torch.equal(weight.detach(), before + 1)
    assert torch.equal(weight.detach(), before)


def test_kernel_is_the_gram_matrix_of_the_features():
    model = tiny_bert()
    features = extract_features(model, encodings(), select_matrices(model), n_outputs=3)
    flat = torch.cat([features.dense(name).reshape(15, -1) for name in features.matrices], dim=1)
    kernel = features.kernel()
    torch.testing.assert_close(kernel, flat @ flat.T)
    assert torch.linalg.eigvalsh(kernel).min() > -1e-10 * kernel.diagonal().max()


def test_features_are_cached_on_disk_by_config(tmp_path):
    model = tiny_bert()
    enc = encodings()
    calls = []

    def compute():
        calls.append(1)
        return extract_features(model, enc, select_matrices(model), n_outputs=3)

    config = {"model": "tiny", "task": "random", "seed": 1, "matrices": list(select_matrices(model))}
    first = cached_features(ResultCache(tmp_path), config, compute)
    second = cached_features(ResultCache(tmp_path), config, compute)
    assert len(calls) == 1
    for name in first.matrices:
        assert torch.equal(first.left[name], second.left[name])
    cached_features(ResultCache(tmp_path), {**config, "seed": 2}, compute)
    assert len(calls) == 2
    for stored in (tmp_path / "ntk-features").glob("*.pt"):
        stored.write_bytes(b"truncated")
    cached_features(ResultCache(tmp_path), config, compute)
    assert len(calls) == 3


def test_unknown_matrix_names_fail_with_the_available_names():
    with pytest.raises(InvalidArgument, match=r"match no nn.Linear.*query.*value"):
        select_matrices(tiny_bert(), kinds=("q_proj",))


def test_unknown_layer_fails():
    with pytest.raises(InvalidArgument, match=r"layer numbers among \[0, 1\]"):
        select_matrices(tiny_bert(), layers=[5])


def test_head_without_the_task_logits_fails():
    model = tiny_bert(num_labels=3)
    with pytest.raises(InvalidArgument, match=r"logits of shape \(3,\) .* K = 2 classes"):
        checked_logits(model, model(**encodings()), 2)
    with pytest.raises(InvalidArgument, match=r"K = 2"):
        extract_features(model, encodings(), select_matrices(model), n_outputs=2)
    encoder_only = headless_copy(model)
    with pytest.raises(InvalidArgument, match=r"returns no logits"):
        extract_features(encoder_only, encodings(), ("encoder.layer.1.attention.self.query",), n_outputs=3)


def test_features_beyond_the_memory_budget_are_refused_with_the_estimate():
    model = tiny_bert()
    enc = encodings()
    needed = feature_bytes(5, 7, 3, {name: (8, 8) for name in select_matrices(model)}, itemsize=8)
    assert needed == 2 * 5 * 7 * (3 * 8 + 8) * 8
    with pytest.raises(FeaturesTooLarge, match=r"need about .* GiB but the memory budget is"):
        extract_features(model, enc, select_matrices(model), n_outputs=3, memory_budget=needed - 1)
    extract_features(model, enc, select_matrices(model), n_outputs=3, memory_budget=needed)


def test_encodings_without_attention_mask_fail():
    model = tiny_bert()
    enc = encodings()
    del enc["attention_mask"]
    with pytest.raises(InvalidArgument, match=r"attention_mask"):
        extract_features(model, enc, select_matrices(model), n_outputs=3)


def test_frozen_prefix_replays_the_lower_layers_exactly():
    model = tiny_bert()
    enc = encodings()
    matrices = select_matrices(model)  # layer 1 only: layer 0 can be replayed
    weight = dict(model.named_parameters())[f"{matrices[1]}.weight"]
    full_logits = model(**enc).logits
    (full_grad,) = torch.autograd.grad(full_logits.square().sum(), weight)
    blocks = model.bert.encoder.layer
    original = blocks[0]
    with frozen_prefix(model, matrices, enc):
        assert blocks[0] is not original, "the frozen block must be skipped"
        logits = model(**enc).logits
        (grad,) = torch.autograd.grad(logits.square().sum(), weight)
        features = extract_features(model, enc, matrices, n_outputs=3, batch_size=5)
    assert blocks[0] is original
    torch.testing.assert_close(logits, full_logits)
    torch.testing.assert_close(grad, full_grad)
    reference = extract_features(model, enc, matrices, n_outputs=3)
    torch.testing.assert_close(features.left[matrices[1]], reference.left[matrices[1]])


def test_frozen_prefix_runs_in_full_when_the_lowest_layer_is_adapted():
    model = tiny_bert()
    blocks = model.bert.encoder.layer
    original = blocks[0]
    with frozen_prefix(model, select_matrices(model, layers="all"), encodings()):
        assert blocks[0] is original
