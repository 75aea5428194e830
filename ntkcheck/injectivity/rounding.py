"""Directed error bounds for float64 evaluations (SPEC §3a): Higham's gamma_k, upward and
downward margins, and overflow / underflow-safe upper bounds of 2-norms, used by the entry
enclosures (:mod:`ntkcheck.injectivity.enclosure`) and the sigma_min bound
(:mod:`ntkcheck.injectivity.certify`). Standard model: fl(x op y) = (x op y)(1 + e), |e| <= u,
plus an absolute 2^-1074 per underflowing operation."""

from __future__ import annotations

import numpy as np

__all__ = ["LIBM_ULPS"]

#: Assumed accuracy of numpy's exp, log and log1p on float64 (normal range), in ulps. One ulp
#: of y is at most 2 u |y|, so the assumed relative error is 2 LIBM_ULPS u.
LIBM_ULPS = 4
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


def gram_rounding(M: int, n: int, fro_a: float) -> float:
    """e_G >= ||S - A^T A||_2 for S = fl(A^T A) (M x n, any order of the M-term sums, FMA or
    not): gamma_M ||A||_F^2 (|fl(x^T y) - x^T y| <= gamma_M |x|^T |y| and Cauchy-Schwarz) plus
    2^-1074 per underflowing product, 2 M per entry, ||.||_F over n^2 entries: 2 M n 2^-1074.
    ``fro_a`` >= ||A||_F. Three float operations, rounded up."""
    return float(_up(_gamma(M) * fro_a**2 + 2 * M * n * _ETA, 3))


def cholesky_rounding(n: int, diag: np.ndarray) -> float:
    """rho >= ||Delta||_2 for a Cholesky factorisation (LAPACK dpotrf, any blocked or recursive
    variant with conventional BLAS) that ran to completion on an n x n matrix X' with diagonal
    ``diag``: R^T R = X' + Delta with |Delta| <= gamma_(n+1) |R^T| |R| (Higham, Thm 10.3), so
    ||Delta||_2 <= gamma_(n+1) ||R||_F^2 = gamma_(n+1) tr(X' + Delta), hence
    ||Delta||_2 <= gamma_(n+1) / (1 - gamma_(n+1)) sum_i |X'_ii| (the sum rounded up)."""
    return _gamma(n + 1) / (1.0 - _gamma(n + 1)) * float(_up(np.abs(diag).sum(), n + 4))
