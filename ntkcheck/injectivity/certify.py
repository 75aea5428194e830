"""Rigorous certificate that LSE functions are linearly independent modulo affine functions.

SPEC §3a "Certified means rigorous". The certified object is the exact real matrix

    A = diag(2^r) [1, Z, F] diag(2^k),   F[m, i] = LSE_i(z_m) - <z_m, c_i>        (M' x (N+d+1))

built from the stored binary64 parameters of the distributions and the probes z_m (all taken as
exact real numbers), a shift c_i per distribution (any vector: <z, c_i> is affine) and power-of-two
row and column scalings (r, k) chosen here. A lower bound sigma_min(A) >= beta > 0 proves full
column rank, hence independence: a relation sum_i a_i LSE_i = a_0 + <b, z> would give the null
vector (-a_0, sum_i a_i c_i - b, a_1..a_N) of [1, Z, F] (before scaling). Dropping probes only
lowers singular values, so a certificate on a subset of probe rows certifies every larger set.

beta = beta_float - ||Rad||_F, where (Weyl's inequality for A = A~ + E, |E| <= Rad entrywise):

1. **Entry enclosures** ``|F[m, i] - F~[m, i]| <= rad[m, i]``, either
   * ``"arb"``: ball arithmetic (python-flint Arb) started from the exact doubles; no
     assumption beyond the correctness of Arb; cost ~1.5 us per (probe, atom) pair; or
   * ``"a-priori"``: F~ computed here in float64 with an error bound that includes every order
     (Higham's gamma_k = k u / (1 - k u), u = 2^-53, underflow terms included). It assumes
     that numpy's exp, log and log1p are accurate to :data:`LIBM_ULPS` ulps in the normal range
     (an assumption, not proved here; the test suite checks it against 50-digit values on
     the machine it runs on); logsumexp is 1-Lipschitz in its scores and
     g(h) = log(expm1(h)/h) in h.
2. **beta_float**, a rigorous lower bound on sigma_min of the float matrix A~ (its condition
   number is never squared): R from a QR of A~, Y ~ R^-1 (both approximations, any Y is
   valid); with the exact C := A~ Y, sigma_min(A~) >= sigma_min(C) / ||Y||_2, where
   sigma_min(C) >= sqrt(1 - ||C~^T C~ - I||_2) - ||C - C~||_F for the computed C~, and
   ||Y||_2 <= sqrt(alpha) is proved by a Cholesky factorisation of alpha I - Y^T Y run to
   completion (Higham's backward error bound for Cholesky, as in Rump's verification of
   positive definiteness). Float products obey |fl(X Y) - X Y| <= gamma_k |X| |Y| (k the
   inner dimension, any summation order, FMA allowed: the standard model, which BLAS
   satisfies as it uses no Strassen-like algorithm), with Cauchy-Schwarz for |X| |Y|; every
   bound is evaluated in float64 with an explicit upward (or downward) margin.
3. **Weyl**: sigma_min(A) >= beta_float - ||Rad||_F.

[1, Z] must itself have full column rank (probes not in a hyperplane), which the certificate
proves along the way.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.linalg

from ..distributions import Discrete, Distribution, GaussianMixture, UniformBox
from ..errors import InputError

__all__ = ["Certificate", "certify_independence", "feature_enclosure", "sigma_min_lower_bound",
           "LIBM_ULPS", "DEFAULT_BUDGET", "ARB_PREC", "SCRATCH_BYTES"]

#: Assumed accuracy of numpy's exp, log and log1p on float64 (normal range), in ulps. One ulp
#: of y is at most 2 u |y|, so the assumed relative error is 2 LIBM_ULPS u.
LIBM_ULPS = 4
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

_U = 2.0**-53  # unit round-off
_K_LIBM = 2 * LIBM_ULPS  # libm relative error in units of u
_ETA = 2.0**-1074  # smallest subnormal: bound on the absolute error of one underflowing op
_TINY = 2.0**-1022  # smallest normal


def _gamma(k: float) -> float:
    """Higham's gamma_k = k u / (1 - k u), rounded up (k u < 1/2 is checked)."""
    ku = k * _U
    if not ku < 0.5:
        return float("inf")
    return float(np.nextafter(ku / (1.0 - ku) * (1 + 4 * _U), np.inf))


