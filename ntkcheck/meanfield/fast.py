"""Fused numba kernels of one training step: loss and exact gradient, one sample at a time.

The numpy path (:mod:`.model`, :mod:`.adjoint`) is the reference; this module computes the same
discrete adjoint (SPEC §6) with every (sample, head) evaluated by compiled loops on the sample's
real tokens only, so no time goes to padding or to the overhead of many tiny array operations:

    for each sample i (in a fixed chunk of samples, chunks in parallel):
        X^0 -> X^L          forward, keeping the per-layer token states of this sample only
                            and, when they fit in KEEP_BYTES, every stage's projections and
                            attention
        R_i, p^L            token or pooled regression and its cotangent
        X^L -> X^0          adjoint layer by layer; each layer's attention (every RK stage, every
                            sub-step) is read back (or recomputed from X^l when not kept), its
                            VJP accumulated into the chunk's gradient of the heads

Scores are <q_a, k_b> with q = Qe x, k = Ke x and (Qe, Ke) = (Q, K) when key_dim <= d, else
(M^T, I) with M = Q^T K (the cheaper factorisation; :func:`loss_and_gradient_fast` maps the
gradients back: dQ = K dM^T, dK = Q dM with dM = dQe^T); Qe, Ke are padded with zero rows to
a multiple of 4 rows, the kernels' unrolling width.

Every (sample, head) array has the heads innermost, the SIMD axis. Sums whose coefficients do
not depend on the head (projections, the value sum, dA, dU, the heads' gradient) run over the
flat (token, head) or (channel, head) axis, long contiguous loops; the per-head bilinear ones
(scores, dq, dk) run over the heads, four terms per pass (:func:`_add_combination`, below).

Determinism. The chunks of samples depend only on N; each chunk is processed by one thread, in
sample order, into its own gradient buffer; the buffers and the per-sample losses are then reduced
in chunk (sample) order. So the result is bit-identical whatever the number of threads. Chunks
run on the worker threads of :mod:`._parallel` (``NTKCHECK_NUM_THREADS``, default: the CPUs
available), the compiled kernels release the GIL and call no BLAS, so BLAS's own pool stays idle
and the two never oversubscribe the cores.

Memory: the token states of the whole batch are never stored; per thread, one sample's (L+1)
states, its sub-step starts and the projections and attention of every RK step of the sample
(L substeps stages (n d + n C H + n^2 H) floats, C = 2 key_dim + d) when that is at most
:data:`KEEP_BYTES`, else of one RK step; per chunk, one gradient buffer of the size of the heads.

numba is optional (``pip install -e '.[fast]'`` in the ntkcheck clone); :data:`AVAILABLE` says whether it is
importable. Kernels are compiled on first use and cached on disk (``cache=True``) where numba
finds a writable cache directory (``NUMBA_CACHE_DIR``, the package's ``__pycache__`` or the
user's cache directory under HOME); when none is writable (a read-only installation run by a
user without a writable HOME, as in a locked-down CI job) they are compiled without a disk
cache instead of failing at import.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError, install_hint
from ._field_kernels import _FLAGS, AVAILABLE, _field, _field_vjp, _jit
# re-exported: the disk-cache state and the exp kernel are checked through this module's name
from ._field_kernels import _DISK_CACHE, _exp_array  # noqa: F401
from ._parallel import run_chunks

__all__ = ["AVAILABLE", "FAST_HINT", "MISSING_MESSAGE", "chunk_starts", "loss_and_gradient_fast",
           "require"]

#: how to get the fast path
FAST_HINT = f"{install_hint('fast', 'numba')} for the compiled kernels"
MISSING_MESSAGE = ("the fast training path needs numba, which is not installed; "
                   f"{install_hint('fast', 'numba')}, or set NTKCHECK_BACKEND=numpy")

#: number of sample chunks (a function of N only, never of the thread count)
CHUNKS = 32

#: The forward pass's attention of one sample (every layer, sub-step and stage) is kept for its
#: backward pass when it takes at most this many bytes per thread (2.1 MB at the benchmark's
#: n = 16, d = 8, L = 16, H = 32, key_dim = 4); beyond it the backward pass recomputes each
#: sub-step from the stored layer states instead (a third more arithmetic, memory independent of
#: L). Either way the gradient is the same, bit for bit.
KEEP_BYTES = 64 * 2**20

def require() -> None:
    """Raise an :class:`InputError` naming the fix when numba is missing."""
    if not AVAILABLE:
        raise InputError(MISSING_MESSAGE, field="backend")


def kept_bytes(slots: int, stages: int, n: int, d: int, C: int, H: int) -> int:
    """Bytes per thread of the kept stage inputs (n, d), projections (n, C, H) and attention
    (n, n, H) of ``slots`` sub-steps of ``stages`` stages each."""
    return 8 * slots * stages * n * (d + C * H + n * H)


def chunk_starts(N: int) -> np.ndarray:
    """Boundaries of the sample chunks: min(N, CHUNKS) near-equal chunks (int64, length + 1)."""
    count = max(1, min(N, CHUNKS))
    return np.array([(N * c) // count for c in range(count + 1)], dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# one sample: forward, loss, adjoint


@_jit(fastmath=_FLAGS)
def _rk_step(W, X, lw, m, a, b, hstep, Zs, ks, P, A, out, Ut, mx, e, full):
    """One RK step from X (m, d) into out; stage inputs Zs (s, m, d), velocities ks (s, m, d) and
    the attention of every stage (P, A with a leading stage axis) are kept. With ``full`` False
    only the stages' inputs and attention are computed (the backward pass's recomputation of a
    sub-step): the last stage's velocity and ``out`` are skipped."""
    s = b.shape[0]
    d = X.shape[1]
    for i in range(s):
        for t in range(m):
            for j in range(d):
                z = X[t, j]
                for p in range(i):
                    if a[i, p] != 0.0:
                        z += hstep * a[i, p] * ks[p, t, j]
                Zs[i, t, j] = z
        _field(W, Zs[i], lw, m, P[i], A[i], ks[i], Ut, mx, e, full or i + 1 < s)
    if not full:
        return
    for t in range(m):
        for j in range(d):
            x = X[t, j]
            for i in range(s):
                if b[i] != 0.0:
                    x += hstep * b[i] * ks[i, t, j]
            out[t, j] = x


