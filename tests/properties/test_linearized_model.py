"""The linearized model's outputs and analytic gradients against torch.autograd, and bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lora_claims.errors import InvalidArgument
from lora_claims.methods.linearized.losses import LOSSES, cross_entropy, evaluate_loss, logistic, squared
from lora_claims.methods.linearized.model import (
    DTYPE,
    DenseFeatures,
    FactoredFeatures,
    LinearizedProblem,
    gaussian_features,
    layer_features,
    objective,
)

shapes = st.tuples(
    st.integers(1, 3),
    st.integers(1, 5),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 3),
    st.integers(0, 2**16),
)


def _dense_from_factored(features: FactoredFeatures) -> torch.Tensor:
    """G_jk = sum_t left_jkt right_jt^T as a dense tensor (the reference the factored code avoids)."""
    count = features.instances
    left = features.left.expand(count, -1, -1, -1, -1)
    right = features.right.expand(count, -1, -1, -1)
    return torch.einsum("ijktm,ijtn->ijkmn", left, right)


def _problem(features, loss, generator, count, n_ex, k):
    if loss == "squared":
        target = torch.randn(count, n_ex, k, generator=generator, dtype=DTYPE)
    else:
        target = torch.randint(
            0, 2 if loss == "logistic" else k, (count, n_ex), generator=generator
        )
    f0 = torch.randn(count, n_ex, k, generator=generator, dtype=DTYPE)
    return LinearizedProblem(features, target, loss, f0)


def _autograd(problem, b, a, weight_decay):
    b, a = b.clone().requires_grad_(), a.clone().requires_grad_()
    g = (
        problem.features.g
        if isinstance(problem.features, DenseFeatures)
        else _dense_from_factored(problem.features)
    )
    f = problem.f0 + torch.einsum("ijkmn,imn->ijk", g.expand(b.shape[0], -1, -1, -1, -1), b @ a)
    value = evaluate_loss(
        problem.loss, f, problem.target.expand(b.shape[0], *problem.target.shape[1:])
    ).loss
    value = value + 0.5 * weight_decay * (a.square().sum(dim=(1, 2)) + b.square().sum(dim=(1, 2)))
    grad_b, grad_a = torch.autograd.grad(value.sum(), (b, a))
    return value.detach(), grad_b, grad_a


@given(shapes, st.sampled_from(list(LOSSES)), st.booleans(), st.sampled_from([0.0, 0.3]))
def test_analytic_gradients_match_autograd(shape, loss, factored, weight_decay):
    count, n_ex, k, m, n, r, seed = shape
    k = {"logistic": 1, "cross_entropy": max(k, 2)}.get(loss, k)
    generator = torch.Generator().manual_seed(seed)
    if factored:
        tokens = 2
        features = FactoredFeatures(
            torch.randn(count, n_ex, k, tokens, m, generator=generator, dtype=DTYPE),
            torch.randn(n_ex, tokens, n, generator=generator, dtype=DTYPE),
        )
    else:
        features = gaussian_features(count, n_ex, k, m, n, generator=generator)
    problem = _problem(features, loss, generator, count, n_ex, k)
    b = torch.randn(count, m, r, generator=generator, dtype=DTYPE)
    a = torch.randn(count, r, n, generator=generator, dtype=DTYPE)
    value, grad_b, grad_a = objective(problem, b, a, weight_decay)
    ref_value, ref_b, ref_a = _autograd(problem, b, a, weight_decay)
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(grad_b, ref_b)
    torch.testing.assert_close(grad_a, ref_a)


@given(shapes)
def test_factored_outputs_and_adjoint_match_dense(shape):
    count, n_ex, k, m, n, r, seed = shape
    generator = torch.Generator().manual_seed(seed)
    features = FactoredFeatures(
        torch.randn(1, n_ex, k, 3, m, generator=generator, dtype=DTYPE),
        torch.randn(count, n_ex, 3, n, generator=generator, dtype=DTYPE),
    )
    dense = DenseFeatures(_dense_from_factored(features))
    b = torch.randn(count, m, r, generator=generator, dtype=DTYPE)
    a = torch.randn(count, r, n, generator=generator, dtype=DTYPE)
    residual = torch.randn(count, n_ex, k, generator=generator, dtype=DTYPE)
    torch.testing.assert_close(features.outputs(b, a), dense.outputs(b, a))
    torch.testing.assert_close(features.outputs_dense(b @ a), dense.outputs_dense(b @ a))
    torch.testing.assert_close(features.adjoint(residual), dense.adjoint(residual))


def test_layer_features_are_the_output_layer():
    """G_jk = e_k h_j^T: the model's update is (B A h_j)_k."""
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(5, 7, generator=generator, dtype=DTYPE)
    features = layer_features(h, n_outputs=3, m=4)
    b, a = torch.randn(1, 4, 2, dtype=DTYPE), torch.randn(1, 2, 7, dtype=DTYPE)
    torch.testing.assert_close(features.outputs(b, a)[0], (h @ (b[0] @ a[0]).T)[:, :3])


