"""Exact gradients of the discretised mean-field transformer (SPEC §6): the discrete adjoint
against central finite differences, direct autodiff (torch, when installed), padding invariance,
and the depth integrators' convergence orders."""

from __future__ import annotations

import numpy as np
import pytest

from ntkcheck.meanfield import (LossKind, MeanFieldTransformer, RegressionLoss, get_scheme,
                                loss_and_gradient, loss_value)

SCHEMES = [("euler", 1), ("euler", 3), ("heun", 1), ("rk2", 2), ("rk4", 1), ("rk4", 2)]


def _data(seed: int = 0, N: int = 3, n: int = 5, d: int = 3):
    """Tokens with padding (sample 0 has 3 real tokens, sample 2 has 4) and non-uniform weights."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n, d))
    w = rng.uniform(0.2, 1.0, (N, n))
    w[0, 3:] = 0.0
    w[2, 4] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    X[w == 0] = 0.0
    return X, w


def _loss(kind: str, X: np.ndarray, w: np.ndarray, dprime: int = 2, seed: int = 1):
    rng = np.random.default_rng(seed)
    N, n, _ = X.shape
    T = rng.standard_normal((N, n, dprime) if kind == "token" else (N, dprime))
    if kind == "token":
        T[w == 0] = 0.0
    return RegressionLoss(LossKind(kind), T)


def _model(scheme: str, substeps: int, d: int = 3, seed: int = 2, std: float = 0.8):
    return MeanFieldTransformer.init(layers=3, heads=4, key_dim=2, dim=d, init_qk_std=std,
                                     init_v_std=std, seed=seed, scheme=scheme, substeps=substeps)


@pytest.mark.parametrize("kind", ["token", "pooled"])
@pytest.mark.parametrize("scheme,substeps", SCHEMES)
def test_gradient_matches_central_differences(kind, scheme, substeps):
    """Directional derivatives <dR/dtheta, D> of the adjoint equal central differences
    (R(theta + eps D) - R(theta - eps D)) / (2 eps) for random directions D in every parameter
    group (Q, K, V), with padding and non-uniform weights.

    Tolerance 1e-6 (relative): with eps = 1e-5 the truncation error is O(eps^2 |R'''|) ~ 1e-10
    and the round-off O(1e-16 |R| / eps) ~ 1e-11, so an exact gradient passes with a wide margin
    while any missing term of the mean-field coupling (errors of order 1e-2 to 1) fails.
    """
    X, w = _data()
    loss = _loss(kind, X, w)
    model = _model(scheme, substeps)
    R, grad = loss_and_gradient(model, X, w, loss)
    assert R == pytest.approx(loss_value(model, X, w, loss), rel=1e-14, abs=0)
    rng = np.random.default_rng(3)
    eps = 1e-5
    for name in ("Q", "K", "V"):
        P, G = getattr(model, name), getattr(grad, name)
        D = rng.standard_normal(P.shape)

        def at(t):
            params = {"Q": model.Q, "K": model.K, "V": model.V, name: P + t * D}
            return loss_value(model.with_params(**params), X, w, loss)

        fd = (at(eps) - at(-eps)) / (2 * eps)
        exact = float(np.vdot(G, D))
        assert abs(fd - exact) <= 1e-6 * abs(exact), (name, fd, exact)


@pytest.mark.parametrize("kind", ["token", "pooled"])
def test_single_entries_of_every_head(kind):
    """Central differences of single parameter entries, one in each head of the last and first
    layers (checks the head/layer indexing of the gradient, not only its projections).
    Same tolerance argument as above (relative 1e-6, absolute floor 1e-10 for tiny entries)."""
    X, w = _data(seed=5)
    loss = _loss(kind, X, w, seed=6)
    model = _model("euler", 1, seed=7)
    _, grad = loss_and_gradient(model, X, w, loss)
    eps = 1e-5
    for name in ("Q", "K", "V"):
        P, G = getattr(model, name), getattr(grad, name)
        for layer in (0, model.layers - 1):
            for h in range(model.heads):
                idx = (layer, h, h % P.shape[2], (h + 1) % P.shape[3])
                E = np.zeros_like(P)
                E[idx] = 1.0
                plus = model.with_params(**{**_params(model), name: P + eps * E})
                minus = model.with_params(**{**_params(model), name: P - eps * E})
                fd = (loss_value(plus, X, w, loss) - loss_value(minus, X, w, loss)) / (2 * eps)
                assert abs(fd - G[idx]) <= 1e-6 * abs(G[idx]) + 1e-10, (name, idx, fd, G[idx])


def _params(model):
    return {"Q": model.Q, "K": model.K, "V": model.V}


def test_padding_is_inert():
    """Padded tokens (weight 0) neither attend nor count: changing their values changes neither
    the loss nor the gradient (exact equality, the padded values are multiplied by exact
    zeros), and no floating-point warning is raised (warnings are errors in the test config)."""
    X, w = _data(seed=8)
    loss = _loss("token", X, w, seed=9)
    model = _model("rk4", 1, seed=10)
    R0, g0 = loss_and_gradient(model, X, w, loss)
    X2 = X.copy()
    X2[w == 0] = 1e3
    R1, g1 = loss_and_gradient(model, X2, w, loss)
    assert R0 == R1
    np.testing.assert_array_equal(g0.V, g1.V)
    np.testing.assert_array_equal(g0.Q, g1.Q)
    out = model.forward(X2, w)
    assert np.all(out[w == 0] == 0.0)


def test_gradient_equals_torch_autograd():
    """The adjoint equals torch autograd of an independent torch implementation of the Euler
    model (float64) to round-off: relative max-difference < 1e-10 (both compute the same exact
    derivative; only summation order differs)."""
    torch = pytest.importorskip("torch")
    X, w = _data(seed=11)
    loss = _loss("token", X, w, seed=12)
    model = _model("euler", 1, seed=13)
    _, grad = loss_and_gradient(model, X, w, loss)
    Q, K, V = (torch.tensor(a, requires_grad=True) for a in (model.Q, model.K, model.V))
    x = torch.tensor(X)
    wt = torch.tensor(w)
    logw = torch.where(wt > 0, torch.log(torch.where(wt > 0, wt, 1.0)),
                       torch.tensor(-torch.inf, dtype=torch.float64))
    mask = (wt > 0).to(torch.float64)[..., None]
    L, H = model.layers, model.heads
    for layer in range(L):
        q = torch.einsum("hkd,nad->nhak", Q[layer], x)
        k = torch.einsum("hkd,nbd->nhbk", K[layer], x)
        A = torch.softmax(q @ k.transpose(-1, -2) + logw[:, None, None, :], dim=-1)
        v = torch.einsum("hde,nhae->nad", V[layer], A @ x[:, None]) / H
        x = x + mask * v / L
    T = torch.tensor(loss.targets)
    R = (wt[..., None] * (x[..., :2] - T) ** 2).sum() / (2 * X.shape[0])
    R.backward()
    for mine, theirs in ((grad.Q, Q.grad), (grad.K, K.grad), (grad.V, V.grad)):
        theirs = theirs.numpy()
        assert np.max(np.abs(mine - theirs)) <= 1e-10 * np.max(np.abs(theirs))


@pytest.mark.parametrize("scheme,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_depth_integrators_converge_at_their_order(scheme, order):
    """Sub-stepping a scheme of order p converges to the depth ODE's solution: the error of X^L
    against a fine rk4 reference drops by about 2^p when the sub-steps double. Checked on the
    observed order log2(e_s / e_2s), which must lie within 0.35 of p (asymptotic regime at
    s = 8 -> 16; the reference's own error is ~1e-4 of the measured differences)."""
    X, w = _data(seed=14)
    base = _model("euler", 1, seed=15, std=1.0)
    ref = MeanFieldTransformer(base.Q, base.K, base.V, get_scheme("rk4"), 256).forward(X, w)
    errs = []
    for s in (8, 16):
        out = MeanFieldTransformer(base.Q, base.K, base.V, get_scheme(scheme), s).forward(X, w)
        errs.append(np.max(np.abs(out - ref)))
    observed = np.log2(errs[0] / errs[1])
    assert abs(observed - order) < 0.35, (errs, observed)


def test_softmax_fast_path_equals_exact_path(monkeypatch):
    """The Cauchy–Schwarz shift (fast path) and the exact row-max shift (used when
    2 max|q| max|k| > 600) give the same velocities and gradients: softmax is shift-invariant,
    so they differ by round-off only (relative 1e-12)."""
    import ntkcheck.meanfield.model as model_mod

    X, w = _data(seed=16)
    loss = _loss("token", X, w, seed=17)
    model = _model("euler", 1, seed=18)
    R0, g0 = loss_and_gradient(model, X, w, loss, backend="numpy")
    monkeypatch.setattr(model_mod, "_MAX_GAP", -1.0)
    R1, g1 = loss_and_gradient(model, X, w, loss, backend="numpy")
    assert R1 == pytest.approx(R0, rel=1e-12, abs=0)
    for a, b in ((g0.Q, g1.Q), (g0.K, g1.K), (g0.V, g1.V)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(a).max())


def test_large_scores_gradient_and_no_warnings():
    """With large heads (scores of order 1e3, beyond the fast path) the attention is nearly
    hard, yet loss and gradient stay finite with padding, no overflow warning is raised, and
    the gradient still matches central differences (eps = 1e-7 on these steeper functions,
    relative tolerance 1e-5: truncation ~eps^2 |R'''| with |R'''| up to ~1e6)."""
    X, w = _data(seed=19)
    loss = _loss("pooled", X, w, seed=20)
    model = _model("euler", 1, seed=21, std=12.0)
    R, grad = loss_and_gradient(model, X, w, loss)
    assert np.isfinite(R) and grad.is_finite()
    rng = np.random.default_rng(22)
    D = rng.standard_normal(model.V.shape)
    eps = 1e-7
    fd = (loss_value(model.with_params(model.Q, model.K, model.V + eps * D), X, w, loss)
          - loss_value(model.with_params(model.Q, model.K, model.V - eps * D), X, w, loss))
    fd /= 2 * eps
    exact = float(np.vdot(grad.V, D))
    assert abs(fd - exact) <= 1e-5 * abs(exact)
