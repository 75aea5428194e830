"""Interval enclosures of every feature entry, per family (SPEC §3a, "Certified means rigorous"):
``|F[m, i] - F~[m, i]| <= rad[m, i]`` for F[m, i] = LSE_i(z_m) - <z_m, c_i>, by one of

* ``"arb"``: ball arithmetic (python-flint Arb) started from the exact doubles; no assumption
  beyond the correctness of Arb; cost ~1.5 us per (probe, atom) pair; or
* ``"a-priori"``: F~ computed here in float64 with an error bound that includes every order
  (Higham's gamma_k = k u / (1 - k u), u = 2^-53, underflow terms included). It assumes that
  numpy's exp, log and log1p are accurate to :data:`LIBM_ULPS` ulps in the normal range (an
  assumption, not proved here; the test suite checks it against 50-digit values on the machine
  it runs on); logsumexp is 1-Lipschitz in its scores and g(h) = log(expm1(h)/h) in h.

Both add the non-affine part of the difference between the laws as written and their float64
images (:func:`_written_radius`).

The sigma_min bound that uses them: :mod:`ntkcheck.injectivity.certify`."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .._threads import map_on_threads
from ..distributions import Discrete, Distribution, GaussianMixture, UniformBox
from ..errors import InputError, install_hint
from .rounding import _ETA, _K_LIBM, _U, LIBM_ULPS, _gamma, _norm_up, _up

__all__ = ["feature_enclosure", "DEFAULT_BUDGET", "ARB_PREC", "SCRATCH_BYTES", "LIBM_ULPS"]

#: ``method="auto"`` uses Arb when M' * (atoms + (1 + d) per component + d per box) is at most
#: this (about 1.5 us per unit: a few seconds).
DEFAULT_BUDGET = 2_000_000
#: Working precision of the Arb enclosures (bits).
ARB_PREC = 128

#: Entries per temporary block of the a-priori path, and threads working on blocks.
_BLOCK = 1 << 19
_WORKERS = max(1, min(4, os.cpu_count() or 1))
#: Bytes of the enclosure's block temporaries (scores, exponentials, error terms: at most six
#: arrays of _BLOCK float64 per worker thread), whatever the size of the matrix.
SCRATCH_BYTES = 6 * 8 * _BLOCK * _WORKERS


def _validate(distributions, z, centre, rows, row_weights):
    dists = list(distributions)
    if not dists:
        raise InputError("is empty; give at least one distribution", field="distributions")
    for i, dist in enumerate(dists):
        if not isinstance(dist, (Discrete, UniformBox, GaussianMixture)):
            raise InputError(f"entry {i} is a {type(dist).__name__}; expected Discrete, "
                             "UniformBox or GaussianMixture", field="distributions")
    d = dists[0].dim
    if any(dist.dim != d for dist in dists):
        raise InputError("have different dimensions; give distributions on one R^d",
                         field="distributions")
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != d:
        raise InputError(f"must have shape (M, {d}), got {z.shape}", field="z")
    if not np.all(np.isfinite(z)):
        raise InputError("contains NaN or Inf; give finite probes", field="z")
    N, M = len(dists), z.shape[0]
    if centre is None:
        centres = np.zeros((N, d))
    else:
        c = np.asarray(centre, dtype=np.float64)
        if c.shape == (d,):
            centres = np.broadcast_to(c, (N, d))
        elif c.shape == (N, d):
            centres = c
        else:
            raise InputError(f"must have shape ({d},) or ({N}, {d}), got {c.shape}",
                             field="centre")
        if not np.all(np.isfinite(centres)):
            raise InputError("contains NaN or Inf; give a finite shift", field="centre")
    if rows is None:
        rows = np.arange(M)
    else:
        rows = np.asarray(rows)
        if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer):
            raise InputError("must be a 1-D array of probe indices", field="rows")
        if rows.size and (rows.min() < 0 or rows.max() >= M):
            raise InputError(f"has indices outside 0..{M - 1}", field="rows")
        if np.unique(rows).size != rows.size:
            raise InputError("has repeated indices; give each probe once", field="rows")
    if row_weights is None:
        row_exp = np.zeros(rows.size, dtype=int)
    else:
        w = np.asarray(row_weights, dtype=np.float64)
        if w.shape != (M,):
            raise InputError(f"must have shape ({M},), one weight per probe", field="row_weights")
        if not np.all(np.isfinite(w) & (w > 0)):
            raise InputError("must be positive and finite", field="row_weights")
        _, e = np.frexp(w[rows])
        row_exp = (e - 1).astype(int)  # 2^(e-1) <= w < 2^e
    return dists, z, np.ascontiguousarray(centres), rows.astype(np.int64), row_exp




def _have_flint() -> bool:
    try:
        import flint  # noqa: F401
    except ImportError:
        return False
    return True


_NO_FLINT = (f"python-flint is not installed: {install_hint('exact', 'python-flint')} for Arb "
             "enclosures, or use method='a-priori'")


def _work(dists: Sequence[Distribution]) -> int:
    """Terms per probe: atoms, components, and d per box."""
    total = 0
    for dist in dists:
        if isinstance(dist, Discrete):
            total += dist.atoms.shape[0]
        elif isinstance(dist, GaussianMixture):
            total += dist.means.shape[0] * (1 + dist.dim)
        else:
            total += dist.dim
    return total


# ------------------------------------------------------------------------------------------
# Entry enclosures


def feature_enclosure(distributions: Sequence[Distribution], z: np.ndarray,
                      centre: np.ndarray | None = None, method: str = "arb"
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Float values F~ and radii with |LSE_i(z_m) - <z_m, c_i> - F~[m, i]| <= rad[m, i].

    Parameters
    ----------
    distributions : N distributions on R^d (parameters taken as exact doubles)
    z : (M, d) probes (exact doubles)
    centre : (d,) or (N, d) shifts c_i, optional (zero)
    method : "arb" (ball arithmetic) or "a-priori" (float64 with a proved all-order bound,
        assuming libm exp/log/log1p within :data:`LIBM_ULPS` ulps)

    Returns
    -------
    mid, rad : (M, N) float arrays; rad is +inf where an entry could not be enclosed finitely.
    """
    dists, z, centres, _, _ = _validate(distributions, z, centre, None, None)
    if method == "arb":
        if not _have_flint():
            raise InputError(_NO_FLINT, field="method")
        return _enclose_arb(dists, z, centres)
    if method == "a-priori":
        with np.errstate(over="ignore", invalid="ignore"):
            return _enclose_apriori(dists, z, centres)
    raise InputError(f"unknown method {method!r}; choose 'arb' or 'a-priori'", field="method")


