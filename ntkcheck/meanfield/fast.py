"""Fused numba training step: loss and exact gradient, one sample at a time.

This module is the Python entry point; the compiled kernels are in :mod:`ntkcheck._compiled`.
The numpy path (:mod:`.model`, :mod:`.adjoint`) is the reference; this module computes the
same discrete adjoint (SPEC §6) with every (sample, head) evaluated by compiled loops on the
sample's real tokens only, so no time goes to padding or to the overhead of many tiny array
operations:

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
(scores, dq, dk) run over the heads, four terms per pass (see :mod:`ntkcheck._compiled`).

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

numba is optional (``pip install -e '.[fast]'`` in the ntkcheck clone); :data:`AVAILABLE` says
whether it is importable. Kernels are compiled on first use and cached on disk (``cache=True``)
where numba finds a writable cache directory (``NUMBA_CACHE_DIR``, the package's
``__pycache__`` or the user's cache directory under HOME); when none is writable (a read-only
installation run by a user without a writable HOME, as in a locked-down CI job) they are
compiled without a disk cache instead of failing at import.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, install_hint
from ..resources import KEEP_ATTENTION_BYTES, KERNEL_ROW_PAD, kept_attention_bytes
from .._compiled import AVAILABLE, _chunk
# re-exported: the disk-cache state and the exp kernel are checked through this module's name
from .._compiled import _DISK_CACHE, _exp_array  # noqa: F401
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
KEEP_BYTES = KEEP_ATTENTION_BYTES  # the memory guard counts it (resources.train_bytes)

def require() -> None:
    """Raise an :class:`InputError` naming the fix when numba is missing."""
    if not AVAILABLE:
        raise InputError(MISSING_MESSAGE, field="backend")


def chunk_starts(N: int) -> np.ndarray:
    """Boundaries of the sample chunks: min(N, CHUNKS) near-equal chunks (int64, length + 1)."""
    count = max(1, min(N, CHUNKS))
    return np.array([(N * c) // count for c in range(count + 1)], dtype=np.int64)


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
    keep = kept_attention_bytes(L * substeps * b.shape[0], X.shape[1], d, W.shape[2],
                                H) <= KEEP_BYTES

    def run(s0: int, s1: int) -> None:
        c = int(np.searchsorted(bounds, s0))
        _chunk(W, X, w, T, token, 1.0 / N, a, b, model.step, substeps, e, s0, s1, gWc[c], losses,
               keep, KERNEL_ROW_PAD)

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
