"""Local backend: fold ranges of blocks on threads of this machine.

With ``threadpoolctl`` installed, ``workers`` threads (default: the usable cores) each fold a
contiguous range of blocks with BLAS limited to one thread while they run (set in the calling
thread, which must be the main thread for the limit to apply), so Python threads and BLAS
threads never oversubscribe the cores; partial results are combined by a fixed tree.
Without ``threadpoolctl`` the fold is sequential (one range, BLAS as configured), which is
deterministic too. Peak memory is about ``workers * (N^2 + b N)`` numbers.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from ..errors import InputError
from ..injectivity.factor import Factor, blas_single_thread
from .tree import drive, split_ranges

__all__ = ["fold_local", "usable_cores", "have_threadpoolctl"]


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity, else the CPU count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def have_threadpoolctl() -> bool:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


class _Threads:
    owns_results = True  # partial factors live only here: merges may overwrite them

    def __init__(self, pool: ThreadPoolExecutor | None):
        self.pool = pool

    def map(self, fn, args):
        if self.pool is None:
            return [fn(*a) for a in args]
        return list(self.pool.map(lambda a: fn(*a), args))

    def combine(self, fn, a, b):
        return fn(a, b)

    def get(self, value):
        return value

    def share(self, value):
        return value


def fold_local(make_block: Callable[[int], np.ndarray], n_blocks: int, n_cols: int, *,
               method: str = "auto", workers: int | None = None) -> Factor:
    """Factor of [make_block(0); ...; make_block(n_blocks - 1)] on local threads.

    Parameters
    ----------
    make_block : callable k -> array (b_k, N)
        Must be thread-safe; called twice per block by the two-pass ``cholqr2``.
    n_blocks, n_cols : int
        B and N.
    method : {"auto", "householder", "cholqr2"}
        See :func:`ntkcheck.injectivity.factor.fold_blocks`.
    workers : int, optional
        Threads folding ranges of blocks (default: the usable cores when ``threadpoolctl``
        is installed, else 1). The tree depends on ``workers``, never on timing.
    """
    cores = usable_cores()
    if workers is None:
        workers = cores if have_threadpoolctl() else 1
    if int(workers) < 1:
        raise InputError(f"got {workers}; give at least 1 worker", field="workers")
    workers = min(int(workers), n_blocks) if have_threadpoolctl() else 1
    ranges = split_ranges(n_blocks, workers)
    if len(ranges) == 1:
        return drive(_Threads(None), make_block, ranges, n_cols, method)
    # one BLAS thread for every task, set once here in the calling thread
    with blas_single_thread(), ThreadPoolExecutor(len(ranges)) as pool:
        return drive(_Threads(pool), make_block, ranges, n_cols, method)
