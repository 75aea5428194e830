"""Empirical NTK K = (H L) J J^T (SPEC §6): the PL identity r^T K r = (H L) |dR/dtheta|^2,
Jacobian rows against finite differences of the residual, and symmetry / positivity."""

from __future__ import annotations

import numpy as np
import pytest

from ntkcheck.meanfield import (LossKind, MeanFieldTransformer, RegressionLoss, empirical_ntk,
                                loss_and_gradient, residual_jacobian)


def _setup(kind: str, scheme: str = "euler", substeps: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    N, n, d, e = 3, 4, 3, 2
    X = rng.standard_normal((N, n, d))
    w = rng.uniform(0.3, 1.0, (N, n))
    w[1, 2:] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    X[w == 0] = 0.0
    T = rng.standard_normal((N, n, e) if kind == "token" else (N, e))
    if kind == "token":
        T[w == 0] = 0.0
    model = MeanFieldTransformer.init(layers=2, heads=3, key_dim=2, dim=d, init_qk_std=0.7,
                                      init_v_std=0.7, seed=seed + 1, scheme=scheme,
                                      substeps=substeps)
    return model, X, w, RegressionLoss(LossKind(kind), T)


@pytest.mark.parametrize("kind", ["token", "pooled"])
@pytest.mark.parametrize("scheme,substeps", [("euler", 1), ("euler", 2), ("rk4", 1)])
def test_pl_identity(kind, scheme, substeps):
    """r^T K r equals grad_norm_sq = (H L) sum |dR/dtheta|^2, and |r|^2/2 equals R.

    The two sides come from different code paths (batched per-row adjoints vs the summed
    gradient) and agree to round-off: relative tolerance 1e-11 for sums of a few hundred
    O(1) products in float64 (unit round-off 1.1e-16 times condition ~1e3, generous margin)."""
    model, X, w, loss = _setup(kind, scheme, substeps)
    R, grad = loss_and_gradient(model, X, w, loss)
    ntk = empirical_ntk(model, X, w, loss, chunk_bytes=1)  # chunk of one component at a time
    g2 = model.heads * model.layers * grad.sq_norm()
    assert ntk.loss == pytest.approx(R, rel=1e-13, abs=0)
    assert ntk.quadratic_form() == pytest.approx(g2, rel=1e-11, abs=0)
    # PL bound: g2 >= 2 lambda_min R (up to round-off in lambda_min)
    assert g2 >= 2 * ntk.min_eig * R - 1e-12 * g2


@pytest.mark.parametrize("kind", ["token", "pooled"])
def test_kernel_symmetric_psd_and_sized(kind):
    """K is symmetric positive semi-definite (eigenvalues >= -1e-12 max, round-off of a Gram
    matrix), of size M = real tokens x d' (token) or N d' (pooled); chunking does not change it
    (bit-for-bit up to 1e-14 relative)."""
    model, X, w, loss = _setup(kind)
    ntk = empirical_ntk(model, X, w, loss)
    M = int((w > 0).sum()) * 2 if kind == "token" else X.shape[0] * 2
    assert ntk.kernel.shape == (M, M)
    np.testing.assert_array_equal(ntk.kernel, ntk.kernel.T)
    assert ntk.eigenvalues[0] >= -1e-12 * ntk.eigenvalues[-1]
    np.testing.assert_allclose(empirical_ntk(model, X, w, loss, chunk_bytes=1).kernel,
                               ntk.kernel, rtol=1e-14, atol=1e-14 * np.abs(ntk.kernel).max())


@pytest.mark.parametrize("kind", ["token", "pooled"])
def test_jacobian_rows_match_finite_differences(kind):
    """J D equals the central difference (r(theta + eps D) - r(theta - eps D)) / (2 eps) for a
    random direction D, entry by entry: max error < 1e-7 max |J D| (eps = 1e-5: truncation
    ~1e-10, round-off ~1e-11)."""
    model, X, w, loss = _setup(kind, seed=4)
    r, J = residual_jacobian(model, X, w, loss)
    rng = np.random.default_rng(5)
    D = [rng.standard_normal(a.shape) for a in (model.Q, model.K, model.V)]
    Dflat = np.concatenate([a.reshape(-1) for a in D])
    eps = 1e-5

    def res(t):
        m = model.with_params(model.Q + t * D[0], model.K + t * D[1], model.V + t * D[2])
        return loss.residual(m.forward(X, w), w)

    fd = (res(eps) - res(-eps)) / (2 * eps)
    JD = J @ Dflat
    assert np.max(np.abs(fd - JD)) <= 1e-7 * np.max(np.abs(JD))
    np.testing.assert_array_equal(r, res(0.0))