@_jit(fastmath=_FLAGS)
def _sample(i, W, X, w, T, token_loss, inv_N, a, b, hstep, substeps, e, gW, S, starts, Zs, ks,
            P, A, lam, new_lam, mu, kappa, dP, D, U, row, dot, Ut, mx, idx, lw, keep):
    """Loss R_i of sample i; adds dR_i/dW into gW (L, d, 2e + d, H).

    With ``keep`` the forward pass leaves every sub-step's stage inputs and attention in its own
    slot (layer * substeps + sub) of Zs, P, A and the backward pass reads them; otherwise the
    arrays have one slot and the backward pass recomputes each sub-step from the stored layer
    states (same compiled code, same inputs: the same values, bit for bit). The other arguments
    are scratch (see :func:`_chunk` for their shapes).
    """
    L = W.shape[0]
    d = X.shape[2]
    n = X.shape[1]
    s = b.shape[0]
    dT = T.shape[-1]
    m = 0
    for t in range(n):
        if w[i, t] > 0.0:
            idx[m] = t
            lw[m] = math.log(w[i, t])
            for j in range(d):
                S[0, m, j] = X[i, t, j]
            m += 1
    # forward: token states of this sample only
    for layer in range(L):
        for j in range(m):
            for c in range(d):
                starts[0, j, c] = S[layer, j, c]
        for sub in range(substeps):
            dst = starts[sub + 1] if sub + 1 < substeps else S[layer + 1]
            slot = layer * substeps + sub if keep else 0
            _rk_step(W[layer], starts[sub], lw, m, a, b, hstep, Zs[slot], ks, P[slot], A[slot],
                     dst, Ut, mx, e, True)
    # loss and p^L = dR_i/dX^L on the real tokens
    R = 0.0
    for j in range(m):
        for c in range(d):
            lam[j, c] = 0.0
    if token_loss:
        for j in range(m):
            wt = w[i, idx[j]]
            for c in range(dT):
                res = S[L, j, c] - T[i, idx[j], c]
                R += wt * res * res
                lam[j, c] = wt * res * inv_N
    else:
        for c in range(dT):
            pooled = 0.0
            for j in range(m):
                pooled += w[i, idx[j]] * S[L, j, c]
            res = pooled - T[i, 0, c]
            R += res * res
            for j in range(m):
                lam[j, c] = w[i, idx[j]] * res * inv_N
    R *= 0.5 * inv_N
    # adjoint, layer by layer, on the kept (or recomputed) stage inputs and attention
    for layer in range(L - 1, -1, -1):
        Wl = W[layer]
        if not keep:
            for j in range(m):
                for c in range(d):
                    starts[0, j, c] = S[layer, j, c]
            for sub in range(substeps - 1):
                _rk_step(Wl, starts[sub], lw, m, a, b, hstep, Zs[0], ks, P[0], A[0],
                         starts[sub + 1], Ut, mx, e, True)
        for sub in range(substeps - 1, -1, -1):
            slot = layer * substeps + sub if keep else 0
            if not keep:
                # recompute this sub-step's stages: only their inputs and attention are needed
                _rk_step(Wl, starts[sub], lw, m, a, b, hstep, Zs[0], ks, P[0], A[0], new_lam,
                         Ut, mx, e, False)
            for j in range(m):
                for c in range(d):
                    new_lam[j, c] = lam[j, c]
            for st in range(s - 1, -1, -1):
                for j in range(m):
                    for c in range(d):
                        kp = hstep * b[st] * lam[j, c]
                        for p in range(st + 1, s):
                            if a[p, st] != 0.0:
                                kp += hstep * a[p, st] * mu[p, j, c]
                        kappa[j, c] = kp
                        mu[st, j, c] = 0.0
                _field_vjp(Wl, Zs[slot, st], m, P[slot, st], A[slot, st], kappa, mu[st],
                           gW[layer], dP, D, U, row, dot, e)
                for j in range(m):
                    for c in range(d):
                        new_lam[j, c] += mu[st, j, c]
            for j in range(m):
                for c in range(d):
                    lam[j, c] = new_lam[j, c]
    return R


