"""Token-ID datasets: sequences of IDs over one embedding table, LSE at vocabulary cost (SPEC §1).

Sequence i is a list of token IDs v_1..v_n (optional weights w_a, uniform otherwise) into a table
E (V x d); its law is the discrete law on the rows of its tokens,

    mu_i = sum_a w_a delta_{E_{v_a}} / sum_a w_a,        LSE_i(z) = log sum_v C_iv e^{<z, E_v>}
                                                                   - log sum_v C_iv,

with C (N x V, sparse) the merged weights: repeated IDs add their weights (counts when
unweighted). :class:`TokenIdDataset` is a :class:`~ntkcheck.Dataset` whose distributions are
built on demand from the table (their atoms are exactly the stored table rows); the decision's
steps that would otherwise touch T x d token coordinates use the ID structure instead:

* :meth:`TokenIdDataset.lse` (the features): per block of probes the scores S = E z and their
  exponentials once for the V used rows, then the sparse product C exp(S - L) per sequence:
  M (V d + T) work instead of M T d products and M T exponentials;
* the structural screen merges tokens by integer ranks of the rows (equal rows share a rank),
  never by comparing coordinates (:meth:`TokenIdDataset.screen_tokens`);
* the geometry uses the V used rows with their pooled weights
  (:meth:`TokenIdDataset.pooled_rows`, :meth:`TokenIdDataset.spreads`).

Overflow and underflow of the shared exponentials
-------------------------------------------------
One shift L_m per probe (the largest score over the used rows, the standard log-sum-exp shift)
keeps every exponential <= 1, but a sequence whose rows all score far below L_m would get a sum
that underflows. With C_i scaled so that its largest entry is 1, the sum G = sum_v C_iv
e^{S_v - L} of sequence i is at least e^{S_max,i - L}; entries with G < TINY = 2^-900 are
recomputed at the next level L - STEP (rows with S_v - L > 709 set to 0: they cannot belong to a
flagged sequence, whose rows all score below L + log TINY + STEP <= 709), until every entry
has G >= TINY. Terms that underflow then change G by at most n 2^-1075 / TINY, far below
round-off. A sequence whose weights span more than 2^-300 (scaled) is evaluated with its own
shift instead (``_own_shift``), as a plain discrete law. The error model of these entries is
derived in :mod:`ntkcheck.injectivity.features`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np
import scipy.sparse

from .dataset import CHUNK_ELEMENTS, Dataset
from .distributions import Discrete

__all__ = ["TokenIdDataset", "RowGather", "TINY", "STEP", "WEIGHT_SPAN", "BLOCK_ELEMENTS"]

#: Smallest accepted shared sum G of one sequence before it is recomputed at a lower shift.
TINY = 2.0**-900
#: Scaled weights below this (relative to the sequence's largest) use a sequence's own shift.
WEIGHT_SPAN = 2.0**-300
#: How far the shift moves down per level: a flagged sequence's rows then score at most
#: log(TINY) - log(WEIGHT_SPAN) + STEP <= 709 above the new shift (no overflow).
STEP = 1100.0
#: Entries of the temporaries of one probe block (scores and exponentials V x m, sums N x m):
#: 2^24 (128 MiB). Tall blocks matter: the sparse sums cost a pass over C per block (at
#: N = 20000, V = 50000, d = 256: 3.6 ms per probe with 256-probe blocks, 9 ms with 16).
BLOCK_ELEMENTS = 1 << 24


class RowGather:
    """The rows ``table[index]`` (K, d), gathered only when indexed (never formed whole)."""

    def __init__(self, table: np.ndarray, index: np.ndarray):
        self.table, self.index = table, index

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.index), self.table.shape[1])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key) -> np.ndarray:
        return self.table[self.index[key]]

    def reduce_runs(self, ufunc, starts: np.ndarray, budget: int = CHUNK_ELEMENTS) -> np.ndarray:
        """``ufunc.reduceat(rows, starts)`` over runs of rows, a chunk of runs at a time."""
        d = self.table.shape[1]
        out = np.empty((len(starts), d))
        ends = np.append(starts[1:], len(self.index))
        step = max(1, budget // max(d, 1))
        r = 0
        while r < len(starts):
            s = int(np.searchsorted(starts, starts[r] + step, side="left"))
            s = max(s, r + 1)
            a, b = int(starts[r]), int(ends[s - 1])
            out[r:s] = ufunc.reduceat(self.table[self.index[a:b]], starts[r:s] - a)
            r = s
        return out

    def magnitude(self) -> np.ndarray:
        """max |row_l| per coordinate over the gathered rows."""
        used = self.table[np.unique(self.index)] if len(self.index) else self.table[:0]
        if used.shape[0] == 0:
            return np.zeros(self.table.shape[1])
        return np.maximum(np.abs(used.max(axis=0)), np.abs(used.min(axis=0)))


class _Laws(Sequence):
    """The N discrete laws of a :class:`TokenIdDataset`, built when accessed (not cached)."""

    def __init__(self, data: "TokenIdDataset"):
        self._data = data

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        k = int(i) + (len(self) if int(i) < 0 else 0)
        if not 0 <= k < len(self):
            raise IndexError(f"sequence {i} out of range for {len(self)} sequences")
        return self._data.law(k)


class TokenIdDataset(Dataset):
    """N token-ID sequences over an embedding table (module docstring), a :class:`Dataset`.

    Parameters
    ----------
    table : (V, d) float64
        Embedding rows (validated by the loader: finite, of supported magnitude).
    ids : (T,) int
        Row index of every token, sequences one after the other.
    offsets : (N + 1,) int
        Sequence i is ``ids[offsets[i]:offsets[i + 1]]`` (non-empty).
    weights : (T,) float64 or None
        Token weights (> 0), or None for uniform weights.
    names : sequence of N str
    source : str, optional
    vocab : (V,) int, optional
        The ID of every table row in the user's numbering (default 0..V-1).

    Only the rows some sequence uses are kept (``table`` and ``vocab`` are compacted). The
    inputs are trusted: :mod:`ntkcheck.io.ids` validates files and arrays.
    """

    def __init__(self, table: np.ndarray, ids: np.ndarray, offsets: np.ndarray,
                 weights: np.ndarray | None, names: Sequence[str], source: str | None = None,
                 vocab: np.ndarray | None = None):
        table = np.asarray(table, dtype=np.float64)
        ids = np.asarray(ids, dtype=np.int64)
        vocab = np.arange(table.shape[0]) if vocab is None else np.asarray(vocab, np.int64)
        used = np.bincount(ids, minlength=table.shape[0]) > 0
        if not used.all():
            remap = np.cumsum(used) - 1
            ids, table, vocab = remap[ids], table[used], vocab[used]
        set_ = object.__setattr__
        set_(self, "names", tuple(str(n) for n in names))
        set_(self, "source", source)
        set_(self, "table", np.ascontiguousarray(table))
        set_(self, "vocab", vocab)
        set_(self, "ids", ids)
        set_(self, "offsets", np.asarray(offsets, dtype=np.int64))
        set_(self, "weights", None if weights is None else np.asarray(weights, np.float64))

    # -- the Dataset interface -------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def dim(self) -> int:
        return self.table.shape[1]

    def __repr__(self) -> str:
        return (f"TokenIdDataset({len(self)} sequences, {len(self.ids)} tokens, "
                f"{self.table.shape[0]} used rows in R^{self.dim}, source={self.source!r})")

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    @cached_property
    def distributions(self) -> _Laws:  # type: ignore[override]
        """The N discrete laws, built on access: atoms are table rows (exact binary64)."""
        return _Laws(self)

    def law(self, i: int) -> Discrete:
        """Sequence i as a :class:`Discrete` law: unweighted, its distinct rows (in row order)
        with their counts as weights; weighted, its tokens' rows with their weights."""
        if self.weights is None:
            C = self.counts
            a, b = C.indptr[i], C.indptr[i + 1]
            return Discrete(self.table[C.indices[a:b]], C.data[a:b])
        a, b = self.offsets[i], self.offsets[i + 1]
        return Discrete(self.table[self.ids[a:b]], self.weights[a:b])

    def select(self, indices) -> "TokenIdDataset":
        """The sequences ``indices`` (in that order), with the table compacted to their rows."""
        idx = np.asarray(indices, dtype=np.int64)
        lengths = np.diff(self.offsets)[idx]
        starts = self.offsets[idx]
        pos = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        return TokenIdDataset(self.table, self.ids[pos], offsets,
                              None if self.weights is None else self.weights[pos],
                              tuple(self.names[i] for i in idx), self.source, self.vocab)

    def renamed(self, names: Sequence[str]) -> "TokenIdDataset":
        return TokenIdDataset(self.table, self.ids, self.offsets, self.weights, names,
                              self.source, self.vocab)

    # -- merged weights --------------------------------------------------------------------

    @cached_property
    def counts(self) -> scipy.sparse.csr_matrix:
        """(N, V) merged weights C_iv (counts when unweighted), sorted column indices."""
        data = np.ones(len(self.ids)) if self.weights is None else self.weights
        C = scipy.sparse.csr_matrix((data, self.ids, self.offsets),
                                    shape=(len(self), self.table.shape[0]))
        C.sum_duplicates()
        return C

    @cached_property
    def _scaled(self) -> tuple[scipy.sparse.csr_matrix, np.ndarray, np.ndarray]:
        """(C with each row divided by its largest entry, log of its row sums, the rows whose
        scaled weights span below WEIGHT_SPAN)."""
        C = self.counts.copy()
        nnz = np.diff(C.indptr)
        peak = np.maximum.reduceat(C.data, C.indptr[:-1])
        C.data /= np.repeat(peak, nnz)
        low = np.minimum.reduceat(C.data, C.indptr[:-1])
        return C, np.log(np.asarray(C.sum(axis=1)).ravel()), np.flatnonzero(low < WEIGHT_SPAN)

    # -- features at vocabulary cost -------------------------------------------------------

    def centred(self) -> tuple["TokenIdDataset", np.ndarray]:
        """(the dataset with every row moved by minus the pooled mean c, centres (N, d) = c):
        one rounding per coordinate, fl(E_v - c), shared by all sequences."""
        _, p = self._pooled_weights()
        c = p @ self.table
        moved = TokenIdDataset(self.table - c, self.ids, self.offsets, self.weights, self.names,
                               self.source, self.vocab)
        for key in ("counts", "_scaled"):  # the same sparse structure
            if key in self.__dict__:
                moved.__dict__[key] = self.__dict__[key]
        return moved, np.repeat(c[None, :], len(self), axis=0)

    def lse(self, z: np.ndarray, progress: Callable[[int, int], None] | None = None
            ) -> np.ndarray:
        """F[m, i] = LSE_i(z_m), shape (M, N), at vocabulary cost (module docstring);
        ``progress(done, total)`` after each block of probes, as :meth:`Dataset.lse`."""
        z = np.asarray(z, dtype=np.float64)
        M, N, V = z.shape[0], len(self), self.table.shape[0]
        out = np.empty((M, N))
        per = max(1, BLOCK_ELEMENTS // (2 * V + 2 * N))
        # one block at a time: the GEMM uses every BLAS thread, and the sparse sums hold the
        # GIL (two Python threads measured no faster)
        starts = range(0, M, per)
        for done, a in enumerate(starts, 1):
            out[a:a + per] = self._lse_block(z[a:a + per]).T
            if progress is not None:
                progress(done, len(starts))
        return out

    def _lse_block(self, z: np.ndarray) -> np.ndarray:
        """(N, m) LSE values for m probes: shared shifted exponentials, sparse sums."""
        C, log_total, wide = self._scaled
        S = self.table @ z.T  # (V, m) scores, C-contiguous
        top = S.max(axis=0)
        X = S - top
        np.exp(X, out=X)
        G = C @ X
        del X
        with np.errstate(divide="ignore"):
            F = np.log(G)
        F += top
        low = ~(G >= TINY)
        level = 1
        span = float(np.max(top - S.min(axis=0))) if S.size else 0.0
        while low.any() and level <= 2 + span / STEP:
            # only the flagged sequences (rows of C) and probes go down one more level
            seq = np.flatnonzero(low.any(axis=1))
            cols = np.flatnonzero(low[seq].any(axis=0))
            L = top[cols] - level * STEP
            Y = S[:, cols] - L
            Y[Y > 709.0] = -np.inf
            np.exp(Y, out=Y)
            G2 = C[seq] @ Y
            r, c = np.nonzero(low[np.ix_(seq, cols)] & (G2 >= TINY))
            F[seq[r], cols[c]] = np.log(G2[r, c]) + L[c]
            low[seq[r], cols[c]] = False
            level += 1
        F -= log_total[:, None]
        for i in wide:
            F[i] = self._own_shift(i, S)
        return F

    def _own_shift(self, i: int, S: np.ndarray) -> np.ndarray:
        """LSE of sequence i from the scores S (V, m) with its own shift (wide weights)."""
        C = self.counts
        a, b = C.indptr[i], C.indptr[i + 1]
        w = C.data[a:b]
        s = S[C.indices[a:b]] + np.log(w / w.max())[:, None]
        top = s.max(axis=0)
        return np.log(np.exp(s - top).sum(axis=0)) + top - np.log(np.sum(w / w.max()))

    def entry_scales(self, budget: int = CHUNK_ELEMENTS):
        """Error-model sizes (R, Q, W, n) of :func:`ntkcheck.injectivity.features._entry_scales`
        for the vocabulary-cost entries: R_il = max over the rows of sequence i of |E_vl| plus
        max over all used rows of |E_vl| (the shift is a maximum over all rows), Q = 0,
        W_i = max_v |log(C_iv / sum_v C_iv)|, n_i = number of distinct rows."""
        C, log_total, _ = self._scaled
        N, d = len(self), self.dim
        absrow = np.abs(self.table)
        R = np.empty((N, d))
        starts = C.indptr[:-1]
        step = max(1, budget // max(d, 1))
        r = 0
        while r < N:
            s = max(r + 1, int(np.searchsorted(starts, starts[r] + step, side="left")))
            a, b = int(starts[r]), int(C.indptr[s])
            R[r:s] = np.maximum.reduceat(absrow[C.indices[a:b]], starts[r:s] - a)
            r = s
        R += absrow.max(axis=0)
        nnz = np.diff(C.indptr)
        W = np.maximum.reduceat(np.abs(np.log(C.data) - np.repeat(log_total, nnz)), starts)
        return R, np.zeros((N, d)), W, nnz.astype(float)

    # -- geometry and screen ---------------------------------------------------------------

    def _pooled_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """(row sums of C, pooled weight p_v = (1/N) sum_i C_iv / sum_v C_iv of every row)."""
        C = self.counts
        total = np.asarray(C.sum(axis=1)).ravel()
        p = np.asarray(C.T @ (1.0 / (total * len(self)))).ravel()
        return total, p

    def pooled_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(a copy of the used rows (V, d), their pooled weights summing to 1): the support
        rows of :func:`ntkcheck.injectivity.geometry.support_rows`, merged over sequences."""
        _, p = self._pooled_weights()
        return self.table.copy(), p

    def spreads(self, proj: np.ndarray, budget: int = CHUNK_ELEMENTS) -> np.ndarray:
        """(N,) RMS distance of each sequence's rows from its own mean, for the rows' whitened
        coordinates ``proj`` (V, r): sqrt(sum_v C_iv |proj_v - mean_i|^2 / sum_v C_iv), two
        passes over the rows (no cancellation)."""
        C = self.counts
        total = np.asarray(C.sum(axis=1)).ravel()
        mean = np.asarray(C @ proj) / total[:, None]
        N, r = mean.shape
        out = np.zeros(N)
        starts = C.indptr[:-1]
        step = max(1, budget // max(r, 1))
        i = 0
        while i < N:
            s = max(i + 1, int(np.searchsorted(starts, starts[i] + step, side="left")))
            a, b = int(starts[i]), int(C.indptr[s])
            owner = np.repeat(np.arange(i, s), np.diff(C.indptr[i:s + 1]))
            dev = np.sum((proj[C.indices[a:b]] - mean[owner]) ** 2, axis=1) * C.data[a:b]
            out[i:s] = np.add.reduceat(dev, starts[i:s] - a)
            i = s
        return np.sqrt(out / total)

    @cached_property
    def row_rank(self) -> np.ndarray:
        """(V,) dense rank of every used row in lexicographic order: equal rows (-0.0 = 0.0)
        share a rank, so tokens are merged by an integer, not by comparing coordinates."""
        X = self.table + 0.0
        order = np.argsort(X[:, 0], kind="stable")
        x0 = X[order, 0]
        tie = x0[1:] == x0[:-1]
        if tie.any():
            in_run = np.zeros(len(order), bool)
            in_run[1:] |= tie
            in_run[:-1] |= tie
            pos = np.flatnonzero(in_run)
            sub = order[pos]
            # runs are contiguous in x0 and keep their place: sort each by the full rows
            keys = [X[sub, c] for c in range(X.shape[1] - 1, -1, -1)]
            order[pos] = sub[np.lexsort(keys)]
        Xs = X[order]
        new = np.ones(len(order), bool)
        new[1:] = np.any(Xs[1:] != Xs[:-1], axis=1)
        rank = np.empty(len(order), np.int64)
        rank[order] = np.cumsum(new) - 1
        return rank

    def screen_tokens(self) -> dict:
        """Tokens merged per sequence by row rank, sorted by (sequence, rank) (stable: equal
        rows keep token order), for the structural screen's discrete family:

        ``owner``, ``rank``, ``row`` (a table row of that rank), ``weight`` (counts when
        unweighted, else the weights summed in token order), ``start`` / ``size`` per
        sequence, ``raw_start`` (first sorted token of each merged one), ``raw_weight`` (token
        weights in sorted order), ``raw`` (tokens per sequence), ``uniform`` (per sequence)."""
        N = len(self)
        owner = np.repeat(np.arange(N), np.diff(self.offsets))
        rank = self.row_rank[self.ids]
        order = np.lexsort((rank, owner))
        o, r, rows = owner[order], rank[order], self.ids[order]
        W = np.ones(len(order)) if self.weights is None else self.weights[order]
        new = np.ones(len(order), bool)
        new[1:] = (o[1:] != o[:-1]) | (r[1:] != r[:-1])
        raw_start = np.flatnonzero(new)
        counts = np.diff(np.append(raw_start, len(order)))
        m_owner = o[raw_start]
        start = np.searchsorted(m_owner, np.arange(N))
        if self.weights is None:
            uniform = np.ones(N, bool)
            weight = counts.astype(float)
        else:
            first = self.offsets[:-1]
            uniform = np.minimum.reduceat(W, first) == np.maximum.reduceat(W, first)
            weight = np.where(uniform[m_owner], counts.astype(float),
                              np.add.reduceat(W, raw_start))
        return {"owner": m_owner, "rank": r[raw_start], "row": rows[raw_start],
                "weight": weight, "start": start,
                "size": np.diff(np.append(start, len(raw_start))), "raw_start": raw_start,
                "raw_weight": W, "raw": np.diff(self.offsets), "uniform": uniform,
                "counts": counts}
