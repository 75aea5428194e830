"""Progress messages of long computations: plain strings with structured fields, passed to a
callback (the core never prints; the CLI renders them). Stages that run many chunks (the
structural screen, the geometry, the relation checks) report ``done / total`` through
:func:`working` and :func:`tick`, so the CLI shows their % and ETA."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

__all__ = ["ProgressUpdate", "Progress", "Work", "working", "expect", "tick"]


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


class Work:
    """Progress of a stage as units of work done out of a total known in advance (e.g. flops
    of the certificate's steps): :meth:`add` counts what a step did and reports
    ``stage`` with ``done`` / ``total`` in multiples of ``unit`` (integers). Thread-safe
    (steps may end on worker threads); without a callback it only counts."""

    def __init__(self, progress: Progress | None, stage: str, total: float, unit: float = 1.0):
        self.progress, self.stage, self.unit = progress, stage, float(unit)
        self.total, self.done = max(float(total), self.unit), 0.0
        self._lock = threading.Lock()

    def add(self, amount: float) -> None:
        with self._lock:
            self.done = min(self.total, self.done + float(amount))
            if self.progress is None:
                return
            done, total = int(self.done // self.unit), max(1, int(self.total // self.unit))
            self.progress(ProgressUpdate(f"{self.stage} {100 * done // total}%",
                                         stage=self.stage, done=done, total=total))


# ---------------------------------------------------------------------------------------------
# ticks from inside a stage: the stage's entry point opens a Work, its chunk loops tick it

_ACTIVE: ContextVar[Work | None] = ContextVar("ntkcheck_progress_work", default=None)


@contextmanager
def working(progress: Progress | None, stage: str, total: float | None = None,
            unit: float = 1.0) -> Iterator[Work | None]:
    """Within the block, :func:`tick` adds to a :class:`Work` of ``stage`` reporting to
    ``progress`` (nothing without a callback). ``total`` may be set later by :func:`expect`
    (a stage that learns its size as it starts). Ticks come from the thread that opened it
    (a context variable): a stage's chunk loops call ``tick(units)`` once per chunk, never
    per item, so the hot paths gain one function call per chunk."""
    work = Work(progress, stage, total or 1.0, unit) if progress is not None else None
    token = _ACTIVE.set(work)
    try:
        yield work
    finally:
        _ACTIVE.reset(token)


def expect(total: float) -> None:
    """Set the total of the Work opened by :func:`working` (no-op outside one)."""
    work = _ACTIVE.get()
    if work is not None:
        work.total = max(float(total), work.unit)


def tick(amount: float) -> None:
    """Add ``amount`` units to the Work opened by :func:`working` (no-op outside one)."""
    work = _ACTIVE.get()
    if work is not None:
        work.add(amount)