def _written_radius(dists: Sequence[Distribution], z: np.ndarray,
                    centres: np.ndarray) -> np.ndarray:
    """(M, N) bound on the non-affine part of F_written - F_float: the certificate is then one of
    the laws the user wrote, not of their float64 images (SPEC §3a).

    An affine change a_i + <b_i, z> of column i is a column operation on [1, Z, F] (an
    invertible triangular factor): it changes no rank, so only the rest must be enclosed. With
    p(z) the tilted weights of the float law (p_j / w~_j within exp(+-2 t), t = |z| rho +
    |z|^2 sigma / 2 the largest centred score, so ||p(z) - w~||_1 <= min(2, expm1(2 t))):

    * weights: w~ = fl(r / fl(sum r)) of the stored r (fl(1/n) when uniform), a stored r its
      written value times (1 + e), |e| <= u, when the input was rounded: w_j = w~_j / (1 +
      delta_j), |delta_j| <= delta = gamma_(n+2) + 2^-1074 / min w~ (n terms summed, one
      quotient, one input rounding, an underflowing quotient). F_w - F_f = log sum_j p_j /
      (1 + delta_j), whose distance to its value at z = 0 (a constant) is at most
      ||p - w~||_1 delta (1 + delta) / (1 - delta)^2;
    * atoms / means / covariances written as values that are not binary64 numbers
      (``rounded_inputs``): x~ = x (1 + e) coordinatewise changes score j by a_j, |a_j| <=
      alpha = u' (|z| max |y_j| + |z|^2 max ||S_j||_F / 2), u' = u / (1 - u). log sum p_j
      e^(a_j) is within alpha^2 / 2 of sum p_j a_j (Jensen and Hoeffding's lemma), which is
      within alpha ||p - w~||_1 of sum w~_j a_j, linear in z when S is exact; a rounded S adds
      its quadratic part u' |z|^2 max ||S_j||_F / 2 whole;
    * a box's LSE sum_l z_l a_l + g(z_l (b_l - a_l)), 0 < g' < 1: the first part is linear, and
      g(h + e) - g(h) is within |e| / 2 of e / 2 (linear), |e| <= u' |z| (|a| + |b|).
    """
    N = len(dists)
    zeta = np.asarray(_norm_up(z, axis=1))[:, None]  # (M, 1)
    u1 = _gamma(1)  # u / (1 - u), rounded up
    out = np.zeros((z.shape[0], N))
    for i, dist in enumerate(dists):
        rounded = bool(dist.rounded_inputs)
        if isinstance(dist, UniformBox):
            if rounded:
                ab = float(_norm_up(dist.low)) + float(_norm_up(dist.high))
                out[:, i] = u1 * zeta[:, 0] * ab / 2.0
            continue
        w = dist.weights
        pts = dist.atoms if isinstance(dist, Discrete) else dist.means
        rho = float(np.max(_norm_up(pts - centres[i], axis=1)))
        sig = (float(np.max(_norm_up(dist.covariances.reshape(len(w), -1), axis=1)))
               if isinstance(dist, GaussianMixture) else 0.0)
        zq = zeta[:, 0] ** 2 * sig / 2.0 if sig else 0.0  # (no inf * 0 for laws without S)
        tilt = zeta[:, 0] * rho + zq
        with np.errstate(over="ignore"):
            spread = np.minimum(2.0, np.expm1(2.0 * tilt) * (1 + 4 * _U))  # ||p - w~||_1
        delta = float(_up(_gamma(len(w) + 2) + _ETA / float(w.min()), 2))
        col = (spread * delta * (1 + delta) / (1 - delta) ** 2 if delta < 0.5
               else np.full(len(zeta), np.inf))
        if rounded:
            ymax = float(np.max(_norm_up(pts, axis=1)))
            alpha = u1 * (zeta[:, 0] * ymax + zq)
            col = col + alpha * spread + alpha * alpha / 2.0 + u1 * zq
        out[:, i] = col
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(_up(out, 12))


