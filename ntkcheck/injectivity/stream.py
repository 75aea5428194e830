"""The streamed LSE feature matrix: probe blocks folded into the R factor by a backend, with
bounded memory (SPEC §3, step 3 at scale; the fold in :mod:`ntkcheck.injectivity.factor`)."""

from __future__ import annotations

import time

import numpy as np

from ..dataset import Dataset
from ..progress import Progress
from .features import (FeatureBlocks, FeatureMatrix, _entry_scales, _normalise_columns,
                       centred_each, feature_matrix, stream_block_rows)
from .probes import ProbeSet, Whitening

__all__ = ["streamed_feature_matrix", "compute_features"]


def streamed_feature_matrix(dataset: Dataset, whitening: Whitening, probes: ProbeSet, *,
                            block_rows: int | None = None, backend: str = "local",
                            method: str = "householder", progress: Progress | None = None,
                            **backend_options) -> FeatureMatrix:
    """:func:`feature_matrix` with bounded memory: the M x N matrix is never formed.

    Probe blocks of b rows, [B_w | F_w] (``FeatureBlocks``: B_w = omega [1, s], the weighted
    affine basis, F_w = omega F), are folded into the R factor of the M x (r + 1 + N) matrix
    A = [B_w | F_w] by a backend (:func:`ntkcheck.backends.fold`: TSQR on local threads or a
    Dask cluster). Partition

        R = [[R11, R12], [0, R22]],   A = [Q1, Q2] R,

    so B_w = Q1 R11 and F_w = Q1 R12 + Q2 R22 with Q2 orthogonal to col(Q1) = col(B_w): hence
    (I - P_B) F_w = Q2 R22, and R22 (N x N) is an R factor of the weighted features projected
    off the affine functions, the in-memory path's F_w - Q (Q^T F_w). Its column norms are the
    nu_i, and the normalised triangle R22 / nu (affine columns zeroed) has the singular values
    and right singular vectors of ``perp``. The column norms of F_w and the error-model sums
    (base_norm) are accumulated per block exactly as :func:`feature_matrix` does, so the error
    estimates are the same formulas (Householder QR's backward error is columnwise, of the
    same first order form 2 (d + 1) M u ||F_i|| as the projection term it replaces).

    Peak memory: the R factor (n_cols^2 numbers per worker, n_cols = N + r + 1), blocks of
    b n_cols numbers, the probes; ``values`` and ``perp`` are None and :meth:`FeatureMatrix.
    columns` recomputes the columns a later step needs.
    """
    if backend == "dask" and backend_options.get("client") is None \
            and not backend_options.get("scheduler"):
        # one local cluster for the fold and the error-model pass, closed whatever happens
        from ..backends.dask import LocalDask

        with LocalDask() as local:
            return streamed_feature_matrix(dataset, whitening, probes, block_rows=block_rows,
                                           backend=backend, method=method, progress=progress,
                                           **{**backend_options, "client": local})
    from ..backends import fold

    centred, centres = centred_each(dataset)
    M, N = len(probes.scale), len(dataset)
    d = dataset.dim
    r = probes.s.shape[1]
    p = r + 1
    n_cols = p + N
    b = stream_block_rows(n_cols, M) if block_rows is None else int(block_rows)
    blocks = FeatureBlocks(centred, probes, b, progress if backend == "local" else None)
    t0 = time.perf_counter()
    factor = fold(blocks, blocks.n_blocks, n_cols, backend=backend, method=method,
                  **backend_options)
    seconds = time.perf_counter() - t0
    # the padded family packs of the blocks (about T d numbers, more with padding) are not
    # needed after the fold: FeatureMatrix.columns packs only the columns it recomputes, and a
    # redraw centres the data again. Released, they leave room for the certificate.
    centred.__dict__.pop("_packs", None)
    if len(blocks.stats) < blocks.n_blocks:  # the blocks were evaluated on copies (Dask)
        stats = _remote_stats(blocks, backend_options)
    else:
        stats = [blocks.stats[k] for k in range(blocks.n_blocks)]
    base_norm = np.sqrt(np.sum([s[0] for s in stats], axis=0))
    fw_norm = np.sqrt(np.sum([s[1] for s in stats], axis=0))
    info = {"block_rows": b, "blocks": blocks.n_blocks, "columns": n_cols,
            "backend": backend, "seconds": seconds, **factor.to_dict()}
    R22 = _trailing_triangle(factor.R, p)  # in R's own memory: no second N x N array
    del factor
    # column norms in column blocks (np.linalg.norm would square a whole N x N temporary)
    nu = np.concatenate([np.sqrt(np.einsum("ij,ij->j", R22[:, a:a + 1024], R22[:, a:a + 1024]))
                         for a in range(0, R22.shape[1], 1024)] or [np.zeros(0)])
    _, _, W, n = _entry_scales(centred)
    bound, typical = _normalise_columns(R22, nu, base_norm, fw_norm, n, d, M)
    return FeatureMatrix(None, None, nu, bound, typical, probes, centres, triangle=R22,
                         stream=info, source=centred)


def _trailing_triangle(R: np.ndarray, p: int) -> np.ndarray:
    """The trailing block R[p:, p:] of an upper-triangular R as an F-contiguous (N, N) upper
    triangle, built in R's own memory when R is F-contiguous (R is then destroyed), else a copy.

    Column j of the block moves from offset (p + j) n + p of the column-major buffer to j N;
    the source always lies after the destination's end (p N + p^2 + j p + p > N for p >= 1), so
    copying columns in increasing order never overwrites data still to be read. At N = 20000
    this saves a second 3.2 GB array."""
    n = R.shape[0]
    N = n - p
    if not R.flags.f_contiguous or not R.flags.writeable:
        return np.triu(R[p:, p:]).copy(order="F")
    flat = R.reshape(-1, order="F")
    for j in range(N):
        src = (p + j) * n + p
        flat[j * N:j * N + j + 1] = flat[src:src + j + 1]
        flat[j * N + j + 1:(j + 1) * N] = 0.0
    return flat[:N * N].reshape((N, N), order="F")


def _remote_stats(blocks: FeatureBlocks, options: dict) -> list:
    """Per-block error-model sums computed on the cluster (one more feature pass)."""
    from ..backends.dask import _distributed, connect, dask_timeout

    distributed = _distributed()
    client = connect(options.get("client"))
    own = None
    if client is None:
        own = client = distributed.Client(options["scheduler"], timeout=dask_timeout())
    try:
        remote = client.scatter(blocks, broadcast=True, hash=False)
        futures = [client.submit(_block_stats, remote, k, pure=False)
                   for k in range(blocks.n_blocks)]
        return client.gather(futures)
    finally:
        if own is not None:
            own.close()


def _block_stats(blocks: FeatureBlocks, k: int):
    return blocks.block_stats(k)


def compute_features(dataset: Dataset, geom, probes, options: dict | None,
                     say: Progress) -> FeatureMatrix:
    """The feature matrix in memory (``options`` None) or streamed with ``options``."""
    if options is None:
        return feature_matrix(dataset, geom, probes, progress=say)
    return streamed_feature_matrix(dataset, geom, probes, progress=say, **options)
