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

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .dataset import Dataset, chunks
from .distributions import Discrete, GaussianMixture, UniformBox
from .errors import InputError
from .injectivity.geometry import NOISE_SAFETY, Geometry, dataset_geometry

#: The probe map and centre (an alias kept for the kernels and plots).
Whitening = Geometry

__all__ = ["ProbeSet", "Whitening", "FeatureMatrix", "make_whitening", "make_probes",
           "feature_matrix", "probe_settings", "default_probe_count", "auto_scales",
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


@dataclass(frozen=True)
class FeatureMatrix:
    """F_perp: LSE features projected off the affine functions, columns normalised.

    Attributes
    ----------
    values : (M, N) F[m, i] = LSE_{mu_i - m_i}(z_m) (raw, each distribution at its own mean)
    perp : (M, N) weighted, projected, column-normalised features
    col_norms : (N,) norms nu_i of the weighted projected columns before normalisation
    error_bound : (N,) rigorous bound on || computed perp[:, i] - exact perp[:, i] ||
    error_typical : (N,) first-order round-off estimate of the same quantity
    centres : (N, d) the means m_i subtracted from each distribution

    Columns whose projection is at round-off level (``NOISE_SAFETY * typical >= nu``: the LSE
    is affine, as for a Dirac mass) are set to exactly zero with zero error bounds.
    """

    values: np.ndarray
    perp: np.ndarray
    col_norms: np.ndarray
    error_bound: np.ndarray
    error_typical: np.ndarray
    probes: ProbeSet
    centres: np.ndarray | None = None


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


def feature_matrix(dataset: Dataset, whitening: Whitening, probes: ProbeSet) -> FeatureMatrix:
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
    F = centred.lse(z)
    omega = 1.0 / probes.scale  # row weights
    M, N = F.shape
    d = dataset.dim
    B = np.column_stack([np.ones(M), probes.s]) * omega[:, None]
    Q, _ = np.linalg.qr(B)
    perp = F * omega[:, None]
    fw_norm = np.linalg.norm(perp, axis=0)
    coeffs = Q.T @ perp
    R, Qd, W, n = _entry_scales(centred)
    quad = np.flatnonzero(Qd.any(axis=1))  # only mixtures: no inf * 0 for tiny discrete data
    base_sq = np.zeros(N)
    # row blocks keep the temporaries at CHUNK_ELEMENTS entries whatever M and N are
    for sl in chunks(M, N):
        perp[sl] -= Q[sl] @ coeffs
        az = np.abs(z[sl])
        base = az @ R.T + W + np.abs(F[sl]) + 1.0
        if quad.size:
            base[:, quad] += (az @ Qd[quad].T) ** 2
        base *= omega[sl, None]
        base_sq += np.einsum("mi,mi->i", base, base)
    base_norm = np.sqrt(base_sq)
    nu = np.linalg.norm(perp, axis=0)
    terms = d + n + 10
    bound = _U * (terms * base_norm + 2 * (d + 1) * M * fw_norm)
    typical = _U * (np.sqrt(terms) * base_norm + np.sqrt((d + 1) * M) * fw_norm)
    # a column whose projection is itself at its own round-off level is an affine function
    # (a Dirac mass, or a distribution too narrow to resolve in float64): zero it, so that it
    # is an exact null direction whose claim is checked on its own (its bounds are then 0)
    affine = NOISE_SAFETY * typical >= nu
    safe = np.where(affine, 1.0, nu)
    perp /= safe
    perp[:, affine] = 0.0
    bound = np.where(affine, 0.0, bound / safe)
    typical = np.where(affine, 0.0, typical / safe)
    return FeatureMatrix(F, perp, nu, bound, typical, probes, centres)
