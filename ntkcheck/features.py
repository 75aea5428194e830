"""Probes, whitening and the LSE feature matrix modulo affine functions (SPEC §3, steps 1-3).

Geometry (:mod:`ntkcheck.injectivity.geometry`): coordinates are equilibrated by powers of two,
the affine hull is decided per coordinate's own round-off, and probes are whitened: for an
invertible affine map y -> A (y - m), LSE_{A(mu - m)}(s) = LSE_mu(A^T s) - <A^T s, m>, so probing
the data at z = A^T s is the same as probing the whitened data at s, with no rounding of the
data itself. When the pooled support lies in an r-dimensional affine subspace the probes span
only that subspace (SPEC §2: the test reduces to the affine hull).

Probe law: s ~ N(0, sigma^2 I_r), the probes split evenly (round-robin) over the scales sigma.
With ``scales="auto"`` (default) these are :data:`DEFAULT_SCALES` = (1, 3, 10, 30), which see the
structure of distributions whose internal spread rho_i (whitened RMS radius) is of order 1, plus,
for every distribution much tighter (rho_i < 1/10) or much wider (rho_i > 10) than the pooled
data, the scales (1, 3, 10, 30) / rho_i rounded to half-decades: the LSE of mu_i has its
non-affine structure where sigma rho_i is of order 1 to 30 (below, only its low cumulants are
visible; above, it is close to its support function). That is enough in the following sense:
in exact arithmetic any M >= N + r + 1 generic probes decide the condition (LSE functions are
analytic), and in floating point a column's non-affine part is then O(1) on a fixed share of the
rows instead of buried under round-off. M defaults to max(2 (N + d + 1), 64 x number of scales).
Rows of scale sigma are weighted by 1/sigma so that every scale contributes comparably to the
column norms (a row weighting keeps the rank test exact: it multiplies F and the affine basis
alike).

Every column i is evaluated on mu_i - m_i, its own distribution centred at its own mean m_i:
LSE_{mu_i}(z) = LSE_{mu_i - m_i}(z) + <z, m_i> and <z, m_i> is affine, so F_perp is unchanged in
exact arithmetic, while the rounding error of each entry is now relative to the distribution's
own spread instead of its distance from the pooled centre (tight clusters far from the origin).
The error estimates are per column (:class:`FeatureMatrix`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.linalg

from .dataset import Dataset, chunks
from .distributions import Discrete, GaussianMixture, UniformBox
from .errors import InputError
from .injectivity.geometry import NOISE_SAFETY, Geometry, dataset_geometry

#: The probe map and centre (an alias kept for the kernels and plots).
Whitening = Geometry

__all__ = ["ProbeSet", "Whitening", "FeatureMatrix", "make_whitening", "make_probes",
           "feature_matrix", "streamed_feature_matrix", "FeatureBlocks", "ProgressUpdate",
           "stream_applies", "stream_block_rows", "STREAM_THRESHOLD_BYTES", "probe_settings",
           "default_probe_count", "auto_scales",
           "DEFAULT_SCALES", "OVERSAMPLING", "PROBES_PER_SCALE", "NOISE_SAFETY"]

DEFAULT_SCALES: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
#: Default probe count is ``max(OVERSAMPLING * (N + d + 1), PROBES_PER_SCALE * n_scales)``.
OVERSAMPLING = 2
PROBES_PER_SCALE = 64
#: A distribution whose internal spread rho_i (whitened) lies outside
#: [1 / SPREAD_BAND, SPREAD_BAND] gets probe scales of its own (module docstring).
SPREAD_BAND = 10.0
#: At most this many probe scales (adaptive scales are merged on a coarser grid beyond it).
MAX_SCALES = 16

_U = np.finfo(float).eps / 2  # unit round-off
#: Largest probe scale accepted (whitened units): beyond it exp overflows for any spread.
MAX_SCALE = 1e100


@dataclass(frozen=True)
class ProbeSet:
    """Probe points in whitened coordinates ``s`` (M, r) and data coordinates ``z`` (M, d)."""

    s: np.ndarray
    z: np.ndarray
    scale: np.ndarray  # (M,) the scale each probe was drawn at
    seed: int


#: The dense test streams its probe blocks (never holding the M x N feature matrix, see
#: :func:`streamed_feature_matrix`) when M N 8 bytes exceed this (512 MiB).
STREAM_THRESHOLD_BYTES = 512 * 2**20
#: Target number of float64 entries in one streamed block [B_w | F_w] (2^25 = 256 MiB): taller
#: blocks make each ``dtpqrt`` fold more compute-bound (N = 12000: 44 GFLOP/s with 600-row
#: blocks, 55 with 1200, on 2 threads).
STREAM_BLOCK_ELEMENTS = 1 << 25


class ProgressUpdate(str):
    """A progress message: a ``str`` (so callbacks that take strings keep working) with
    structured fields for callers that can use them.

    Attributes
    ----------
    stage : str
        Stage name (e.g. ``"features"``); the text may add details.
    done, total : int or None
        Units of work done out of ``total`` (probe blocks) when the stage reports them.
    kind : str
        ``"stage"`` (a stage starts or advances) or ``"estimate"`` (the estimate of the dense
        test before it starts; ``data`` is its dictionary).
    data : dict or None
    """

    stage: str
    done: int | None
    total: int | None
    kind: str
    data: dict | None

    def __new__(cls, text: str, *, stage: str | None = None, done: int | None = None,
                total: int | None = None, kind: str = "stage", data: dict | None = None):
        obj = super().__new__(cls, text)
        obj.stage = stage or text
        obj.done, obj.total, obj.kind, obj.data = done, total, kind, data
        return obj

    @property
    def fraction(self) -> float | None:
        """done / total in [0, 1], or None."""
        if self.done is None or not self.total:
            return None
        return min(1.0, max(0.0, self.done / self.total))


Progress = Callable[[str], None]


def stream_applies(M: int, N: int, stream: bool | None = None) -> bool:
    """Whether the dense test streams: ``stream`` when given, else M N 8 bytes >
    :data:`STREAM_THRESHOLD_BYTES`."""
    if stream is not None:
        return bool(stream)
    return 8 * M * N > STREAM_THRESHOLD_BYTES


def stream_block_rows(n_cols: int, M: int) -> int:
    """Probe rows per streamed block: about :data:`STREAM_BLOCK_ELEMENTS` / n_cols and at most
    M / 16 (at least 16 blocks, for progress and parallel folds), within [64, 4096]."""
    b = min(STREAM_BLOCK_ELEMENTS // max(n_cols, 1), -(-M // 16))
    return int(max(1, min(M, max(64, min(4096, b)))))


@dataclass(frozen=True)
class FeatureMatrix:
    """F_perp: LSE features projected off the affine functions, columns normalised.

    Attributes
    ----------
    values : (M, N) F[m, i] = LSE_{mu_i - m_i}(z_m) (raw, each distribution at its own mean),
        or None when streamed (:func:`streamed_feature_matrix`; :meth:`columns` recomputes
        any columns from the probes)
    perp : (M, N) weighted, projected, column-normalised features, or None when streamed
    col_norms : (N,) norms nu_i of the weighted projected columns before normalisation
    error_bound : (N,) rigorous bound on || computed perp[:, i] - exact perp[:, i] ||
    error_typical : (N,) first-order round-off estimate of the same quantity
    centres : (N, d) the means m_i subtracted from each distribution

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
        centred = self.source
        sub = Dataset(tuple(centred.names[i] for i in support),
                      tuple(centred.distributions[i] for i in support), centred.source)
        F = sub.lse(self.probes.z)
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


