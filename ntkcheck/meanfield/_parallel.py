"""Sample-chunked execution of the attention kernels on a small thread pool.

Attention never couples samples, so one layer's forward and vector-Jacobian product split into
independent chunks of samples. The chunk bounds depend only on the problem size (never on the
thread count), and every reduction over chunks is done by the caller in chunk order, so results
are bit-identical whatever the number of threads. numpy releases the GIL inside ufuncs and
matmul, so two threads run the chunks' array operations concurrently.

Threads: ``NTKCHECK_NUM_THREADS``, else ``OMP_NUM_THREADS``, else ``OPENBLAS_NUM_THREADS``,
else the number of CPUs available to the process.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

import numpy as np

__all__ = ["Workspace", "chunk_bounds", "num_threads", "run_chunks", "workspace"]

T = TypeVar("T")

#: target size of one chunk's attention matrices (bytes): keeps them cache-resident
CHUNK_BYTES = 1 << 20

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def num_threads() -> int:
    for var in ("NTKCHECK_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                return max(1, int(value))
            except ValueError:
                continue
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def chunk_bounds(N: int, bytes_per_sample: int) -> list[tuple[int, int]]:
    """Split range(N) into chunks of about CHUNK_BYTES (a function of the sizes only)."""
    size = max(1, min(N, CHUNK_BYTES // max(bytes_per_sample, 1)))
    count = -(-N // size)
    size = -(-N // count)  # balance the chunks
    return [(s, min(N, s + size)) for s in range(0, N, size)]


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ntkcheck-attn")
            _pool_size = workers
        return _pool


def run_chunks(fn: Callable[[int, int], T], bounds: list[tuple[int, int]],
               threads: int | None = None) -> list[T]:
    """[fn(s0, s1) for (s0, s1) in bounds], possibly concurrently; results in chunk order.

    ``threads`` defaults to :func:`num_threads`.
    """
    workers = min(num_threads() if threads is None else max(1, int(threads)), len(bounds))
    if workers <= 1 or threading.current_thread().name.startswith("ntkcheck-attn"):
        return [fn(s0, s1) for s0, s1 in bounds]
    pool = _get_pool(workers)
    futures = [pool.submit(fn, s0, s1) for s0, s1 in bounds]
    return [f.result() for f in futures]


class Workspace:
    """Named scratch arrays reused across calls (one per thread, see :func:`workspace`).

    Fresh large arrays cost a page fault per 4 KiB page on first touch, which dominates the
    small attention kernels; reusing the same memory avoids it. An array from ``get(name, ...)``
    stays valid until the next ``get`` with the same name on the same thread.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        size = 1
        for s in shape:
            size *= int(s)
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            buf = np.empty(max(size, 1))
            self._buffers[name] = buf
        return buf[:size].reshape(shape)


_local = threading.local()


def workspace() -> Workspace:
    """This thread's :class:`Workspace`."""
    ws = getattr(_local, "ws", None)
    if ws is None:
        ws = _local.ws = Workspace()
    return ws
