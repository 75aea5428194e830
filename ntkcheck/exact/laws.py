"""Exact rational parameters of the distributions, for the symbolic test (SPEC §4).

Where the numbers come from:

* ``distribution.rational`` (specs loaded from ``.toml``/``.json``): used as given, every value
  an exact :class:`fractions.Fraction`. Weights are normalised exactly and zero-weight atoms or
  components are dropped (the float objects drop them too).
* otherwise (``.npz`` token data, objects built in Python) the float64 parameters, accepted only
  when they are *exactly* small-denominator rationals: ``Fraction(x)`` (the exact binary value of
  the float) must have a denominator ``<= max_denominator`` (default :data:`MAX_FLOAT_DENOMINATOR`
  = 2^10). Nothing is ever rounded: ``0.1`` is refused with a message telling to write ``"1/10"``
  in a spec. One exception: discrete weights that are all the same float are read as the uniform
  law (the float objects keep only normalised weights, and equal weights are the default for
  token data).

Covariances must be exactly symmetric and positive semi-definite (checked by exact symmetric
elimination); their quadratic form z^T S z / 2 contributes the exponents S_ll / 2 (of z_l^2) and
S_lm (of z_l z_m, l < m).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import lcm
from typing import Any, Iterable, Sequence

import numpy as np

from ..distributions import Discrete, Distribution, GaussianMixture, UniformBox
from .errors import ExactRefused

__all__ = ["ExactLaw", "exact_laws", "common_denominator", "MAX_FLOAT_DENOMINATOR"]

#: Largest denominator of Fraction(x) for a float x to count as an exact rational (2^10).
MAX_FLOAT_DENOMINATOR = 1 << 10

DISCRETE, UNIFORM, MIXTURE = "discrete", "uniform", "gaussian_mixture"


@dataclass(frozen=True)
class ExactLaw:
    """One distribution with exact rational parameters.

    ``points`` are the atoms (discrete) or component means (mixture), ``weights`` their positive
    weights summing to 1; ``covariances`` one symmetric PSD d x d matrix per component
    (mixture); ``low``/``high`` the box bounds (uniform).
    """

    kind: str
    dim: int
    points: tuple[tuple[Fraction, ...], ...] = ()
    weights: tuple[Fraction, ...] = ()
    covariances: tuple[tuple[tuple[Fraction, ...], ...], ...] = ()
    low: tuple[Fraction, ...] = ()
    high: tuple[Fraction, ...] = ()

    def quadratic(self, k: int) -> dict[tuple[int, int], Fraction]:
        """Coefficients of z_l z_m (l <= m) in z^T S_k z / 2, non-zero entries only."""
        S = self.covariances[k]
        out = {}
        for l in range(self.dim):
            if S[l][l]:
                out[(l, l)] = S[l][l] / 2
            for m in range(l + 1, self.dim):
                if S[l][m]:
                    out[(l, m)] = S[l][m]
        return out

    def exponents(self) -> Iterable[Fraction]:
        """Every rational number that appears in an exponent (for the common denominator D)."""
        for p in self.points:
            yield from p
        yield from self.low
        yield from self.high
        for k in range(len(self.covariances)):
            yield from self.quadratic(k).values()


class _Reader:
    """Converts one distribution's values to Fractions, naming the value in refusals."""

    def __init__(self, name: str, exact: Any, max_denominator: int):
        self.name = name
        self.exact = exact
        self.max_denominator = max_denominator

    def value(self, x: Any, what: str) -> Fraction:
        if isinstance(x, Fraction):
            return x
        if isinstance(x, (int, np.integer)):
            return Fraction(int(x))
        xf = float(x)
        frac = Fraction(xf)  # the exact binary value, never rounded
        if frac.denominator > self.max_denominator:
            guess = frac.limit_denominator(1000)
            if abs(float(guess) - xf) <= 1e-12 * max(1.0, abs(xf)):
                fix = f"write it as the exact string \"{guess}\" in a .toml spec"
            else:
                fix = "the exact test needs rational data, e.g. a .toml spec with \"1/10\""
            raise ExactRefused(
                f"{xf!r} ({what} of '{self.name}') is not exactly a small-denominator rational "
                f"(its binary value has denominator > {self.max_denominator}); {fix}",
                kind="not_rational")
        return frac

    def array(self, key: str, arr: Any, what: str) -> np.ndarray:
        src = self.exact.get(key) if self.exact is not None else None
        a = np.asarray(src if src is not None else arr, dtype=object)
        out = np.empty(a.shape, dtype=object)
        for idx, x in np.ndenumerate(a):
            out[idx] = self.value(x, what)
        return out


def _normalised(weights: Sequence[Fraction]) -> list[Fraction]:
    total = sum(weights, Fraction(0))
    return [w / total for w in weights]