def make_whitening(dataset: Dataset, whiten: bool = True) -> Geometry:
    """Pooled centre, affine hull and (optionally) whitening map of the dataset (unit-invariant:
    see :mod:`ntkcheck.injectivity.geometry`)."""
    return dataset_geometry(dataset, whiten)


def auto_scales(geometry: Geometry, base=DEFAULT_SCALES) -> tuple[float, ...]:
    """``base`` plus (1, 3, 10, 30) / rho_i for distributions much tighter or wider than the pool.

    rho_i is rounded to half-decades so that a thousand clusters of similar spread add one set of
    scales; beyond :data:`MAX_SCALES` scales, evenly spaced bins are kept, always including the
    two extreme ones (module docstring).
    """
    rho = np.asarray(geometry.spreads, dtype=float)
    rho = rho[(rho > 0) & np.isfinite(rho)]
    odd = rho[(rho < 1.0 / SPREAD_BAND) | (rho > SPREAD_BAND)]
    base = tuple(float(s) for s in base)
    if odd.size == 0:
        return base
    bins = np.unique(np.round(-2.0 * np.log10(odd)) / 2.0)
    room = max(1, (MAX_SCALES - len(base)) // 4)
    if len(bins) > room:
        bins = bins[np.unique(np.round(np.linspace(0, len(bins) - 1, room)).astype(int))]
    extra = {float(f"{10.0 ** b * f:.3g}") for b in bins for f in (1.0, 3.0, 10.0, 30.0)}
    return tuple(sorted(set(base) | extra))


def default_probe_count(n_distributions: int, dim: int, n_scales: int = len(DEFAULT_SCALES)) -> int:
    """max(OVERSAMPLING (N + d + 1), PROBES_PER_SCALE x number of scales)."""
    return max(OVERSAMPLING * (n_distributions + dim + 1), PROBES_PER_SCALE * n_scales)


def probe_settings(scales, probes: int | None, n_distributions: int,
                   dim: int) -> tuple[tuple[float, ...], int]:
    """Validated (scales, M): positive finite scales, M >= 1 (default
    max(2 (N + d + 1), 64 x number of scales))."""
    scales = tuple(float(s) for s in scales)
    if not scales or any(not np.isfinite(s) or s <= 0 or s > MAX_SCALE for s in scales):
        raise InputError(f"must be positive finite numbers <= {MAX_SCALE:g} (whitened units)",
                         field="scales")
    M = (int(probes) if probes is not None
         else default_probe_count(n_distributions, dim, len(scales)))
    if M < 1:
        raise InputError(f"must be >= 1, got {M}", field="probes")
    return scales, M


def make_probes(whitening: Whitening, count: int, scales=DEFAULT_SCALES, seed: int = 0) -> ProbeSet:
    """``count`` Gaussian probes, split evenly (round-robin) over ``scales``."""
    rng = np.random.default_rng(seed)
    scale = np.asarray(scales, dtype=float)[np.arange(count) % len(scales)]
    s = rng.standard_normal((count, whitening.rank)) * scale[:, None]
    z = s @ whitening.transform.T
    return ProbeSet(s, z, scale, seed)


def _row_norms(x: np.ndarray) -> np.ndarray:
    """Euclidean norms of the rows, without overflow or underflow of the squares."""
    big = np.abs(x).max(axis=1, initial=0.0)
    safe = np.where(big > 0, big, 1.0)
    return big * np.sqrt(np.sum((x / safe[:, None]) ** 2, axis=1))


def centred_each(dataset: Dataset) -> tuple[Dataset, np.ndarray]:
    """Every distribution translated by minus its own mean; returns (dataset, centres (N, d)).

    One rounding per coordinate, fl(y - m_i), whose error is relative to |y - m_i| (and zero when
    y and m_i are within a factor 2 of each other, by Sterbenz's lemma).
    """
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

    Error model (standard model of arithmetic, exp/log correct to 2 ulps): an entry F[m, i]
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
    else:  # the same entries, in 20 row slices so that the caller sees the progress
        F = np.empty((z.shape[0], len(centred)))
        edges = np.linspace(0, z.shape[0], 21).round().astype(int)
        for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
            if b > a:
                F[a:b] = centred.lse(z[a:b])
            progress(ProgressUpdate(f"features {5 * (k + 1)}%", stage="features",
                                    done=k + 1, total=20))
    omega = 1.0 / probes.scale  # row weights
    M, N = F.shape
    d = dataset.dim
    B = np.column_stack([np.ones(M), probes.s]) * omega[:, None]
    Q, _ = np.linalg.qr(B)
    perp = F * omega[:, None]
    fw_norm = np.linalg.norm(perp, axis=0)
    coeffs = Q.T @ perp
    entry = _entry_scales(centred)
    n = entry[3]
    base_sq = np.zeros(N)
    # row blocks keep the temporaries at CHUNK_ELEMENTS entries whatever M and N are
    for sl in chunks(M, N):
        perp[sl] -= Q[sl] @ coeffs
        base_sq += _base_sq(z[sl], F[sl], omega[sl], entry)
    base_norm = np.sqrt(base_sq)
    nu = np.linalg.norm(perp, axis=0)
    bound, typical = _normalise_columns(perp, nu, base_norm, fw_norm, n, d, M)
    return FeatureMatrix(F, perp, nu, bound, typical, probes, centres)


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


def _base_sq(z: np.ndarray, F: np.ndarray, omega: np.ndarray, entry) -> np.ndarray:
    """(N,) sum over these probe rows of base[m, i]^2, the weighted first-order error scale
    base = omega_m (sum_l |z_ml| R_il + (sum_l |z_ml| Q_il)^2 + W_i + |F[m, i]| + 1) of
    :func:`feature_matrix` (shared by the in-memory and streamed paths)."""
    R, Qd, W, _ = entry
    quad = np.flatnonzero(Qd.any(axis=1))  # only mixtures: no inf * 0 for tiny discrete data
    az = np.abs(z)
    base = az @ R.T + W + np.abs(F) + 1.0
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
        base_sq = _base_sq(z, F, omega, self.entry)
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
    from .backends import fold

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
    from .backends.dask import _distributed

    distributed = _distributed()
    client = options.get("client")
    own = None
    if client is None:
        own = client = distributed.Client(options["scheduler"], timeout="30s")
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
