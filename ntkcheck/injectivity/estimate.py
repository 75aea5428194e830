"""Time and memory estimate of the streaming dense test, before it starts (SPEC §7).

The dense test on N columns (distributions, plus the d + 1 affine columns when they are
factored with them) with M probes, T tokens in total in R^d, in blocks of b probe rows:

==============  ===========================================  =================================
stage           work (flops or elementwise operations)       rate
==============  ===========================================  =================================
features        2 M T d (scores z @ atoms) + 3 M T (exp,     measured GEMM rate, measured exp
                shift, sum of the logsumexp)                 rate x cores
householder     4/3 N^3 + 2 (m - N) N^2 per worker of m      measured one-thread ``dtpqrt``
                = M / workers >= N rows (``dgeqrt`` of the   rate x workers; one worker: the
                first N rows, ``dtpqrt`` folds of the rest)  rate with every BLAS thread
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
Rates are measured once per process (a few tens of milliseconds, each kernel timed once) and
cached; the fold rate at size N comes from a model (:func:`fold_rate`), never from timing a
large fold before the test starts.
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

__all__ = ["Rates", "Estimate", "measure_rates", "fold_rate", "estimate_streaming",
           "stage_seconds", "blas_cores", "blas_contention", "load_factor",
           "check_memory", "default_memory_limit", "MEMORY_FRACTION", "format_bytes",
           "format_seconds"]

#: Default memory limit as a fraction of the physical memory.
MEMORY_FRACTION = 0.5
#: Default feature scratch: 4 threads x 2 arrays of 2^22 float64 (see ``ntkcheck.dataset``).
SCRATCH_BYTES = 4 * 2 * 8 * (1 << 22)


@dataclass(frozen=True)
class Rates:
    """Measured throughputs of this process: GEMM in flop/s with every BLAS thread (``gemm``)
    and on one (``gemm_one``), ``dtpqrt`` in flop/s on one BLAS thread (a 256 fold), ``exp``
    in evaluations/s on one thread, ``bandwidth`` in bytes/s of a streaming elementwise pass.
    Rates given by hand (``gemm_one`` = 0) are used as they are; measured ones feed the size
    and thread models of :func:`fold_rate`."""

    gemm: float
    tpqrt: float
    exp: float
    #: ``dtpqrt`` with every BLAS thread (a single fold); 0 = derived (:func:`fold_rate`)
    tpqrt_all: float = 0.0
    gemm_one: float = 0.0
    bandwidth: float = 0.0

    def to_dict(self) -> dict:
        return {"gemm_flops": self.gemm, "tpqrt_flops": self.tpqrt, "exp_per_s": self.exp,
                "tpqrt_all_threads_flops": self.tpqrt_all or self.tpqrt,
                "gemm_one_thread_flops": self.gemm_one or self.gemm,
                "bandwidth_bytes_per_s": self.bandwidth}


def _timed(fn, repeat: int = 3) -> float:
    """Median of ``repeat`` timings of ``fn()`` (each a millisecond or two): one timing on a
    loaded machine is often one preemption off, and the best one is the rate of a lucky
    moment, faster than what a stage of minutes sustains."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return max(float(np.median(times)), 1e-9)


#: Size of the GEMM and of the ``dtpqrt`` fold timed by :func:`measure_rates`.
RATE_SIZE = 256


