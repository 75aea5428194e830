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

import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

from .loss import RegressionLoss
from ._parallel import Workspace, run_chunks, workspace
from .model import (AttentionCache, AttentionChunk, MeanFieldTransformer, _alloc,
                    attention_bounds, attention_chunk, attention_field, head_forms, log_weights,
                    mask_of, score_bound, stage_state)

__all__ = ["BACKENDS", "Gradient", "attention_vjp", "backward", "loss_and_gradient",
           "resolve_backend"]


@dataclass(frozen=True, eq=False)
class Gradient:
    """dR/dtheta for every head: Q, K (L, H, k, d) and V (L, H, d, d)."""

    Q: np.ndarray
    K: np.ndarray
    V: np.ndarray

    def sq_norm(self) -> float:
        """sum |dR/dtheta|^2 over all heads (Euclidean, without the metric factor H L).

        numpy's pairwise sum, not BLAS ``dot``: the same bits whatever the BLAS thread count, and
        no BLAS worker threads woken (they would spin against the training kernels' threads).
        """
        with np.errstate(over="ignore"):  # a diverging flow's norm overflows to inf, as it should
            return float(sum(np.add.reduce(np.square(g), axis=None)
                             for g in (self.Q, self.K, self.V)))

    def is_finite(self) -> bool:
        return bool(np.isfinite(self.Q).all() and np.isfinite(self.K).all()
                    and np.isfinite(self.V).all())


def _vjp_chunk(ch: AttentionChunk, p: np.ndarray, M: np.ndarray, Vt: np.ndarray,
               Mt: np.ndarray, gX: np.ndarray, per_row: bool, ws: Workspace | None = None):
    """VJP of one chunk of samples; writes (dv/dX)^T p into gX[:, s0:s1].

    p : (C, Nc, n, d) cotangents of this chunk. Returns the chunk's gradients of the head forms
    M_h and of V_h as (d, H, d) arrays [i, h, j] (per (c, sample) rows if ``per_row``).
    """
    X, E, r, Y, Pa, Xa = ch.X, ch.E, ch.r, ch.Y, ch.Pa, ch.Xa
    C, Nc, n, d = p.shape
    H = M.shape[0]
    pbar = p * (ch.mask * (1.0 / H))
    # G_ha = V_h^T pbar_a, the cotangent of the tilted mean Y_ha = sum_b A_hab x_b, A = r E;
    # Gr = r G folds the row normalisation into the small (n x d) side, and its extra column
    # -<r_a G_a, Y_a> turns the score cotangent into one GEMM with [x_b, 1]:
    # dS_ab = A_ab (<G_a, x_b> - sum_c A_ac <G_a, x_c>) = E_ab <[r_a G_a, -<r_a G_a, Y_a>], [x_b, 1]>.
    G = _alloc(ws, "G", (C, Nc, n, H, d))
    np.matmul(pbar.reshape(C * Nc * n, d), Vt, out=G.reshape(C * Nc * n, H * d))
    Gra = _alloc(ws, "Gra", (C, Nc, n, H, d + 1))
    Gr = Gra[..., :d]
    np.multiply(G, r, out=Gr)
    beta = Gra[..., d]
    np.einsum("cnahd,nahd->cnah", Gr, Y, out=beta)
    np.negative(beta, out=beta)
    XaT = np.ascontiguousarray(Xa.transpose(0, 2, 1))
    gS = _alloc(ws, "gS", (C, Nc, n * H, n))
    np.matmul(Gra.reshape(C, Nc, n * H, d + 1), XaT, out=gS)
    gS *= E.reshape(Nc, n * H, n)
    Ef = E.reshape(Nc, n * H, n).transpose(0, 2, 1)
    # keys/values side: x_b's cotangent sum_{a,h} (A_hab G_ha + dS_hab M_h^T x_a)
    gXc = gX[:, ch.s0:ch.s1]
    np.matmul(Ef, Gr.reshape(C, Nc, n * H, d), out=gXc)
    gXc += np.matmul(gS.transpose(0, 1, 3, 2), Pa[..., :d].reshape(Nc, n * H, d))
    # queries side: x_a's cotangent sum_h M_h T1_ha, T1_ha = sum_b dS_hab x_b
    T1 = _alloc(ws, "T1", (C, Nc, n * H, d))
    np.matmul(gS, X, out=T1)
    gXc += (T1.reshape(C * Nc * n, H * d) @ Mt).reshape(C, Nc, n, d)
    if per_row:
        gM = np.matmul(X.transpose(0, 2, 1), T1.reshape(C, Nc, n, H * d))
        gV = np.matmul(pbar.transpose(0, 1, 3, 2), Y.reshape(Nc, n, H * d))
        return gM.reshape(C, Nc, d, H, d), gV.reshape(C, Nc, d, H, d)
    if C > 1:
        T1 = T1.sum(axis=0)
        pbar = pbar.sum(axis=0)
    gM = X.reshape(Nc * n, d).T @ T1.reshape(Nc * n, H * d)
    gV = pbar.reshape(Nc * n, d).T @ Y.reshape(Nc * n, H * d)
    return gM.reshape(d, H, d), gV.reshape(d, H, d)


