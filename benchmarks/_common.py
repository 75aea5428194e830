"""Helpers shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import time
import tracemalloc


def measure(fn, repeat: int = 1, trace: bool = True):
    """(result, best wall time in s over ``repeat`` runs, tracemalloc peak in MiB of one more run
    or nan when ``trace`` is off).

    Timing and tracing are separate passes so that tracing does not slow the timed runs.
    """
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    if not trace:
        return out, best, float("nan")
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, best, peak / 2**20


class StageClock:
    """The wall time of each stage of one ``analyze`` call, from its progress messages (pass
    the instance as ``progress``; estimates are skipped, a stage's detail in parentheses
    dropped, repeated stages added up). :meth:`finish` after the call: (total s, {stage: s})."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.marks: list[tuple[float, str]] = []

    def __call__(self, msg) -> None:
        if getattr(msg, "kind", "") == "estimate":
            return
        stage = getattr(msg, "stage", str(msg)).split(" (")[0]
        if not self.marks or self.marks[-1][1] != stage:
            self.marks.append((time.perf_counter() - self.t0, stage))

    def finish(self) -> tuple[float, dict[str, float]]:
        total = time.perf_counter() - self.t0
        stages: dict[str, float] = {}
        for (t, name), nxt in zip(self.marks, self.marks[1:] + [(total, "")]):
            stages[name] = stages.get(name, 0.0) + nxt[0] - t
        return total, stages
