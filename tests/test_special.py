"""Scalar functions of SPEC §1 (ntkcheck.special) against independent references.

References are computed with mpmath at 50 significant digits, so the reference error is far
below any float64 tolerance used here; every tolerance below is a float64 round-off budget.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

from ntkcheck.special import logsumexp, uniform_lse, uniform_mean, uniform_var

mp.mp.dps = 50
EPS = np.finfo(float).eps


def g_ref(h: float) -> float:
    """g(h) = log(expm1(h)/h) in 50-digit arithmetic (g(0) = 0)."""
    if h == 0:
        return 0.0
    h = mp.mpf(h)
    return float(mp.log(mp.expm1(h) / h))


def mean_ref(h: float) -> float:
    """g'(h) = 1/(1 - e^-h) - 1/h: the mean of Uniform[0,1] tilted by e^{h y}."""
    if h == 0:
        return 0.5
    h = mp.mpf(h)
    return float(1 / (-mp.expm1(-h)) - 1 / h)


def var_ref(h: float) -> float:
    """g''(h) = 1/h^2 - e^h/(e^h - 1)^2, computed via quadrature-free closed form in mpmath."""
    if h == 0:
        return 1.0 / 12.0
    h = mp.mpf(h)
    return float(1 / h**2 - 1 / (4 * mp.sinh(h / 2) ** 2))


# |h| from 1e-12 (series regime) through the switch points (0.2 for L, 2 for phi) to 1e4
# (asymptotic regime), both signs.
_MAGS = [1e-12, 1e-9, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.19, 0.2, 0.21, 0.5, 1.0, 1.99, 2.0,
         2.01, 3.0, 10.0, 30.0, 100.0, 700.0, 1e3, 1e4]
H_GRID = sorted([m for m in _MAGS] + [-m for m in _MAGS] + [0.0])


@pytest.mark.parametrize("h", H_GRID)
def test_uniform_lse_matches_mpmath(h):
    """g(h) to ~1e-14 relative; for h < 0 the formula h/2 + phi(h/2) cancels two terms of size
    |h|/2, so an absolute error of a few ulps of |h| is allowed (that is also the rounding of the
    linear term a z it is added to inside LSE)."""
    got = float(uniform_lse(np.array([h]))[0])
    ref = g_ref(h)
    assert abs(got - ref) <= 1e-14 * abs(ref) + 4 * EPS * abs(h) + 1e-300


@pytest.mark.parametrize("h", H_GRID)
def test_uniform_mean_matches_mpmath(h):
    """g'(h) in [0, 1]: relative error <= 1e-13 (the module's stated accuracy), plus an absolute
    eps-level term because for h << 0 the value ~1/|h| is formed as 1/2 + L/2 with L ~ -1."""
    got = float(uniform_mean(np.array([h]))[0])
    ref = mean_ref(h)
    assert abs(got - ref) <= 1e-13 * abs(ref) + 2 * EPS


@pytest.mark.parametrize("h", H_GRID)
def test_uniform_var_matches_mpmath(h):
    """g''(h) > 0 to relative error 1e-13 (stated in ntkcheck.special: at most ~2.5 digits lost
    at the series switch x = 0.1, i.e. ~1e-14 * 100/3)."""
    got = float(uniform_var(np.array([h]))[0])
    ref = var_ref(h)
    assert got > 0
    assert abs(got - ref) <= 1e-13 * ref


@pytest.mark.parametrize("h", [m for m in _MAGS if 1e-3 <= m <= 1e3])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_derivatives_by_finite_differences(h, sign):
    """g' and g'' equal central differences of g and g'. Step s = 1e-5 * max(1, |h|): the
    truncation error is s^2 |g'''| / 6 <= 1e-11 and the round-off error is ~eps |g| / s <= 1e-9
    (relative to the value scale), so 1e-7 is a safe tolerance."""
    h = sign * h
    s = 1e-5 * max(1.0, abs(h))
    hh = np.array([h - s, h + s])
    d_lse = (uniform_lse(hh)[1] - uniform_lse(hh)[0]) / (2 * s)
    d_mean = (uniform_mean(hh)[1] - uniform_mean(hh)[0]) / (2 * s)
    assert d_lse == pytest.approx(uniform_mean(np.array([h]))[0], rel=1e-7, abs=1e-9)
    # round-off of the difference of g' (values <= 1) is ~eps / s <= 1e-11, far below 1e-12 + 1e-6 g''
    assert d_mean == pytest.approx(uniform_var(np.array([h]))[0], rel=1e-6, abs=1e-10)


