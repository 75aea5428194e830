"""Monte-Carlo convergence of the kernels to their expectations (SPEC §5), in 1-D, against
adaptive quadrature (scipy.integrate.quad) of the exact expectation.

Case: Bernoulli(1/2) on {0, 1} and Uniform[0, 1], no whitening (z = s), probe law = equal
mixture of N(0, 1) and N(0, 9) (scales 1, 3, drawn round-robin). Closed forms written here
independently of the package:
  Bernoulli  grad = e^z / (1 + e^z),            Hess = 1 / (4 cosh(z/2)^2)
  Uniform    grad = 1 / (1 - e^-z) - 1 / z,     Hess = 1 / z^2 - 1 / (4 sinh(z/2)^2)
(Taylor series 1/2 + z/12 and 1/12 - z^2/240 for |z| < 1e-2, truncation < 1e-10).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate

from ntkcheck import Dataset, Discrete, UniformBox
from ntkcheck.injectivity.probes import make_probes, make_whitening
from ntkcheck.kernels import qk_kernel, value_kernel

SCALES = (1.0, 3.0)


def _grad(z: float) -> np.ndarray:
    bern = 1.0 / (1.0 + np.exp(-z))
    unif = 0.5 + z / 12 if abs(z) < 1e-2 else 1.0 / (-np.expm1(-z)) - 1.0 / z
    return np.array([bern, unif])


def _hess(z: float) -> np.ndarray:
    bern = 1.0 / (4.0 * np.cosh(z / 2) ** 2)
    unif = 1 / 12 - z * z / 240 if abs(z) < 1e-2 else 1.0 / z**2 - 1.0 / (4 * np.sinh(z / 2) ** 2)
    return np.array([bern, unif])


def _expect(f, power: int = 1) -> np.ndarray:
    """Per scale sigma: E_{z ~ N(0, sigma^2)} f(z)^power (2 x 2 outer products), quad to 1e-12."""
    out = []
    for sigma in SCALES:
        def integrand(x, i, j, sigma=sigma):
            v = f(sigma * x)
            return (v[i] * v[j]) ** power * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)
        out.append(np.array([[integrate.quad(integrand, -12, 12, args=(i, j), epsabs=1e-13,
                                             epsrel=1e-12, limit=200)[0] for j in range(2)]
                             for i in range(2)]))
    return np.array(out)  # (scales, 2, 2)


@pytest.fixture(scope="module")
def setup():
    ds = Dataset(("bernoulli", "uniform"), (Discrete(np.array([[0.0], [1.0]])),
                                            UniformBox([0.0], [1.0])))
    white = make_whitening(ds, whiten=False)
    assert np.array_equal(white.transform, np.eye(1))
    refs = {}
    for name, f in (("qk", _hess), ("value", _grad)):
        m1, m2 = _expect(f), _expect(f, 2)
        refs[name] = (m1.mean(axis=0), m2 - m1**2)  # expectation and per-scale variance
    return ds, white, refs


def _kernel(name, ds, white, M, seed):
    probes = make_probes(white, M, SCALES, seed)
    return (qk_kernel if name == "qk" else value_kernel)(ds, white, probes)


@pytest.mark.parametrize("name", ["qk", "value"])
@pytest.mark.parametrize("M", [200, 2000, 20000])
def test_kernel_within_five_standard_errors_of_quadrature(setup, name, M):
    """|K_M - E K| <= 5 SE + 1e-10, SE^2 = sum_sigma Var_sigma / (M / 2) / 4 from quadrature
    (stratified sampling, M/2 probes per scale). A 5-sigma excursion has probability < 1e-6;
    a wrong kernel (missing factor, wrong whitening) is off by O(1) relative, >> 5 SE at M=20000."""
    ds, white, refs = setup
    mean, var = refs[name]
    se = np.sqrt(var.sum(axis=0) / (M / 2) / 4)
    K = _kernel(name, ds, white, M, seed=M)
    assert np.all(np.abs(K - mean) <= 5 * se + 1e-10), (K, mean, se)


@pytest.mark.parametrize("name", ["qk", "value"])
def test_monte_carlo_error_decreases_like_inverse_sqrt_m(setup, name):
    """RMS error over 64 seeds at M = 100 and M = 1600: ratio sqrt(16) = 4 expected. Each RMS
    is estimated to ~9% (chi distribution with 64 d.o.f.), the ratio to ~13%; [2.5, 6.4] is a
    3.5-sigma band, while an O(1) bias (no convergence) would give a ratio near 1."""
    ds, white, refs = setup
    mean, _ = refs[name]

    def rms(M):
        errs = [np.linalg.norm(_kernel(name, ds, white, M, seed) - mean) for seed in range(64)]
        return float(np.sqrt(np.mean(np.square(errs))))

    ratio = rms(100) / rms(1600)
    assert 2.5 < ratio < 6.4, ratio