def _weights(reader: _Reader, dist: Distribution, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(exact normalised weights, mask of the kept entries)."""
    exact = reader.exact
    if exact is not None:
        if exact.get("weights") is None:
            return np.array([Fraction(1, count)] * count, dtype=object), np.ones(count, bool)
        w = [Fraction(x) for x in np.asarray(exact["weights"], dtype=object).ravel()]
        keep = np.array([x != 0 for x in w])
        return np.array(_normalised([x for x in w if x != 0]), dtype=object), keep
    w = np.asarray(dist.weights, dtype=float)  # already normalised, zeros dropped
    if np.all(w == w[0]):
        return np.array([Fraction(1, len(w))] * len(w), dtype=object), np.ones(len(w), bool)
    vals = [reader.value(x, "a weight") for x in w]
    return np.array(_normalised(vals), dtype=object), np.ones(len(w), bool)


def _check_psd(S: list[list[Fraction]], name: str, k: int) -> None:
    """Exact test of symmetry and positive semi-definiteness (symmetric pivoted elimination)."""
    d = len(S)
    for l in range(d):
        for m in range(l):
            if S[l][m] != S[m][l]:
                raise ExactRefused(f"covariance {k} of '{name}' is not exactly symmetric "
                                   f"({S[l][m]} != {S[m][l]}); give a symmetric matrix",
                                   kind="not_rational")
    A = [row[:] for row in S]
    active = list(range(d))
    while active:
        p = max(active, key=lambda i: A[i][i])
        if A[p][p] < 0:
            break
        if A[p][p] == 0:
            if any(A[i][j] != 0 for i in active for j in active):
                break
            return
        active.remove(p)
        for i in active:
            f = A[i][p] / A[p][p]
            for j in active:
                A[i][j] -= f * A[p][j]
    else:
        return
    raise ExactRefused(f"covariance {k} of '{name}' is not exactly positive semi-definite; the "
                       "exact test needs the exact covariance", kind="not_rational")


_REQUIRED = {Discrete: ("atoms",), UniformBox: ("low", "high"),
             GaussianMixture: ("weights", "means", "covariances")}


def _law(name: str, dist: Distribution, max_denominator: int) -> ExactLaw:
    exact = dist.rational
    if exact is not None and any(exact.get(k) is None for k in _REQUIRED.get(type(dist), ())):
        exact = None  # partial exact data: use the floats throughout, never mix the two
    reader = _Reader(name, exact, max_denominator)
    d = dist.dim
    if isinstance(dist, Discrete):
        atoms = reader.array("atoms", dist.atoms, "an atom coordinate")
        if atoms.ndim == 1:
            atoms = atoms.reshape(-1, 1)
        weights, keep = _weights(reader, dist, atoms.shape[0])
        atoms = atoms[keep]
        return ExactLaw(DISCRETE, d, points=tuple(tuple(a) for a in atoms),
                        weights=tuple(weights))
    if isinstance(dist, UniformBox):
        low = reader.array("low", dist.low, "a lower bound")
        high = reader.array("high", dist.high, "an upper bound")
        return ExactLaw(UNIFORM, d, low=tuple(low), high=tuple(high))
    if isinstance(dist, GaussianMixture):
        means = reader.array("means", dist.means, "a mean coordinate")
        covs = reader.array("covariances", dist.covariances, "a covariance entry")
        weights, keep = _weights(reader, dist, means.shape[0])
        means, covs = means[keep], covs[keep]
        cov_list = [[list(row) for row in S] for S in covs]
        for k, S in enumerate(cov_list):
            _check_psd(S, name, k)
        return ExactLaw(MIXTURE, d, points=tuple(tuple(m) for m in means), weights=tuple(weights),
                        covariances=tuple(tuple(tuple(r) for r in S) for S in cov_list))
    raise ExactRefused(f"'{name}' is a {type(dist).__name__}; the exact test handles discrete, "
                       "uniform and Gaussian-mixture laws", kind="unsupported")


def exact_laws(names: Sequence[str], distributions: Sequence[Distribution],
               max_denominator: int = MAX_FLOAT_DENOMINATOR) -> list[ExactLaw]:
    """Exact rational parameters of every distribution, or :class:`ExactRefused` naming the
    first value that is not an exact small-denominator rational."""
    return [_law(n, dist, max_denominator) for n, dist in zip(names, distributions)]


def common_denominator(laws: Sequence[ExactLaw]) -> int:
    """D = lcm of the denominators of every exponent (atoms, means, bounds, S_ll/2, S_lm)."""
    D = 1
    for law in laws:
        for x in law.exponents():
            D = lcm(D, x.denominator)
    return D