def _with_written_radius(rad: np.ndarray, dists, z, centres) -> np.ndarray:
    """``rad`` plus :func:`_written_radius`, rounded up (an infinite radius stays infinite)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.asarray(_up(rad + _written_radius(dists, z, centres), 1))
    out[~np.isfinite(out)] = np.inf
    return out


def _arb_upper_float(v) -> float:
    """Smallest-ish double >= the exact arb number v (v exact, non-negative)."""
    from flint import arb

    f = float(v)
    if not np.isfinite(f):
        return np.inf
    while not arb(f) >= v:
        f = float(np.nextafter(f, np.inf))
    return f


def _enclose_arb(dists, z, centres) -> tuple[np.ndarray, np.ndarray]:
    """Arb ball enclosures of every entry (exact inputs; radii include the final rounding)."""
    from flint import arb, arb_mat, ctx

    M, d = z.shape
    N = len(dists)
    mid = np.zeros((M, N))
    rad = np.zeros((M, N))
    with ctx.workprec(ARB_PREC):
        zrows = [[arb(float(v)) for v in row] for row in z]
        values: list[list] = [[None] * N for _ in range(M)]
        disc = [i for i, t in enumerate(dists) if isinstance(t, Discrete)]
        gmm = [i for i, t in enumerate(dists) if isinstance(t, GaussianMixture)]
        box = [i for i, t in enumerate(dists) if isinstance(t, UniformBox)]
        if disc:
            _arb_discrete(dists, disc, z, zrows, centres, values)
        if gmm:
            _arb_gaussian(dists, gmm, z, zrows, centres, values)
        if box:
            _arb_box(dists, box, zrows, centres, values)
        for m in range(M):
            for i in range(N):
                x = values[m][i]
                f = float(x.mid())
                if not (np.isfinite(f) and x.is_finite()):
                    mid[m, i], rad[m, i] = (f if np.isfinite(f) else 0.0), np.inf
                    continue
                mid[m, i] = f
                rad[m, i] = _arb_upper_float((x - arb(f)).abs_upper())
    return mid, _with_written_radius(rad, dists, z, centres)


def _row_blocks(M: int, width: int, budget: int = 200_000):
    step = max(1, budget // max(width, 1))
    for start in range(0, M, step):
        yield start, min(M, start + step)


def _arb_discrete(dists, idx, z, zrows, centres, values) -> None:
    """F = log sum_j w_j exp(<z, y_j - c>): one arb_mat product for the scores, then per entry."""
    from flint import arb, arb_mat

    d = z.shape[1]
    cols: list[list] = []
    weights: list = []
    slices: list[tuple[int, int, int]] = []
    for i in idx:
        dist = dists[i]
        c = [arb(float(v)) for v in centres[i]]
        start = len(cols)
        for y in dist.atoms:
            cols.append([arb(float(y[a])) - c[a] for a in range(d)])
        weights.extend(arb(float(w)) for w in dist.weights)
        slices.append((i, start, len(cols)))
    T = len(cols)
    Y = arb_mat([[cols[j][a] for j in range(T)] for a in range(d)])
    for lo, hi in _row_blocks(len(zrows), T):
        P = (arb_mat(zrows[lo:hi]) * Y).entries()
        for r, m in enumerate(range(lo, hi)):
            base = r * T
            for i, a, b in slices:
                s = sum((weights[j] * P[base + j].exp() for j in range(a, b)), arb(0))
                values[m][i] = s.log()


def _arb_gaussian(dists, idx, z, zrows, centres, values) -> None:
    """F = log sum_k pi_k exp(<z, m_k - c> + z^T S_k z / 2) with [z, z_a z_b] @ [m - c; S]."""
    from flint import arb, arb_mat

    d = z.shape[1]
    pairs = [(a, b) for a in range(d) for b in range(a, d)]
    cols: list[list] = []
    weights: list = []
    slices: list[tuple[int, int, int]] = []
    half = arb(0.5)
    for i in idx:
        dist = dists[i]
        c = [arb(float(v)) for v in centres[i]]
        start = len(cols)
        for mean, S in zip(dist.means, dist.covariances):
            lin = [arb(float(mean[a])) - c[a] for a in range(d)]
            quad = [(arb(float(S[a, a])) * half if a == b
                     else (arb(float(S[a, b])) + arb(float(S[b, a]))) * half) for a, b in pairs]
            cols.append(lin + quad)
        weights.extend(arb(float(w)) for w in dist.weights)
        slices.append((i, start, len(cols)))
    T = len(cols)
    rowsq = [row + [row[a] * row[b] for a, b in pairs] for row in zrows]
    B = arb_mat([[cols[j][p] for j in range(T)] for p in range(d + len(pairs))])
    for lo, hi in _row_blocks(len(zrows), T):
        P = (arb_mat(rowsq[lo:hi]) * B).entries()
        for r, m in enumerate(range(lo, hi)):
            base = r * T
            for i, a, b in slices:
                s = sum((weights[j] * P[base + j].exp() for j in range(a, b)), arb(0))
                values[m][i] = s.log()


def _arb_box(dists, idx, zrows, centres, values) -> None:
    """F = <z, low - c> + sum_l g((high_l - low_l) z_l), g(h) = log(expm1(h)/h), g(0) = 0."""
    from flint import arb

    for i in idx:
        dist = dists[i]
        lc = [arb(float(lo)) - arb(float(c)) for lo, c in zip(dist.low, centres[i])]
        width = [arb(float(hi)) - arb(float(lo)) for hi, lo in zip(dist.high, dist.low)]
        for m, row in enumerate(zrows):
            total = arb(0)
            for zl, cl, wl in zip(row, lc, width):
                total += zl * cl
                h = zl * wl
                if not h.is_zero():
                    total += (h.expm1() / h).log()
            values[m][i] = total


# a-priori float path ------------------------------------------------------------------------


def _enclose_apriori(dists, z, centres, tick=None) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values and all-order error bounds (see the module docstring).

    Uses zeta_m = ||z_m||_2 (upper bound) and Cauchy-Schwarz |<z, y>| <= zeta ||y||.
    ``tick(terms)``, when given, is called (from worker threads too) as each block of probes x
    terms (atoms, components) is done, with the number of (probe, term) pairs it held.
    """
    M, d = z.shape
    N = len(dists)
    mid = np.zeros((M, N))
    rad = np.zeros((M, N))
    zeta = _norm_up(z, axis=1)
    disc = [i for i, t in enumerate(dists) if isinstance(t, Discrete)]
    by_size: dict[int, list[int]] = {}
    for i in disc:
        by_size.setdefault(dists[i].atoms.shape[0], []).append(i)
    for n, idx in by_size.items():
        _apriori_logsumexp_group(
            idx, n, z, zeta, mid, rad,
            atoms=np.stack([dists[i].atoms for i in idx]) if idx else None,
            weights=np.stack([dists[i].weights for i in idx]), centres=centres[idx], tick=tick)
    gmm = [i for i, t in enumerate(dists) if isinstance(t, GaussianMixture)]
    by_k: dict[int, list[int]] = {}
    for i in gmm:
        by_k.setdefault(dists[i].means.shape[0], []).append(i)
    for k, idx in by_k.items():
        _apriori_logsumexp_group(
            idx, k, z, zeta, mid, rad,
            atoms=np.stack([dists[i].means for i in idx]),
            weights=np.stack([dists[i].weights for i in idx]), centres=centres[idx],
            covariances=np.stack([dists[i].covariances for i in idx]), tick=tick)
    for i, dist in enumerate(dists):
        if isinstance(dist, UniformBox):
            mid[:, i], rad[:, i] = _apriori_box(dist, z, zeta, centres[i])
            if tick is not None:
                tick(z.shape[0] * dist.dim)
    bad = ~np.isfinite(mid)
    rad[bad | ~np.isfinite(rad)] = np.inf
    mid[bad] = 0.0
    return mid, _with_written_radius(rad, dists, z, centres)


