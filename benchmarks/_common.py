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
