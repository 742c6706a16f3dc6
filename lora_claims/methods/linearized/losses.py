"""Training losses of the linearized model, with their gradients with respect to the outputs.

Every loss works on a batch of independent instances: outputs ``f`` of shape [I, N, K] (I
instances, N examples, K outputs), an optional 0/1 example mask [I, N] (so that instances with
different N share one tensor), and returns the per-instance mean over the examples that the mask
keeps, shape [I]. The gradient is written out by hand (it is simple for all three losses) so that
training needs no autograd graph; the property tests check it against ``torch.autograd``.

- ``squared``: 1/2 ||f_j - y_j||^2 with real targets y of shape [I, N, K];
- ``cross_entropy``: logsumexp(f_j) - f_j[y_j] with integer labels in 0..K-1, K >= 2;
- ``logistic``: log(1 + exp(-s_j f_j)) with K = 1 and labels in {0, 1} (s = 2y - 1): the binary
  single-logit convention that cross-entropy cannot express (softmax of one logit is constant).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lora_claims.errors import InvalidArgument


@dataclass(frozen=True)
class LossValue:
    loss: torch.Tensor  # [I] per-instance mean loss
    grad: torch.Tensor  # [I, N, K] gradient of ``loss`` with respect to the outputs


def _weights(mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Per-example weights 1 / N_i (0 where masked out), shape [I, N, 1]."""
    if mask is None:
        return torch.full(like.shape[:2] + (1,), 1.0 / like.shape[1], dtype=like.dtype)
    counts = mask.sum(dim=1, keepdim=True).clamp_min(1)
    return (mask.to(like.dtype) / counts).unsqueeze(-1)


def squared(f: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> LossValue:
    weights = _weights(mask, f)
    residual = f - targets
    return LossValue(
        loss=(0.5 * weights * residual.square()).sum(dim=(1, 2)), grad=weights * residual
    )


def cross_entropy(
    f: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None
) -> LossValue:
    weights = _weights(mask, f)
    log_probs = torch.log_softmax(f, dim=-1)
    picked = log_probs.gather(-1, labels.unsqueeze(-1))
    grad = log_probs.exp()
    grad.scatter_add_(-1, labels.unsqueeze(-1), -torch.ones_like(picked))
    return LossValue(loss=-(weights * picked).sum(dim=(1, 2)), grad=weights * grad)


def logistic(f: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> LossValue:
    weights = _weights(mask, f)
    sign = (2 * labels - 1).to(f.dtype).unsqueeze(-1)
    margin = sign * f
    return LossValue(
        loss=(weights * torch.nn.functional.softplus(-margin)).sum(dim=(1, 2)),
        grad=-weights * sign * torch.sigmoid(-margin),
    )


LOSSES = {"squared": squared, "cross_entropy": cross_entropy, "logistic": logistic}
LABEL_LOSSES = ("cross_entropy", "logistic")  # losses that take integer class labels


def check_loss_name(loss: str, n_outputs: int) -> str:
    """Validate a loss name against the number of outputs K; return it."""
    if loss not in LOSSES:
        raise InvalidArgument(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if loss == "cross_entropy" and n_outputs < 2:
        raise InvalidArgument(
            f"loss 'cross_entropy' needs K >= 2 outputs, got K = {n_outputs}; "
            "use loss 'logistic' for a single binary logit"
        )
    if loss == "logistic" and n_outputs != 1:
        raise InvalidArgument(f"loss 'logistic' needs K = 1 output, got K = {n_outputs}")
    return loss


def evaluate_loss(
    loss: str, f: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> LossValue:
    """Per-instance loss and output gradient of the loss named ``loss``."""
    check_loss_name(loss, f.shape[-1])
    return LOSSES[loss](f, target, mask)


def accuracy(
    loss: str, f: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-instance training accuracy [I] of a label loss (argmax, or the sign of one logit)."""
    if loss not in LABEL_LOSSES:
        raise InvalidArgument(
            f"accuracy needs a label loss ({', '.join(LABEL_LOSSES)}), got {loss!r}"
        )
    predicted = f.argmax(dim=-1) if f.shape[-1] > 1 else (f[..., 0] > 0).long()
    correct = (predicted == labels).to(f.dtype)
    if mask is None:
        return correct.mean(dim=1)
    keep = mask.to(f.dtype)
    return (correct * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1)
