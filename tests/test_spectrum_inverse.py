"""The partial spectrum's products by an explicit R^-1 (ntkcheck.injectivity.spectrum, issue 22):
used only where R^-1 is accurate, and then giving the singular triplets of the solves."""

from __future__ import annotations

import numpy as np

from ntkcheck.injectivity.spectrum import (INVERSE_RCOND, _accurate_inverse,
                                           smallest_singular_triplets)


def _triangle(N: int, smallest: float, seed: int = 0) -> np.ndarray:
    """R factor of a matrix with singular values spread from 1 down to ``smallest``."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.normal(size=(N, N)))[0]
    V = np.linalg.qr(rng.normal(size=(N, N)))[0]
    s = np.geomspace(1.0, smallest, N)
    return np.asfortranarray(np.linalg.qr((U * s) @ V.T, mode="r"))


def test_inverse_triplets_match_the_solves():
    """Well conditioned R (kappa 1e3): the 8 smallest singular values by the products with
    R^-1 agree with the triangular solves' to 1e-9 relative (both converge to 1e-10) and
    with numpy's SVD, and the right vectors span the same space."""
    R = _triangle(400, 1e-3)
    inv = _accurate_inverse(R)
    assert inv is not None
    s1, V1 = smallest_singular_triplets(R, 8, inverse=inv)
    s2, V2 = smallest_singular_triplets(R, 8)
    ref = np.linalg.svd(R, compute_uv=False)[-8:]
    assert np.allclose(s1, s2, rtol=1e-9, atol=0) and np.allclose(s1, ref, rtol=1e-9, atol=0)
    assert np.allclose(np.abs(np.sum(V1 * V2, axis=0)), 1.0, atol=1e-6)


def test_ill_conditioned_triangles_are_solved_not_inverted():
    """kappa 1e12 (rcond far below INVERSE_RCOND): no explicit inverse; small triangles
    (N < 256) and rectangular ones neither."""
    assert _accurate_inverse(_triangle(400, 1e-12)) is None
    assert 1e-12 < INVERSE_RCOND
    assert _accurate_inverse(_triangle(100, 0.5)) is None
    assert _accurate_inverse(np.asfortranarray(_triangle(400, 0.5)[:300])) is None
