"""Progress messages of long computations: plain strings with structured fields, passed to a
callback (the core never prints; the CLI renders them)."""

from __future__ import annotations

from typing import Callable

__all__ = ["ProgressUpdate", "Progress"]


class ProgressUpdate(str):
    """A progress message: a ``str`` (so callbacks that take strings keep working) with
    structured fields for callers that can use them.

    Attributes
    ----------
    stage : str
        Stage name (e.g. ``"features"``); the text may add details.
    done, total : int or None
        Units of work done out of ``total`` (probe blocks) when the stage reports them.
    kind : str
        ``"stage"`` (a stage starts or advances) or ``"estimate"`` (the estimate of the dense
        test before it starts; ``data`` is its dictionary).
    data : dict or None
    """

    stage: str
    done: int | None
    total: int | None
    kind: str
    data: dict | None

    def __new__(cls, text: str, *, stage: str | None = None, done: int | None = None,
                total: int | None = None, kind: str = "stage", data: dict | None = None):
        obj = super().__new__(cls, text)
        obj.stage = stage or text
        obj.done, obj.total, obj.kind, obj.data = done, total, kind, data
        return obj

    @property
    def fraction(self) -> float | None:
        """done / total in [0, 1], or None."""
        if self.done is None or not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))


Progress = Callable[[str], None]