@functools.lru_cache(maxsize=1)
def measure_rates() -> Rates:
    """Measure the rates of :class:`Rates`: small kernels (a 384 GEMM, a 256 GEMM and fold on
    one thread, 2^19 exponentials, a 48 MB elementwise pass), each the median of three timings
    after one untimed call that starts the BLAS threads, about 30 ms in all on an idle 2-core
    machine and 0.1-0.2 s on a loaded one (medians of three); cached per process. A multi-threaded ``dtpqrt`` is never timed: on a loaded machine its threads
    wait on each other and one timing ranged from 0.07 to 3.9 s; it is derived instead
    (:func:`fold_rate`)."""
    rng = np.random.default_rng(0)
    n, k = 384, RATE_SIZE
    a, b = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    a[:64, :64] @ b[:64, :64]  # start the BLAS threads
    gemm = 2.0 * n**3 / _timed(lambda: a @ b)
    small = a[:k, :k].copy()
    R0 = np.asfortranarray(np.triu(rng.normal(size=(k, k))))
    B0 = rng.normal(size=(k, k))

    def fold():
        lapack.dtpqrt(0, TPQRT_NB, R0.copy(order="F"), np.array(B0, order="F"), overwrite_a=1,
                      overwrite_b=1)

    with blas_single_thread():
        gemm_one = 2.0 * k**3 / _timed(lambda: small @ small)
        tpqrt = 2.0 * k**3 / _timed(fold)
    x = rng.normal(size=1 << 19)
    exp = x.size / _timed(lambda: np.exp(x))
    y, z = np.empty(1 << 21), np.empty(1 << 21)
    y[:] = 1.0
    bandwidth = 3 * 8 * y.size / _timed(lambda: np.add(y, y, out=z), 2)
    return Rates(gemm, tpqrt, exp, 0.0, gemm_one, bandwidth)


#: Fraction of the one-thread GEMM rate a ``dtpqrt`` fold of large triangles reaches (its
#: trailing updates are GEMMs), and the size at which it reaches half of that: small folds
#: run well below it (at N = 20000 here 55 GFLOP/s on 2 threads against 13 measured at 512).
FOLD_EFFICIENCY, FOLD_HALF_SIZE = 0.8, 1024
#: Speed-up of one fold with every BLAS thread over one thread (measured ~1.7 on 2 cores).
FOLD_THREAD_SPEEDUP = 0.85


def fold_rate(r: Rates, N: int, threads: int = 1) -> float:
    """Flop/s of ``dtpqrt`` folds of N x N triangles on ``threads`` BLAS threads: the measured
    256 rate rising towards FOLD_EFFICIENCY x the one-thread GEMM rate as N grows, times
    FOLD_THREAD_SPEEDUP x threads for several threads. Rates given by hand are used flat."""
    if not r.gemm_one:
        return r.tpqrt if threads == 1 else (r.tpqrt_all or r.tpqrt)
    top = max(r.tpqrt, FOLD_EFFICIENCY * r.gemm_one)
    one = r.tpqrt + (top - r.tpqrt) * N / (N + FOLD_HALF_SIZE)
    return one if threads <= 1 else one * max(1.0, FOLD_THREAD_SPEEDUP * threads)


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def format_seconds(s: float) -> str:
    if s < 0.01:
        return "<0.01 s"
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
    return _estimate(N, d, M, tokens, block_rows, m, workers, scratch_bytes,
                     rates or measure_rates(), partial)


def _estimate(N: int, d: int, M: int, tokens: int, block_rows: int, m: Method, workers: int,
              scratch_bytes: int, r: Rates, partial: bool | None = None) -> Estimate:
    N, d, M, T, b, w = (int(v) for v in (N, d, M, tokens, block_rows, workers))
    # the exponentials run on one thread per core (ntkcheck.dataset), BLAS on all of them
    feat = (2 * M * T * d) / r.gemm + 3 * M * T / (r.exp * _cores())
    t: dict[str, float] = {}
    t["features"] = feat / w
    # several workers fold on one BLAS thread each; a single fold uses every BLAS thread
    rows = M / w  # per worker: dgeqrt of its first N rows, dtpqrt folds of the rest
    per = (4 * N**3 / 3 + 2 * (rows - N) * N**2 if rows >= N
           else 2 * rows**2 * N - 2 * rows**3 / 3)
    hh = w * per / (fold_rate(r, N) * w if w > 1 else fold_rate(r, N, _cores()))
    chol = 3 * M * N**2 / r.gemm + 2 * N**3 / 3 / r.gemm
    if m is Method.HOUSEHOLDER:
        t["factorisation"] = hh
    elif m is Method.CHOLQR2:
        t["features"] *= 2
        t["factorisation"] = chol
    else:
        t["features"] *= 3
        t["factorisation"] = chol + hh
    from .iteration import PARTIAL_MAX_ITER
    from .spectrum import FULL_SPECTRUM_MAX_N, PARTIAL_COUNT

    partial = N > FULL_SPECTRUM_MAX_N if partial is None else bool(partial)
    if partial:  # block inverse iteration (spectrum.py) and tr(G^2) for the effective rank
        spectrum = (PARTIAL_MAX_ITER * 12 * N**2 * PARTIAL_COUNT + 2 * N**3) / r.gemm
    else:  # bidiagonalisation and QR iteration of the N x N triangle
        spectrum = 4 * N**3 / r.tpqrt
    t["merges_and_svd"] = (w - 1) * N**3 / fold_rate(r, N) + spectrum
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


