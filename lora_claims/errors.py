"""Error types shared by the library, the CLI and the test suite.

Two kinds of failure are kept apart on purpose: a caller's mistake (``InvalidArgument``, shown to
the user as a one-line error) and a claim that cannot be evaluated on this machine
(``NotEvaluable``, reported as the verdict ``not_evaluated`` with its reason, never as a guess).
"""

from __future__ import annotations

import math
import numbers


class LoraClaimsError(Exception):
    """Base class for errors the CLI reports as a one-line message."""


class InvalidArgument(LoraClaimsError, ValueError):
    """An argument is outside its allowed range; the message names the argument and the range.

    ``argument`` is the name the message starts with, when it starts with one: the command line
    shows the flag that sets it instead (``learning_rate`` becomes ``--lr``).
    """

    def __init__(self, message: str, argument: str | None = None):
        super().__init__(message)
        self.argument = argument


class NotEvaluable(LoraClaimsError):
    """A claim cannot run here; the reason and its kind go into the report.

    The kind travels unchanged to report.json and to the claim tests, which skip or fail on it
    (missing data is a failure in CI, a missing GPU never is) without reading the message.
    """

    kind = "other"


class MissingData(NotEvaluable):
    """The GLUE files a claim needs are not where the data folder points."""

    kind = "missing_data"


class MissingModel(NotEvaluable):
    """An encoder's weights are not available offline."""

    kind = "missing_model"


class NeedsGPU(NotEvaluable):
    """The claim's own setup (paper encoders at paper scale) needs a CUDA device."""

    kind = "needs_gpu"


class NeedsProfile(NotEvaluable):
    """A reading whose runs take hours on a CPU runs only under a larger profile (``thorough``)."""

    kind = "needs_profile"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a long command; the message says how far it got and that a rerun
    resumes from the cache. A KeyboardInterrupt still, for callers that catch those."""


def require_int(name: str, value: object, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int, or raise ``InvalidArgument`` naming ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}", name)
    value = int(value)
    if minimum is not None and value < minimum:
        raise InvalidArgument(f"{name} must be >= {minimum}, got {value}", name)
    if maximum is not None and value > maximum:
        raise InvalidArgument(f"{name} must be <= {maximum}, got {value}", name)
    return value


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidArgument(f"{name} must be a real number, got {value!r}", name)
    return float(value)


def require_positive_float(name: str, value: object) -> float:
    """Return ``value`` as a finite float > 0, or raise ``InvalidArgument`` naming ``name``."""
    value = _real(name, value)
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"{name} must be a finite number > 0, got {value}", name)
    return value


def require_fraction(name: str, value: object) -> float:
    """Return ``value`` as a float strictly inside (0, 1), or raise ``InvalidArgument``."""
    value = _real(name, value)
    if not 0.0 < value < 1.0:
        raise InvalidArgument(f"{name} must lie strictly between 0 and 1, got {value}", name)
    return value
