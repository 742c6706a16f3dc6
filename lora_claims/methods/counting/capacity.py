"""Parameter-counting conditions on the LoRA rank, and the canonical setups they are applied to.

Two counts are compared (claims C1, C3, C5):

- the Sard-form count of Jang et al.: r(r+1)/2 > KN, the dimension of symmetric r x r matrices
  against the number of fitted outputs;
- the manifold count of arXiv 2605.03724: r(m+n) - r^2 > C KN, the dimension of the manifold of
  m x n matrices of rank r.

Thresholds are compared exactly: the constant C is converted with ``Fraction(str(C))`` so that the
strict inequality at an integer boundary (``d == C KN``) is never decided by rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from lora_claims.errors import InvalidArgument, require_int, require_positive_float


def _exact(constant: float | Fraction | int, name: str = "C") -> Fraction:
    if isinstance(constant, Fraction):
        if constant <= 0:
            raise InvalidArgument(f"{name} must be > 0, got {constant}")
        return constant
    return Fraction(str(require_positive_float(name, constant)))


def sard_count(r: int) -> int:
    """r(r+1)/2: the Sard-form count of Jang et al. for rank r."""
    r = require_int("r", r)
    return r * (r + 1) // 2


def manifold_dim(r: int, m: int, n: int) -> int:
    """r(m+n) - r^2: the dimension of the manifold of m x n matrices of rank exactly r."""
    m = require_int("m", m)
    n = require_int("n", n)
    r = require_int("r", r, maximum=min(m, n))
    return r * (m + n) - r * r


def min_rank_sard(kn: int) -> int:
    """The smallest r with r(r+1)/2 > KN (exact)."""
    kn = require_int("KN", kn)
    # r(r+1)/2 > KN  <=>  (2r+1)^2 > 8KN+1; start from the real root and step to the integer.
    r = max(1, (math.isqrt(8 * kn + 1) - 1) // 2)
    while r * (r + 1) // 2 <= kn:
        r += 1
    while r > 1 and (r - 1) * r // 2 > kn:
        r -= 1
    return r


def min_rank_sard_leading(kn: int) -> int:
    """The smallest integer r > sqrt(2 KN): the leading-order form of the Sard-form condition."""
    kn = require_int("KN", kn)
    return math.isqrt(2 * kn) + 1


def min_rank_manifold(kn: int, m: int, n: int, c: float | Fraction = 1) -> int | None:
    """The smallest r <= min(m, n) with r(m+n) - r^2 > C KN, or None if no rank satisfies it.

    r(m+n) - r^2 increases on 1 <= r <= (m+n)/2, which contains every admissible r <= min(m, n), so
    a bisection over r is exact.
    """
    kn = require_int("KN", kn)
    m = require_int("m", m)
    n = require_int("n", n)
    bound = _exact(c) * kn
    top = min(m, n)
    if manifold_dim(top, m, n) <= bound:
        return None
    low, high = 1, top
    while low < high:
        mid = (low + high) // 2
        if manifold_dim(mid, m, n) > bound:
            high = mid
        else:
            low = mid + 1
    return low


def min_rank_manifold_leading(kn: int, m: int, n: int, c: float | Fraction = 1) -> int:
    """The smallest integer r > C KN / (m + n): the manifold count without its -r^2 term."""
    kn = require_int("KN", kn)
    m = require_int("m", m)
    n = require_int("n", n)
    return math.floor(_exact(c) * kn / (m + n)) + 1


# --- canonical setups --------------------------------------------------------------------------


@dataclass(frozen=True)
class Encoder:
    name: str
    hidden: int  # the query and value projections are hidden x hidden
    layers: int
    query_value_modules: tuple[str, str]  # module names peft targets for q and v

    def adapted_matrices(self, placement: str) -> int:
        """How many q/v matrices LoRA adapts: 'last_layer' (Jang et al.'s code) or 'all_layers'."""
        if placement == "last_layer":
            return 2
        if placement == "all_layers":
            return 2 * self.layers
        raise InvalidArgument(f"placement must be 'last_layer' or 'all_layers', got {placement!r}")


ENCODERS = {
    encoder.name: encoder
    for encoder in (
        Encoder("roberta-base", 768, 12, ("query", "value")),
        Encoder("roberta-large", 1024, 24, ("query", "value")),
        Encoder("bert-base-uncased", 768, 12, ("query", "value")),
        Encoder("google/electra-base-discriminator", 768, 12, ("query", "value")),
        Encoder("microsoft/deberta-v3-base", 768, 12, ("query_proj", "value_proj")),
        Encoder("sentence-transformers/all-MiniLM-L6-v2", 384, 6, ("query", "value")),
        Encoder("sentence-transformers/all-mpnet-base-v2", 768, 12, ("q", "v")),
    )
}

# Class counts of the few-shot tasks of LM-BFF / LM-Kernel-FT.
TASK_CLASSES = {
    "SST-2": 2, "QNLI": 2, "RTE": 2, "MRPC": 2, "CoLA": 2, "QQP": 2, "MR": 2, "CR": 2,
    "MNLI": 3, "SNLI": 3, "AG News": 4, "SST-5": 5, "TREC": 6,
}
SHOTS = (16, 32, 64)
CANONICAL_SHOTS = 16  # the LM-BFF protocol


@dataclass(frozen=True)
class Setup:
    """One fine-tuning problem as the counts see it: K outputs on N examples."""

    task: str
    classes: int
    k: int  # examples per class
    k_convention: str  # 'single_logit' (K = 1, binary only) or 'label_words' (K = classes)

    @property
    def n(self) -> int:
        return self.classes * self.k

    @property
    def outputs(self) -> int:  # K
        return 1 if self.k_convention == "single_logit" else self.classes

    @property
    def kn(self) -> int:
        return self.outputs * self.n

    @property
    def label(self) -> str:
        return f"{self.task} k={self.k} K={self.outputs} N={self.n}"


def canonical_setups(shots: tuple[int, ...] = SHOTS) -> list[Setup]:
    """Every task x k x K convention; K = 1 exists only for binary tasks."""
    setups = []
    for task, classes in TASK_CLASSES.items():
        conventions = ("single_logit", "label_words") if classes == 2 else ("label_words",)
        for k in shots:
            for convention in conventions:
                setups.append(Setup(task, classes, k, convention))
    return setups
