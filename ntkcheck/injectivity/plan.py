"""How the dense test runs, never what it decides (SPEC §3 at scale): in memory or streamed,
which backend, how many parallel folds, full or partial spectrum, and the time and memory
estimate checked against the memory limit before any costly stage."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np

from ..backends.dask import _distributed
from ..backends.local import have_threadpoolctl, usable_cores
from ..dataset import Dataset
from ..errors import InputError
from ..vocabulary import TokenIdDataset
from ..distributions import Discrete
from ..resources import (_chunk_bytes, analysis_bytes, check_memory, default_max_memory,
                         format_bytes, redraw_bytes, resident_bytes, without_hugepage_advice)
from .certify import CERT_BYTES_PER_ENTRY, CERT_BYTES_PER_SQUARE, SCRATCH_BYTES
from .estimate import (blas_contention, estimate_streaming, format_seconds, measure_rates,
                       stage_seconds)
from .features import STREAM_MIN_BLOCK_ROWS, _entry_scales, stream_applies, stream_block_rows
from .spectrum import FULL_SPECTRUM_MAX_N

__all__ = ["DenseOptions", "SPECTRUM_MODES", "dense_plan", "describe_estimate",
           "PARALLEL_FOLD_MEMORY_FRACTION"]


@dataclass(frozen=True)
class DenseOptions:
    """How the dense test runs (never what it decides): streaming, backend, memory limit."""

    stream: bool | None = None
    backend: str = "local"
    scheduler: str | None = None
    client: Any = None
    max_memory: int | None = None
    spectrum: str = "auto"
    #: the exact test's estimate, a cached callable () -> ExactCost, when the test may run
    exact_cost: Any = None

    @classmethod
    def checked(cls, stream: bool | None, backend: str, scheduler: str | None, client: Any,
                max_memory: int | None, spectrum: str,
                exact: tuple | None = None) -> "DenseOptions":
        """Validated options of :func:`ntkcheck.analyze` (InputError naming the field); the
        Dask backend always streams. ``exact`` = (dataset, engine, budget) when the exact
        test may run: its estimate (:func:`ntkcheck.exact.estimate_exact`) is then taken once,
        when first asked for (the dense test's estimate, or the decision to skip it)."""
        if backend not in ("local", "dask"):
            raise InputError(f"unknown backend '{backend}'; choose local or dask", field="backend")
        if spectrum not in SPECTRUM_MODES:
            raise InputError(f"unknown spectrum mode {spectrum!r}; choose one of "
                             + ", ".join(SPECTRUM_MODES), field="spectrum")
        if backend == "dask":
            _distributed()  # a clear InputError when dask is missing
            stream = True
        cost = None
        if exact is not None:
            from ..exact.cost import estimate_exact

            data, engine, budget = exact
            cost = functools.cache(lambda: estimate_exact(data, engine=engine, budget=budget))
        return cls(stream, backend, scheduler, client, max_memory, spectrum, cost)

    @contextlib.contextmanager
    def session(self) -> Iterator["DenseOptions"]:
        """These options for one analysis: with the Dask backend and neither a scheduler nor
        a client, a local cluster (:class:`ntkcheck.backends.dask.LocalDask`, one worker per
        core) started when the dense test first needs it and closed on leaving the block,
        whatever ends it (an error, Ctrl-C)."""
        with without_hugepage_advice():  # (resources.py: large arrays without stalls)
            if self.backend != "dask" or self.client is not None or self.scheduler:
                yield self
                return
            from ..backends.dask import LocalDask

            with LocalDask() as local:
                yield replace(self, client=local)

    def partial(self, N: int, M: int) -> bool:
        """Whether the dense test of N columns and M probes computes a partial spectrum."""
        wanted = self.spectrum == "partial" or (self.spectrum == "auto"
                                                and N > FULL_SPECTRUM_MAX_N)
        return wanted and M >= N


#: Values of ``analyze(spectrum=...)`` and ``--spectrum``.
SPECTRUM_MODES = ("auto", "full", "partial")


#: Parallel folds (one R factor each) are used only while their extra factors take at most
#: this fraction of the memory limit (``_dense_plan``).
PARALLEL_FOLD_MEMORY_FRACTION = 0.125


def dense_plan(dataset: Dataset, geom, M: int, dense: DenseOptions
               ) -> tuple[dict, dict | None, dict | None]:
    """(estimate, feature options, confirmation draw's options): whether the test streams
    (automatically: when its in-memory peak, :func:`ntkcheck.resources.analysis_bytes`, would
    exceed ``dense.max_memory``), its blocks and workers, and the estimated time and memory
    (:mod:`ntkcheck.injectivity.estimate`, :mod:`ntkcheck.resources`), checked against
    ``dense.max_memory``; the confirmation draw streams as well when the first draw's matrices
    and its own would not fit (:func:`ntkcheck.resources.redraw_bytes`)."""
    N, d = len(dataset), dataset.dim
    if isinstance(dataset, TokenIdDataset):
        # vocabulary cost: 2 M V d + 3 M V for the rows, the sparse sums about 2 M T (at a
        # few times below the GEMM rate): priced as V + T / 16 tokens of the generic formula
        tokens = dataset.table.shape[0] + dataset.counts.nnz // 16
    else:
        tokens = int(np.sum(_entry_scales(dataset)[3]))
    n_cols = N + geom.rank + 1
    limit = default_max_memory() if dense.max_memory is None else int(dense.max_memory)
    # the certificate takes the features pass's entry enclosures when every law is discrete
    reuse = ((geom.complement is None or geom.complement.shape[1] == 0)
             and not isinstance(dataset, TokenIdDataset)
             and all(isinstance(x, Discrete) for x in dataset.distributions))
    need = analysis_bytes(M, N, d, reuse)
    # automatic: stream when the in-memory test would not fit the memory limit
    streamed = M >= n_cols and (stream_applies(M, N, dense.stream) or (
        dense.stream is None and need > limit))
    b = stream_block_rows(n_cols, M)
    workers = usable_cores() if (have_threadpoolctl() and dense.backend == "local") else 1
    probe_bytes = 8 * M * (geom.rank + d + 1)  # s, z and the scales, held throughout
    while True:
        est = estimate_streaming(n_cols, d, M, max(tokens, 1), b, method="householder",
                                 workers=workers, scratch_bytes=workers * _chunk_bytes(),
                                 partial=dense.partial(N, M))
        fits = est.peak_bytes + probe_bytes <= limit
        # parallel folds each hold an R factor: worth it only while those extra factors are
        # a small part of the memory limit (one fold uses every BLAS thread at ~1.7x the
        # one-thread rate on 2 cores, so a second fold buys little and costs N^2 numbers)
        extra = 8 * (workers - 1) * n_cols**2
        if (dense.backend == "local" and workers > 1
                and not (fits and extra <= PARALLEL_FOLD_MEMORY_FRACTION * limit)):
            workers -= 1
        elif dense.backend == "local" and not fits and b > STREAM_MIN_BLOCK_ROWS:
            b = max(STREAM_MIN_BLOCK_ROWS, b // 2)  # shorter blocks before giving up
        else:
            break
    info = {"mode": "streamed" if streamed else "in_memory", "backend": dense.backend}
    n_cert = N + d + 1
    # the certificate (when reached) runs on the rows that fit the limit (rigorous_certificate)
    info["certificate_peak_bytes"] = int(min(
        CERT_BYTES_PER_ENTRY * M * n_cert + CERT_BYTES_PER_SQUARE * n_cert**2 + SCRATCH_BYTES,
        limit))
    streamed_options = {"block_rows": b, "backend": dense.backend}
    if dense.backend == "local":
        streamed_options["workers"] = workers
    else:
        streamed_options.update(scheduler=dense.scheduler, client=dense.client)
    if streamed:
        info.update(peak_bytes=int(est.peak_bytes + probe_bytes),
                    memory={**est.memory, "probes": probe_bytes}, block_rows=b, workers=workers)
        if dense.backend == "local":
            check_memory(info["peak_bytes"], limit,
                         f"the streamed dense test of N = {N} distributions with M = {M} probes",
                         "pass fewer --probes, shrink N, or run it on a cluster with "
                         "--backend dask --scheduler ADDRESS", field="max-memory")
        options = redraw = streamed_options
    else:
        info.update(peak_bytes=int(need), memory={"in_memory_features": int(need)})
        check_memory(need, limit, f"the dense test of N = {N} distributions with M = {M} probes "
                     "in memory", "pass --stream (bounded memory), fewer --probes, or shrink N",
                     field="max-memory")
        options = None
        # a confirmation draw (made when the certificate fails) holds the first draw's
        # matrices besides its own: streamed when that would not fit (automatic mode only)
        redraw = (streamed_options if dense.stream is None and M >= n_cols
                  and redraw_bytes(M, N, d) > limit else None)
    info["confirmation_mode"] = "in_memory" if redraw is None else "streamed"
    _whole_run(info, est, N, d, M, tokens, streamed, dense, probe_bytes if streamed else 0,
               limit, redraw_streamed=redraw is not None)
    return info, options, redraw


#: Bytes the in-memory dense test adds at its peak, per entry of the M x N feature matrix
#: (F, its projection, the QR's copy and workspace: 4.2 measured at N = 4000, M = 8034).
IN_MEMORY_BYTES_PER_ENTRY = 4.5 * 8


def _whole_run(info: dict, est, N: int, d: int, M: int, tokens: int, streamed: bool,
               dense: DenseOptions, probe_bytes: int, limit: int,
               redraw_streamed: bool = False) -> None:
    """Add the time and memory of every stage to ``info`` (the estimate printed before any
    costly stage covers them all): ``time`` (seconds by stage name, as the progress
    messages name them: :func:`ntkcheck.injectivity.estimate.stage_seconds`, and the exact
    test), ``seconds`` their sum (the path of a certified verdict: the certificate, then the
    exact test when it runs), ``confirmation_seconds`` what a confirmation draw adds when the
    certificate fails, ``stage_bytes`` what the features and the certificate add to this
    process, and ``resident_bytes`` / ``peak_resident_bytes`` this process now and at its
    estimated peak."""
    partial = dense.partial(N, M)
    rates = measure_rates()
    t = stage_seconds(N, d, M, max(tokens, 1), streamed=streamed, partial=partial,
                      cert_rows=M, r=rates, stream=est)
    resident = resident_bytes()
    if streamed:  # the certificate takes the probe rows that fit the limit beside what is held
        held = 8 * N * N + probe_bytes
        cert = min(held + info["certificate_peak_bytes"], max(limit - resident, held))
    else:  # the in-memory model covers the certificate (resources.analysis_bytes)
        cert = info["peak_bytes"]
    stage_bytes = {"features": int(info["peak_bytes"] if streamed else
                                   IN_MEMORY_BYTES_PER_ENTRY * M * N + _chunk_bytes()),
                   "rigorous certificate": int(cert)}
    cost = dense.exact_cost() if dense.exact_cost is not None else None
    if cost is not None:
        t["exact test"] = cost.seconds
        info["exact"] = cost.to_dict()
    redraw = ("features and factorisation", "features", "QR", "partial spectrum", "SVD")
    t2 = t if streamed or not redraw_streamed else stage_seconds(
        N, d, M, max(tokens, 1), streamed=True, partial=partial, cert_rows=M, r=rates, stream=est)
    info.update(time=t, seconds=float(sum(t.values())),
                confirmation_seconds=float(sum(t2.get(k, 0.0) for k in redraw)),
                stage_bytes=stage_bytes, resident_bytes=int(resident),
                peak_resident_bytes=int(resident + max(stage_bytes.values())),
                covers=f"every stage of one analysis: {', '.join(t)} (time by stage); a "
                "confirmation draw, made only when the rigorous certificate fails, adds "
                "confirmation_seconds; the exact test runs in its own process and is skipped "
                "when the numerical evidence is certified and it would not finish in time")


def describe_estimate(est: dict, M: int, N: int) -> str:
    """``estimate: 4000 distributions x 8034 probes (in memory): about 1 min 5 s (features
    18 s, QR 13 s, ...); peak memory about 2.3 GB; ...``"""
    how = (f"streamed, blocks of {est['block_rows']} probes, {est['backend']} backend"
           if est["mode"] == "streamed" else "in memory")
    parts = ", ".join(f"{k} {format_seconds(v)}" for k, v in est["time"].items())
    text = (f"estimate: {N} distributions x {M} probes ({how}): about "
            f"{format_seconds(est['seconds'])} ({parts}); peak memory about "
            f"{format_bytes(est['peak_resident_bytes'])}")
    exact = est.get("exact")
    if exact and exact.get("peak_bytes"):
        text += f", and {format_bytes(exact['peak_bytes'])} in the exact test's process"
    if est.get("confirmation_seconds"):
        text += (f"; if the rigorous certificate fails, a confirmation draw adds about "
                 f"{format_seconds(est['confirmation_seconds'])}")
    if blas_contention():  # not recorded: it depends on the machine's load at this moment
        text += ("; the machine is busy: multi-threaded BLAS calls (QR, SVD, certificate) may "
                 "take many times longer, OPENBLAS_NUM_THREADS=1 avoids that")
    return text