def _apriori_logsumexp_group(idx, n, z, zeta, mid, rad, *, atoms, weights, centres,
                             covariances=None, tick=None) -> None:
    """Discrete laws (or Gaussian mixtures when ``covariances`` is given) with n terms each.

    Scores t_j = log w_j + <z, y_j - c> (+ z^T S_j z / 2). Error of the computed score s~_j:

        |s~_j - t_j| <= gamma_(d^2+3d+12) zeta (rho_j + zeta sigma_j / 2)
                         + gamma_(K+4) |log w_j| + (d^2 + 4 d + 8) 2^-1074,

    rho_j >= ||y_j - c|| and sigma_j >= ||S_j||_F (upper bounds), K = 2 LIBM_ULPS (the libm
    relative error in units of u): y - c (1 rounding), the dot product (gamma_d), z^T S z via
    S z then a dot product (gamma_2d), two additions, plus one absolute 2^-1074 per
    underflowing product. logsumexp is 1-Lipschitz in the max-norm of its scores, so the
    exact F is within max_j |s~_j - t_j| of LSE(s~). LSE(s~) = mx + log S, S = sum_j exp(s~_j -
    mx) >= 1, and the computed S~ = S (1 + theta) with |theta| <= gamma_(K + 2n + 2)
    (subtractions: exp(x(1+d)) = exp(x) exp(x d), |x d e^x| <= u / e; libm: K u; a 2^-1022
    absolute error per underflowing exp, below n u S; the sum: gamma_(n-1)), so
    |log S~ - log S| <= theta / (1 - theta); then log adds K u |log S~| and the final addition
    u |F~|.
    """
    G, _, d = atoms.shape
    yc = atoms - centres[:, None, :]  # (G, n, d)
    rho = _up(_norm_up(yc, axis=2), 1)  # + the rounding of y - c is in the gamma below
    with np.errstate(divide="ignore"):
        lw = np.log(weights)  # weights > 0 (validated)
    wmax = np.abs(lw).max(axis=1)  # (G,)
    quad = covariances is not None
    sig = np.asarray(_norm_up(covariances.reshape(G, n, d * d), axis=2)) if quad else None
    g_score = _gamma(d * d + 3 * d + 12)  # covers any summation order of z^T S z
    g_log = _gamma(_K_LIBM + 4)
    theta = _gamma(_K_LIBM + 2 * n + 2)
    lse_err = float(_up(theta / (1.0 - theta), 3))
    M = z.shape[0]
    idx = np.asarray(idx)
    # token-major packing (n, G, d): the reductions over the n terms run over contiguous slabs
    ytm = np.ascontiguousarray(yc.transpose(1, 0, 2))
    lwt = np.ascontiguousarray(lw.T)
    stm = np.ascontiguousarray(covariances.transpose(1, 0, 2, 3)) if quad else None

    zt = np.ascontiguousarray(z.T)

    def block(g0: int, g1: int, m0: int, m1: int) -> None:
        gb, mb = g1 - g0, m1 - m0
        zb = zt[:, m0:m1]
        zeta_b = zeta[m0:m1]
        # scores laid out (n, gb, mb): the reductions over the n terms combine contiguous slabs
        s = (ytm[:, g0:g1].reshape(-1, d) @ zb).reshape(n, gb, mb)
        if stm is not None:
            S = stm[:, g0:g1].reshape(-1, d, d)
            sz = np.einsum("jab,bm->jam", S, zb)  # S_j z, then <z, S_j z>: gamma_2d
            s += (np.einsum("jam,am->jm", sz, zb) / 2.0).reshape(n, gb, mb)
        s += lwt[:, g0:g1, None]
        mx = s.max(axis=0)
        np.subtract(s, mx[None], out=s)
        np.exp(s, out=s)
        ls = np.log(s.sum(axis=0)).T  # (mb, gb)
        F = ls + mx.T
        # score error: max over j of the bound, via the per-distribution maxima
        if sig is not None:
            lin = rho[None, g0:g1] + zeta_b[:, None, None] * sig[None, g0:g1] / 2.0
            smax = zeta_b[:, None] * lin.max(axis=2)
        else:
            smax = zeta_b[:, None] * rho[g0:g1].max(axis=1)[None]
        e_score = _up(g_score * smax + g_log * wmax[None, g0:g1] + (d * d + 4 * d + 8) * _ETA, 4)
        err = e_score + _gamma(_K_LIBM + 1) * np.abs(ls) + lse_err + _gamma(1) * np.abs(F)
        mid[m0:m1, idx[g0:g1]] = F
        rad[m0:m1, idx[g0:g1]] = _up(err, 6)
        if tick is not None:
            tick(mb * gb * n)

    per = max(1, _BLOCK // max(n * M, 1))  # distributions per block
    rows_per = max(1, _BLOCK // max(n * per, 1))  # probes per block (many terms: n * M > block)
    bounds = [(g0, min(G, g0 + per), m0, min(M, m0 + rows_per))
              for g0 in range(0, G, per) for m0 in range(0, M, rows_per)]
    with np.errstate(under="ignore"):
        map_on_threads(lambda bnd: block(*bnd), bounds, _WORKERS)


def _uniform_g(h: np.ndarray) -> np.ndarray:
    """g(h) = log(expm1(h)/h) in float64, evaluated so that the bound of _apriori_box holds.

    |h| < 2: h/2 + log1p(q), q = sum_(k=1..10) x^(2k)/(2k+1)!, x = h/2 (positive terms;
    truncation < 1e-21 q); h >= 2: h - log h + log1p(-exp(-h)); h <= -2: log1p(-exp(h)) -
    log(-h).
    """
    out = np.zeros_like(h)
    mid = np.abs(h) < 2.0
    x = h[mid] / 2.0
    x2 = x * x
    term = np.ones_like(x)
    q = np.zeros_like(x)
    with np.errstate(under="ignore"):
        for k in range(1, 11):
            term = term * x2 / float((2 * k) * (2 * k + 1))
            q += term
    out[mid] = x + np.log1p(q)
    pos = h >= 2.0
    hp = h[pos]
    with np.errstate(under="ignore"):
        out[pos] = (hp - np.log(hp)) + np.log1p(-np.exp(-hp))
        neg = h <= -2.0
        hn = h[neg]
        out[neg] = np.log1p(-np.exp(hn)) - np.log(-hn)
    return out


def _apriori_box(dist: UniformBox, z, zeta, c) -> tuple[np.ndarray, np.ndarray]:
    """F = <z, low - c> + sum_l g(h_l), h_l = (high_l - low_l) z_l, with the error bound

        gamma_(d+2) zeta ||low - c|| + sum_l [gamma_3 |h~_l| + gamma_(2K+60) (|h~_l| + |g~_l|)
        + 70 2^-1074] + gamma_(d+1) (|lin~| + sum_l |g~_l|).

    h~ = fl(fl(high - low) z) is within gamma_2 |h| (+ 2^-1074) of h, and g is 1-Lipschitz
    (0 < g' < 1). The evaluation error of g~ (series: each term within gamma_(3k), their sum
    gamma_9, log1p K u, so gamma_(K+50) |phi|, phi <= |h|; large |h|: log, exp, log1p and two
    additions, at most gamma_(2K+6) (|h| + |g|) since log|h| <= |h| and the log1p term is
    <= 0.15 < |h|) is within gamma_(2K+60) (|h~| + |g~|) plus 64 underflow terms 2^-1074.
    """
    d = z.shape[1]
    lc = dist.low - c
    width = dist.high - dist.low
    with np.errstate(under="ignore"):
        lin = z @ lc
        h = z * width
        g = _uniform_g(h)
    F = lin + g.sum(axis=1)
    lcn = _norm_up(lc)
    ah, ag = np.abs(h), np.abs(g)
    err = (_gamma(d + 2) * zeta * _up(lcn, 1)
           + (_gamma(3) + _gamma(2 * _K_LIBM + 60)) * ah.sum(axis=1)
           + _gamma(2 * _K_LIBM + 60) * ag.sum(axis=1) + 70 * d * _ETA
           + _gamma(d + 1) * (np.abs(lin) + ag.sum(axis=1)))
    return F, _up(err, 3 * d + 10)
