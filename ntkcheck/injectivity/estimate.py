"""Time and memory estimate of the streaming dense test, before it starts (SPEC §7).

The dense test on N columns (distributions, plus the d + 1 affine columns when they are
factored with them) with M probes, T tokens in total in R^d, in blocks of b probe rows:

==============  ===========================================  =================================
stage           work (flops or elementwise operations)       rate
==============  ===========================================  =================================
features        2 M T d (scores z @ atoms) + 3 M T (exp,     measured GEMM rate, measured exp
                shift, sum of the logsumexp)                 rate x cores
householder     2 M N^2 (``dtpqrt`` folds)                   measured one-thread ``dtpqrt``
                                                             rate x workers; one worker: the
                                                             rate with every BLAS thread
cholqr2         M N^2 (Gram) + 2 M N^2 (solve, Gram) and     measured GEMM rate
                the features twice
merges          (workers - 1) N^3                            measured ``dtpqrt`` rate
SVD             4 N^3 (every singular value), or for a       ``dtpqrt`` rate; GEMM rate
                partial spectrum (N > FULL_SPECTRUM_MAX_N)
                60 x 12 N^2 x 32 + 2 N^3 (spectrum.py)
==============  ===========================================  =================================

Memory: the tokens (3 T d numbers with the packed copies), the feature scratch
(``scratch_bytes``), per worker an R factor (N^2; cholqr2 also a partial Gram) and a block
with its Fortran copy and the next block being produced (3 b N), and one more N^2 for the
final R and the SVD workspace (not needed by a partial spectrum on one worker's R).
Rates are measured once per process (a few tens of milliseconds) and cached.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import numpy as np
from scipy.linalg import lapack

from ..errors import InputError
from .factor import TPQRT_NB, Method, _method, blas_single_thread

__all__ = ["Rates", "Estimate", "measure_rates", "estimate_streaming", "check_memory",
           "default_memory_limit", "MEMORY_FRACTION", "format_bytes", "format_seconds"]

#: Default memory limit as a fraction of the physical memory.
MEMORY_FRACTION = 0.5
#: Default feature scratch: 4 threads x 2 arrays of 2^22 float64 (see ``ntkcheck.dataset``).
SCRATCH_BYTES = 4 * 2 * 8 * (1 << 22)


@dataclass(frozen=True)
class Rates:
    """Measured throughputs of this process: GEMM and ``dtpqrt`` in flop/s (the latter on one
    BLAS thread), ``exp`` in evaluations/s."""

    gemm: float
    tpqrt: float
    exp: float
    #: ``dtpqrt`` with every BLAS thread (a single fold); 0 = not measured (use ``tpqrt``)
    tpqrt_all: float = 0.0

    def to_dict(self) -> dict:
        return {"gemm_flops": self.gemm, "tpqrt_flops": self.tpqrt, "exp_per_s": self.exp,
                "tpqrt_all_threads_flops": self.tpqrt_all or self.tpqrt}


def _best(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return max(best, 1e-9)


#: Size of the ``dtpqrt`` fold timed by :func:`measure_rates`, and the larger one timed when
#: the first estimate exceeds :data:`RECALIBRATE_SECONDS` (small folds run well below the
#: large-N rate: at N = 20000 here 55 GFLOP/s on 2 threads against 13 measured at 512).
RATE_SIZE, RATE_SIZE_LARGE = 256, 1536
RECALIBRATE_SECONDS = 30.0


@functools.lru_cache(maxsize=2)
def measure_rates(k: int = RATE_SIZE) -> Rates:
    """Measure the GEMM, ``dtpqrt`` (a fold of k x k blocks) and exp rates (cached per k;
    k = 256 takes a few tens of milliseconds, 1536 about a second)."""
    rng = np.random.default_rng(0)
    n = max(384, k)
    a, b = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    gemm = 2.0 * n**3 / _best(lambda: a @ b)
    R0 = np.asfortranarray(np.triu(rng.normal(size=(k, k))))
    B0 = rng.normal(size=(k, k))

    def fold():
        lapack.dtpqrt(0, TPQRT_NB, R0.copy(order="F"), np.array(B0, order="F"), overwrite_a=1,
                      overwrite_b=1)

    def fold_one_thread():
        with blas_single_thread():
            fold()
    tpqrt = 2.0 * k**3 / _best(fold_one_thread)
    tpqrt_all = max(tpqrt, 2.0 * k**3 / _best(fold))
    x = rng.normal(size=1 << 20)
    exp = x.size / _best(lambda: np.exp(x))
    return Rates(gemm, tpqrt, exp, tpqrt_all)


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def format_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.2g} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60)} s"
    return f"{s / 3600:.3g} h"


@dataclass(frozen=True)
class Estimate:
    """Estimated peak memory (bytes) and wall time (seconds) with their parts."""

    peak_bytes: int
    seconds: float
    memory: dict
    time: dict
    rates: Rates
    inputs: dict

    def to_dict(self) -> dict:
        return {"peak_bytes": self.peak_bytes, "seconds": self.seconds,
                "memory": dict(self.memory), "time": dict(self.time),
                "rates": self.rates.to_dict(), "inputs": dict(self.inputs)}

    def describe(self) -> str:
        parts = ", ".join(f"{k} {format_seconds(v)}" for k, v in self.time.items())
        return (f"estimated peak memory {format_bytes(self.peak_bytes)}, time "
                f"{format_seconds(self.seconds)} ({parts})")


def estimate_streaming(N: int, d: int, M: int, tokens: int, block_rows: int, *,
                       method: str | Method = Method.HOUSEHOLDER, workers: int = 1,
                       scratch_bytes: int = SCRATCH_BYTES, rates: Rates | None = None,
                       partial: bool | None = None) -> Estimate:
    """Estimate the streaming dense test (module docstring for the model).

    Parameters
    ----------
    N : int
        Columns of the factored matrix.
    d : int
        Dimension of the tokens.
    M : int
        Probe rows.
    tokens : int
        T, total tokens (atoms, components) of the N distributions.
    block_rows : int
        b, probe rows per block.
    method : {"householder", "cholqr2", "auto"}
        ``auto`` is costed as ``cholqr2`` plus one Householder fallback pass, its worst case.
    workers : int
        Blocks folded concurrently (``ntkcheck.backends.local``).
    partial : bool, optional
        Whether the test computes a partial spectrum (default: N > FULL_SPECTRUM_MAX_N, the
        ``spectrum="auto"`` rule of :func:`ntkcheck.analyze`).
    """
    for name, v in (("N", N), ("d", d), ("M", M), ("tokens", tokens), ("block_rows", block_rows),
                    ("workers", workers)):
        if int(v) < 1:
            raise InputError(f"got {v}; must be a positive integer", field=name)
    m = _method(method)
    est = _estimate(N, d, M, tokens, block_rows, m, workers, scratch_bytes,
                    rates or measure_rates(), partial)
    if rates is None and est.seconds > RECALIBRATE_SECONDS:  # worth a second of timing
        est = _estimate(N, d, M, tokens, block_rows, m, workers, scratch_bytes,
                        measure_rates(RATE_SIZE_LARGE), partial)
    return est


def _estimate(N: int, d: int, M: int, tokens: int, block_rows: int, m: Method, workers: int,
              scratch_bytes: int, r: Rates, partial: bool | None = None) -> Estimate:
    N, d, M, T, b, w = (int(v) for v in (N, d, M, tokens, block_rows, workers))
    # the exponentials run on one thread per core (ntkcheck.dataset), BLAS on all of them
    feat = (2 * M * T * d) / r.gemm + 3 * M * T / (r.exp * _cores())
    t: dict[str, float] = {}
    t["features"] = feat / w
    # several workers fold on one BLAS thread each; a single fold uses every BLAS thread
    hh = 2 * M * N**2 / (r.tpqrt * w if w > 1 else (r.tpqrt_all or r.tpqrt))
    chol = 3 * M * N**2 / r.gemm + 2 * N**3 / 3 / r.gemm
    if m is Method.HOUSEHOLDER:
        t["factorisation"] = hh
    elif m is Method.CHOLQR2:
        t["features"] *= 2
        t["factorisation"] = chol
    else:
        t["features"] *= 3
        t["factorisation"] = chol + hh
    from .spectrum import FULL_SPECTRUM_MAX_N, PARTIAL_COUNT, PARTIAL_MAX_ITER

    partial = N > FULL_SPECTRUM_MAX_N if partial is None else bool(partial)
    if partial:  # block inverse iteration (spectrum.py) and tr(G^2) for the effective rank
        spectrum = (PARTIAL_MAX_ITER * 12 * N**2 * PARTIAL_COUNT + 2 * N**3) / r.gemm
    else:  # bidiagonalisation and QR iteration of the N x N triangle
        spectrum = 4 * N**3 / r.tpqrt
    t["merges_and_svd"] = (w - 1) * N**3 / r.tpqrt + spectrum
    word = 8
    mem: dict[str, float] = {"tokens": 3 * T * d * word, "feature_scratch": scratch_bytes,
           "factors": (w * N**2 * word * (1 if m is Method.HOUSEHOLDER else 2)
                       + (0 if partial and w == 1 else N**2 * word)),
           "blocks": w * 3 * b * N * word}
    if m is not Method.HOUSEHOLDER:
        mem["factors"] += 2 * N**2 * word  # G, R_1 and R_2 on the driver
    return Estimate(int(sum(mem.values())), float(sum(t.values())), mem, t, r,
                    {"N": N, "d": d, "M": M, "tokens": T, "block_rows": b, "method": m.value,
                     "workers": w})


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def default_memory_limit() -> int:
    """:data:`MEMORY_FRACTION` of the physical memory (bytes)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        total = 8 * 10**9
    return int(MEMORY_FRACTION * total)


def check_memory(estimate: Estimate, max_bytes: int | None = None) -> None:
    """Raise :class:`InputError` when the estimate exceeds ``max_bytes`` (default:
    :func:`default_memory_limit`), with the numbers and the options that help."""
    limit = default_memory_limit() if max_bytes is None else int(max_bytes)
    if estimate.peak_bytes <= limit:
        return
    parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in estimate.memory.items())
    raise InputError(
        f"the dense test needs about {format_bytes(estimate.peak_bytes)} ({parts}) but the "
        f"limit is {format_bytes(limit)}; raise --max-memory, lower --block-rows or the "
        "number of workers, shrink N (the structural screen removes duplicates, translates "
        "and Diracs), or run it on a cluster with --backend dask", field="max-memory")