#: Stage models of the whole analysis (:func:`stage_seconds`), against the measured rates and
#: the machine's load (:func:`load_factor`). Fitted on the 2-core test machine at load ~1 (the
#: benchmark itself; N = 1000 and 4000, n = 32, d = 16, one and two BLAS threads,
#: ``python benchmarks/bench_large.py``; the earlier fit, made at loads 2 to 7, left the
#: features 2.3-3x, the summary and certificate ~2x under their measured times and the SVD 2.4x
#: over): the in-memory features cost about FEATURE_EXPS exponentials per
#: (probe, token) (the exponential, the shift, the sum, the logarithm and the scores' GEMM
#: together), the certificate's a-priori enclosure about ENCLOSURE_EXPS; LAPACK's QR
#: (``dgeqrf``) runs at QR_EFFICIENCY and the bidiagonalisation of the full SVD at
#: SVD_EFFICIENCY of the one-thread GEMM rate per core it gets, the partial spectrum's
#: triangular solves at TRSM_EFFICIENCY per thread, the summary's N^3 products at
#: SUMMARY_EFFICIENCY and the certificate's factorisations at CERT_EFFICIENCY, plus
#: CERT_PASSES elementwise passes over its matrix at the measured bandwidth.
FEATURE_EXPS, ENCLOSURE_EXPS = 9.0, 2.7
#: Elementwise passes over the M' x N matrix of the in-memory certificate's enclosures, taken
#: from the features pass (:func:`ntkcheck.injectivity.reuse.pass_enclosure`).
RADIUS_PASSES = 6
QR_EFFICIENCY, SVD_EFFICIENCY, TRSM_EFFICIENCY = 0.72, 0.35, 0.38
#: CERT_EFFICIENCY refitted for the certificate's Gram route (dsyrk, two or three Cholesky
#: factorisations and the lambda_min iteration, modelled as M' n^2 + n^3 flops): measured on a
#: quiet machine at N = 4000 (n = 32, d = 16) 5.0 s on two BLAS threads and 6.8 s on one,
#: against 2.3 s and 4.8 s estimated at 0.9; 0.5 gives 0.82 and 1.2 of measured.
SUMMARY_EFFICIENCY, CERT_EFFICIENCY, CERT_PASSES = 0.75, 0.5, 13
#: The in-memory partial spectrum's Gram triangle (:mod:`ntkcheck.injectivity.triangle`:
#: M N^2 + 2/3 N^3 flops) at GRAM_EFFICIENCY, its steps' products with R^-1 at TRMM_EFFICIENCY
#: of the GEMM rate on the BLAS threads, and the summary then SUMMARY_PASSES passes over
#: N^2 numbers (the scores reuse R^-1; tr(G^2) comes with the Gram matrix). Measured on a
#: quiet machine at N = 4000 (n = 32, d = 16, 8034 probes, two BLAS threads, 106 GFLOP/s):
#: 2.4 s, 2.6 s and 0.2 s. The model assumes the Gram triangle is kept (well-conditioned
#: features); near a dependency the Householder QR runs after it.
GRAM_EFFICIENCY, TRMM_EFFICIENCY, SUMMARY_PASSES = 0.68, 0.45, 12
#: Share of the PARTIAL_MAX_ITER products the Chebyshev-filtered iteration with R^-1 takes to
#: reach its tolerance (33 of 60 on the N = 4000 benchmark's clustered values; better
#: separated values take fewer).
CHEBYSHEV_SHARE = 0.55
#: The in-memory full spectrum above EXPLICIT_INVERSE_MIN_N columns takes its values from the
#: Gram matrix's eigenvalues (:func:`ntkcheck.injectivity.triangle.gram_singular_values`,
#: 4/3 N^3 flops) at EIGH_EFFICIENCY of the one-thread GEMM rate: dsyevd took 0.95 s at
#: N = 3000 on two BLAS threads (38 GFLOP/s, where the SVD of R ran at 19).
EIGH_EFFICIENCY = 0.7
#: Seconds every stage costs whatever its size (Python, thread start-up, small calls; measured
#: 0.05-0.25 s at N = 300 on the loaded 2-core machine), the certificate's several times that.
STAGE_SECONDS, CERTIFICATE_SECONDS = 0.025, 0.1
#: Slow-down of a long stage per unit of other load per core: the rates are timed in a few
#: milliseconds, which a busy machine still gives at full speed, while a stage of minutes gets
#: its share (the same analysis took twice as long at load 6 as at load 2 on 2 cores).
LOAD_WEIGHT = 0.5


