"""Independent high-precision re-check of exact dependencies (SPEC §4).

Before an exact identity  sum_i c_i LSE_i(z) = a + <b, z>  is reported, it is evaluated at
:data:`CHECK_POINTS` random rational points z with mpmath at :data:`CHECK_DIGITS` significant
digits, directly from the exact parameters (sums over atoms and components, the closed form of
the uniform box), not from the factorisation that produced it; the identity must hold to a
relative :data:`CHECK_RTOL` of the size of its terms.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import mpmath
import numpy as np

from .laws import MIXTURE, UNIFORM, ExactLaw

__all__ = ["lse_mp", "check_identity", "CHECK_POINTS", "CHECK_DIGITS", "CHECK_RTOL"]

CHECK_POINTS = 4
CHECK_DIGITS = 50
CHECK_RTOL = 1e-40


def _q(x: Fraction):
    return mpmath.mpf(x.numerator) / x.denominator


def lse_mp(law: ExactLaw, z: Sequence[Fraction]):
    """LSE_mu(z) as an mpmath number at the current working precision (z exact rationals)."""
    zq = [_q(x) for x in z]
    if law.kind == UNIFORM:
        total = mpmath.mpf(0)
        for a, b, zl in zip(law.low, law.high, zq):
            w = _q(b - a)
            total += _q(a) * zl
            h = w * zl
            if h != 0:
                total += mpmath.log(mpmath.expm1(h) / h)
        return total
    exps = []
    for k, (p, w) in enumerate(zip(law.points, law.weights)):
        s = mpmath.log(_q(w)) + mpmath.fsum(_q(pl) * zl for pl, zl in zip(p, zq))
        if law.kind == MIXTURE:
            S = law.covariances[k]
            s += mpmath.fsum(_q(S[l][m]) * zq[l] * zq[m] for l in range(law.dim)
                             for m in range(law.dim)) / 2
        exps.append(s)
    top = max(exps)
    return top + mpmath.log(mpmath.fsum(mpmath.exp(s - top) for s in exps))


def check_points(dim: int, seed: int = 0) -> list[tuple[Fraction, ...]]:
    """CHECK_POINTS reproducible non-zero rational points with coordinates in [-2, 2]."""
    rng = np.random.default_rng(seed)
    pts = []
    for _ in range(CHECK_POINTS):
        num = rng.integers(1, 129, size=dim) * rng.choice([-1, 1], size=dim)
        pts.append(tuple(Fraction(int(v), 64) for v in num))
    return pts


def check_identity(laws: Sequence[ExactLaw], coefficients: Sequence[Fraction], constant,
                   linear: Sequence[Fraction], seed: int = 0) -> float:
    """Largest relative residual |sum c_i LSE_i(z) - a - <b, z>| / scale over the check points.

    ``constant`` is a sympy expression for a (evaluated to CHECK_DIGITS + 10 digits); scale is
    1 + sum |c_i LSE_i(z)| + |a| + |<b, z>|.
    """
    import sympy

    dim = laws[0].dim
    worst = 0.0
    with mpmath.workdps(CHECK_DIGITS):
        a = mpmath.mpf(str(sympy.N(constant, CHECK_DIGITS + 10)))
        for z in check_points(dim, seed):
            terms = [_q(c) * lse_mp(law, z) for c, law in zip(coefficients, laws) if c]
            affine = a + mpmath.fsum(_q(bl) * _q(zl) for bl, zl in zip(linear, z))
            value = mpmath.fsum(terms) - affine
            scale = 1 + mpmath.fsum(abs(t) for t in terms) + abs(affine)
            worst = max(worst, float(abs(value) / scale))
    return worst