def _up(x, ops: float = 1.0):
    """Upper bound of a non-negative quantity whose float evaluation took ``ops`` operations.

    Each operation on non-negative numbers loses a factor (1 - u) at most, so the exact value is
    at most x / (1 - u)^ops <= x (1 + gamma_ops); the factor 1 + 2 gamma_(ops+2) also covers the
    rounding of this multiplication.
    """
    return np.nextafter(np.asarray(x, float) * (1.0 + 2.0 * _gamma(ops + 2)), np.inf)


def _down(x, ops: float = 1.0):
    """Lower bound of a positive quantity computed with ``ops`` operations (mirror of _up)."""
    return np.nextafter(np.asarray(x, float) * (1.0 - 2.0 * _gamma(ops + 2)), -np.inf)


def _norm_up(x: np.ndarray, axis=None) -> np.ndarray | float:
    """Upper bound of the 2-norm (Frobenius when ``axis`` is None) of ``x``, underflow-safe.

    The data are scaled by a power of two (exact, except for subnormal results: absolute error
    <= 2^-1074 each), squared and summed (k squares and k - 1 additions: gamma_(2k+1)), and the
    square root adds one rounding; each underflowing square adds at most 2^-1074.
    """
    x = np.asarray(x, float)
    if axis is None:
        return _fro_up(x)
    a = np.abs(x)
    if a.size == 0:
        return np.zeros(np.delete(a.shape, axis))
    big = a.max(axis=axis, keepdims=True)
    if not np.all(np.isfinite(big)):
        return np.full(np.squeeze(big, axis).shape, np.inf)
    _, e = np.frexp(np.where(big > 0, big, 1.0))
    scaled = np.ldexp(a, -e)  # entries <= 1
    count = a.shape[axis]
    ssq = np.sum(scaled * scaled, axis=axis, keepdims=True)
    ssq = _up(ssq, 2 * count + 1) + count * 2 * _ETA + _ETA
    out = np.ldexp(_up(np.sqrt(ssq), 1), e)  # sqrt of an upper bound of the sum of squares
    # the subnormal part lost by scaling: each entry moves by <= 2^-1074, i.e. sqrt(count) 2^-1074
    out = _up(out + np.ldexp(np.sqrt(count) * _ETA * 2, e) + _ETA, 2)
    return np.squeeze(out, axis)


