"""Unit-invariant geometry of a dataset: equilibration, affine hull, whitening (SPEC §2, §3a).

The condition is invariant under one invertible affine map y -> A y + t applied to every
distribution, so the test may work in any coordinates. Which coordinates it works in must not
decide the answer:

1. **Support rows.** Each distribution contributes points whose weighted second moment is its
   covariance and whose affine hull is its support's: the atoms of a discrete law, the centre
   of a box plus +-w_l sqrt(k / 12) e_l along its k non-degenerate sides, the means of a mixture
   plus +-sqrt(r lambda) v along the r eigenpairs of each covariance.
2. **Equilibration.** Every coordinate l is divided by 2^k_l, the power of two nearest to its
   range over the rows (an exact operation in binary64), so that every coordinate has range in
   [1/sqrt 2, sqrt 2) whatever its unit.
3. **Affine hull** by a rank-revealing factorisation (Householder QR folded over row blocks,
   then the SVD of R) of the weighted, centred, equilibrated rows A. A direction is kept unless
   its singular value is at the round-off level of *its own coordinates*:
   eps_l = (3 + log2 P) u max_p |y'_pl| bounds the error of centring coordinate l (P rows), so
   A v_k is known to within sum_l |v_kl| eps_l (rows weighted to total 1), plus the backward
   error sqrt(d) u ||A||_F of the factorisation; the direction is kept when sigma_k exceeds
   :data:`NOISE_SAFETY` times that sum. The threshold is never relative to the largest variance,
   and one coarsely rounded coordinate does not erase the others: a timestamp in seconds next
   to features of size 1e-2 keeps every direction in which the data vary beyond round-off.
4. **Whitening** (optional): probes s in R^r map to z = D V_r diag(1/sigma_r) s, so the rows have
   identity covariance in the probe's coordinates (z is a probe in the data's own units).

Token-ID data contribute their used table rows once, each with its pooled weight (the same
pooled measure as one row per token).

The internal spread rho_i of every distribution in whitened coordinates (the RMS distance of its
rows from its own mean) tells the probe law which scales to add
(:mod:`ntkcheck.injectivity.probes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..dataset import Dataset
from ..distributions import Discrete, GaussianMixture, UniformBox
from ..vocabulary import TokenIdDataset

__all__ = ["Geometry", "support_rows", "dataset_geometry", "NOISE_SAFETY"]

_U = np.finfo(float).eps / 2
#: Round-off estimates are multiplied by this safety factor before a value is called zero.
NOISE_SAFETY = 10.0
#: Rows folded into the hull factorisation at a time.
_ROW_BLOCK = 1 << 16


@dataclass(frozen=True)
class Geometry:
    """Coordinates in which the test probes the data.

    Attributes
    ----------
    centre : (d,) pooled mean of the support rows (data units)
    transform : (d, r) z = transform @ s maps whitened probes s to data-unit probes z
    rank : r, dimension of the pooled affine hull
    whiten : whether the pooled covariance was normalised to the identity
    scaling : (d,) the powers of two 2^k_l dividing each coordinate (equilibration)
    hull_singular_values : (d,) singular values of the equilibrated centred rows, descending
    hull_tolerance : the largest per-direction threshold among the kept directions (or the
        largest overall when none is kept)
    spreads : (N,) internal spread rho_i of each distribution in whitened coordinates
    complement : (d, d - r) data-unit probe directions orthogonal (in equilibrated coordinates)
        to the hull, each of the size of a unit whitened direction; probes along them see only
        affine functions of exactly flat data, but keep [1, Z] of full column rank (needed by
        the rigorous certificate, whose probes span R^d)
    """

    centre: np.ndarray
    transform: np.ndarray
    rank: int
    whiten: bool
    scaling: np.ndarray | None = None
    hull_singular_values: np.ndarray | None = None
    hull_tolerance: float = 0.0
    spreads: np.ndarray | None = None
    complement: np.ndarray | None = None


def support_rows(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (P, d), weights (P,) summing to 1 and offsets (N + 1,) of each distribution's rows.

    See step 1 of the module docstring; every distribution has total weight 1/N.
    """
    blocks, weights, counts = [], [], []
    N = len(dataset)
    for dist in dataset.distributions:
        if isinstance(dist, Discrete):
            rows, w = dist.atoms, dist.weights
        elif isinstance(dist, UniformBox):
            centre = (dist.low + dist.high) / 2.0
            width = dist.high - dist.low
            axes = np.flatnonzero(width > 0)
            k = len(axes)
            if k == 0:
                rows, w = centre[None, :], np.ones(1)
            else:
                step = np.zeros((k, dist.dim))
                step[np.arange(k), axes] = width[axes] * np.sqrt(k / 12.0)
                rows = np.concatenate([centre + step, centre - step])
                w = np.full(2 * k, 1.0 / (2 * k))
        elif isinstance(dist, GaussianMixture):
            parts, pw = [], []
            for pi, m, S in zip(dist.weights, dist.means, dist.covariances):
                lam, V = np.linalg.eigh(S)
                keep = lam > 0
                r = int(keep.sum())
                if r == 0:
                    parts.append(m[None, :])
                    pw.append(np.array([pi]))
                    continue
                step = (V[:, keep] * np.sqrt(r * lam[keep])).T
                parts.append(np.concatenate([m + step, m - step]))
                pw.append(np.full(2 * r, pi / (2 * r)))
            rows, w = np.concatenate(parts), np.concatenate(pw)
        else:  # pragma: no cover - custom Distribution subclasses
            raise TypeError(f"unsupported distribution type {type(dist).__name__}")
        blocks.append(rows)
        weights.append(w / (w.sum() * N))
        counts.append(len(w))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return np.concatenate(blocks), np.concatenate(weights), offsets