def test_symmetries():
    """g(-h) = g(h) - h, g'(-h) = 1 - g'(h), g''(-h) = g''(h) (reflection y -> 1 - y of U[0,1]).
    Both sides are computed in float64 from values of size |h|: tolerance a few ulps of |h|."""
    h = np.array([m for m in _MAGS])
    assert np.all(np.abs(uniform_lse(-h) - (uniform_lse(h) - h)) <= 8 * EPS * np.maximum(h, 1))
    assert np.all(np.abs(uniform_mean(-h) - (1 - uniform_mean(h))) <= 4 * EPS)
    assert np.all(np.abs(uniform_var(-h) - uniform_var(h)) <= 4 * EPS * uniform_var(h))


def test_values_at_zero_are_exact():
    """At h = 0: g = 0, mean 1/2, variance 1/12 (the untilted uniform law), to the last ulp."""
    z = np.zeros(3)
    assert np.all(uniform_lse(z) == 0.0)
    assert np.all(uniform_mean(z) == 0.5)
    assert np.allclose(uniform_var(z), 1 / 12, rtol=2 * EPS, atol=0)


@pytest.mark.parametrize("h", [1e4, 1e6, 1e10, 1e15])
def test_large_h_asymptotics(h):
    """For h -> +inf, g(h) = h - log h + log1p(-e^-h) -> h - log h (e^-h underflows), mean -> 1 - 1/h,
    variance -> 1/h^2; relative tolerance a few ulps (no cancellation in these forms)."""
    hh = np.array([h])
    assert uniform_lse(hh)[0] == pytest.approx(h - np.log(h), rel=4 * EPS, abs=0)
    assert uniform_mean(hh)[0] == pytest.approx(1 - 1 / h, rel=4 * EPS, abs=0)
    assert uniform_var(hh)[0] == pytest.approx(1 / h**2, rel=8 * EPS, abs=0)


def test_vectorised_shapes_preserved():
    """Elementwise functions keep any input shape (the dataset calls them on (m, N, d) arrays)."""
    rng = np.random.default_rng(0)
    h = rng.normal(scale=5, size=(4, 3, 2))
    for f in (uniform_lse, uniform_mean, uniform_var):
        out = f(h)
        assert out.shape == h.shape
        flat = f(h.ravel()).reshape(h.shape)
        assert np.array_equal(out, flat)


@pytest.mark.parametrize("h", [1e200, -1e200])
def test_uniform_var_no_overflow_for_huge_h(h):
    """g''(h) ~ 1/h^2 underflows gracefully to ~1e-400 -> 0; it must not raise an overflow
    warning (warnings are errors) for any finite h, as the module docstring promises."""
    v = uniform_var(np.array([h]))
    assert np.all(np.isfinite(v)) and np.all(v >= 0)


@pytest.mark.parametrize("h", [-1e8, -1e12, -1e200])
def test_uniform_lse_relative_accuracy_very_negative(h):
    """g(h) = log1p(-e^h) - log(-h) for h < 0 has no cancellation; SPEC §1 asks for accuracy at
    large |h|, so relative error 1e-13 is required."""
    got = float(uniform_lse(np.array([h]))[0])
    assert got == pytest.approx(g_ref(h), rel=1e-13, abs=0)


# ---- logsumexp --------------------------------------------------------------------------------

def lse_ref(row) -> float:
    return float(mp.log(mp.fsum(mp.exp(mp.mpf(float(x))) for x in row if np.isfinite(x))))


@pytest.mark.parametrize("shift", [0.0, 700.0, -800.0, 1e4, -1e4, 1e300])
@pytest.mark.parametrize("seed", [0, 1])
def test_logsumexp_matches_mpmath(shift, seed):
    """Overflow-safe logsumexp equals log(sum exp) in 50 digits to ~n ulps of the largest |value|
    (the subtraction of the max is exact up to one rounding per term)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(scale=10, size=(5, 7)) + shift
    got = logsumexp(s, axis=1)
    for i in range(5):
        ref = lse_ref(s[i])
        assert abs(got[i] - ref) <= 16 * EPS * max(abs(ref), 1.0)


def test_logsumexp_ignores_minus_inf_padding():
    """-inf entries contribute exp(-inf) = 0: padded and unpadded rows agree to a few ulps
    (numpy may sum in a different (pairwise) order once the row is longer)."""
    rng = np.random.default_rng(3)
    s = rng.normal(size=(4, 5))
    padded = np.concatenate([s, np.full((4, 3), -np.inf)], axis=1)
    assert np.allclose(logsumexp(padded), logsumexp(s), rtol=4 * EPS, atol=0)
    only = np.array([[-np.inf, 2.5, -np.inf]])
    assert logsumexp(only)[0] == 2.5


def test_logsumexp_axis():
    """axis=0 is the transpose of axis=-1."""
    rng = np.random.default_rng(4)
    s = rng.normal(size=(3, 6))
    assert np.allclose(logsumexp(s, axis=0), logsumexp(s.T, axis=-1), rtol=0, atol=0)