def _vjp_operands(V: np.ndarray, M: np.ndarray):
    H, d, _ = V.shape
    Vt = V.transpose(1, 0, 2).reshape(d, H * d)  # Vt[i, (h, j)] = V_h[i, j]
    Mt = M.transpose(0, 2, 1).reshape(H * d, d)  # Mt[(h, j), i] = M_h[i, j]
    return Vt, Mt


def _finish_vjp(parts, Q: np.ndarray, K: np.ndarray, per_row: bool):
    """Sum (or concatenate) the chunks' (gM, gV) in chunk order; gQ = K gM^T, gK = Q gM."""
    if per_row:
        gM = np.concatenate([pm for pm, _ in parts], axis=1).transpose(0, 1, 3, 2, 4)
        gV = np.concatenate([pv for _, pv in parts], axis=1).transpose(0, 1, 3, 2, 4)
        gQ = np.matmul(K, gM.transpose(0, 1, 2, 4, 3))
        gK = np.matmul(Q, gM)
        return gQ, gK, np.ascontiguousarray(gV)
    gM, gV = parts[0]
    if len(parts) > 1:
        gM, gV = gM.copy(), gV.copy()
        for pm, pv in parts[1:]:
            gM += pm
            gV += pv
    gM = gM.transpose(1, 0, 2)  # (H, d, d)
    gQ = np.matmul(K, gM.transpose(0, 2, 1))
    gK = np.matmul(Q, gM)
    return gQ, gK, np.ascontiguousarray(gV.transpose(1, 0, 2))


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

    The scores are x_a^T M_h x_b with M_h = Q_h^T K_h, so dQ_h = K_h dM_h^T and dK_h = Q_h dM_h.
    """
    Vt, Mt = _vjp_operands(V, cache.M)
    gX = np.empty(p.shape)
    by_start = {ch.s0: ch for ch in cache.chunks}
    parts = run_chunks(
        lambda s0, s1: _vjp_chunk(by_start[s0], p[:, s0:s1], cache.M, Vt, Mt, gX, per_row),
        [(ch.s0, ch.s1) for ch in cache.chunks])
    return (gX,) + _finish_vjp(parts, Q, K, per_row)


def _field_vjp(Q: np.ndarray, K: np.ndarray, V: np.ndarray, X: np.ndarray, logw: np.ndarray,
               mask: np.ndarray, p: np.ndarray, per_row: bool):
    """attention_vjp(attention_field(...)[1], p, ...) without computing v, fused chunk by chunk
    so that each chunk's attention matrices are used while still in cache."""
    N, n, d = X.shape
    H = Q.shape[0]
    M = head_forms(Q, K)
    Mnorm = score_bound(M)
    lw = logw.reshape(N, n)
    Vt, Mt = _vjp_operands(V, M)
    gX = np.empty(p.shape)

    def work(s0: int, s1: int):
        # scratch buffers only for a single cotangent (their size then stays O(chunk))
        ws = workspace() if p.shape[0] == 1 else None
        ch = attention_chunk(M, Mnorm, None, X, lw, mask, s0, s1, None, ws)
        return _vjp_chunk(ch, p[:, s0:s1], M, Vt, Mt, gX, per_row, ws)

    parts = run_chunks(work, attention_bounds(N, n, H))
    return (gX,) + _finish_vjp(parts, Q, K, per_row)


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
        caches: list[AttentionCache | None] = []
        for i in range(s - 1):
            v, cache = attention_field(Ql, Kl, Vl, stage_state(Xs, ks, a[i], h), logw, mask)
            ks.append(v)
            caches.append(cache)
        # the last stage's velocity feeds no later stage and its VJP comes first:
        # recompute it fused with the VJP (below), from its input state only
        Z_last = stage_state(Xs, ks, a[s - 1], h)
        del ks
        mus: list = [None] * s  # mu_j, set (j > i) before stage i reads it
        new_lam = lam
        for i in reversed(range(s)):
            kappa = (h * b[i]) * lam if b[i] != 0.0 else np.zeros_like(lam)
            for j in range(i + 1, s):
                if a[j, i] != 0.0:
                    kappa = kappa + (h * a[j, i]) * mus[j]
            if i == s - 1:
                mu, gQ, gK, gV = _field_vjp(Ql, Kl, Vl, Z_last, logw, mask, kappa, per_row)
                del Z_last
            else:
                mu, gQ, gK, gV = attention_vjp(caches[i], kappa, Ql, Kl, Vl, per_row=per_row)
                caches[i] = None  # free this stage's attention before the next VJP
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


