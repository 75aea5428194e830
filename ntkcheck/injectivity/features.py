"""The LSE feature matrix modulo affine functions (SPEC §3, step 3), with per-column error
estimates (SPEC §3a). Geometry and probes: :mod:`ntkcheck.injectivity.geometry`,
:mod:`ntkcheck.injectivity.probes`; the streamed form: :mod:`ntkcheck.injectivity.stream`.


Every column i is evaluated on mu_i - m_i, its own distribution centred at its own mean m_i:
LSE_{mu_i}(z) = LSE_{mu_i - m_i}(z) + <z, m_i> and <z, m_i> is affine, so F_perp is unchanged in
exact arithmetic, while the rounding error of each entry is now relative to the distribution's
own spread instead of its distance from the pooled centre (tight clusters far from the origin).
The error estimates are per column (:class:`FeatureMatrix`).

Token-ID data (:class:`~ntkcheck.vocabulary.TokenIdDataset`) are evaluated at vocabulary cost
instead: every table row is moved once by the pooled mean c (so c_i = c for every column, still
an affine change), the scores s_v = <z, E_v - c> and e^{s_v - L} are computed once per probe for
the V used rows, and sequence i's entry is F = log(sum_v C_iv e^{s_v - L}) + L - log sum_v C_iv
(C_i scaled to largest entry 1; L the largest score over the rows, lowered in steps for a
sequence whose sum would underflow, see :mod:`ntkcheck.vocabulary`). The error model below
keeps its form e = u (d + n_i + 10)(sum_l |z_l| R_il + W_i + |F| + 1) with n_i the number of
distinct rows and R_il = max_{v in i} |E_vl - c_l| + max_v |E_vl - c_l| (all used rows), for:
rounding the rows (u sum_l |z_l| R_il) and the dot products (d u sum_l |z_l| R_il); the
subtraction fl(s_v - L), relative u |s_v - L| <= u (|s_v - s_max,i| + g), whose average with the
softmax weights of sequence i is at most u (2 sum_l |z_l| R_il + g) with g = |s_max,i - L| the
gap of the shift; the log of the sum, u |log G| <= u (g + log n_i). At the first level
g = L - s_max,i <= sum_l |z_l| R_il; at a lower level the sum was flagged before, so
L_prev - s_max,i >= 416 while the accepted sum bounds g <= 684 + log n_i, hence
g <= 1.72 (L_prev - s_max,i) <= 1.72 sum_l |z_l| R_il (n_i < 1e13). In all, the row terms
count at most d + 1 + 2 + 2 x 1.72 < d + 10 times u sum_l |z_l| R_il; exp (2 ulps), the
n_i-term sum, the scaled weights and the final additions are the remaining u (n_i + 6)(W_i +
|F| + 1), and terms that underflow move the sum by at most n_i 2^-1075 / 2^-900, far below u.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from .._threads import map_on_threads
from ..dataset import WORKERS, Dataset, chunks
from ..distributions import Discrete, GaussianMixture, UniformBox
from ..progress import Progress, ProgressUpdate
from ..vocabulary import TokenIdDataset
from .geometry import NOISE_SAFETY
from .probes import ProbeSet, Whitening

__all__ = ["FeatureMatrix", "FeatureBlocks", "feature_matrix", "centred_each", "stream_applies",
           "stream_block_rows", "STREAM_THRESHOLD_BYTES", "STREAM_BLOCK_ELEMENTS",
           "STREAM_MIN_BLOCK_ROWS", "NOISE_SAFETY"]

_U = np.finfo(float).eps / 2  # unit round-off
#: The dense test streams its probe blocks (never holding the M x N feature matrix, see
#: :func:`streamed_feature_matrix`) when M N 8 bytes exceed this; None: only the memory limit
#: decides (:func:`ntkcheck.injectivity.plan.dense_plan`: when the in-memory test would not fit).
STREAM_THRESHOLD_BYTES: int | None = None
#: Target number of float64 entries in one streamed block [B_w | F_w] (2^27 = 1 GiB): taller
#: blocks make each ``dtpqrt`` fold more compute-bound (N = 20000, 2 threads: 64 GFLOP/s with
#: 1675-row blocks, 66-70 with 2504, 82 with 4096, 85-88 with 5008; N = 12000: 44 with 600,
#: 55 with 1200). The memory plan halves the blocks while the streamed test would not fit.
STREAM_BLOCK_ELEMENTS = 1 << 27
#: Bounds of the streamed block height: at least this many blocks (for progress and parallel
#: folds), and rows within [STREAM_MIN_BLOCK_ROWS, STREAM_MAX_BLOCK_ROWS].
STREAM_MIN_BLOCKS = 8
STREAM_MIN_BLOCK_ROWS = 64
STREAM_MAX_BLOCK_ROWS = 8192


def stream_applies(M: int, N: int, stream: bool | None = None) -> bool:
    """Whether the dense test must stream whatever the memory limit: ``stream`` when given,
    else M N 8 bytes > :data:`STREAM_THRESHOLD_BYTES` (never when that is None)."""
    if stream is not None:
        return bool(stream)
    return STREAM_THRESHOLD_BYTES is not None and 8 * M * N > STREAM_THRESHOLD_BYTES


def stream_block_rows(n_cols: int, M: int) -> int:
    """Probe rows per streamed block: about :data:`STREAM_BLOCK_ELEMENTS` / n_cols and at most
    M / :data:`STREAM_MIN_BLOCKS`, within [:data:`STREAM_MIN_BLOCK_ROWS`,
    :data:`STREAM_MAX_BLOCK_ROWS`] (and at most M)."""
    b = min(STREAM_BLOCK_ELEMENTS // max(n_cols, 1), -(-M // STREAM_MIN_BLOCKS))
    b = max(STREAM_MIN_BLOCK_ROWS, min(STREAM_MAX_BLOCK_ROWS, b))
    return int(max(1, min(M, b)))


@dataclass(frozen=True)
class FeatureMatrix:
    """F_perp: LSE features projected off the affine functions, columns normalised.

    Attributes
    ----------
    values : (M, N) F[m, i] = LSE_{mu_i - c_i}(z_m) (raw, each distribution at its centre
        c_i = ``centres[i]``: its own mean, or the pooled mean for token-ID data), or None when streamed (:func:`streamed_feature_matrix`; :meth:`columns` recomputes
        any columns from the probes)
    perp : (M, N) weighted, projected, column-normalised features, or None when streamed
    col_norms : (N,) norms nu_i of the weighted projected columns before normalisation
    error_bound : (N,) rigorous bound on || computed perp[:, i] - exact perp[:, i] ||
    error_typical : (N,) first-order round-off estimate of the same quantity
    centres : (N, d) the centres c_i subtracted from each distribution

    triangle : (N, N) R factor of ``perp`` (same singular values), set when streamed
    stream : dict describing the streamed factorisation (blocks, method, backend, bounds)

    Columns whose projection is at round-off level (``NOISE_SAFETY * typical >= nu``: the LSE
    is affine, as for a Dirac mass) are set to exactly zero with zero error bounds.
    """

    values: np.ndarray | None
    perp: np.ndarray | None
    col_norms: np.ndarray
    error_bound: np.ndarray
    error_typical: np.ndarray
    probes: ProbeSet
    centres: np.ndarray | None = None
    triangle: np.ndarray | None = None
    stream: dict | None = None
    source: object | None = field(default=None, repr=False, compare=False)

    @property
    def affine_mask(self) -> np.ndarray:
        """(N,) True for the columns zeroed as affine (exactly those with a zero error bound:
        every other column has bound >= u sqrt(M) min(omega) / nu > 0)."""
        return np.asarray(self.error_bound) == 0.0

    def columns(self, support) -> tuple[np.ndarray, np.ndarray]:
        """(values[:, support], perp[:, support]), (M, k) each; recomputed from the probes
        (the same formulas as :func:`feature_matrix`, on these columns only) when streamed."""
        support = np.asarray(support, dtype=int)
        if self.perp is not None and self.values is not None:
            return self.values[:, support], self.perp[:, support]
        F = self.source.select(support).lse(self.probes.z)
        omega = 1.0 / self.probes.scale
        Q = _affine_basis(self.probes, omega)
        P = F * omega[:, None]
        P -= Q @ (Q.T @ P)
        nu = self.col_norms[support]
        P /= np.where(self.affine_mask[support], 1.0, nu)
        P[:, self.affine_mask[support]] = 0.0
        return F, P


def _affine_basis(probes: ProbeSet, omega: np.ndarray) -> np.ndarray:
    """Orthonormal basis Q (M, r + 1) of the weighted affine functions omega [1, s]."""
    B = np.column_stack([np.ones(len(omega)), probes.s]) * omega[:, None]
    return np.linalg.qr(B)[0]


def _row_norms(x: np.ndarray) -> np.ndarray:
    """Euclidean norms of the rows, without overflow or underflow of the squares."""
    big = np.abs(x).max(axis=1, initial=0.0)
    safe = np.where(big > 0, big, 1.0)
    return big * np.sqrt(np.sum((x / safe[:, None]) ** 2, axis=1))


def centred_each(dataset: Dataset) -> tuple[Dataset, np.ndarray]:
    """Every distribution translated by minus its own mean; returns (dataset, centres (N, d)).

    One rounding per coordinate, fl(y - m_i), whose error is relative to |y - m_i| (and zero when
    y and m_i are within a factor 2 of each other, by Sterbenz's lemma). Token-ID data are
    moved by their pooled mean instead (:meth:`TokenIdDataset.centred`), once for all columns.
    """
    if isinstance(dataset, TokenIdDataset):  # one shared centre: the rows stay shared
        return dataset.centred()
    centres = np.array([_own_mean(dist) for dist in dataset.distributions])
    eye = np.eye(dataset.dim)
    moved = tuple(dist.affine_image(eye, -m) for dist, m in zip(dataset.distributions, centres))
    return Dataset(dataset.names, moved, dataset.source), centres


def _own_mean(dist) -> np.ndarray:
    if isinstance(dist, Discrete):
        return dist.weights @ dist.atoms
    if isinstance(dist, UniformBox):
        return (dist.low + dist.high) / 2.0
    return dist.weights @ dist.means


def _entry_scales(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per (centred) distribution and coordinate: linear sizes R (N, d), quadratic sizes Q (N, d),
    log-weight size W (N,), term count n (N,), such that for every probe z

        |<z, y>| <= sum_l |z_l| R[i, l],   z^T S z / 2 <= (sum_l |z_l| Q[i, l])^2,

    bounds taken coordinate by coordinate, so that they stay tight whatever the units of each
    coordinate (|z| |y| would mix a coordinate of size 1e9 with one of size 1e-9). For a PSD S,
    |S_lm| <= sqrt(S_ll S_mm), hence Q = sqrt(max_k diag S_k / 2)."""
    if isinstance(dataset, TokenIdDataset):  # the vocabulary-cost entries (module docstring)
        return dataset.entry_scales()
    N, d = len(dataset), dataset.dim
    R, Q, W, n = np.zeros((N, d)), np.zeros((N, d)), np.zeros(N), np.ones(N)
    for i, dist in enumerate(dataset.distributions):
        if isinstance(dist, Discrete):
            R[i] = np.abs(dist.atoms).max(axis=0)
            W[i] = np.abs(np.log(dist.weights)).max()
            n[i] = len(dist.weights)
        elif isinstance(dist, UniformBox):
            R[i] = 2 * np.maximum(np.abs(dist.low), np.abs(dist.high))
            n[i] = dist.dim
        elif isinstance(dist, GaussianMixture):
            R[i] = np.abs(dist.means).max(axis=0)
            diag = np.diagonal(dist.covariances, axis1=1, axis2=2)
            Q[i] = np.sqrt(np.maximum(diag, 0.0).max(axis=0) / 2)
            W[i] = np.abs(np.log(dist.weights)).max()
            n[i] = len(dist.weights)
    return R, Q, W, n


def feature_matrix(dataset: Dataset, whitening: Whitening, probes: ProbeSet,
                   progress: Progress | None = None) -> FeatureMatrix:
    """Build F (each column on its own centred distribution), project it off span{1, s} with an
    orthonormal basis, normalise columns, with per-column error estimates.

    Error model (standard model of arithmetic, exp/log correct to a few ulps: the C library's,
    or on large inputs the compiled exp of :func:`ntkcheck._compiled.lse_scores`, relative
    error < 6 u, which the n_i + 6 term count below absorbs): an entry F[m, i]
    computed as a dot product of length d plus a logsumexp over n_i terms has absolute error at
    most (first order in u)
        e[m, i] = u (d + n_i + 10) (sum_l |z_ml| R_il + (sum_l |z_ml| Q_il)^2 + W_i
                                    + |F[m, i]| + 1)
    (the typical error uses sqrt(d + n_i + 10) instead: round-off accumulates like a random
    walk); the projection F - Q (Q^T F) with a Householder Q adds at most
    2 (d + 1) M u ||F[:, i]|| (typically sqrt((d + 1) M) u ||F[:, i]||). The rounding of the
    centred atoms, |fl(y - m_i) - (y - m_i)| <= u |y - m_i|, is part of the R term; every size is
    taken coordinate by coordinate (:func:`_entry_scales`), so the estimates do not depend on
    the units of the coordinates.
    These are the fast path's estimates; ``certified`` comes from the rigorous check of
    :mod:`ntkcheck.injectivity.certify`.
    """
    centred, centres = centred_each(dataset)
    z = probes.z
    if progress is None:
        F = centred.lse(z)
    else:  # the same entries; the caller sees 20 steps, 5 % of the chunks each
        said = 0

        def tick(done: int, total: int) -> None:
            nonlocal said
            while said < 20 * done // total:
                said += 1
                progress(ProgressUpdate(f"features {5 * said}%", stage="features", done=said,
                                        total=20))

        F = centred.lse(z, progress=tick)
    omega = 1.0 / probes.scale  # row weights
    M, N = F.shape
    d = dataset.dim
    B = np.column_stack([np.ones(M), probes.s]) * omega[:, None]
    Q, _ = np.linalg.qr(B)
    perp = F * omega[:, None]
    fw_norm = _column_norms(perp)
    coeffs = Q.T @ perp
    entry = _entry_scales(centred)
    n = entry[3]
    # row blocks keep the temporaries at CHUNK_ELEMENTS entries whatever M and N are
    blocks = list(chunks(M, N))
    for sl in blocks:
        _subtract_product(perp[sl], Q[sl], coeffs)
    base_norm = np.sqrt(_sum_base_sq(z, F, omega, entry, blocks))
    nu = _column_norms(perp)
    bound, typical = _normalise_columns(perp, nu, base_norm, fw_norm, n, d, M)
    return FeatureMatrix(F, perp, nu, bound, typical, probes, centres, source=centred)


def _subtract_product(C: np.ndarray, A: np.ndarray, B: np.ndarray) -> None:
    """C -= A @ B in place for a C-ordered block C, as one BLAS dgemm with beta = 1 on C's
    transpose (a Fortran-ordered view): no A @ B temporary, one pass over C instead of three.
    The rounding is that of a dot product of length k + 1 per entry (k = A's columns), inside
    the projection's error bound of :func:`feature_matrix`."""
    out = scipy.linalg.blas.dgemm(-1.0, B.T, A.T, beta=1.0, c=C.T, overwrite_c=1)
    if not np.shares_memory(out, C):  # (C not contiguous: BLAS worked on a copy)
        C[...] = out.T


def _column_norms(A: np.ndarray) -> np.ndarray:
    """Euclidean norms of the columns of A (M, N) without an M x N temporary (the squares
    summed by einsum: a third of ``np.linalg.norm(A, axis=0)``'s time at M, N = 8034, 4000).
    The same unscaled sums of squares that function forms, summed in another order (results
    differ in the last bits)."""
    return np.sqrt(np.einsum("mi,mi->i", A, A))


def _normalise_columns(A: np.ndarray, nu: np.ndarray, base_norm: np.ndarray,
                       fw_norm: np.ndarray, n: np.ndarray, d: int, M: int):
    """Divide the columns of A (the projected features, or the R factor of them) by their norms
    nu in place and return the per-column (bound, typical) round-off levels, normalised
    (error model of :func:`feature_matrix`; shared by the in-memory and streamed paths).

    A column whose projection is itself at its own round-off level is an affine function (a
    Dirac mass, or a distribution too narrow to resolve in float64): it is set to zero, so that
    it is an exact null direction whose claim is checked on its own (its bounds are then 0).
    """
    terms = d + n + 10
    bound = _U * (terms * base_norm + 2 * (d + 1) * M * fw_norm)
    typical = _U * (np.sqrt(terms) * base_norm + np.sqrt((d + 1) * M) * fw_norm)
    affine = NOISE_SAFETY * typical >= nu
    safe = np.where(affine, 1.0, nu)
    A /= safe[None, :]
    A[:, affine] = 0.0
    return np.where(affine, 0.0, bound / safe), np.where(affine, 0.0, typical / safe)


def _sum_base_sq(z: np.ndarray, F: np.ndarray, omega: np.ndarray, entry,
                 blocks: list[slice]) -> np.ndarray:
    """(N,) the sum of :func:`_base_sq` over the row ``blocks``, each block on one of
    :data:`ntkcheck.dataset.WORKERS` threads (its elementwise passes run on one core each;
    BLAS on one thread meanwhile), the block sums added in block order: the same floats
    whatever the thread count."""
    parts = map_on_threads(lambda sl: _base_sq(z[sl], F[sl], omega[sl], entry), blocks,
                           WORKERS)
    total = np.zeros(F.shape[1])
    for part in parts:
        total += part
    return total


def _base_sq(z: np.ndarray, F: np.ndarray, omega: np.ndarray, entry) -> np.ndarray:
    """(N,) sum over these probe rows of base[m, i]^2, the weighted first-order error scale
    base = omega_m (sum_l |z_ml| R_il + (sum_l |z_ml| Q_il)^2 + W_i + |F[m, i]| + 1) of
    :func:`feature_matrix` (shared by the in-memory and streamed paths)."""
    R, Qd, W, _ = entry
    quad = np.flatnonzero(Qd.any(axis=1))  # only mixtures: no inf * 0 for tiny discrete data
    az = np.abs(z)
    base = scipy.linalg.blas.dgemm(1.0, R, az, trans_b=1).T  # (scipy BLAS, as the projection)
    base += W + 1.0  # (one pass: W + 1 is a row)
    base += np.abs(F)
    if quad.size:
        base[:, quad] += (az @ Qd[quad].T) ** 2
    base *= omega[:, None]
    return np.einsum("mi,mi->i", base, base)


class FeatureBlocks:
    """Row blocks of the weighted matrix [B_w | F_w] of the streamed dense test (picklable:
    the Dask backend sends it to the workers).

    Block k holds the probe rows [k b, (k + 1) b): B_w = omega [1, s] (r + 1 columns, the
    weighted affine functions) and F_w = omega F (N columns, F as in :func:`feature_matrix`),
    omega = 1 / scale. Calling it also records the block's per-column error-model sums
    (``stats[k]`` = (sum_m base^2, sum_m F_w^2), the sums :func:`feature_matrix` accumulates;
    recomputing a block overwrites its entry, so a two-pass factorisation counts it once).
    """

    def __init__(self, centred: Dataset, probes: ProbeSet, block_rows: int,
                 progress: Progress | None = None):
        self.centred = centred
        self.s, self.z, self.scale = probes.s, probes.z, probes.scale
        self.block_rows = int(block_rows)
        self.n_blocks = -(-len(self.scale) // self.block_rows)
        self.entry = _entry_scales(centred)
        self.stats: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.progress = progress
        self._lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_lock"], state["progress"], state["stats"] = None, None, {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def n_cols(self) -> int:
        return 1 + self.s.shape[1] + len(self.centred)

    def rows(self, k: int) -> slice:
        return slice(k * self.block_rows, min(len(self.scale), (k + 1) * self.block_rows))

    def evaluate(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(block [B_w | F_w], sum of base^2, sum of F_w^2) for block k."""
        sl = self.rows(k)
        z, omega = self.z[sl], 1.0 / self.scale[sl]
        F = self.centred.lse(z)
        p = 1 + self.s.shape[1]
        out = np.empty((F.shape[0], p + F.shape[1]))
        out[:, 0] = omega
        out[:, 1:p] = self.s[sl] * omega[:, None]
        np.multiply(F, omega[:, None], out=out[:, p:])
        # row chunks keep base's temporaries at CHUNK_ELEMENTS entries (as feature_matrix)
        base_sq = np.zeros(F.shape[1])
        for rows in chunks(F.shape[0], F.shape[1]):
            base_sq += _base_sq(z[rows], F[rows], omega[rows], self.entry)
        fw_sq = np.einsum("mi,mi->i", out[:, p:], out[:, p:])
        return out, base_sq, fw_sq

    def __call__(self, k: int) -> np.ndarray:
        block, base_sq, fw_sq = self.evaluate(k)
        lock = self._lock or threading.Lock()
        with lock:
            self.stats[k] = (base_sq, fw_sq)
            done = len(self.stats)
        if self.progress is not None:
            self.progress(ProgressUpdate(f"features and factorisation {done}/{self.n_blocks} "
                                         "blocks", stage="features and factorisation",
                                         done=done, total=self.n_blocks))
        return block

    def block_stats(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The error-model sums of block k alone (for backends whose workers hold copies)."""
        _, base_sq, fw_sq = self.evaluate(k)
        return base_sq, fw_sq


