"""Why the exact test did not run (SPEC §4: refuse cleanly, with the reason, never hang)."""

from __future__ import annotations

from ..errors import NtkcheckError

__all__ = ["ExactRefused", "ExactCheckFailed", "REFUSAL_KINDS"]

#: ``not_rational``: an exact value does not have the required property (a covariance that is
#: symmetric or positive semi-definite only up to rounding); ``unsupported``: a distribution
#: family the exact test does not know; ``budget``: the case exceeds
#: :class:`~ntkcheck.exact.ExactBudget` (or the memory); ``timeout``: the time limit passed and
#: the worker process was stopped; ``engine``: the requested engine is not installed;
#: ``internal``: the worker process failed unexpectedly (a bug, please report it).
REFUSAL_KINDS = ("not_rational", "unsupported", "budget", "timeout", "engine", "internal")


class ExactRefused(NtkcheckError):
    """The exact test cannot decide this case; ``reason`` says why, ``kind`` classifies it."""

    def __init__(self, reason: str, *, kind: str):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class ExactCheckFailed(NtkcheckError):
    """An exact certificate failed its independent re-check: a bug in ntkcheck, never expected."""
