"""What every renderer renders: one :class:`FileReport` per input file, and the exit code of
several files (the worst, in :data:`EXIT_ORDER`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..results import AnalysisResult

__all__ = ["FileReport", "Skipped", "EXIT_ORDER", "worst_exit_code"]

#: Exit codes from worst to best: an unreadable file (2), a dependency (1), inconclusive (3),
#: injective but below the ``--fail-below`` margin (6), injective (0). Several files exit with
#: the worst code among them: an undecided file outranks a proven but barely injective one.
EXIT_ORDER = (2, 1, 3, 6, 0)


@dataclass(frozen=True)
class FileReport:
    """The outcome of ``analyze`` on one file.

    Attributes
    ----------
    file : the path as given on the command line (or found in a directory)
    result : the analysis, or None when the file could not be read or analysed
    error : the one-line error message when ``result`` is None
    suggestion : the :class:`~ntkcheck.neardep.DropSuggestion` (``--suggest-drop``), or None
    seconds : wall time of reading and analysing the file (the JUnit ``time``), or None
    """

    file: str
    result: AnalysisResult | None = None
    error: str | None = None
    suggestion: Any = None
    seconds: float | None = None

    @property
    def exit_code(self) -> int:
        """2 for an unreadable file, else the verdict's code (0, 1, 3, or 6 below the margin)."""
        return 2 if self.result is None else self.result.exit_code


@dataclass(frozen=True)
class Skipped:
    """A file of a directory scan that is not an ntkcheck input, left out of the analysis
    (:func:`ntkcheck.io.inputs.not_an_input`): its path and the reason. It never changes the
    exit code; every format lists it (docs/ci.md)."""

    file: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "reason": self.reason}


def worst_exit_code(reports: Sequence[FileReport]) -> int:
    """The worst code in :data:`EXIT_ORDER` among ``reports`` (0 when there are none)."""
    codes = {r.exit_code for r in reports}
    return next((c for c in EXIT_ORDER if c in codes), 0)
