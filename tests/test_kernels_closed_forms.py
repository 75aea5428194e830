"""Gradients and Hessians of LSE (the kernels' ingredients, SPEC §1 and §5) against central
finite differences of LSE itself.

Error budget of the references (step h, f = LSE), both Richardson-extrapolated from steps h
and 2h, (4 D(h) - D(2h)) / 3, so the truncation error is O(h^4 f^(5 or 6)):
  first derivative  (f(z+h e) - f(z-h e)) / 2h        round-off ~2 u |f| / h
  second derivative (f(z+h a+h b) - ...) / 4h^2         round-off ~6 u |f| / h^2
With h = 1e-4 (gradient) and h = 1e-3 (Hessian), |z| <= ~6 on data of size ~1 (cumulants up to
order 6 at most ~1e2), truncation is <= 1e-10 and round-off <= 7e-10 (1 + |f|); the tolerances
1e-8 (gradient) and 1e-7 (Hessian) times (1 + |f|) leave a margin of >= 10, while a wrong closed
form (sign, missing term, wrong scale) is off by O(1).
"""

from __future__ import annotations

import numpy as np
import pytest

from ntkcheck import Dataset, Discrete, GaussianMixture, UniformBox


def assert_below(err: np.ndarray, bound: np.ndarray) -> None:
    """err < bound entrywise, with bound broadcast to err's shape."""
    np.testing.assert_array_less(err, np.broadcast_to(bound, err.shape))


def _families(d: int) -> dict:
    rng = np.random.default_rng(7 + d)
    A = rng.normal(size=(d, d))
    return {
        "discrete": Discrete(rng.normal(size=(5, d)), rng.uniform(0.2, 1.0, 5)),
        "uniform": UniformBox(-rng.uniform(0.1, 1.0, d), rng.uniform(0.1, 1.5, d)),
        "uniform_degenerate": UniformBox(np.zeros(d), np.r_[np.zeros(1), np.ones(d - 1)]),
        "mixture": GaussianMixture([0.3, 0.7], rng.normal(size=(2, d)),
                                   np.array([A @ A.T / d, np.eye(d) * 0.4])),
        "mixture_singular": GaussianMixture([0.5, 0.5], rng.normal(size=(2, d)),
                                            np.array([np.outer(A[0], A[0]) / d,
                                                      np.zeros((d, d))])),
    }


def _probes(d: int) -> np.ndarray:
    rng = np.random.default_rng(100 + d)
    z = rng.normal(size=(12, d))
    return np.concatenate([z * 0.3, z * 1.5, z[:4] * 4.0])


def fd_gradient(f, z: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """Richardson-extrapolated central differences of f: (M, d) -> (M,), returns (M, d)."""
    return (4 * _fd_gradient(f, z, h) - _fd_gradient(f, z, 2 * h)) / 3


def fd_hessian(f, z: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """Richardson-extrapolated second central differences of f, returns (M, d, d)."""
    return (4 * _fd_hessian(f, z, h) - _fd_hessian(f, z, 2 * h)) / 3


def _fd_gradient(f, z: np.ndarray, h: float) -> np.ndarray:
    d = z.shape[1]
    out = np.empty_like(z)
    for a in range(d):
        e = np.zeros(d)
        e[a] = h
        out[:, a] = (f(z + e) - f(z - e)) / (2 * h)
    return out


def _fd_hessian(f, z: np.ndarray, h: float) -> np.ndarray:
    d = z.shape[1]
    out = np.empty((z.shape[0], d, d))
    eye = np.eye(d) * h
    for a in range(d):
        for b in range(d):
            out[:, a, b] = (f(z + eye[a] + eye[b]) - f(z + eye[a] - eye[b])
                            - f(z - eye[a] + eye[b]) + f(z - eye[a] - eye[b])) / (4 * h * h)
    return out


FAMILY_DIMS = [(f, d) for d in (1, 2, 3) for f in ("discrete", "uniform", "uniform_degenerate",
                                                     "mixture", "mixture_singular")
               if not (f == "uniform_degenerate" and d == 1)]  # a degenerate box needs d >= 2


@pytest.mark.parametrize("family,d", FAMILY_DIMS)
@pytest.mark.parametrize("moment", ["mean", "cov"])
def test_tilted_moments_are_derivatives_of_lse(family, d, moment):
    """tilted_mean = grad LSE (tolerance 1e-8 (1 + |LSE|)) and tilted_cov = Hess LSE
    (tolerance 1e-7 (1 + |LSE|)): the module error budget of central differences."""
    dist = _families(d)[family]
    z = _probes(d)
    scale = 1.0 + np.abs(dist.lse(z))
    if moment == "mean":
        err = np.abs(dist.tilted_mean(z) - fd_gradient(dist.lse, z))
        assert_below(err, 1e-8 * scale[:, None])
    else:
        err = np.abs(dist.tilted_cov(z) - fd_hessian(dist.lse, z))
        assert_below(err, 1e-7 * scale[:, None, None])


@pytest.mark.parametrize("d", [1, 2, 3])
def test_dataset_moments_are_derivatives_of_dataset_lse(d):
    """Dataset.lse / iter_tilted_moments (the packed, chunked path the kernels use) against
    finite differences of Dataset.lse, with a chunk budget small enough to force several chunks
    (same tolerances as above)."""
    fams = _families(d)
    names = [k for k in fams if not (d == 1 and k == "uniform_degenerate")]
    ds = Dataset(tuple(names), tuple(fams[k] for k in names))
    z = _probes(d)
    F = ds.lse(z)
    for i, dist in enumerate(ds.distributions):  # packed path = per-distribution path
        np.testing.assert_allclose(F[:, i], dist.lse(z), rtol=1e-13, atol=1e-13)
    grads, hesses, covered = [], [], []
    for sl, g, h in ds.iter_tilted_moments(z, covariance=True, budget=10 * len(ds) * d * d):
        covered.append((sl.start, sl.stop))
        grads.append(g)
        hesses.append(h)
    assert len(covered) > 1 and covered[0][0] == 0 and covered[-1][1] == len(z)
    grad, hess = np.concatenate(grads), np.concatenate(hesses)
    scale = 1.0 + np.abs(F)
    for i in range(len(ds)):
        f = lambda x, i=i: ds.lse(x)[:, i]  # noqa: E731
        assert_below(np.abs(grad[:, i] - fd_gradient(f, z)),
                                     1e-8 * scale[:, i, None])
        assert_below(np.abs(hess[:, i] - fd_hessian(f, z)),
                                     1e-7 * scale[:, i, None, None])
