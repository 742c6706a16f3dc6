"""The NTK-linearized LoRA model: outputs f_jk = f0_jk + <G_jk, B A> for example j, output k.

Many independent instances are stacked on a leading axis I and computed in one tensor operation.
A LoRA update Delta = B A has B: [I, m, r] and A: [I, r, n]. The feature matrices G_jk in R^{m x n}
come in two representations:

- ``DenseFeatures``: G as a tensor [I, N, K, m, n] (or [N, K, m, n], shared by all instances).
  Used for iid Gaussian features and for any features a caller has as full matrices.
- ``FactoredFeatures``: G_jk = sum_t u_jkt h_jt^T with ``left`` u: [I, N, K, T, m] and ``right``
  h: [I, N, T, n] (either may drop the leading I axis to be shared). This is the exact form of the
  Jacobian of a logit with respect to a linear layer y_t = W h_t applied at T token positions
  (u_jkt = d logit_k / d y_t), so a later issue can pass real encoder Jacobians without ever
  forming m x n matrices; T = 1 and u_jk = e_k gives the structured features of a last layer,
  G_jk = e_k h_j^T (``layer_features``).

Both compute outputs and the gradient with respect to (B, A) through the factors, in
O(N K (m + n) r) for the factored form; only the Delta-space gradient M = sum_jk R_jk G_jk (used
for PL ratios in Delta space and by the convex solver) is formed as a dense [I, m, n] tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lora_claims.errors import InvalidArgument, require_int
from lora_claims.methods.linearized.losses import LABEL_LOSSES, LossValue, check_loss_name, evaluate_loss

DTYPE = torch.float64  # PL ratios are read at losses down to 1e-8: float32 would round them away


def _as_tensor(name: str, value, ndim: tuple[int, ...]) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=DTYPE)
    if tensor.ndim not in ndim:
        raise InvalidArgument(
            f"{name} must have {' or '.join(str(d) for d in ndim)} dimensions, "
            f"got shape {tuple(tensor.shape)}"
        )
    if tensor.numel() == 0:
        raise InvalidArgument(f"{name} must not be empty, got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).sum().item()
        raise InvalidArgument(f"{name} contains {bad} NaN or infinite value(s)")
    return tensor


def _batch(tensor: torch.Tensor, ndim: int) -> torch.Tensor:
    """Add the instance axis to a tensor given without it (shared by all instances)."""
    return tensor.unsqueeze(0) if tensor.ndim == ndim - 1 else tensor


class DenseFeatures:
    """Feature matrices G as a dense tensor of shape [I, N, K, m, n] or [N, K, m, n] (shared)."""

    def __init__(self, g):
        self.g = _batch(_as_tensor("features", g, (4, 5)), 5)
        self.instances, self.n_examples, self.n_outputs, self.m, self.n = self.g.shape
        self._flat = self.g.reshape(
            self.instances, self.n_examples * self.n_outputs, self.m * self.n
        )

    def outputs(self, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.outputs_dense(b @ a)

    def outputs_dense(self, delta: torch.Tensor) -> torch.Tensor:
        f = self._flat @ delta.reshape(delta.shape[0], self.m * self.n, 1)
        return f.reshape(delta.shape[0], self.n_examples, self.n_outputs)

    def adjoint(self, residual: torch.Tensor) -> torch.Tensor:
        """M = sum_jk R_jk G_jk, shape [I, m, n]."""
        flat = residual.reshape(residual.shape[0], 1, -1) @ self._flat
        return flat.reshape(residual.shape[0], self.m, self.n)

    def factor_gradients(self, residual, b, a):
        adjoint = self.adjoint(residual)
        return adjoint @ a.transpose(1, 2), b.transpose(1, 2) @ adjoint


class FactoredFeatures:
    """G_jk = sum_t left[j, k, t] right[j, t]^T; left [I, N, K, T, m], right [I, N, T, n]."""

    def __init__(self, left, right):
        self.left = _batch(_as_tensor("left", left, (4, 5)), 5)
        self.right = _batch(_as_tensor("right", right, (3, 4)), 4)
        li, n_ex, self.n_outputs, tokens, self.m = self.left.shape
        ri, n_ex_right, tokens_right, self.n = self.right.shape
        if (n_ex, tokens) != (n_ex_right, tokens_right) or (1 not in (li, ri) and li != ri):
            raise InvalidArgument(
                f"left {tuple(self.left.shape)} and right {tuple(self.right.shape)} disagree: "
                "expected left [I, N, K, T, m] and right [I, N, T, n] with the same N and T"
            )
        self.instances, self.n_examples, self.tokens = max(li, ri), n_ex, tokens

    def _flat_right(self, count: int) -> torch.Tensor:
        right = self.right.expand(count, -1, -1, -1)
        return right.reshape(count, self.n_examples * self.tokens, self.n)

    def _contract_left(self, projected: torch.Tensor) -> torch.Tensor:
        """f_jk = sum_t <left_jkt, projected_jt> for projected [I, N, T, m]."""
        if self.left.shape[0] == 1:  # shared: one [K, T m] x [T m, I] product per example
            return torch.einsum("jktm,ijtm->ijk", self.left[0], projected)
        return torch.einsum("ijktm,ijtm->ijk", self.left, projected)

    def outputs(self, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        count = b.shape[0]
        projected = self._flat_right(count) @ a.transpose(1, 2) @ b.transpose(1, 2)
        return self._contract_left(projected.reshape(count, self.n_examples, self.tokens, self.m))

    def outputs_dense(self, delta: torch.Tensor) -> torch.Tensor:
        count = delta.shape[0]
        projected = self._flat_right(count) @ delta.transpose(1, 2)
        return self._contract_left(projected.reshape(count, self.n_examples, self.tokens, self.m))

    def _left_residual(self, residual: torch.Tensor) -> torch.Tensor:
        """U_jt = sum_k R_jk left_jkt, flattened to [I, N T, m]."""
        if self.left.shape[0] == 1:
            u = torch.einsum("ijk,jktm->ijtm", residual, self.left[0])
        else:
            u = torch.einsum("ijk,ijktm->ijtm", residual, self.left)
        return u.reshape(residual.shape[0], self.n_examples * self.tokens, self.m)

    def adjoint(self, residual: torch.Tensor) -> torch.Tensor:
        u = self._left_residual(residual)
        return u.transpose(1, 2) @ self._flat_right(residual.shape[0])

    def factor_gradients(self, residual, b, a):
        u = self._left_residual(residual)
        right = self._flat_right(residual.shape[0])
        grad_b = u.transpose(1, 2) @ (right @ a.transpose(1, 2))
        grad_a = (u @ b).transpose(1, 2) @ right
        return grad_b, grad_a


Features = DenseFeatures | FactoredFeatures


def gaussian_features(
    instances: int,
    n_examples: int,
    n_outputs: int,
    m: int,
    n: int,
    generator: torch.Generator | None = None,
) -> DenseFeatures:
    """iid N(0, 1) feature matrices, [I, N, K, m, n]."""
    shape = tuple(
        require_int(name, value)
        for name, value in (
            ("instances", instances),
            ("n_examples (N)", n_examples),
            ("n_outputs (K)", n_outputs),
            ("m", m),
            ("n", n),
        )
    )
    return DenseFeatures(torch.randn(shape, generator=generator, dtype=DTYPE))


def layer_features(h, n_outputs: int, m: int | None = None) -> FactoredFeatures:
    """Structured last-layer features G_jk = e_k h_j^T from inputs h: [I, N, n] or [N, n].

    One input vector per example is shared by its K outputs, as when LoRA adapts the output layer:
    f_jk = f0_jk + (B A h_j)_k. ``m`` (default K) is the number of rows of the adapted matrix;
    rows beyond K feed no output.
    """
    n_outputs = require_int("n_outputs (K)", n_outputs)
    m = n_outputs if m is None else require_int("m", m, minimum=n_outputs)
    h = _batch(_as_tensor("h", h, (2, 3)), 3)
    readout = torch.eye(n_outputs, m, dtype=DTYPE)  # row k is e_k
    left = readout.expand(h.shape[1], n_outputs, m).unsqueeze(2)  # [N, K, 1, m]
    return FactoredFeatures(left.unsqueeze(0), h.unsqueeze(2))


@dataclass
class LinearizedProblem:
    """A batch of training problems: features, base outputs f0, targets, loss and example mask.

    ``target`` holds integer labels [I, N] for the label losses (cross_entropy, logistic) and real
    targets [I, N, K] for ``squared``. ``mask`` [I, N] (0/1) lets instances with fewer examples
    share the tensor. ``f0`` may be [N, K] or [I, N, K]; None means zeros.
    """

    features: Features
    target: torch.Tensor
    loss: str = "cross_entropy"
    f0: torch.Tensor | None = None
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.features, DenseFeatures | FactoredFeatures):
            raise InvalidArgument(
                f"features must be DenseFeatures or FactoredFeatures, got {type(self.features).__name__}"
            )
        k, count, n_ex = self.features.n_outputs, self.features.instances, self.features.n_examples
        check_loss_name(self.loss, k)
        if self.loss in LABEL_LOSSES:
            labels = torch.as_tensor(self.target)
            if labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise InvalidArgument(f"target for loss {self.loss!r} must be integer labels")
            labels = _batch(labels.long(), 2)
            classes = 2 if self.loss == "logistic" else k
            if labels.shape[1:] != (n_ex,) or labels.min() < 0 or labels.max() >= classes:
                raise InvalidArgument(
                    f"target must be labels of shape [I, {n_ex}] in 0..{classes - 1}, "
                    f"got shape {tuple(labels.shape)} with range {labels.min().item()}..{labels.max().item()}"
                )
            self.target = labels
        else:
            self.target = _batch(_as_tensor("target", self.target, (2, 3)), 3)
            if self.target.shape[1:] != (n_ex, k):
                raise InvalidArgument(
                    f"target must have shape [I, {n_ex}, {k}], got {tuple(self.target.shape)}"
                )
        self.f0 = (
            torch.zeros(1, n_ex, k, dtype=DTYPE)
            if self.f0 is None
            else _batch(_as_tensor("f0", self.f0, (2, 3)), 3)
        )
        if self.f0.shape[1:] != (n_ex, k):
            raise InvalidArgument(
                f"f0 must have shape [I, {n_ex}, {k}], got {tuple(self.f0.shape)}"
            )
        if self.mask is not None:
            self.mask = _batch(torch.as_tensor(self.mask).bool(), 2)
            if self.mask.shape[1:] != (n_ex,) or not self.mask.any(dim=1).all():
                raise InvalidArgument(
                    f"mask must be [I, {n_ex}] and keep >= 1 example per instance"
                )
        sizes = {
            t.shape[0]
            for t in (self.target, self.f0) + ((self.mask,) if self.mask is not None else ())
        }
        self.instances = max(sizes | {count})
        if not sizes | {count} <= {1, self.instances}:
            raise InvalidArgument(
                f"instance counts disagree across features, target, f0, mask: {sorted(sizes | {count})}"
            )

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """(I, N, K, m, n)."""
        return (
            self.instances,
            self.features.n_examples,
            self.features.n_outputs,
            self.features.m,
            self.features.n,
        )

    def _expand(self, tensor: torch.Tensor, count: int) -> torch.Tensor:
        return tensor.expand(count, *tensor.shape[1:])

    def loss_at(self, f: torch.Tensor) -> LossValue:
        count = f.shape[0]
        mask = None if self.mask is None else self._expand(self.mask, count)
        return evaluate_loss(self.loss, f, self._expand(self.target, count), mask)

    def outputs(self, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.f0 + self.features.outputs(b, a)


def objective(
    problem: LinearizedProblem,
    b: torch.Tensor,
    a: torch.Tensor,
    weight_decay: float = 0.0,
    with_grad: bool = True,
):
    """F(B, A) = L(f0 + <G, B A>) + (weight_decay / 2)(||A||^2 + ||B||^2) per instance.

    Returns (F [I], grad_b, grad_a) with the analytic gradients, or (F, None, None).
    """
    value = problem.loss_at(problem.outputs(b, a))
    penalty = 0.5 * weight_decay * (a.square().sum(dim=(1, 2)) + b.square().sum(dim=(1, 2)))
    if not with_grad:
        return value.loss + penalty, None, None
    grad_b, grad_a = problem.features.factor_gradients(value.grad, b, a)
    if weight_decay:
        grad_b, grad_a = grad_b + weight_decay * b, grad_a + weight_decay * a
    return value.loss + penalty, grad_b, grad_a
