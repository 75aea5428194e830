"""Discrete adjoint of the mean-field transformer: exact gradients of the discretised model.

For explicit Euler (SPEC §6): p^L = dR/dX^L and p^l = p^{l+1} + (1/L) (dv_l/dX^l)^T p^{l+1}, where
dv_l/dX differentiates every token's velocity with respect to all tokens of its sample (query
token, and keys/values through the softmax). For a Runge–Kutta step
Z_i = X + h sum_j a_ij k_j, k_i = v(Z_i), X' = X + h sum_i b_i k_i, the exact discrete adjoint is

    kappa_i = h b_i lambda' + h sum_{j>i} a_ji mu_j,   mu_i = (dv/dZ_i)^T kappa_i,
    lambda  = lambda' + sum_i mu_i,   dR/dtheta += (dv/dtheta at Z_i)^T kappa_i.

Only the per-layer token states X^l are stored; attention is recomputed layer by layer in the
backward pass (sub-step and stage states of the current layer live only while it is processed).

The cotangents carry a leading batch axis C: C = 1 for the loss gradient, C = residual components
of one sample for the Jacobian rows of the empirical NTK (``per_row=True``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .loss import RegressionLoss
from .model import AttentionCache, MeanFieldTransformer, attention_field, log_weights, mask_of

__all__ = ["Gradient", "attention_vjp", "backward", "loss_and_gradient"]


@dataclass(frozen=True, eq=False)
class Gradient:
    """dR/dtheta for every head: Q, K (L, H, k, d) and V (L, H, d, d)."""

    Q: np.ndarray
    K: np.ndarray
    V: np.ndarray

    def sq_norm(self) -> float:
        """sum |dR/dtheta|^2 over all heads (Euclidean, without the metric factor H L)."""
        return float(np.vdot(self.Q, self.Q) + np.vdot(self.K, self.K) + np.vdot(self.V, self.V))

    def is_finite(self) -> bool:
        return bool(np.isfinite(self.Q).all() and np.isfinite(self.K).all()
                    and np.isfinite(self.V).all())


def attention_vjp(cache: AttentionCache, p: np.ndarray, Q: np.ndarray, K: np.ndarray,
                  V: np.ndarray, *, per_row: bool = False):
    """Vector-Jacobian product of one layer's field v(X) = (1/H) sum_h V_h A_h X.

    Parameters
    ----------
    cache : AttentionCache of the forward evaluation at X.
    p : (C, N, n, d) cotangents of v.
    Q, K : (H, k, d); V : (H, d, d) the layer's heads.
    per_row : if True return parameter gradients per (c, sample) instead of their sum.

    Returns
    -------
    gX : (C, N, n, d) = (dv/dX)^T p, including the softmax's dependence on queries and keys.
    gQ, gK : (H, k, d) or (C, N, H, k, d);  gV : (H, d, d) or (C, N, H, d, d).
    """
    X, E, r, Y, q, kk = cache.X, cache.E, cache.r, cache.Y, cache.q, cache.kk
    C, N, n, d = p.shape
    H, k, _ = Q.shape
    pbar = p * (cache.mask * (1.0 / H))
    pf = pbar.reshape(C * N * n, d)
    # G_ha = V_h^T pbar_a, the cotangent of the tilted mean Y_ha = sum_b A_hab x_b, A = r E.
    G = (pf @ V.transpose(1, 0, 2).reshape(d, H * d)).reshape(C, N, n, H, d)
    G = G.transpose(0, 1, 3, 2, 4)
    Gr = G * r[None]  # folds the row normalisation into the small (n x d) side
    gX = (E.transpose(0, 1, 3, 2)[None] @ Gr).sum(axis=2)  # value path: x_b weighted by A_ab
    # softmax backward: dS_ab = A_ab (dA_ab - sum_c A_ac dA_ac) with dA_ab = <G_a, x_b> and
    # sum_c A_ac dA_ac = <G_a, Y_a>; i.e. dS_ab = E_ab (<r_a G_a, x_b> - <r_a G_a, Y_a>).
    gS = (np.ascontiguousarray(Gr).reshape(C, N, H * n, d) @ X.transpose(0, 2, 1)[None])
    gS = gS.reshape(C, N, H, n, n)
    gS -= np.einsum("cnhad,nhad->cnha", Gr, Y)[..., None]
    gS *= E[None]
    gq = gS @ kk[None]  # (C, N, H, n, k)
    gk = gS.transpose(0, 1, 2, 4, 3) @ q[None]
    gqf = gq.transpose(0, 1, 3, 2, 4).reshape(C * N * n, H * k)
    gkf = gk.transpose(0, 1, 3, 2, 4).reshape(C * N * n, H * k)
    gX += (gqf @ Q.reshape(H * k, d) + gkf @ K.reshape(H * k, d)).reshape(C, N, n, d)
    if per_row:
        Xr = X[None, :, None]
        gQ = gq.transpose(0, 1, 2, 4, 3) @ Xr
        gK = gk.transpose(0, 1, 2, 4, 3) @ Xr
        gV = pbar[:, :, None].transpose(0, 1, 2, 4, 3) @ Y[None]
        return gX, gQ, gK, gV
    Xf = np.broadcast_to(X, (C, N, n, d)).reshape(C * N * n, d)
    Yf = np.broadcast_to(Y.transpose(0, 2, 1, 3), (C, N, n, H, d)).reshape(C * N * n, H * d)
    gQ = (gqf.T @ Xf).reshape(H, k, d)
    gK = (gkf.T @ Xf).reshape(H, k, d)
    gV = (pf.T @ Yf).reshape(d, H, d).transpose(1, 0, 2)
    return gX, gQ, gK, gV


def _layer_backward(model: MeanFieldTransformer, layer: int, X: np.ndarray, lam: np.ndarray,
                    logw: np.ndarray, mask: np.ndarray, per_row: bool):
    """Pull lambda = dR/dX^{l+1} back through layer ``layer`` started at X = X^l.

    Returns lambda^l and the layer's parameter gradients (summed over sub-steps and stages).
    """
    Ql, Kl, Vl = model.Q[layer], model.K[layer], model.V[layer]
    a, b, h, s = model.scheme.a, model.scheme.b, model.step, model.scheme.stages
    starts = [X]
    for _ in range(model.substeps - 1):
        starts.append(model.substep_forward(layer, starts[-1], logw, mask))
    grads = None
    for Xs in reversed(starts):
        ks: list[np.ndarray] = []
        caches: list[AttentionCache] = []
        for i in range(s):
            Z = Xs
            for j in range(i):
                if a[i, j] != 0.0:
                    Z = Z + (h * a[i, j]) * ks[j]
            # the last stage's velocity feeds no later stage: its cache is all we need
            v, cache = attention_field(Ql, Kl, Vl, Z, logw, mask, need_v=i < s - 1)
            ks.append(v)
            caches.append(cache)
        del ks
        mus: list[np.ndarray | None] = [None] * s
        new_lam = lam
        for i in reversed(range(s)):
            kappa = (h * b[i]) * lam if b[i] != 0.0 else np.zeros_like(lam)
            for j in range(i + 1, s):
                if a[j, i] != 0.0 and mus[j] is not None:
                    kappa = kappa + (h * a[j, i]) * mus[j]
            mu, gQ, gK, gV = attention_vjp(caches[i], kappa, Ql, Kl, Vl, per_row=per_row)
            caches[i] = None  # type: ignore[call-overload]
            mus[i] = mu
            new_lam = new_lam + mu
            grads = (gQ, gK, gV) if grads is None else (grads[0] + gQ, grads[1] + gK,
                                                        grads[2] + gV)
        lam = new_lam
    return lam, grads


def backward(model: MeanFieldTransformer, states: np.ndarray, weights: np.ndarray,
             pL: np.ndarray, *, per_row: bool = False):
    """Discrete adjoint from X^L back to X^0.

    Parameters
    ----------
    states : (L+1, N, n, d) token states from :meth:`MeanFieldTransformer.states`.
    pL : (C, N, n, d) cotangents at X^L.

    Returns
    -------
    lambda0 : (C, N, n, d) cotangent at X^0.
    Q, K : (L, H, k, d) gradients (or (C, N, L, H, k, d) rows if ``per_row``); V likewise.
    """
    logw, mask = log_weights(weights), mask_of(weights)
    L, H, k, d = model.Q.shape
    lead = pL.shape[:2] if per_row else ()
    gQ = np.empty(lead + (L, H, k, d))
    gK = np.empty(lead + (L, H, k, d))
    gV = np.empty(lead + (L, H, d, d))
    lam = pL
    for layer in reversed(range(L)):
        lam, (q, kk, v) = _layer_backward(model, layer, states[layer], lam, logw, mask, per_row)
        gQ[..., layer, :, :, :] = q
        gK[..., layer, :, :, :] = kk
        gV[..., layer, :, :, :] = v
    return lam, gQ, gK, gV


def loss_and_gradient(model: MeanFieldTransformer, tokens: np.ndarray, weights: np.ndarray,
                      loss: RegressionLoss) -> tuple[float, Gradient]:
    """R(theta) and the exact gradient dR/dtheta of the discretised model (SPEC §6).

    Parameters
    ----------
    tokens : (N, n, d), weights : (N, n) as in :class:`~ntkcheck.TokenArrays`.
    """
    states = model.states(tokens, weights)
    R, pL = loss.value_and_cotangent(states[-1], weights)
    _, gQ, gK, gV = backward(model, states, weights, pL[None])
    return R, Gradient(gQ, gK, gV)


def loss_value(model: MeanFieldTransformer, tokens: np.ndarray, weights: np.ndarray,
               loss: RegressionLoss) -> float:
    """R(theta) only (one forward pass)."""
    return loss.value_and_cotangent(model.forward(tokens, weights), weights)[0]