def _power_of_two_scaling(rows: np.ndarray) -> np.ndarray:
    """2^k_l nearest to the range of each coordinate (1 for a constant coordinate of 0)."""
    span = rows.max(axis=0) - rows.min(axis=0)
    size = np.where(span > 0, span, np.abs(rows).max(axis=0))
    size = np.where(np.isfinite(size) & (size > 0), size, 1.0)
    mant, expo = np.frexp(size)  # size = mant 2^expo, mant in [1/2, 1)
    return np.ldexp(1.0, expo - (mant < np.sqrt(0.5)))  # nearest power of two (log sense)


def _r_factor(eq: np.ndarray, centre: np.ndarray, sw: np.ndarray) -> tuple[np.ndarray, float]:
    """(R, ||A||_F) for A = (eq - centre) diag-weighted by ``sw`` (rows), A = Q R, folding row
    blocks: memory O(block x d), never a P x d temporary."""
    d = eq.shape[1]
    R = np.zeros((0, d))
    ssq = 0.0
    for start in range(0, eq.shape[0], _ROW_BLOCK):
        block = (eq[start:start + _ROW_BLOCK] - centre) * sw[start:start + _ROW_BLOCK, None]
        ssq += float(np.einsum("ij,ij->", block, block))
        stacked = np.vstack([R, block])
        R = scipy.linalg.qr(stacked, mode="r", check_finite=False)[0][: min(d, len(stacked))]
    return R, float(np.sqrt(ssq))


def _spreads(eq: np.ndarray, centre: np.ndarray, white: np.ndarray, w: np.ndarray,
             offsets: np.ndarray) -> np.ndarray:
    """Internal spread of each distribution in whitened coordinates, in blocks of whole
    distributions (about _ROW_BLOCK rows each): memory O(block x d)."""
    N = len(offsets) - 1
    out = np.zeros(N)
    i0 = 0
    while i0 < N:
        i1 = int(np.searchsorted(offsets, offsets[i0] + _ROW_BLOCK, side="right")) - 1
        i1 = min(N, max(i1, i0 + 1))
        a, b = int(offsets[i0]), int(offsets[i1])
        local = offsets[i0:i1] - a
        proj = (eq[a:b] - centre) @ white  # (rows, r): white^T (y' - m')
        wb = w[a:b]
        wi = np.add.reduceat(wb, local)
        mean_i = np.add.reduceat(proj * wb[:, None], local) / wi[:, None]
        owner = np.repeat(np.arange(i1 - i0), np.diff(offsets[i0:i1 + 1]))
        dev = np.sum((proj - mean_i[owner]) ** 2, axis=1) * wb
        out[i0:i1] = np.sqrt(np.add.reduceat(dev, local) / wi)
        i0 = i1
    return out


def dataset_geometry(dataset: Dataset, whiten: bool = True) -> Geometry:
    """Equilibration, affine hull, whitening and internal spreads (module docstring).

    Memory: the P x d support rows once (equilibrated in place) plus row-block temporaries."""
    ids = isinstance(dataset, TokenIdDataset)
    if ids:  # the used table rows once, with pooled weights (not one row per token)
        rows, w = dataset.pooled_rows()
        offsets = None
    else:
        rows, w, offsets = support_rows(dataset)
    P, d = rows.shape
    scaling = _power_of_two_scaling(rows)
    eq = rows
    eq /= scaling  # exact: division by powers of two (in place: no second P x d array)
    centre_eq = w @ eq
    big = np.maximum(eq.max(axis=0), -eq.min(axis=0)) if P else np.zeros(d)
    eps = (3.0 + np.log2(max(P, 2))) * _U * big
    R, norm_a = _r_factor(eq, centre_eq, np.sqrt(w))
    U_, sv, Vt = scipy.linalg.svd(R, full_matrices=False, check_finite=False)
    sv_full = np.zeros(d)
    sv_full[: len(sv)] = sv
    # per direction: the centring errors move A v_k by at most sum_l |v_kl| eps_l (Frobenius
    # over rows with weights summing to 1), plus the factorisation's backward error
    floor = np.sqrt(d) * _U * norm_a
    level = NOISE_SAFETY * (np.abs(Vt) @ eps + floor)
    keep = sv > level
    tol = float(level[keep].max()) if keep.any() else float(level.max(initial=0.0))
    r = int(keep.sum())
    centre = centre_eq * scaling
    # complement directions in equilibrated coordinates, mapped like the probes
    complement = (Vt[r:].T if r < len(sv) else np.zeros((d, 0)))
    if len(sv) < d:  # fewer rows than coordinates: complete the basis
        q, _ = np.linalg.qr(np.column_stack([Vt[:r].T, np.eye(d)]))
        complement = q[:, r:d]
    complement = complement / scaling[:, None]
    if r == 0:
        return Geometry(centre, np.zeros((d, 0)), 0, whiten, scaling, sv_full, tol,
                        np.zeros(len(dataset)), complement)
    V = Vt[:r].T  # (d, r) hull directions in equilibrated coordinates
    white = V / sv[:r] if whiten else V
    # <z', y'> = <z', y / scaling> = <z' / scaling, y>: data-unit probes are z' / scaling
    transform = white / scaling[:, None]
    # internal spreads: rows of distribution i centred at its own mean, in whitened coordinates
    spreads = (dataset.spreads((eq - centre_eq) @ white) if ids
               else _spreads(eq, centre_eq, white, w, offsets))
    return Geometry(centre, transform, r, whiten, scaling, sv_full, tol, spreads, complement)
