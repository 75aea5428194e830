"""Probes, whitening and the LSE feature matrix modulo affine functions (SPEC §3, steps 1-3).

Whitening is done on the probes, not on the data: for an invertible affine map
y -> A (y - m), LSE_{A(mu - m)}(s) = LSE_mu(A^T s) - <A^T s, m>, so probing the centred data at
z = A^T s is the same as probing the whitened data at s, with no rounding of the data itself.
With the pooled covariance C = U diag(lambda) U^T of r numerically non-zero eigenvalues,
A^T = U_r diag(lambda_r)^(-1/2) (d x r): when the pooled tokens lie in an r-dimensional affine
subspace the probes span only that subspace, which is exact (SPEC §2: the test reduces to the
affine hull) and, for certificates of independence, always valid (a dependency on R^d restricts
to one on any subspace of probes).

Default probe law: s ~ N(0, sigma^2 I_r) with the probes split evenly over the scales
sigma in :data:`DEFAULT_SCALES` = (1, 3, 10, 30) (near 0 only low cumulants are visible, far out
LSE tends to the support function; SPEC §3.2), M = max(2 (N + d + 1), 256) probes. Rows of scale
sigma are weighted by 1/sigma so that every scale contributes comparably to the column norms
(a row weighting keeps the rank test exact: it multiplies F and the affine basis alike).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from .dataset import Dataset, chunks
from .distributions import Discrete, GaussianMixture, UniformBox
from .errors import InputError

__all__ = ["ProbeSet", "Whitening", "FeatureMatrix", "make_whitening", "make_probes",
           "feature_matrix", "probe_settings", "default_probe_count", "DEFAULT_SCALES", "OVERSAMPLING", "MIN_PROBES", "HULL_RTOL"]

DEFAULT_SCALES: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
#: Default probe count is ``max(OVERSAMPLING * (N + d + 1), MIN_PROBES)``.
OVERSAMPLING = 2
MIN_PROBES = 256
#: Pooled-covariance eigenvalues below ``HULL_RTOL * lambda_max`` are round-off (a degenerate
#: direction): 100 d u, the eigenvalue error of a covariance computed in float64.
HULL_RTOL_FACTOR = 100.0
HULL_RTOL = HULL_RTOL_FACTOR * np.finfo(float).eps

_U = np.finfo(float).eps / 2  # unit round-off
#: Round-off estimates are multiplied by this safety factor before a value is called zero.
NOISE_SAFETY = 10.0


@dataclass(frozen=True)
class Whitening:
    """Probe map z = transform @ s and the centre m subtracted from every distribution.

    Attributes
    ----------
    centre : (d,) pooled mean m
    transform : (d, r) A^T; identity when whitening is off and the data are full-dimensional
    rank : r, dimension of the pooled affine hull
    whiten : whether the pooled covariance was normalised to the identity
    """

    centre: np.ndarray
    transform: np.ndarray
    rank: int
    whiten: bool


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
    values : (M, N) F[m, i] = LSE_{mu_i - m_pool}(z_m) (raw, centred data)
    perp : (M, N) weighted, projected, column-normalised features
    col_norms : (N,) norms nu_i of the weighted projected columns before normalisation
    error_bound : (N,) rigorous bound on || computed perp[:, i] - exact perp[:, i] ||
    error_typical : (N,) first-order round-off estimate of the same quantity

    Columns whose projection is at round-off level (``NOISE_SAFETY * typical >= nu``: the LSE
    is affine, as for a Dirac mass) are set to exactly zero with zero error bounds.
    """

    values: np.ndarray
    perp: np.ndarray
    col_norms: np.ndarray
    error_bound: np.ndarray
    error_typical: np.ndarray
    probes: ProbeSet


def make_whitening(dataset: Dataset, whiten: bool = True) -> Whitening:
    """Pooled mean, affine hull and (optionally) whitening map of the dataset."""
    mean, cov = dataset.pooled_moments
    lam, U = scipy.linalg.eigh(cov)
    lam_max = max(lam.max(), 0.0)
    keep = lam > HULL_RTOL * dataset.dim * lam_max if lam_max > 0 else np.zeros_like(lam, bool)
    r = int(keep.sum())
    if r == 0:
        # every distribution is the same Dirac mass: no direction to probe
        return Whitening(mean, np.zeros((dataset.dim, 0)), 0, whiten)
    if r == dataset.dim and not whiten:
        transform = np.eye(dataset.dim)
    elif whiten:
        transform = U[:, keep] / np.sqrt(lam[keep])
    else:
        transform = U[:, keep]
    return Whitening(mean, transform, r, whiten)


