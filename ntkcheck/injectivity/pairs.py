"""Near pairs of unit columns and the near sets they form, in bounded memory (SPEC §5, §7).

Let a_1..a_N be the columns of the column-normalised F_perp and F_perp = Q R its QR
factorisation (:mod:`ntkcheck.injectivity.spectrum` keeps R), so that a_i = Q r_i and

    ||a_i - a_j|| = ||r_i - r_j||.

A *near pair* is a pair i < j with ||r_i - r_j|| <= ``limit``; a *near set* is a connected
component of the graph of near pairs (single linkage: a chain of near pairs joins a set).

Exact pruning (no pair within the limit is ever missed)
-------------------------------------------------------
* **Scores.** The pair distance bounds both scores (score_i = distance of a_i to the span of
  all the others <= ||a_i - a_j||), so when the scores are known only columns scoring at most
  ``limit`` (with a 1 % slack for their rounding) take part: ``candidates``.
* **Triangle.** For i < j the column r_i vanishes below row i, so
  ||r_i - r_j||^2 >= sum_{k > i} R_kj^2. With lo_j the first row k such that
  ||R[k:, j]|| <= limit, only i >= lo_j - 1 can pair with j (none when |R_jj| > limit).

Cost
----
Never an N x N array: the Gram entries <r_i, r_j> are formed in tiles of ``block`` earlier
columns by at most min(:data:`WINDOW`, ``block``) later ones (``block`` chosen so that a
column panel holds at most ``block_bytes``, by default 1/16 of R up to :data:`BLOCK_BYTES`,
and at most N / 8 columns), only for the column ranges the pruning leaves (later columns are
grouped by window and by the width of their band, so that a few wide bands do not widen
every tile), and only on the rows 0..max(i) where both columns can be non-zero; panels of
consecutive columns are views of R, not copies. A candidate passes when the tile's
d2 = |r_i|^2 + |r_j|^2 - 2 <r_i, r_j> is within the limit up to a bound on its rounding
(gamma_r (|r_i| + |r_j|)^2); its distance is then recomputed as ||r_i - r_j|| (no
cancellation: accurate to a few ulps of the distance itself, 1e-9 pairs included). Time: at
most about N^3 / 3 flops at GEMM speed (every column a candidate and no band pruned), far
less in practice (a band of width w costs about N w flops per column); memory: O(N) numbers,
a few panels of ``block_bytes``, and the pairs kept (benchmarks/bench_neardup.py --pairs).

What is kept
------------
* the total number of near pairs (exact);
* the ``max_pairs`` closest (all when None), ordered by (distance, i, j);
* ``links``: a minimum spanning forest of the near-pair graph (at most N - 1 pairs). The
  forest is updated batch by batch: the minimum spanning forest of (forest so far + new
  pairs) is that of all pairs seen (cycle property), so memory stays O(N + batch). Its pairs
  with distance < t give the near sets at every threshold t <= limit
  (:func:`components`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

__all__ = ["NearPairs", "near_pairs", "components", "BLOCK_BYTES"]

#: Largest column panel of a Gram tile, in bytes (two panels and a few temporaries of that size
#: are held at once); by default a panel holds 1/16 of R, at least 4 MiB and at most this (wide
#: enough panels keep the tiles at GEMM speed: at N = 20 000 a panel has 419 columns).
BLOCK_BYTES = 64 * 2**20
#: Consecutive columns whose pairs with earlier columns are computed together (the right-hand
#: panel of a tile; its left-hand panel has up to ``block`` columns).
WINDOW = 128
#: Pairs accumulated before the spanning forest is recomputed (besides the forest itself).
FOREST_BATCH = 2**20
_U = np.finfo(float).eps / 2
#: Positive stand-in for a distance 0 in the sparse graphs (scipy drops explicit zeros); the
#: smallest normal double, so d + _TINY == d for every distance that is not (nearly) 0.
_TINY = np.finfo(float).tiny


@dataclass(frozen=True)
class NearPairs:
    """Near pairs of the columns of R (:func:`near_pairs`), indices into its columns.

    Attributes
    ----------
    first, second : (P,) int, first < second
    distance : (P,) ||r_first - r_second||, ascending (ties by first, then second)
    total : number of near pairs in all (P = min(total, max_pairs))
    links : (first, second, distance) of a minimum spanning forest of every near pair, in the
        same order
    """

    first: np.ndarray
    second: np.ndarray
    distance: np.ndarray
    total: int
    links: tuple[np.ndarray, np.ndarray, np.ndarray]


def _order(i: np.ndarray, j: np.ndarray, d: np.ndarray) -> np.ndarray:
    return np.lexsort((j, i, d))


def components(n: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(n,) component label of each of n nodes joined by the edges (first[k], second[k]);
    labels are numbered in the order of each component's smallest node."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = scipy.sparse.coo_matrix((np.ones(len(first)), (first, second)), shape=(n, n))
    _, labels = scipy.sparse.csgraph.connected_components(graph, directed=False)
    # renumber by smallest member: deterministic whatever scipy's numbering
    first_seen = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(first_seen, labels, np.arange(n))
    rank = np.empty_like(first_seen)
    rank[np.argsort(first_seen, kind="stable")] = np.arange(first_seen.shape[0])
    return rank[labels]


def _forest(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray):
    """Minimum spanning forest of the edges (i, j, d) (distinct pairs) on n nodes."""
    if i.size == 0:
        return i, j, d
    graph = scipy.sparse.csr_matrix((d + _TINY, (i, j)), shape=(n, n))
    tree = scipy.sparse.csgraph.minimum_spanning_tree(graph).tocoo()
    a, b = np.minimum(tree.row, tree.col), np.maximum(tree.row, tree.col)
    # d + _TINY - _TINY == d for d = 0 and every d > 1e-292 (the only ones a difference of
    # doubles of size <= 1 produces in practice)
    dist = np.maximum(tree.data - _TINY, 0.0)
    order = _order(a, b, dist)
    return a[order].astype(np.int64), b[order].astype(np.int64), dist[order]


def _block(rows: int, cols: int, block_bytes: int) -> int:
    """Columns per panel: at most block_bytes per panel, and at most 1/8 of the columns (so the
    panels are a fraction of R whatever its size), at least 16."""
    return int(max(16, min(2048, cols // 8, block_bytes // (8 * max(rows, 1)))))


def near_pairs(R: np.ndarray, *, limit: float, max_pairs: int | None = None,
               candidates: np.ndarray | None = None,
               block_bytes: int | None = None) -> NearPairs:
    """Every pair of columns of ``R`` within ``limit`` (module docstring).

    Parameters
    ----------
    R : (k, N) the R factor of the column-normalised F_perp (the triangle prunes when it is
        square and upper triangular; any k x N matrix with the same column distances works)
    limit : float, pair distance limit (0 < limit < 2)
    max_pairs : int or None, how many of the closest pairs to keep (None: all)
    candidates : (N,) bool, optional; columns that may be in a pair (e.g. score <= limit);
        zero columns never are
    block_bytes : bytes of one column panel of a Gram tile (default: 1/16 of R, between 4 MiB
        and :data:`BLOCK_BYTES`)

    Returns
    -------
    NearPairs
    """
    A = np.asarray(R, dtype=float)
    k, N = A.shape
    tri = k == N
    if block_bytes is None:
        block_bytes = int(min(BLOCK_BYTES, max(4 * 2**20, 8 * k * N // 16)))
    lim2 = float(limit) ** 2
    B = _block(k, N, block_bytes)
    norm2 = np.empty(N)
    lo = np.zeros(N, dtype=np.int64)
    for a in range(0, N, B):
        b = min(N, a + B)
        if tri and np.any(np.tril(A[:, a:b], -a - 1)):
            tri = False  # square but not upper triangular: no row pruning
        tails = np.square(A[:, a:b])
        np.cumsum(tails[::-1], axis=0, out=tails[::-1])  # tails[r] = sum of rows >= r
        norm2[a:b] = tails[0] if k else 0.0
        if tri:
            # first row whose tail is within the limit (k when none is: |R_jj| > limit)
            ok = tails <= lim2 * (1 + 1e-8)
            lo[a:b] = np.where(ok.any(axis=0), np.argmax(ok, axis=0), k)
            del ok
        del tails
    if not tri:
        lo[:] = 0
    live = norm2 > 0
    if candidates is not None:
        live &= np.asarray(candidates, dtype=bool)
    cols = np.flatnonzero(live)
    # columns with a possible earlier partner
    later = cols[lo[cols] <= cols] if tri else cols
    total = 0
    keep = [np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)]
    forest = [np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)]
    batch: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    batch_size = 0

    def absorb() -> None:
        nonlocal batch, batch_size, keep, forest
        if not batch:
            return
        bi, bj, bd = (np.concatenate(x) for x in zip(*batch))
        batch, batch_size = [], 0
        ki, kj, kd = (np.concatenate([keep[t], (bi, bj, bd)[t]]) for t in range(3))
        if max_pairs is not None and ki.size > max_pairs:
            o = _order(ki, kj, kd)[:max_pairs]
            ki, kj, kd = ki[o], kj[o], kd[o]
        keep = [ki, kj, kd]
        fi, fj, fd = (np.concatenate([forest[t], (bi, bj, bd)[t]]) for t in range(3))
        forest = list(_forest(N, fi, fj, fd))

    # right-hand panels: columns with a narrow band (width <= W) by windows of W consecutive
    # indices (their tiles span about two windows); the few with a wide band (e.g.
    # a near duplicate of an early column) grouped by the octave of their width, B at a
    # time, so that they do not widen the tiles of the narrow ones
    W = min(WINDOW, B)
    width = later - lo[later] + 1 if tri else np.full(later.size, N)
    narrow = width <= W
    blocks = [later[narrow & (later // W == v)] for v in np.unique(later[narrow] // W)]
    octave = np.floor(np.log2(np.maximum(width, 1))).astype(np.int64)
    for v in np.unique(octave[~narrow]):
        group = later[~narrow & (octave == v)]
        blocks += [group[a:a + B] for a in range(0, group.size, B)]
    for J in blocks:
        rows_j = int(J.max()) if tri else k
        AJ = _columns(A, rows_j, J)
        low = int(lo[J].min()) - 1 if tri else 0
        I_all = cols[(cols >= max(low, 0)) & (cols < J.max())] if tri else cols[cols < J.max()]
        for c in range(0, I_all.size, B):
            I = I_all[c:c + B]
            r = int(I.max()) + 1 if tri else k
            C = _columns(A, r, I).T @ AJ[:r]
            d2 = norm2[I][:, None] + norm2[J][None, :] - 2.0 * C
            ni, nj = np.sqrt(norm2[I])[:, None], np.sqrt(norm2[J])[None, :]
            slack = 2.0 * (r + 2) * _U * (ni + nj) ** 2
            mask = (I[:, None] < J[None, :]) & (d2 <= lim2 + slack)
            if tri:
                mask &= I[:, None] >= lo[J][None, :] - 1
            p, q = np.nonzero(mask)
            if p.size:
                ci, cj = I[p], J[q]
                dist = _distances(A, ci, cj, tri, block_bytes)
                ok = dist <= limit
                if np.any(ok):
                    batch.append((ci[ok], cj[ok], dist[ok]))
                    batch_size += int(ok.sum())
                    total += int(ok.sum())
            if batch_size >= FOREST_BATCH:
                absorb()
    absorb()
    o = _order(*keep)
    return NearPairs(keep[0][o], keep[1][o], keep[2][o], total, tuple(forest))  # type: ignore


def _columns(A: np.ndarray, rows: int, idx: np.ndarray) -> np.ndarray:
    """A[:rows, idx]: a view when idx is a run of consecutive columns (no copy), else a copy."""
    if idx.size and int(idx[-1]) - int(idx[0]) + 1 == idx.size:
        return A[:rows, int(idx[0]):int(idx[-1]) + 1]
    return A[:rows, idx]


def _distances(A: np.ndarray, ci: np.ndarray, cj: np.ndarray, tri: bool,
               block_bytes: int) -> np.ndarray:
    """||A[:, ci] - A[:, cj]|| pair by pair, in chunks of at most block_bytes (rows up to
    max(cj) when A is upper triangular and ci < cj)."""
    out = np.empty(ci.size)
    rows = int(cj.max()) + 1 if tri else A.shape[0]
    step = max(1, block_bytes // (8 * max(rows, 1)))
    for s in range(0, ci.size, step):
        a, b = ci[s:s + step], cj[s:s + step]
        r = int(b.max()) + 1 if tri else A.shape[0]
        out[s:s + step] = np.linalg.norm(A[:r, a] - A[:r, b], axis=0)
    return out