def load_factor() -> float:
    """1 + LOAD_WEIGHT x (1-minute load average - this process) / cores: how much slower than
    the measured rates a long stage runs on this machine now (1 when idle or unknown)."""
    try:
        other = max(0.0, os.getloadavg()[0] - 1.0)
    except (OSError, AttributeError):  # pragma: no cover - no load average
        return 1.0
    return 1.0 + LOAD_WEIGHT * other / _cores()


def blas_contention() -> bool:
    """Whether multi-threaded BLAS calls risk running far slower than one thread: BLAS has
    several threads and the machine's other load leaves fewer idle cores than that. (On the
    loaded 2-core test machine one ``dgeqrf`` of 2034 x 1000 took 0.4 s on one thread and
    1.6 to 20 s on two; the results differ only in the last bits.)"""
    cores = _cores()
    try:
        from threadpoolctl import threadpool_info

        blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        threads = max(blas) if blas else 1
        load = os.getloadavg()[0]
    except Exception:  # pragma: no cover - no threadpoolctl or no load average
        return False
    return threads > 1 and cores - max(0.0, load - 1.0) < min(threads, cores)


def blas_cores(r: Rates) -> float:
    """Cores a multi-threaded BLAS call gets: the BLAS threads, at most the cores the rest of
    the machine leaves idle (1-minute load average minus this process), at least one. On a
    loaded machine that is one core (and a multi-threaded call may then run far slower than
    one thread: its threads wait on each other; ``OPENBLAS_NUM_THREADS=1`` avoids it)."""
    cores = _cores()
    threads = cores
    try:
        from threadpoolctl import threadpool_info

        blas = [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]
        threads = min(cores, max(blas)) if blas else cores
    except Exception:  # pragma: no cover - without threadpoolctl: assume every core
        pass
    try:
        idle = cores - max(0.0, os.getloadavg()[0] - 1.0)
    except OSError:  # pragma: no cover - no load average
        idle = cores
    return float(max(1.0, min(threads, idle)))