@_jit(fastmath=_FLAGS, nogil=True)
def _chunk(W, X, w, T, token_loss, inv_N, a, b, hstep, substeps, e, s0, s1, gW, losses, keep):
    """Samples s0 .. s1-1, in order: gW (L, d, 2e + d, H) = sum_i dR_i/dW, losses[i] = R_i.

    ``keep``: keep the forward pass's stage inputs and attention for the backward pass (L
    substeps slots) instead of recomputing them (one slot). Runs without the GIL, so chunks run
    concurrently on Python threads.
    """
    L, d, C, H = W.shape
    n = X.shape[1]
    s = b.shape[0]
    slots = L * substeps if keep else 1
    S = np.empty((L + 1, n, d))
    starts = np.empty((substeps, n, d))
    Zs = np.empty((slots, s, n, d))
    ks = np.empty((s, n, d))
    P = np.empty((slots, s, n, C, H))
    A = np.empty((slots, s, n, n, H))
    lam = np.empty((n, d))
    new_lam = np.empty((n, d))
    mu = np.empty((s, n, d))
    kappa = np.empty((n, d))
    dP = np.empty((n, C, H))
    D = np.empty((n, n, H))
    U = np.empty((d, n, H))
    row = np.empty((n, H))
    dot = np.empty(H)
    Ut = np.empty((d, n, H))
    mx = np.empty((2, H))
    idx = np.empty(n, dtype=np.int64)
    lw = np.empty(n)
    gW[...] = 0.0
    for i in range(s0, s1):
        losses[i] = _sample(i, W, X, w, T, token_loss, inv_N, a, b, hstep, substeps, e, gW, S,
                            starts, Zs, ks, P, A, lam, new_lam, mu, kappa, dP, D, U, row, dot,
                            Ut, mx, idx, lw, keep)


