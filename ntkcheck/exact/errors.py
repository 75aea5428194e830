"""Why the exact test did not run (SPEC §4: refuse cleanly, with the reason, never hang)."""

from __future__ import annotations

from ..errors import NtkcheckError

__all__ = ["ExactRefused", "ExactCheckFailed", "REFUSAL_KINDS"]

#: ``not_rational``: a value is not an exact small-denominator rational; ``unsupported``: a
#: distribution family the exact test does not know; ``budget``: the case exceeds
#: :class:`~ntkcheck.exact.ExactBudget`; ``timeout``: the deadline passed; ``engine``: the
#: requested engine is not installed.
REFUSAL_KINDS = ("not_rational", "unsupported", "budget", "timeout", "engine")


class ExactRefused(NtkcheckError):
    """The exact test cannot decide this case; ``reason`` says why, ``kind`` classifies it."""

    def __init__(self, reason: str, *, kind: str):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class ExactCheckFailed(NtkcheckError):
    """An exact certificate failed its independent re-check: a bug in ntkcheck, never expected."""