#: ``backend`` choices of :func:`loss_and_gradient` (``auto``: numba when installed)
BACKENDS = ("auto", "numba", "numpy")


def resolve_backend(backend: str | None = None) -> str:
    """'numba' or 'numpy' for ``backend`` (default: ``NTKCHECK_BACKEND``, else ``auto``).

    ``auto`` picks the fused numba kernels when numba is importable, else the numpy reference;
    asking for ``numba`` without numba installed is an :class:`InputError` naming the fix.
    """
    from . import fast

    name = backend if backend is not None else (os.environ.get("NTKCHECK_BACKEND", "").strip()
                                                or "auto")
    name = name.lower()
    if name not in BACKENDS:
        raise InputError(f"unknown backend {name!r}; valid choices: {', '.join(BACKENDS)}",
                         field="NTKCHECK_BACKEND" if backend is None else "backend")
    if name == "auto":
        return "numba" if fast.AVAILABLE else "numpy"
    if name == "numba":
        fast.require()
    return name


def loss_and_gradient(model: MeanFieldTransformer, tokens: np.ndarray, weights: np.ndarray,
                      loss: RegressionLoss, *,
                      backend: str | None = None) -> tuple[float, Gradient]:
    """R(theta) and the exact gradient dR/dtheta of the discretised model (SPEC §6).

    Parameters
    ----------
    tokens : (N, n, d), weights : (N, n) as in :class:`~ntkcheck.TokenArrays`.
    backend : 'auto' (default, see :func:`resolve_backend`), 'numba' (fused compiled kernels,
        :mod:`ntkcheck.meanfield.fast`) or 'numpy' (the reference implementation below). Both
        compute the same discrete adjoint; they agree to round-off.
    """
    if resolve_backend(backend) == "numba":
        from .._threads import blas_single_thread
        from .fast import loss_and_gradient_fast

        # the kernels call no BLAS; the few small matmuls around them must not wake BLAS's
        # threads, which would spin against the kernels' own threads
        with blas_single_thread():
            R, gQ, gK, gV = loss_and_gradient_fast(model, tokens, weights, loss)
        return R, Gradient(gQ, gK, gV)
    states = model.states(tokens, weights)
    R, pL = loss.value_and_cotangent(states[-1], weights)
    _, gQ, gK, gV = backward(model, states, weights, pL[None])
    return R, Gradient(gQ, gK, gV)


def loss_value(model: MeanFieldTransformer, tokens: np.ndarray, weights: np.ndarray,
               loss: RegressionLoss) -> float:
    """R(theta) only (one forward pass)."""
    return loss.value_and_cotangent(model.forward(tokens, weights), weights)[0]