# ----------------------------------------------------------------------------------------------
# entry point


def _score_factors(Q: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(Qe, Ke, via_M): (Q, K) if key_dim <= d, else (M^T, I) with M = Q^T K."""
    L, H, k, d = Q.shape
    if k <= d:
        return np.ascontiguousarray(Q), np.ascontiguousarray(K), False
    M = np.matmul(Q.transpose(0, 1, 3, 2), K)
    Ke = np.broadcast_to(np.eye(d), (L, H, d, d)).copy()
    return np.ascontiguousarray(M.transpose(0, 1, 3, 2)), Ke, True


def loss_and_gradient_fast(model, tokens: np.ndarray, weights: np.ndarray, loss,
                           threads: int | None = None):
    """R and (dR/dQ, dR/dK, dR/dV) of the discretised model (SPEC §6) by the fused kernels.

    Parameters
    ----------
    model : MeanFieldTransformer
    tokens : (N, n, d) float64; weights : (N, n) (zero at padding; every sample has a real token).
    loss : RegressionLoss (token targets (N, n, d'), pooled (N, d')).
    threads : worker threads (default :func:`~ntkcheck.meanfield._parallel.num_threads`); the
        result does not depend on it.

    Returns
    -------
    R : float; gQ, gK : (L, H, k, d); gV : (L, H, d, d).
    """
    require()
    from .loss import LossKind

    X = np.array(tokens, dtype=np.float64, order="C")
    w = np.array(weights, dtype=np.float64, order="C")
    N = X.shape[0]
    token_loss = loss.kind is LossKind.TOKEN
    T = np.array(loss.targets if token_loss else loss.targets[:, None, :], dtype=np.float64,
                 order="C")
    Qe, Ke, via_M = _score_factors(model.Q, model.K)
    L, H, k, d = Qe.shape
    # the kernels take four key indices a pass: Qe, Ke padded with zero rows to e = 4 ceil(k/4)
    # (the padded scores' terms are exact zeros; their gradients are dropped below)
    e = -(-k // 4) * 4
    pad = np.zeros((L, H, e - k, d))
    # stacked projections, heads last: W[l, j, :, h] = [Qe_h[:, j], Ke_h[:, j], V_h[:, j]]
    W = np.ascontiguousarray(np.concatenate([Qe, pad, Ke, pad, model.V], axis=2)
                             .transpose(0, 3, 2, 1))
    a = np.array(model.scheme.a)  # writable copies: one compiled signature for all inputs
    b = np.array(model.scheme.b)
    bounds = chunk_starts(N)
    C = bounds.shape[0] - 1
    gWc = np.empty((C,) + W.shape)
    losses = np.empty(N)
    token = bool(token_loss)
    substeps = int(model.substeps)
    keep = kept_bytes(L * substeps, b.shape[0], X.shape[1], d, W.shape[2], H) <= KEEP_BYTES

    def run(s0: int, s1: int) -> None:
        c = int(np.searchsorted(bounds, s0))
        _chunk(W, X, w, T, token, 1.0 / N, a, b, model.step, substeps, e, s0, s1, gWc[c], losses,
               keep)

    run_chunks(run, [(int(bounds[c]), int(bounds[c + 1])) for c in range(C)], threads)
    # fixed-order reductions: bit-identical whatever the thread count
    R = 0.0
    for x in losses:
        R += float(x)
    gW = gWc[0].copy()
    for c in range(1, C):
        gW += gWc[c]
    gW = gW.transpose(0, 3, 2, 1)  # (L, H, 2e + d, d)
    gQ = np.ascontiguousarray(gW[:, :, :k])
    gK = np.ascontiguousarray(gW[:, :, e:e + k])
    gV = np.ascontiguousarray(gW[:, :, 2 * e:])
    if via_M:
        gMt = gQ  # dR/dM^T per head
        gQ = np.matmul(model.K, gMt)
        gK = np.matmul(model.Q, gMt.transpose(0, 1, 3, 2))
    return R, gQ, gK, gV