def _fro_up(x: np.ndarray) -> float:
    """Upper bound of the Frobenius norm of ``x`` (as :func:`_norm_up`, in row chunks)."""
    if x.size == 0:
        return 0.0
    big = max(float(np.max(x)), -float(np.min(x)))
    if not np.isfinite(big):
        return float("inf")
    _, e = np.frexp(big if big > 0 else 1.0)
    flat = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1, 1)
    step = max(1, (1 << 20) // max(flat.shape[1], 1))
    ssq = 0.0
    for r0 in range(0, flat.shape[0], step):
        blk = np.ldexp(flat[r0:r0 + step], -int(e))  # entries <= 1
        ssq += float(np.einsum("ij,ij->", blk, blk))
    count = x.size
    ssq = float(_up(ssq, 2 * count + 1)) + count * 2 * _ETA + _ETA
    out = np.ldexp(float(_up(np.sqrt(ssq), 1)), int(e))
    out = out + np.ldexp(np.sqrt(count) * _ETA * 2, int(e)) + _ETA
    return float(_up(out, 2))


# ------------------------------------------------------------------------------------------
# Certificate


@dataclass(frozen=True)
class Certificate:
    """Outcome of :func:`certify_independence`.

    Attributes
    ----------
    certified : bool
        True when ``lower_bound > 0``: the LSE functions are linearly independent modulo
        affine functions (a proof, under the stated assumptions of ``method``).
    lower_bound : float
        Rigorous lower bound on sigma_min of the scaled exact matrix A (<= 0 or nan when not
        certified).
    method : "arb" or "a-priori"
        How the entries of F were enclosed.
    rows : (M',) int array
        The probe indices used.
    columns : int
        N + d + 1.
    row_exponents, column_exponents : int arrays
        The scalings diag(2^r), diag(2^k) of A.
    max_radius : float
        Largest entry radius of F (in the scaled A).
    sigma_float : float
        Rigorous lower bound on sigma_min of the float matrix A~.
    radius_norm : float
        Upper bound on ||A - A~||_F.
    seconds : float
    reason : str
        Why it is or is not certified, with the numbers.
    statement : str
        One sentence saying exactly what is proved (or that nothing is).
    """

    certified: bool
    lower_bound: float
    method: str
    rows: np.ndarray
    columns: int
    row_exponents: np.ndarray
    column_exponents: np.ndarray
    max_radius: float
    sigma_float: float
    radius_norm: float
    seconds: float
    reason: str
    statement: str = field(default="")

    def to_dict(self) -> dict:
        """JSON-ready dictionary (row indices as a list)."""
        return {
            "certified": self.certified,
            "lower_bound": _json_float(self.lower_bound),
            "method": self.method,
            "rows": int(self.rows.size),
            "row_indices": [int(r) for r in self.rows],
            "columns": self.columns,
            "row_exponents": [int(e) for e in self.row_exponents],
            "column_exponents": [int(e) for e in self.column_exponents],
            "max_radius": _json_float(self.max_radius),
            "sigma_float": _json_float(self.sigma_float),
            "radius_norm": _json_float(self.radius_norm),
            "seconds": self.seconds,
            "reason": self.reason,
            "statement": self.statement,
        }


def _json_float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


# ------------------------------------------------------------------------------------------
# Validation


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


_NO_FLINT = ("python-flint is not installed: pip install python-flint (the ntkcheck[exact] extra) "
             "for Arb enclosures, "
             "or use method='a-priori'")


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
    return mid, rad


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


def _enclose_apriori(dists, z, centres) -> tuple[np.ndarray, np.ndarray]:
    """Float64 values and all-order error bounds (see the module docstring).

    Uses zeta_m = ||z_m||_2 (upper bound) and Cauchy-Schwarz |<z, y>| <= zeta ||y||.
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
            weights=np.stack([dists[i].weights for i in idx]), centres=centres[idx])
    gmm = [i for i, t in enumerate(dists) if isinstance(t, GaussianMixture)]
    by_k: dict[int, list[int]] = {}
    for i in gmm:
        by_k.setdefault(dists[i].means.shape[0], []).append(i)
    for k, idx in by_k.items():
        _apriori_logsumexp_group(
            idx, k, z, zeta, mid, rad,
            atoms=np.stack([dists[i].means for i in idx]),
            weights=np.stack([dists[i].weights for i in idx]), centres=centres[idx],
            covariances=np.stack([dists[i].covariances for i in idx]))
    for i, dist in enumerate(dists):
        if isinstance(dist, UniformBox):
            mid[:, i], rad[:, i] = _apriori_box(dist, z, zeta, centres[i])
    bad = ~np.isfinite(mid)
    rad[bad | ~np.isfinite(rad)] = np.inf
    mid[bad] = 0.0
    return mid, rad


def _apriori_logsumexp_group(idx, n, z, zeta, mid, rad, *, atoms, weights, centres,
                             covariances=None) -> None:
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

    per = max(1, _BLOCK // max(n * M, 1))  # distributions per block
    rows_per = max(1, _BLOCK // max(n * per, 1))  # probes per block (many terms: n * M > block)
    bounds = [(g0, min(G, g0 + per), m0, min(M, m0 + rows_per))
              for g0 in range(0, G, per) for m0 in range(0, M, rows_per)]
    with np.errstate(under="ignore"):
        if len(bounds) == 1 or _WORKERS == 1:
            for bnd in bounds:
                block(*bnd)
        else:
            from .factor import blas_single_thread
            with blas_single_thread(), ThreadPoolExecutor(_WORKERS) as pool:
                list(pool.map(lambda bnd: block(*bnd), bounds))


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


# ------------------------------------------------------------------------------------------
# sigma_min of a float matrix


#: ||C~^T C~ - I|| bound above which the Cholesky-QR inverse factor Y is refined once more
#: (CholeskyQR2): sqrt(1 - eta) then costs at most 2^-21 of the certified bound.
REFINE_ETA = 2.0**-20


def _inverse_factor(A: np.ndarray, At: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Y ~ R^-1 for the R factor of A (M x n), upper triangular, and how it was obtained.

    Cholesky QR first: R = chol(fl(A^T A)) (one symmetric rank-k update at BLAS-3 speed,
    M n^2 flops); when the Gram matrix is not numerically positive definite (kappa_2(A) beyond
    about u^-1/2) a Householder QR (2 M n^2 flops at panel speed). Either is an approximation
    only: the bound of :func:`sigma_min_lower_bound` holds for any Y, the factorisation affects
    its tightness and cost, never its validity. Returns (None, reason) when R is singular to
    working precision.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        G = scipy.linalg.blas.dsyrk(1.0, At, trans=0)  # upper triangle of fl(A^T A)
        R, info = scipy.linalg.lapack.dpotrf(G, lower=0, clean=1, overwrite_a=1)
    how = "Cholesky QR"
    if info != 0 or not np.all(np.isfinite(np.diagonal(R))):
        del G, R
        R = scipy.linalg.qr(A, mode="raw", check_finite=False)[1]  # (n, n); Q is not formed
        how = "Householder QR"
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        Y, info = scipy.linalg.lapack.dtrtri(R, lower=0)
    if info != 0 or not np.all(np.isfinite(Y)):
        rmin = float(np.abs(np.diagonal(R)).min()) if R.size else 1.0
        return None, (f"the triangular factor is singular to working precision "
                      f"(min |R_jj| {rmin:.3g})")
    return np.asfortranarray(Y), how


def _orthogonality(At: np.ndarray, Y: np.ndarray, fro_a: float):
    """(C~^T, e_c, fro_c, eta, gram) for C~ = fl(A Y) (kept as its transpose, (n, M)): the
    bound e_c >= ||C~ - A Y||_F, ||C~||_F, eta >= ||C~^T C~ - I||_2, and fl(C~^T C~) (upper)."""
    n, M = At.shape
    fro_y = float(_norm_up(Y))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        Ct = scipy.linalg.blas.dtrmm(1.0, Y, At, side=0, lower=0, trans_a=1)  # (A Y)^T
    if not (np.all(np.isfinite(Ct)) and np.isfinite(fro_y)):
        return None
    e_c = float(_up(_gamma(n) * fro_a * fro_y + np.sqrt(float(M) * n) * n * 2 * _ETA, 4))
    fro_c = float(_norm_up(Ct))
    gram = scipy.linalg.blas.dsyrk(1.0, Ct, trans=0)  # upper triangle of fl(C~^T C~), lower 0
    diag = np.diagonal(gram).copy()
    gram[np.diag_indices(n)] = 0.0  # the strictly upper part, in place (no N x N copy)
    fro_off = float(_norm_up(gram))
    gram[np.diag_indices(n)] = diag
    fro_g = float(_up(np.sqrt(_up(2.0 * fro_off**2 + _norm_up(diag - 1.0) ** 2, 4)), 1))
    eta = float(_up(fro_g * (1 + 2 * _U) + _gamma(M) * fro_c**2 + M * n * _ETA, 4))
    return Ct, e_c, fro_c, eta, gram


def sigma_min_lower_bound(A: np.ndarray) -> tuple[float, str]:
    """Rigorous lower bound on sigma_min of the float matrix A (M x n, M >= n), with a note.

    Y ~ R^-1 (:func:`_inverse_factor`: Cholesky QR, or Householder QR when the Gram matrix is
    numerically singular; refined as in CholeskyQR2, Y <- Y chol(C~^T C~)^-1, while
    eta > :data:`REFINE_ETA`, at most twice) is an
    approximation only; with the exact product C := A Y, sigma_min(A) >= sigma_min(C) /
    ||Y||_2 (A = C Y^-1), where

    * sigma_min(C) >= sqrt(1 - eta) - ||C - C~||_F (Weyl), C~ = fl(A Y) with
      ||C~ - C||_F <= gamma_n ||A||_F ||Y||_F (|fl(A Y) - A Y| <= gamma_n |A| |Y|), and
      eta >= ||C~^T C~ - I||_2: ||fl(C~^T C~) - I||_F + gamma_M ||C~||_F^2;
    * ||Y||_2 <= sqrt(alpha), alpha proved >= lambda_max(Y^T Y) by :func:`_norm2_upper`.

    C is nearly orthonormal, so the condition number of A is never squared in the bound (the
    Cholesky QR only squares it in the approximation Y, which the refinement repairs). Cost: the
    Gram matrix (M n^2), A Y (M n^2), C^T C (M n^2), a triangular inverse (n^3/3) and the norm
    bound (~ 1.3 n^3), plus 2 M n^2 + n^3 per refinement.
    """
    A = np.asarray(A, dtype=np.float64)
    M, n = A.shape
    if M < n:
        return 0.0, f"fewer rows ({M}) than columns ({n})"
    if not np.all(np.isfinite(A)):
        return float("nan"), "the float matrix has non-finite entries"
    A = np.ascontiguousarray(A)
    At = A.T  # Fortran-ordered view: BLAS takes it without a copy
    Y, how = _inverse_factor(A, At)
    if Y is None:
        return 0.0, how
    fro_a = float(_norm_up(A))
    for refinement in range(3):
        state = _orthogonality(At, Y, fro_a)
        if state is None:
            return float("nan"), "overflow in A R^-1"
        Ct, e_c, fro_c, eta, gram = state
        if eta <= REFINE_ETA or refinement == 2:
            break
        # CholeskyQR2: Y <- Y chol(C~^T C~)^-1, still upper triangular
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            R2, info = scipy.linalg.lapack.dpotrf(gram, lower=0, clean=1, overwrite_a=1)
            Y2, info2 = (scipy.linalg.lapack.dtrtri(R2, lower=0) if info == 0 else (None, 1))
        if info2 != 0 or not np.all(np.isfinite(Y2)):
            state = _orthogonality(At, Y, fro_a)  # gram was overwritten: the current Y's bound
            if state is None:
                return float("nan"), "overflow in A R^-1"
            Ct, e_c, fro_c, eta, gram = state
            break  # (valid, if loose)
        del Ct
        Y = np.asfortranarray(scipy.linalg.blas.dtrmm(1.0, Y2, Y, side=1, lower=0))
        how = how.split(",")[0] + (", refined" if refinement == 0 else
                                   f", refined {refinement + 1}x")
    del Ct, gram
    fro_y = float(_norm_up(Y))
    if not eta < 1.0:
        return 0.0, f"||C^T C - I|| bound {eta:.3g} >= 1 (A~ too ill-conditioned to verify)"
    sc = float(_down(np.sqrt(_down(1.0 - eta, 1)), 1)) - e_c
    if not sc > 0:
        return float(sc), (f"||C - C~||_F bound {e_c:.3g} exceeds sigma_min(C~) "
                           "(A~ too ill-conditioned to verify)")
    sc = float(_down(sc, 1))
    norm_y, norm_how = _norm2_upper(Y, fro_y)
    bound = float(_down(sc / norm_y, 2))
    return bound, (f"sigma_min(A~) >= {bound:.6g} (Y ~ R^-1 by {how}; ||C^T C - I|| <= "
                   f"{eta:.2g}, ||C - C~||_F <= {e_c:.2g}, ||R^-1||_2 <= {norm_y:.6g} by "
                   f"{norm_how})")


#: Relative margins tried for alpha = lambda_est (1 + delta) in :func:`_norm2_upper`.
_NORM_MARGINS = (1e-4, 3e-3, 3e-2, 0.3, 3.0)
#: Relative tolerance of the Lanczos estimate of lambda_max(Y^T Y) in _norm2_upper (the
#: smallest margin tried above it is 1e-4).
_LANCZOS_RTOL = 1e-10


def _largest_eigenvalue(G: np.ndarray) -> float:
    """Estimate of lambda_max of the symmetric G (upper triangle stored), by Lanczos (ARPACK
    via scipy's eigsh, matrix-vector products with BLAS dsymv: one pass over G each); if
    ARPACK does not converge, its best Ritz value, else a block power iteration. Any estimate
    is valid for :func:`_norm2_upper`: the Cholesky test proves the bound, the estimate only
    decides how tight it is."""
    import scipy.sparse.linalg as sparse_linalg

    n = G.shape[0]
    if n <= 64:  # dense: cheaper than iterating
        return float(scipy.linalg.eigvalsh(G, lower=False, subset_by_index=[n - 1, n - 1])[0])
    op = sparse_linalg.LinearOperator(
        (n, n), matvec=lambda x: scipy.linalg.blas.dsymv(1.0, G, np.ravel(x), lower=0),
        dtype=float)
    v0 = np.random.default_rng(0).standard_normal(n)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            w = sparse_linalg.eigsh(op, k=1, which="LA", tol=_LANCZOS_RTOL, v0=v0,
                                    return_eigenvectors=False)
        return float(w[-1])
    except sparse_linalg.ArpackNoConvergence as err:
        if len(err.eigenvalues):
            return float(np.max(err.eigenvalues))
    except sparse_linalg.ArpackError:
        pass
    X = v0[:, None]
    for _ in range(100):  # plain power iteration (a lower estimate)
        X = X / np.linalg.norm(X)
        W = scipy.linalg.blas.dsymv(1.0, G, X[:, 0], lower=0)[:, None]
        lam = float(X[:, 0] @ W[:, 0])
        X = W
    return lam


def _norm2_upper(Y: np.ndarray, fro_y: float) -> tuple[float, str]:
    """Upper bound on ||Y||_2 (Y square), tight to ~(1 + delta)^(1/2), else ||Y||_F.

    G~ = fl(Y^T Y) with ||G~ - Y^T Y||_2 <= e_g = gamma_n ||Y||_F^2. For alpha slightly above
    a Lanczos estimate of lambda_max (:func:`_largest_eigenvalue`), X' = fl(fl(alpha I - G~) - c I) is given to
    Cholesky (LAPACK dpotrf). If it runs to completion, L L^T = X' + D with
    |D| <= gamma_(n+1) |L| |L^T|, hence ||D||_2 <= rho = gamma_(n+1) / (1 - gamma_(n+1)) tr(X')
    (Higham, Accuracy and Stability, Thm 10.3, valid for the blocked and recursive variants of
    LAPACK with conventional BLAS; Rump, BIT 46 (2006), who also gives the underflow terms),
    so X' >= -rho I and
    alpha I - Y^T Y = X' + (G~ - Y^T Y) + c I - (diagonal roundings) is positive definite when
    c > rho + e_g + u (max|X~_ii| + max|X'_ii|) (+ underflow terms): then ||Y||_2 < sqrt(alpha).
    """
    n = Y.shape[0]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        G = scipy.linalg.blas.dsyrk(1.0, Y, trans=1)
    # the upper triangle is the computed G~ (dsymv and dpotrf read only that part)
    if not np.all(np.isfinite(G)):
        return float(fro_y), "||R^-1||_F"
    e_g = float(_up(_gamma(n) * fro_y**2 + n * n * _ETA, 2))
    lam = _largest_eigenvalue(G)
    if not (np.isfinite(lam) and lam > 0):
        return float(fro_y), "||R^-1||_F"
    rho_factor = _gamma(n + 1) / (1.0 - _gamma(n + 1))
    idx = np.diag_indices(n)
    for delta in _NORM_MARGINS:
        alpha = float(_up((lam + e_g) * (1.0 + delta), 2))
        X = -G
        X[idx] += alpha
        diag1 = np.abs(X[idx]).max()
        tr = float(_up(np.abs(X[idx]).sum(), n))
        under = 4 * n * (2 * (n + 1) + diag1) * _ETA  # underflow terms (Rump 2006)
        c = 2.0 * (rho_factor * tr + e_g + 2 * _U * diag1 + under)
        if not c < alpha:
            break
        X[idx] -= c
        diag_x = X[idx].copy()  # the diagonal of X' actually factored
        diag2 = np.abs(diag_x).max()
        _, info = scipy.linalg.lapack.dpotrf(X, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            continue
        rho = rho_factor * float(_up(np.abs(diag_x).sum(), n + 4))
        slack = c - float(_up(rho + e_g + _U * (diag1 + diag2) * (1 + 4 * _U)
                              + under, 6))
        if slack > 0:
            bound = float(_up(np.sqrt(alpha), 1))
            if bound < fro_y:
                return bound, f"a Cholesky certificate (alpha = lambda_est (1 + {delta:g}))"
            break
    return float(fro_y), "||R^-1||_F"


# ------------------------------------------------------------------------------------------
# Entry point


def certify_independence(distributions: Sequence[Distribution], z: np.ndarray, *,
                         centre: np.ndarray | None = None, rows=None, row_weights=None,
                         budget: int = DEFAULT_BUDGET, method: str = "auto") -> Certificate:
    """Prove that the LSE functions are linearly independent modulo affine functions.

    Certifies sigma_min(A) >= lower_bound > 0 for the exact matrix
    A = diag(2^r) [1, Z, F] diag(2^k), F[m, i] = LSE_i(z_m) - <z_m, c_i>, on the probe rows
    ``rows`` (module docstring; SPEC §3a).

    Parameters
    ----------
    distributions : sequence of N Discrete / UniformBox / GaussianMixture on R^d; their stored
        float64 parameters are the exact values certified.
    z : (M, d) probes (exact doubles).
    centre : (d,) or (N, d), optional
        Shift c (or c_i per distribution) subtracted inside the enclosure; any value is valid,
        a value near each distribution's mean keeps |F| and its radii small.
    rows : int array, optional
        Probe indices to use (all by default); needs at least N + d + 1.
    row_weights : (M,) positive, optional
        Row weights, rounded down to powers of two 2^r (exact scaling).
    budget : int
        ``method="auto"`` uses Arb when M' * (atoms + components (1 + d) + d per box) <= budget
        and python-flint is installed, else the a-priori bound.
    method : "auto", "arb" or "a-priori"

    Returns
    -------
    Certificate
    """
    t0 = time.perf_counter()
    if method not in ("auto", "arb", "a-priori"):
        raise InputError(f"unknown method {method!r}; choose 'auto', 'arb' or 'a-priori'",
                         field="method")
    dists, z, centres, rows, row_exp = _validate(distributions, z, centre, rows, row_weights)
    N, d = len(dists), z.shape[1]
    n_cols = N + d + 1
    Mp = rows.size
    chosen = method if method != "auto" else ("arb" if Mp * _work(dists) <= budget else "a-priori")
    if chosen == "arb" and not _have_flint():
        if method == "arb":
            raise InputError(_NO_FLINT, field="method")
        chosen = "a-priori"

    def result(certified, lower, reason, col_exp=np.zeros(n_cols, int), max_rad=np.nan,
               sig=np.nan, radn=np.nan):
        statement = _statement(certified, lower, chosen, Mp, N, d)
        return Certificate(bool(certified), float(lower), chosen, rows, n_cols, row_exp,
                           np.asarray(col_exp, int), float(max_rad), float(sig), float(radn),
                           time.perf_counter() - t0, reason, statement)

    if Mp < n_cols:
        return result(False, np.nan, f"{Mp} probe rows < N + d + 1 = {n_cols} columns: "
                      "add probes")
    zs = z[rows]
    if chosen == "arb":
        fmid, frad = _enclose_arb(dists, zs, centres)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            fmid, frad = _enclose_apriori(dists, zs, centres)
    if not (np.all(np.isfinite(fmid)) and np.all(np.isfinite(frad))):
        return result(False, np.nan, "an LSE entry could not be enclosed in float64 range")
    original = np.column_stack([np.ones(Mp), zs, fmid])
    del fmid
    col = np.empty(n_cols)
    step = max(1, (1 << 20) // max(Mp, 1))  # column blocks: temporaries of ~2^20 entries
    with np.errstate(over="ignore", under="ignore"):
        for j0 in range(0, n_cols, step):
            col[j0:j0 + step] = _norm_up(np.ldexp(original[:, j0:j0 + step], row_exp[:, None]),
                                         axis=0)
    _, e = np.frexp(np.where((col > 0) & np.isfinite(col), col, 1.0))
    col_exp = -(e - 1)  # any power of two is valid; this one brings column norms into [1, 2)
    # scale in column blocks (temporaries stay small); 2^k scaling is exact unless the result
    # overflows (caught below) or is subnormal (checked by scaling back)
    A = np.empty_like(original)
    rad = frad
    inexact = 0
    with np.errstate(over="ignore", under="ignore"):
        for j0 in range(0, n_cols, step):
            j1 = min(n_cols, j0 + step)
            ex = row_exp[:, None] + col_exp[None, j0:j1]
            blk = np.ldexp(original[:, j0:j1], ex)
            A[:, j0:j1] = blk
            small = np.abs(blk) < _TINY
            inexact += int(np.count_nonzero(np.ldexp(blk[small], -ex[small])
                                            != original[:, j0:j1][small]))
            f0, f1 = max(j0, d + 1), j1
            if f1 > f0:  # radii of the F columns, rounded up (<= 1 ulp lost when subnormal)
                fr = rad[:, f0 - d - 1:f1 - d - 1]
                fr[...] = np.nextafter(np.ldexp(fr, ex[:, f0 - j0:]), np.inf)
    del original
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(rad))):
        return result(False, np.nan, "overflow when scaling the matrix", col_exp)
    # each inexactly scaled entry is within 2^-1074 of its exact value
    radn = float(_up(_norm_up(rad) + np.sqrt(inexact) * 2 * _ETA, 2))
    max_rad = float(rad.max()) + (2 * _ETA if inexact else 0.0) if rad.size else 0.0
    del rad, frad  # M' x n numbers fewer while the factorisation runs
    sig, note = sigma_min_lower_bound(A)
    if not np.isfinite(sig):
        return result(False, np.nan, note, col_exp, max_rad, sig, radn)
    lower = sig - radn
    lower = float(np.nextafter(lower, -np.inf))
    if lower > 0:
        reason = f"{note}; entry radii ||Rad||_F <= {radn:.3g}, so sigma_min(A) >= {lower:.6g}"
    else:
        reason = (f"not certified: {note}; entry radii ||Rad||_F <= {radn:.3g} "
                  f"(lower bound {lower:.3g} <= 0)")
    return result(lower > 0, lower, reason, col_exp, max_rad, sig, radn)


def _statement(certified: bool, lower: float, method: str, rows: int, N: int, d: int) -> str:
    how = ("Arb ball arithmetic" if method == "arb" else
           f"a float64 error bound with all orders, assuming libm exp/log/log1p within "
           f"{LIBM_ULPS} ulps")
    if not certified:
        return (f"Nothing is proved: no positive lower bound on sigma_min of the "
                f"{rows} x {N + d + 1} matrix [1, Z, F] was found ({how}).")
    return (f"For the stored binary64 parameters and the {rows} probes taken as exact reals, "
            f"the {rows} x {N + d + 1} matrix [1, Z, F] with F[m, i] = LSE_i(z_m) - <z_m, c_i> "
            f"(power-of-two row/column scaling) has smallest singular value >= {lower:.3g} > 0 "
            f"(entries by {how}; verification in IEEE float64 with Higham's gamma_k bounds), so "
            f"the {N} LSE functions are linearly independent modulo affine functions.")