@given(st.integers(2, 5), st.integers(0, 2**16))
def test_loss_values_match_torch(k, seed):
    generator = torch.Generator().manual_seed(seed)
    f = torch.randn(2, 6, k, generator=generator, dtype=DTYPE)
    labels = torch.randint(0, k, (2, 6), generator=generator)
    expected = torch.nn.functional.cross_entropy(
        f.reshape(-1, k), labels.reshape(-1), reduction="none"
    )
    torch.testing.assert_close(cross_entropy(f, labels).loss, expected.view(2, 6).mean(dim=1))
    binary = torch.randint(0, 2, (2, 6), generator=generator)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        f[..., 0], binary.to(DTYPE), reduction="none"
    )
    torch.testing.assert_close(logistic(f[..., :1], binary).loss, expected.mean(dim=1))
    targets = torch.randn(2, 6, k, generator=generator, dtype=DTYPE)
    torch.testing.assert_close(
        squared(f, targets).loss, 0.5 * (f - targets).square().sum(-1).mean(-1)
    )


def test_mask_ignores_masked_examples():
    f = torch.randn(1, 4, 3, dtype=DTYPE)
    labels = torch.tensor([[0, 1, 2, 1]])
    mask = torch.tensor([[True, True, False, False]])
    torch.testing.assert_close(
        cross_entropy(f, labels, mask).loss, cross_entropy(f[:, :2], labels[:, :2]).loss
    )


# --- bad input ---------------------------------------------------------------------------------


def test_wrong_feature_shape_is_named():
    with pytest.raises(InvalidArgument, match="features must have 4 or 5 dimensions"):
        DenseFeatures(torch.zeros(3, 4, 5))
    with pytest.raises(InvalidArgument, match="left .* and right .* disagree"):
        FactoredFeatures(torch.zeros(1, 4, 2, 1, 3), torch.zeros(1, 5, 1, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_features_are_rejected(bad):
    g = torch.zeros(2, 2, 3, 3)
    g[1, 0, 2, 2] = bad
    with pytest.raises(InvalidArgument, match="features contains 1 NaN or infinite"):
        DenseFeatures(g)
    with pytest.raises(InvalidArgument, match="h contains"):
        layer_features(torch.full((2, 3), bad), n_outputs=2)


def test_unknown_loss_and_bad_k_are_named():
    features = gaussian_features(1, 2, 2, 3, 3)
    with pytest.raises(InvalidArgument, match="loss must be one of .* got 'hinge'"):
        LinearizedProblem(features, torch.zeros(1, 2, dtype=torch.long), "hinge")
    with pytest.raises(InvalidArgument, match="n_outputs \\(K\\) must be >= 1"):
        gaussian_features(1, 2, 0, 3, 3)
    with pytest.raises(InvalidArgument, match="n_outputs \\(K\\) must be >= 1"):
        layer_features(torch.zeros(2, 3), n_outputs=0)
    with pytest.raises(InvalidArgument, match="'cross_entropy' needs K >= 2"):
        LinearizedProblem(gaussian_features(1, 2, 1, 3, 3), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(InvalidArgument, match="target must be labels"):
        LinearizedProblem(features, torch.tensor([[0, 5]]))
