"""Random training problems for the linearized model, batched over instances.

Two feature sources (``FEATURE_SOURCES``):
- ``gaussian``: G_jk with iid N(0, 1) entries (the setting of claim C4);
- ``layer``: the structured features of an adapted output layer, G_jk = e_k h_j^T, with inputs
  h_j ~ N(0, I_n / n) so that ||h_j|| is about 1.

Labels are uniform over the K classes and independent of the features (the capacity setting: a
rank-r model separates them only if its class is rich enough). Base outputs f0 are iid
N(0, f0_scale^2), standing for the pre-trained logits.
"""

from __future__ import annotations

import torch

from lora_claims.errors import InvalidArgument, require_int
from lora_claims.methods.linearized.model import DTYPE, LinearizedProblem, gaussian_features, layer_features

FEATURE_SOURCES = ("gaussian", "layer")


def random_features(
    source: str,
    instances: int,
    n_examples: int,
    n_outputs: int,
    m: int,
    n: int,
    generator: torch.Generator,
):
    if source == "gaussian":
        return gaussian_features(instances, n_examples, n_outputs, m, n, generator=generator)
    if source == "layer":
        n_examples, n = require_int("n_examples (N)", n_examples), require_int("n", n)
        h = torch.randn(instances, n_examples, n, generator=generator, dtype=DTYPE) / n**0.5
        return layer_features(h, n_outputs, m)
    raise InvalidArgument(f"source must be one of {', '.join(FEATURE_SOURCES)}, got {source!r}")


def random_problem(
    source: str,
    instances: int,
    n_examples: int,
    n_outputs: int,
    m: int,
    n: int,
    loss: str = "cross_entropy",
    f0_scale: float = 0.5,
    seed: int = 0,
    mask: torch.Tensor | None = None,
) -> LinearizedProblem:
    """A batch of ``instances`` random problems with uniform random labels.

    For ``squared`` the targets are the one-hot codes of those labels (squared loss on the same
    classification data), so the two losses can be compared on identical instances.
    """
    generator = torch.Generator().manual_seed(seed)
    features = random_features(source, instances, n_examples, n_outputs, m, n, generator)
    classes = 2 if loss == "logistic" else n_outputs
    labels = torch.randint(0, classes, (instances, n_examples), generator=generator)
    f0 = f0_scale * torch.randn(instances, n_examples, n_outputs, generator=generator, dtype=DTYPE)
    if loss == "squared":
        target = torch.nn.functional.one_hot(labels, n_outputs).to(DTYPE)
    else:
        target = labels
    return LinearizedProblem(features, target, loss, f0, mask)