def default_probe_count(n_distributions: int, dim: int) -> int:
    return max(OVERSAMPLING * (n_distributions + dim + 1), MIN_PROBES)


def probe_settings(scales, probes: int | None, n_distributions: int,
                   dim: int) -> tuple[tuple[float, ...], int]:
    """Validated (scales, M): positive finite scales, M >= 1 (default max(2 (N + d + 1), 256))."""
    scales = tuple(float(s) for s in scales)
    if not scales or any(not np.isfinite(s) or s <= 0 for s in scales):
        raise InputError("must be positive finite numbers", field="scales")
    M = int(probes) if probes is not None else default_probe_count(n_distributions, dim)
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


def _entry_scales(dataset: Dataset, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per distribution: linear size R_i, quadratic size S_i, log-weight size W_i, term count n_i.

    |<z, y>| <= |z| R_i, z^T S z / 2 <= |z|^2 S_i, |log w| <= W_i for the centred distribution.
    """
    N = len(dataset)
    R, S, W, n = np.zeros(N), np.zeros(N), np.zeros(N), np.ones(N)
    for i, dist in enumerate(dataset.distributions):
        if isinstance(dist, Discrete):
            R[i] = np.linalg.norm(dist.atoms - centre, axis=1).max()
            W[i] = np.abs(np.log(dist.weights)).max()
            n[i] = len(dist.weights)
        elif isinstance(dist, UniformBox):
            R[i] = np.sqrt(np.sum(np.maximum(np.abs(dist.low - centre),
                                             np.abs(dist.high - centre)) ** 2)) * 2
            n[i] = dist.dim
        elif isinstance(dist, GaussianMixture):
            R[i] = np.linalg.norm(dist.means - centre, axis=1).max()
            S[i] = np.linalg.norm(dist.covariances, ord=2, axis=(1, 2)).max() / 2
            W[i] = np.abs(np.log(dist.weights)).max()
            n[i] = len(dist.weights)
    return R, S, W, n


def feature_matrix(dataset: Dataset, whitening: Whitening, probes: ProbeSet) -> FeatureMatrix:
    """Build F, project it off span{1, s} with an orthonormal basis, normalise columns.

    Error model (first order in the unit round-off u, standard model of arithmetic, exp/log
    correct to 2 ulps): an entry F[m, i] computed as a dot product of length d plus a
    logsumexp over n_i terms has absolute error at most
        e[m, i] = u (d + n_i + 10) (|z_m| R_i + |z_m|^2 S_i + W_i + |F[m, i]| + 1),
    (the typical error uses sqrt(d + n_i + 10) instead: round-off accumulates like a random walk);
    the projection F - Q (Q^T F) with a Householder Q adds at most 2 (d + 1) M u ||F[:, i]||
    (typically sqrt((d + 1) M) u ||F[:, i]||).
    """
    centred = dataset.translate(-whitening.centre)
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
    R, S, W, n = _entry_scales(centred, np.zeros(d))
    znorm = np.linalg.norm(z, axis=1)
    base_sq = np.zeros(N)
    # row blocks keep the temporaries at CHUNK_ELEMENTS entries whatever M and N are
    for sl in chunks(M, N):
        perp[sl] -= Q[sl] @ coeffs
        base = (znorm[sl, None] * R + znorm[sl, None] ** 2 * S + W + np.abs(F[sl]) + 1.0)
        base *= omega[sl, None]
        base_sq += np.einsum("mi,mi->i", base, base)
    base_norm = np.sqrt(base_sq)
    nu = np.linalg.norm(perp, axis=0)
    terms = d + n + 10
    bound = _U * (terms * base_norm + 2 * (d + 1) * M * fw_norm)
    typical = _U * (np.sqrt(terms) * base_norm + np.sqrt((d + 1) * M) * fw_norm)
    # a column whose projection is itself at round-off level is an affine function (e.g. a
    # Dirac mass): zero it, so that it is an exact null direction and does not inflate the
    # thresholds of the other columns; its bounds are then 0
    affine = NOISE_SAFETY * typical >= nu
    safe = np.where(affine, 1.0, nu)
    perp /= safe
    perp[:, affine] = 0.0
    bound = np.where(affine, 0.0, bound / safe)
    typical = np.where(affine, 0.0, typical / safe)
    return FeatureMatrix(F, perp, nu, bound, typical, probes)
