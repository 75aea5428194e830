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
   then the SVD of R) of the weighted, centred, equilibrated rows A. The rows are centred in
   two steps: first at a reference point ref (the midpoint of each coordinate's range), where
   y' - ref is exact when y' and ref are within a factor 2 of each other (Sterbenz) and
   otherwise rounded relative to |y' - ref| <= the range; then at the weighted mean of these
   differences. So the centring error is relative to each coordinate's *range*, never to its
   offset: a coordinate that varies by a few ulps around 1000 is known to vary (the stored
   values are the data, SPEC §3a "Exact inputs are what the user wrote").
   eps_l = (3 + log2 P) u max_p |y'_pl - ref_l| bounds the error of centring coordinate l
   (P rows), so A v_k is known to within sum_l |v_kl| eps_l (rows weighted to total 1), plus
   the backward error sqrt(d) u ||A||_F of the factorisation; the direction is kept when
   sigma_k exceeds :data:`NOISE_SAFETY` times that sum. The threshold is never relative to the
   largest variance, and one coarsely rounded coordinate does not erase the others: a
   timestamp in seconds next to features of size 1e-2 keeps every direction in which the data
   vary beyond round-off.
4. **Whitening** (optional): probes s in R^r map to z = D V_r diag(1/sigma_r) s, so the rows have
   identity covariance in the probe's coordinates (z is a probe in the data's own units).

Token-ID data contribute their used table rows once, each with its pooled weight (the same
pooled measure as one row per token).

