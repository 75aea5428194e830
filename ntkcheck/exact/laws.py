"""Exact rational parameters of the distributions, for the symbolic test (SPEC §4).

Exact inputs are what the user wrote (SPEC §3a). Each value is read from
``distribution.rational`` when present, else from the float64 attributes, and converted to a
:class:`fractions.Fraction` without rounding:

* a Fraction (from a spec: the decimal ``0.49`` in a ``.toml``/``.json`` file is 49/100,
  ``"1/3"`` is 1/3), an int or a Decimal is used at its exact value;
* a float (an ``.npz`` file, a Python float) is its exact binary64 value: ``0.5`` is 1/2,
  ``0.1`` is 3602879701896397/2^55. Nothing is ever rounded. A float exponent such as 0.1
  makes the common denominator D huge, and the degree budget then refuses the case with the
  advice to write ``"1/10"`` in a spec (a float *weight* is harmless: weights are
  coefficients, not exponents).

Weights are normalised exactly (the distributions record the weights they were given before
their float normalisation) and zero-weight atoms or components are dropped. Covariances must be
exactly symmetric and positive semi-definite (checked by exact symmetric elimination); their
quadratic form z^T S z / 2 contributes the exponents S_ll / 2 (of z_l^2) and S_lm (of z_l z_m,
l < m).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import lcm
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..distributions import Discrete, Distribution, GaussianMixture, UniformBox
from .errors import ExactRefused

__all__ = ["ExactLaw", "exact_law", "exact_laws", "common_denominator", "exact_value",
           "degree_lower_bound"]

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


def exact_value(x: Any) -> Fraction:
    """The exact rational value of a Fraction, int, Decimal or float (binary64 value)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, (int, np.integer)):
        return Fraction(int(x))
    if isinstance(x, Decimal):
        return Fraction(x)
    return Fraction(float(x))


def _exact_array(values: Any) -> np.ndarray:
    a = np.asarray(values, dtype=object)
    out = np.empty(a.shape, dtype=object)
    for idx, x in np.ndenumerate(a):
        out[idx] = exact_value(x)
    return out


def _normalised(weights: Sequence[Fraction]) -> list[Fraction]:
    total = sum(weights, Fraction(0))
    return [w / total for w in weights]


def _weights(source: Mapping[str, Any], count: int) -> tuple[np.ndarray, np.ndarray]:
    """(exact normalised weights of the kept entries, mask of the kept entries); uniform when
    the source has no weights."""
    if source.get("weights") is None:
        return np.array([Fraction(1, count)] * count, dtype=object), np.ones(count, bool)
    w = list(_exact_array(source["weights"]).ravel())
    keep = np.array([x != 0 for x in w])
    return np.array(_normalised([x for x in w if x != 0]), dtype=object), keep


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


def _source(dist: Distribution) -> Mapping[str, Any]:
    """Where the exact values are read: ``dist.rational`` when it has every required key
    (never mixed with the attributes, whose zero-weight entries are already dropped), else the
    attributes themselves."""
    exact = dist.rational
    if exact is not None and all(exact.get(k) is not None
                                 for k in _REQUIRED.get(type(dist), ())):
        return exact
    if isinstance(dist, Discrete):
        return {"atoms": dist.atoms, "weights": dist.weights}
    if isinstance(dist, GaussianMixture):
        return {"weights": dist.weights, "means": dist.means, "covariances": dist.covariances}
    if isinstance(dist, UniformBox):
        return {"low": dist.low, "high": dist.high}
    return {}


def exact_law(name: str, dist: Distribution) -> ExactLaw:
    """Exact rational parameters of one distribution (see :func:`exact_laws`)."""
    src = _source(dist)
    d = dist.dim
    if isinstance(dist, Discrete):
        atoms = _exact_array(src["atoms"])
        if atoms.ndim == 1:
            atoms = atoms.reshape(-1, 1)
        weights, keep = _weights(src, atoms.shape[0])
        atoms = atoms[keep]
        return ExactLaw(DISCRETE, d, points=tuple(tuple(a) for a in atoms),
                        weights=tuple(weights))
    if isinstance(dist, UniformBox):
        low, high = _exact_array(src["low"]), _exact_array(src["high"])
        return ExactLaw(UNIFORM, d, low=tuple(low), high=tuple(high))
    if isinstance(dist, GaussianMixture):
        means = _exact_array(src["means"])
        covs = _exact_array(src["covariances"])
        weights, keep = _weights(src, means.shape[0])
        means, covs = means[keep], covs[keep]
        cov_list = [[list(row) for row in S] for S in covs]
        for k, S in enumerate(cov_list):
            _check_psd(S, name, k)
        return ExactLaw(MIXTURE, d, points=tuple(tuple(m) for m in means), weights=tuple(weights),
                        covariances=tuple(tuple(tuple(r) for r in S) for S in cov_list))
    raise ExactRefused(f"'{name}' is a {type(dist).__name__}; the exact test handles discrete, "
                       "uniform and Gaussian-mixture laws", kind="unsupported")


def exact_laws(names: Sequence[str], distributions: Sequence[Distribution]) -> list[ExactLaw]:
    """Exact rational parameters of every distribution (module docstring), or
    :class:`ExactRefused` for a covariance that is not exactly symmetric PSD or an unknown
    family."""
    return [exact_law(n, dist) for n, dist in zip(names, distributions)]


def common_denominator(laws: Sequence[ExactLaw]) -> int:
    """D = lcm of the denominators of every exponent (atoms, means, bounds, S_ll/2, S_lm)."""
    D = 1
    for law in laws:
        for x in law.exponents():
            D = lcm(D, x.denominator)
    return D


def degree_lower_bound(law: ExactLaw) -> tuple[int, int]:
    """(b, D_own): every polynomial of this law has total degree >= b whatever the common
    denominator D of the data set, D_own being the denominator that forces it.

    D is a multiple of the lcm D_l of the denominators of one exponent coordinate's values, so
    the degree in that variable, D (max - min), is at least D_l (max - min); for a box side it
    is D (b - a) >= lcm(den a, den b) (b - a). Cheap (no polynomial is built): it lets the
    exact test refuse float data (D ~ 2^52) after looking at one distribution, not all.
    """
    columns: list[list[Fraction]] = [list(c) for c in zip(*law.points)] if law.points else []
    for k in range(len(law.covariances)):
        quad = law.quadratic(k)
        for pair in sorted(quad):
            columns.append([law.quadratic(j).get(pair, Fraction(0))
                            for j in range(len(law.covariances))])
    best = (0, 1)
    for col in columns:
        den = 1
        for x in col:
            den = lcm(den, x.denominator)
        best = max(best, (int((max(col) - min(col)) * den), den))
    for a, b in zip(law.low, law.high):
        den = lcm(a.denominator, b.denominator)
        best = max(best, (int((b - a) * den), den))
    return best
