"""Memory estimates of each stage and the ``--max-memory`` guard.

Every stage that allocates in proportion to its input estimates its peak from sizes known before
the allocation (``.npy`` headers inside an ``.npz``, ragged lengths, the number of probes M and of
distributions N) and refuses, with a :class:`~ntkcheck.errors.ResourceError` naming the
estimate, the limit and the fix, when the estimate exceeds the limit. The default limit is
:data:`DEFAULT_FRACTION` of the machine's memory (the smaller of physical RAM and a cgroup
limit); ``--max-memory`` (or :envvar:`NTKCHECK_MAX_MEMORY`) sets another one.

The estimates count float64 arrays (8 bytes per entry) that are alive at the same time; they are
upper bounds of the arrays ntkcheck allocates, not of the interpreter's own overhead.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Iterable, Iterator, Optional

import numpy as np

from .errors import InputError, ResourceError

__all__ = ["DEFAULT_FRACTION", "machine_memory", "default_max_memory", "parse_memory",
           "resolve_max_memory", "format_bytes", "check_memory", "npz_read_bytes",
           "padded_tokens_bytes", "ragged_padding_bytes", "feature_matrix_bytes",
           "analysis_bytes", "redraw_bytes", "spectrum_bytes", "probe_count", "train_bytes",
           "without_hugepage_advice"]

#: Default limit: this fraction of the machine's memory.
DEFAULT_FRACTION = 0.5
_FLOAT = 8
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20,
          "MIB": 2**20, "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40,
          "TIB": 2**40}


def machine_memory() -> int:
    """Bytes of memory available to this process: min(physical RAM, cgroup v2/v1 limit, the
    address-space limit RLIMIT_AS)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 8 * 2**30
    for limit_file in ("/sys/fs/cgroup/memory.max",
                       "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file, encoding="ascii") as fh:
                text = fh.read(64).strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and 0 < soft < total:
            total = soft
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        pass
    return int(total)


def resident_bytes() -> int:
    """Bytes this process holds in memory now (resident set size, from ``/proc/self/statm``;
    0 where that file does not exist: callers then count only what they allocate)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read(256).split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):  # pragma: no cover - not Linux
        return 0


def default_max_memory() -> int:
    """:data:`DEFAULT_FRACTION` of :func:`machine_memory`, or :envvar:`NTKCHECK_MAX_MEMORY`."""
    env = os.environ.get("NTKCHECK_MAX_MEMORY")
    if env:
        return parse_memory(env, field="NTKCHECK_MAX_MEMORY")
    return int(DEFAULT_FRACTION * machine_memory())


def parse_memory(text: str, field: str = "--max-memory") -> int:
    """'512M', '4G', '1.5GiB', '1000000' (bytes) -> bytes; binary units (K = 1024)."""
    m = re.fullmatch(r"\s*([0-9]{1,15}(?:\.[0-9]{1,6})?)\s*([A-Za-z]{0,3})\s*", str(text))
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise InputError(f"'{text}' is not a memory size; give e.g. 512M, 4G or 1.5GiB",
                         field=field)
    value = float(m.group(1)) * _UNITS[unit]
    if not value >= 1:
        raise InputError(f"must be positive, got '{text}'", field=field)
    return int(value)


def resolve_max_memory(option: Optional[str]) -> int:
    """The limit in bytes: ``option`` parsed, or :func:`default_max_memory`."""
    return default_max_memory() if option is None else parse_memory(option)


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def check_memory(need: float, limit: Optional[int], what: str, fix: str, *,
                 source: str | None = None, field: str | None = None) -> None:
    """Raise ResourceError when ``need`` bytes exceed ``limit`` (None: the default limit).

    The message reads ``WHAT would need about X; the limit is Y; FIX or raise --max-memory``.
    """
    if limit is None:
        limit = default_max_memory()
    if need > limit:
        raise ResourceError(f"{what} would need about {format_bytes(need)}, over the memory "
                            f"limit of {format_bytes(limit)}; {fix}, or raise --max-memory",
                            source=source, field=field)


def npz_read_bytes(member_bytes: Iterable[int]) -> int:
    """Bytes that reading every member of an ``.npz`` allocates: the sum of the sizes declared
    by the ``.npy`` headers (prod(shape) * itemsize), whatever the compression ratio."""
    return int(sum(int(b) for b in member_bytes))


def padded_tokens_bytes(N: int, n: int, d: int) -> int:
    """Bytes that validating padded tokens (N, n, d) into a dataset adds to the arrays read.

    float64 tokens, the masked copy, the real tokens and their centred copy (the spread check)
    and the per-sequence atoms of the dataset (5 N n d), and the weights, mask and normalised
    weights (3 N n). The loader adds the bytes of the arrays as read (still alive) to get the
    peak; measured peaks are below this sum (tests/test_safe_writes.py).
    """
    return _FLOAT * (5 * N * n * d + 3 * N * n)


def ragged_padding_bytes(lengths_max: int, N: int, d: int) -> int:
    """Peak bytes of padding ragged tokens to (N, max length, d): as :func:`padded_tokens_bytes`
    with n = the longest sequence, plus the (T,) index arrays (bounded by the same)."""
    return padded_tokens_bytes(N, max(int(lengths_max), 1), d) + _FLOAT * 2 * N * max(
        int(lengths_max), 1)


def feature_matrix_bytes(M: int, N: int) -> int:
    """Bytes of one M x N float64 feature matrix."""
    return _FLOAT * M * N


#: Allowance of the in-memory analysis's memory model for the allocator and what it does not
#: count (a quarter more than the arrays it counts; :func:`analysis_bytes`).
ANALYSIS_SLACK = 1.25
#: M x N entries the features stage holds at its peak (F, its projection and the tiles'
#: temporaries; measured 2.6-2.7 at N = 2000-4000).
FEATURES_STAGE_ENTRIES = 2.7


def analysis_bytes(M: int, N: int, d: int, reuse: bool = False) -> int:
    """Peak bytes of ``analyze``'s in-memory dense test, by what is alive at once
    (n = N + d + 1): the feature matrix F and its projection (2 M N, held to the end) and,
    at the largest of

    * the features stage: FEATURES_STAGE_ENTRIES M N in all;
    * the spectrum and summary: the decision's R with R^-1 or the SVD's factors, the Gram
      route's extra matrices or the Householder QR's copy (M N + 5 N^2 at most);
    * the rigorous certificate: the decision's R and R^-1 (2 N^2), its scaled [1, Z, F]
      (M n; with ``reuse`` False also its own entry midpoints and radii, 3 M n: it takes the
      features pass's when every law is discrete, :mod:`ntkcheck.injectivity.reuse`), and its
      Gram matrix, Cholesky factor and a shifted copy (3 n^2); its fallback holds A and
      C = A Y (2 M n) with one n x n factor;

    plus the probes (2 M d), with :data:`ANALYSIS_SLACK` for the allocator, and the chunk
    workspaces of the LSE evaluation. A confirmation draw is planned on its own
    (:func:`redraw_bytes`). Measured resident growth, certificate stage, Gaussian tokens:
    6.8 M N at N = 2000 (model 7.9 with the workspaces), 6.1 at N = 4000 (7.2); with a
    planted dependency (QR and SVD routes) 6.4 and 4.5."""
    n = N + d + 1
    cert = (1 if reuse else 3) * M * n + 3 * n * n + 2 * N * N
    stages = max(FEATURES_STAGE_ENTRIES * M * N - 2 * M * N, M * N + 5 * N * N, cert,
                 2 * M * n + n * n + 2 * N * N)
    return int(_FLOAT * (ANALYSIS_SLACK * (2 * M * N + stages) + 2 * M * d)) + _chunk_bytes()


def redraw_bytes(M: int, N: int, d: int) -> int:
    """Peak bytes of an in-memory confirmation draw (made when the certificate fails): the
    first draw's F, projection, R and R^-1 (2 M N + 2 N^2) held, and the second draw's
    features, projection and Householder QR copy with its R (3 M N + N^2), with
    :data:`ANALYSIS_SLACK`, plus the workspaces."""
    return int(_FLOAT * (ANALYSIS_SLACK * (5 * M * N + 3 * N * N) + 2 * M * d)) + _chunk_bytes()


def spectrum_bytes(M: int, N: int, d: int) -> int:
    """Peak bytes of ``spectrum``: at most 10 M x N matrices (the rank test's features, which
    every kernel computes for its tolerance, and the Hessian chunks' results; measured peaks
    are 7 to 9 of them), the kernel, its eigenvectors and copies (4 N x N), the probes, and the
    chunk workspaces (``CHUNK_ELEMENTS`` float64 entries per worker thread)."""
    return (10 * feature_matrix_bytes(M, N) + _FLOAT * (4 * N * N + 2 * M * d)
            + _chunk_bytes())


def _chunk_bytes() -> int:
    from .dataset import CHUNK_ELEMENTS, WORKERS

    return _FLOAT * CHUNK_ELEMENTS * WORKERS


def probe_count(probes: Optional[int], N: int, d: int) -> int:
    """M as the analysis will use it (the default is max(2 (N + d + 1), 256))."""
    from .injectivity.probes import default_probe_count

    return int(probes) if probes is not None else default_probe_count(N, d)


#: Per thread, the fused training kernels keep one sample's attention for its backward pass
#: when it fits in this many bytes (``ntkcheck.meanfield.fast``), else they recompute it.
KEEP_ATTENTION_BYTES = 64 * 2**20


#: The fused training kernels' per-sample arrays with heads innermost, projections (n, C, H)
#: and attention (n, n, H) and their VJP's scratch, hold this many more rows than used in
#: their middle axis (C + 1, n + 1): with n H or C H a multiple of 512 (n = C = 16, H = 32)
#: consecutive tokens would lie 4096 bytes apart, the same L1 cache set, and the kernels'
#: passes over four of them at a time ran 11 % slower (measured per sample and layer on an
#: AVX2 machine, 70 -> 62 us). Passed to the kernels as an argument, so that a change here
#: cannot leave a stale compiled copy behind.
KERNEL_ROW_PAD = 1


def kept_attention_bytes(states: int, n: int, d: int, C: int, H: int) -> int:
    """Bytes of one sample's kept stage inputs (n, d), projections (n, C, H) and attention
    (n, n, H) for ``states`` depth states (sub-steps x stages), with the kernels' padding
    (:data:`KERNEL_ROW_PAD`)."""
    return _FLOAT * states * n * (d + (C + KERNEL_ROW_PAD) * H + (n + KERNEL_ROW_PAD) * H)


def train_bytes(*, layers: int, heads: int, key_dim: int, dim: int, samples: int, tokens: int,
                depth_states: int, threads: int | None = None) -> int:
    """Peak bytes of one training step (excluding the empirical NTK, guarded separately).

    P = L H (2 k d + d^2) parameters held about 10 times (heads, gradient, update, the adjoint's
    accumulators and the (d+1) x (d+1) head forms), ``depth_states`` token states (N, n, d)
    kept by the forward pass and read back by the adjoint (three per state), and per thread
    (default: the cores available) the fused kernels' kept attention of one sample, every
    depth state's input (n, d), projections (n, C, H) with C = 2 ceil4(k) + d and attention
    (n, n, H), when it fits in :data:`KEEP_ATTENTION_BYTES`.
    """
    P = layers * heads * (2 * key_dim * dim + dim * dim + (dim + 1) ** 2)
    kept = kept_attention_bytes(depth_states, tokens, dim, 2 * (-(-key_dim // 4) * 4) + dim,
                                heads)
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # pragma: no cover - not Linux
            threads = os.cpu_count() or 1
    kept = kept if kept <= KEEP_ATTENTION_BYTES else 0
    return _FLOAT * (10 * P + 3 * (depth_states + 1) * samples * tokens * dim) + threads * kept


@contextlib.contextmanager
def without_hugepage_advice() -> Iterator[None]:
    """Turn numpy's transparent-huge-page advice off for a block (restored after).

    numpy asks Linux for huge pages (madvise MADV_HUGEPAGE) on every large array. Where the
    kernel then compacts memory synchronously to find them (``/sys/kernel/mm/
    transparent_hugepage/defrag`` = ``madvise``, the default), a fresh M x N array can stall
    for a large part of a second once memory is fragmented; the analysis allocates several
    (features, projections, the certificate's matrix and radii, Gram matrices). Measured at
    N = 4000 (n = 32, d = 16, 8034 probes) on the 2-core test machine: 13.9 / 14.8 s with the
    advice, 12.3 / 13.5 s without (system time 3.7-4.1 s against 1.4-1.5 s). Only where
    each page lands changes, never a value. ``NTKCHECK_HUGEPAGES=1`` keeps numpy's advice;
    numpy versions without the switch are left as they are."""
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if setter is None or os.environ.get("NTKCHECK_HUGEPAGES") == "1":
        yield
        return
    previous = setter(False)
    try:
        yield
    finally:
        setter(previous)