The internal spread rho_i of every distribution in whitened coordinates tells the probe law
which scales to add (:mod:`ntkcheck.injectivity.probes`). It is the RMS distance of its rows from its own
mean, computed from the rows centred at that mean (two steps again, so a cluster of spread
1e-90 far from the others keeps its spread instead of the round-off of the pooled centring),
and never below R_i / ((1 + ln(w_max / w_min)) sqrt(n_i)) (R_i its largest distance, n_i its
rows, w its row weights). The floor never binds for equal weights (then RMS >= R / sqrt(n));
with skewed weights (1, 1e-250) the RMS radius is 1e-125 R, while the LSE shows the light atom
where |z| R is about ln(w_max / w_min) ~ 575, so the probes belong there. :attr:`Geometry.spreads`
is then held at :data:`MIN_PROBE_SPREAD` or above (probe scales up to 3e99, within the probe
law's limit 1e100); distributions tighter than that are listed in :attr:`Geometry.unresolved`
and their exact spreads kept in :attr:`Geometry.own_spreads` (the probes cannot resolve them:
their columns look affine, and :mod:`ntkcheck.injectivity.verify` re-checks any relation on
them at their own scales).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..dataset import Dataset
from ..distributions import Discrete, GaussianMixture, UniformBox
from ..progress import expect, tick
from ..vocabulary import TokenIdDataset

__all__ = ["Geometry", "support_rows", "dataset_geometry", "whitened_spreads", "NOISE_SAFETY",
           "MIN_PROBE_SPREAD", "thinnest_direction"]

_U = np.finfo(float).eps / 2
#: Round-off estimates are multiplied by this safety factor before a value is called zero.
NOISE_SAFETY = 10.0
#: Rows folded into the hull factorisation at a time.
_ROW_BLOCK = 1 << 16
#: Smallest spread the probe law is given: the automatic scales (1, 3, 10, 30) / rho, rounded
#: to half-decades, then stay <= 3e99, within the probe law's limit of 1e100 (whitened units).
MIN_PROBE_SPREAD = 1e-98


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
    spreads : (N,) internal spread rho_i of each distribution in whitened coordinates (module
        docstring), held at :data:`MIN_PROBE_SPREAD` or above for the probe law
    complement : (d, d - r) data-unit probe directions orthogonal (in equilibrated coordinates)
        to the hull, each of the size of a unit whitened direction; probes along them see only
        affine functions of exactly flat data, but keep [1, Z] of full column rank (needed by
        the rigorous certificate, whose probes span R^d)
    own_spreads : (N,) the spreads before :data:`MIN_PROBE_SPREAD` is applied
    unresolved : indices of the distributions whose own spread is positive but below
        :data:`MIN_PROBE_SPREAD` (no probe of the law can resolve them)
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
    own_spreads: np.ndarray | None = None
    unresolved: tuple[int, ...] = ()


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


def _r_factor(eq: np.ndarray, ref: np.ndarray, shift: np.ndarray,
              sw: np.ndarray) -> tuple[np.ndarray, float]:
    """(R, ||A||_F) for A = ((eq - ref) - shift) diag-weighted by ``sw`` (rows), A = Q R,
    folding row blocks: memory O(block x d), never a P x d temporary."""
    d = eq.shape[1]
    R = np.zeros((0, d))
    ssq = 0.0
    for start in range(0, eq.shape[0], _ROW_BLOCK):
        block = eq[start:start + _ROW_BLOCK] - ref  # in place below: one temporary
        block -= shift
        block *= sw[start:start + _ROW_BLOCK, None]
        ssq += float(np.einsum("ij,ij->", block, block))
        stacked = np.vstack([R, block])
        R = scipy.linalg.qr(stacked, mode="r", check_finite=False)[0][: min(d, len(stacked))]
        tick(len(block))
    return R, float(np.sqrt(ssq))


def _weighted_shift(eq: np.ndarray, ref: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_p w_p (eq_p - ref) in row blocks (the weights sum to 1)."""
    shift = np.zeros(eq.shape[1])
    for start in range(0, eq.shape[0], _ROW_BLOCK):
        shift += w[start:start + _ROW_BLOCK] @ (eq[start:start + _ROW_BLOCK] - ref)
        tick(len(w[start:start + _ROW_BLOCK]))
    return shift


def _safe_norms(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(big, rel): Euclidean row norms big * rel without overflow or underflow of the
    squares (big = max |x_row|, rel in [1, sqrt(cols)], rel = 0 for a zero row)."""
    big = np.abs(x).max(axis=1, initial=0.0)
    safe = np.where(big > 0, big, 1.0)
    rel = np.sqrt(np.sum((x / safe[:, None]) ** 2, axis=1))
    return big, rel


def _block_spreads(rows: np.ndarray, w: np.ndarray, local: np.ndarray,
                   owner: np.ndarray, to_white: np.ndarray) -> np.ndarray:
    """Spreads (module docstring) of the distributions whose rows (consecutive, starting at
    ``local``) are ``rows`` with weights ``w``; ``to_white`` maps a row difference to whitened
    coordinates."""
    k = len(local)
    counts = np.diff(np.append(local, len(rows)))
    # centred at each distribution's own mean, in two steps (first row, then the mean); in
    # place, so that at most two rows x d temporaries are alive
    diff = rows[local][owner]
    np.subtract(rows, diff, out=diff)
    wi = np.add.reduceat(w, local)
    mean = np.add.reduceat(diff * w[:, None], local) / wi[:, None]
    diff -= mean[owner]
    proj = diff @ to_white
    del diff
    big, rel = _safe_norms(proj)
    top = np.maximum.reduceat(big, local) if len(big) else np.zeros(k)
    safe = np.where(top > 0, top, 1.0)
    norm = (big / safe[owner]) * rel  # row norm / top: no underflow of the squares
    radius = top * np.maximum.reduceat(norm, local)
    rms = top * np.sqrt(np.add.reduceat(w * norm ** 2, local) / wi)
    # skewed weights: the light rows show where |z| R ~ ln(w_max / w_min) (module docstring)
    log_ratio = (np.log(np.maximum.reduceat(w, local)) - np.log(np.minimum.reduceat(w, local)))
    floor = radius / ((1.0 + log_ratio) * np.sqrt(counts))
    return np.maximum(rms, floor)


def _spreads(eq: np.ndarray, white: np.ndarray, w: np.ndarray,
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
        owner = np.repeat(np.arange(i1 - i0), np.diff(offsets[i0:i1 + 1]))
        out[i0:i1] = _block_spreads(eq[a:b], w[a:b], local, owner, white)
        tick(b - a)
        i0 = i1
    return out


def whitened_spreads(distributions, transform: np.ndarray) -> np.ndarray:
    """Spreads (module docstring) of ``distributions`` in the whitened coordinates of a
    probe map z = transform @ s (d, r): computed from the distributions alone, in their own
    units (a check independent of :func:`dataset_geometry`'s, e.g. for the re-check)."""
    dists = tuple(distributions)
    if not dists:
        return np.zeros(0)
    rows, w, offsets = support_rows(Dataset(tuple(f"d{i}" for i in range(len(dists))), dists))
    local = offsets[:-1]
    owner = np.repeat(np.arange(len(dists)), np.diff(offsets))
    return _block_spreads(rows, w, local, owner, np.asarray(transform, dtype=float))


def thinnest_direction(dataset: Dataset, transform: np.ndarray) -> float:
    """Typical relative thickness t of the distributions along their thinnest common direction,
    in the whitened coordinates of z = transform @ s (d, r): with C_i the covariance of
    distribution i's support rows there, u the eigenvector of S = sum_i C_i / tr C_i with the
    smallest eigenvalue (the direction in which most distributions are thin), refitted once on
    the half of the distributions that are thinnest along it (a few much wider ones tilt the
    first u by O(1/N)), t is the median over the distributions with tr C_i > 0 of
    sqrt(u^T C_i u / tr C_i). t is of order 1/sqrt(r) for isotropic laws; t = 1e-11 when all but one distribution are 1e11 times
    thinner along one axis than the pooled data (the wide one sets the whitening). Isotropic
    probes of a scale that resolves a law's main axes see its thin axis at t times that
    scale, so below 1 / SPREAD_BAND the default scales do not resolve it (the same band as
    for the spreads, :mod:`ntkcheck.injectivity.probes`). Computed only to explain an
    inconclusive verdict (two passes over the rows; nan for token-ID data or r < 2)."""
    r = transform.shape[1]
    if isinstance(dataset, TokenIdDataset) or r < 2 or not len(dataset):
        return float("nan")
    rows, w, offsets = support_rows(dataset)
    local = offsets[:-1]
    owner = np.repeat(np.arange(len(dataset)), np.diff(offsets))
    wi = np.add.reduceat(w, local)
    diff = rows - rows[local][owner]
    diff -= (np.add.reduceat(diff * w[:, None], local) / wi[:, None])[owner]
    proj = diff @ transform
    big = np.abs(proj).max(initial=0.0)
    if not big > 0:
        return float("nan")
    proj /= big  # no overflow of the squares below
    covs = np.einsum("p,pa,pb->pab", w, proj, proj)
    covs = np.add.reduceat(covs, local) / wi[:, None, None]  # (N, r, r)
    tr = np.trace(covs, axis1=1, axis2=2)
    keep = tr > 0
    if not keep.any():
        return float("nan")
    shape = covs[keep] / tr[keep, None, None]
    u = np.linalg.eigh(shape.sum(axis=0))[1][:, 0]
    thin = np.einsum("a,nab,b->n", u, shape, u)
    # the wide laws tilt u by O(1/N): refit it on the thinner half alone, once
    half = thin <= np.median(thin)
    u = np.linalg.eigh(shape[half].sum(axis=0))[1][:, 0]
    thin = np.einsum("a,nab,b->n", u, shape, u)
    return float(np.sqrt(max(float(np.median(thin)), 0.0)))


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
    expect(3 * P)  # row blocks of the centring, the R factor and the spreads (ticked)
    scaling = _power_of_two_scaling(rows)
    eq = rows
    eq /= scaling  # exact: division by powers of two (in place: no second P x d array)
    lo = eq.min(axis=0) if P else np.zeros(d)
    hi = eq.max(axis=0) if P else np.zeros(d)
    ref = lo / 2 + hi / 2  # inside every coordinate's range (halves first: no overflow)
    shift = _weighted_shift(eq, ref, w)
    centre_eq = ref + shift
    # the centring-error magnitude: the largest |y' - ref| of each coordinate (lo <= ref <= hi)
    big = np.maximum(hi - ref, ref - lo)
    eps = (3.0 + np.log2(max(P, 2))) * _U * big
    R, norm_a = _r_factor(eq, ref, shift, np.sqrt(w))
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
                        np.zeros(len(dataset)), complement, np.zeros(len(dataset)))
    V = Vt[:r].T  # (d, r) hull directions in equilibrated coordinates
    white = V / sv[:r] if whiten else V
    # <z', y'> = <z', y / scaling> = <z' / scaling, y>: data-unit probes are z' / scaling
    transform = white / scaling[:, None]
    # internal spreads: rows of distribution i centred at its own mean, in whitened coordinates
    own = (dataset.spreads((eq - centre_eq) @ white) if ids
           else _spreads(eq, white, w, offsets))
    tight = (own > 0) & (own < MIN_PROBE_SPREAD)
    spreads = np.where(tight, MIN_PROBE_SPREAD, own)
    return Geometry(centre, transform, r, whiten, scaling, sv_full, tol, spreads, complement,
                    own, tuple(int(i) for i in np.flatnonzero(tight)))
