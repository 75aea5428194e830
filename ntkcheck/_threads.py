"""BLAS thread control shared by the analysis and the training paths.

ntkcheck runs its own thread pools (probe blocks, certificate chunks, the compiled attention
kernels). When they run, BLAS must not start its own threads on the same cores: OpenBLAS's
workers spin for a while after every multi-threaded call and then compete with ours for the
two cores of a small machine (measured: a training step 60% slower after one 16k-element
``vdot`` between steps). :func:`blas_single_thread` limits BLAS to one thread for a block.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["blas_single_thread", "blas_contended", "lapack_threads", "map_on_threads"]

_T = TypeVar("_T")
_R = TypeVar("_R")


@contextlib.contextmanager
def blas_single_thread() -> Iterator[None]:
    """Limit BLAS to one thread (threadpoolctl) in the main thread; a no-op in other threads
    and when threadpoolctl is not installed.

    Only the main thread changes the limit: OpenBLAS ignores a request to raise the thread
    count made from another thread, so a limit set there could not be undone. Code that runs
    BLAS on worker threads sets the limit once around them.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    controller = _controller()
    if controller is None:
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


def map_on_threads(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """[fn(x) for x in items], on ``workers`` threads of our own with BLAS on one thread
    meanwhile (:func:`blas_single_thread`), the results in the order of ``items``; in the
    calling thread when there is one worker or one item."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with blas_single_thread(), ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def blas_contended() -> bool:
    """Whether a multi-threaded BLAS / LAPACK call risks running far slower than on one thread:
    BLAS has several threads and other processes keep at least one core busy. The 1-minute load
    average counts this process too, as up to one unit per BLAS thread after a multi-threaded
    stage, so the others' load is taken as load - threads (subtracting only 1 made the rule
    trigger on its own load: on an idle 2-core machine a QR of 8034 x 4000 then ran on one
    thread, 6.8 s against 3.5 s). Measured on the loaded 2-core machine (load
    3-4): a Householder QR of 8034 x 4000 took 39 s on two threads and 6.8 s on one, a 4000
    triangular inverse 4.3 s and 0.49 s, while GEMM-like calls (syrk, trmm: 2.5 s) ran as fast
    on one thread as on two."""
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    controller = _controller()
    try:
        threads = max([i["num_threads"] for i in controller.info()
                       if i.get("user_api") == "blas"] or [1]) if controller else 1
        load = os.getloadavg()[0]
    except Exception:  # pragma: no cover - no load average
        return False
    return threads > 1 and load - min(threads, cores) >= 1.0


@contextlib.contextmanager
def lapack_threads() -> Iterator[None]:
    """One BLAS thread around a LAPACK factorisation when :func:`blas_contended` (its panels
    synchronise their threads, which a loaded machine turns into waiting), else as set. The
    results differ only in the last bits."""
    if blas_contended():
        with blas_single_thread():
            yield
    else:
        yield


_CONTROLLER: list = []


def _controller():
    """One threadpoolctl controller per process (None without threadpoolctl), made on first use.

    Making a controller scans the loaded libraries through a ctypes callback, and an exception
    raised inside a ctypes callback is printed and dropped: a Ctrl-C landing in that scan would
    be lost. The training loop limits BLAS at every step, so the scan must happen once, not
    per step; later limits only call the libraries' set-threads functions. Libraries loaded
    after the first use are not seen; numpy's and scipy's BLAS are loaded by then (every module
    that calls this imports scipy.linalg first)."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _CONTROLLER.append(None)
        else:
            import scipy.linalg  # noqa: F401  (load scipy's BLAS before the scan)

            _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]