def stage_seconds(N: int, d: int, M: int, tokens: int, *, streamed: bool, partial: bool,
                  cert_rows: int, r: Rates, stream: "Estimate | None" = None) -> dict:
    """Seconds of each stage of the dense test on N distributions (the column count of the
    factored matrix, N + rank + 1, is close to N), M probes, T = ``tokens`` tokens in R^d,
    keyed by the stage names of the progress messages:

    ==========================  ========================================================
    stage                       model
    ==========================  ========================================================
    features (in memory)        FEATURE_EXPS M T exponentials on every core
    features and factorisation  the streaming model (:func:`estimate_streaming`)
    QR (in memory)              2 M N^2 - 2/3 N^3 flops at QR_EFFICIENCY; above
                                EXPLICIT_INVERSE_MIN_N columns the Gram triangle,
                                M N^2 + 2/3 N^3 at GRAM_EFFICIENCY
    SVD (full)                  8/3 N^3 flops at SVD_EFFICIENCY; with the Gram triangle the
                                Gram matrix's eigenvalues, 4/3 N^3 at EIGH_EFFICIENCY
    partial spectrum            PARTIAL_MAX_ITER steps of two triangular solves with
                                2 PARTIAL_COUNT right-hand sides (4 PARTIAL_COUNT N^2 flops;
                                in memory CHEBYSHEV_SHARE of them, each two products with
                                R^-1, at TRMM_EFFICIENCY)
    summary                     the scores' R^-1 and the Gram summary (2/3 N^3, 7/3 N^3 with
                                the full spectrum's inverse iteration; in memory with a
                                partial spectrum SUMMARY_PASSES passes over N^2 numbers)
    rigorous certificate        M' n^2 + n^3 flops (the Gram route; its fallback, 3 M' n^2 +
                                2 n^3, is not modelled), CERT_PASSES passes over the M' x n
                                matrix (n = N + d + 1), and the entry enclosures: streamed,
                                ENCLOSURE_EXPS M' T exponentials; in memory, RADIUS_PASSES
                                passes (the features pass's values and a bound per entry,
                                :mod:`ntkcheck.injectivity.reuse`)
    ==========================  ========================================================
    """
    from .iteration import EXPLICIT_INVERSE_MIN_N, PARTIAL_MAX_ITER
    from .spectrum import PARTIAL_COUNT

    gram = not streamed and N > EXPLICIT_INVERSE_MIN_N  # (the Gram route, when it is kept)
    cores = _cores()
    one = r.gemm_one or r.gemm
    par = blas_cores(r) if r.gemm_one else 1.0
    slow = load_factor() if r.gemm_one else 1.0
    bandwidth = r.bandwidth or 8 * r.exp
    t: dict[str, float] = {}
    if streamed and stream is not None:
        t["features and factorisation"] = (stream.time.get("features", 0.0)
                                           + stream.time.get("factorisation", 0.0)
                                           + (stream.inputs["workers"] - 1) * N**3
                                           / fold_rate(r, N))
    else:
        t["features"] = FEATURE_EXPS * M * tokens / (r.exp * cores)
        if gram:  # the Gram triangle: dsyrk, dpotrf and dtrtri
            t["QR"] = (M * N**2 + 2 * N**3 / 3) / (GRAM_EFFICIENCY * one * par)
        else:
            t["QR"] = max(2 * M * N**2 - 2 * N**3 / 3, 0) / (QR_EFFICIENCY * one * par)
    if partial and not streamed:  # products with the Gram triangle's inverse; O(N^2) summary
        t["partial spectrum"] = (CHEBYSHEV_SHARE * PARTIAL_MAX_ITER * 4 * PARTIAL_COUNT * N**2
                                 / (TRMM_EFFICIENCY * one * par))
        t["summary"] = SUMMARY_PASSES * 8 * N**2 / bandwidth
    elif partial:  # the summary: R^-1 for the scores, tr G^2 by triangular products
        t["partial spectrum"] = (PARTIAL_MAX_ITER * 4 * PARTIAL_COUNT * N**2
                                 / (TRSM_EFFICIENCY * one * cores))
        t["summary"] = 2 * N**3 / 3 / (SUMMARY_EFFICIENCY * one * par)
    elif gram:  # eigenvalues of the Gram matrix; the smallest direction with its R^-1
        t["SVD"] = 4 * N**3 / 3 / (EIGH_EFFICIENCY * one)
        t["summary"] = (SUMMARY_PASSES * 8 * N**2 / bandwidth
                        + PARTIAL_MAX_ITER * 16 * N**2 / (TRMM_EFFICIENCY * one))
    else:
        t["SVD"] = 8 * N**3 / 3 / (SVD_EFFICIENCY * one)
        t["summary"] = (7 * N**3 / 3 / (SUMMARY_EFFICIENCY * one * par)
                        + PARTIAL_MAX_ITER * 16 * N**2 / (TRSM_EFFICIENCY * one))
    n, m = N + d + 1, cert_rows
    enclose = (ENCLOSURE_EXPS * m * tokens / (r.exp * cores) if streamed
               else RADIUS_PASSES * 8 * m * n / bandwidth)
    t["rigorous certificate"] = (enclose + (m * n**2 + n**3) / (CERT_EFFICIENCY * one * par)
                                 + CERT_PASSES * 8 * m * n / bandwidth)
    extra = {k: STAGE_SECONDS for k in t}
    extra["rigorous certificate"] = CERTIFICATE_SECONDS
    return {k: (v + extra[k]) * slow for k, v in t.items()}


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
