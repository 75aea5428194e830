"""Compiled kernels of one attention-field evaluation and its VJP (used by :mod:`.fast`).

One sample, one layer, one RK stage: the projections of the m real tokens on every head, the
attention, the velocity v (:func:`_field`) and the vector-Jacobian product (:func:`_field_vjp`),
plus a vectorisable exp for the softmax. Every array has the heads innermost (the SIMD axis);
sums whose coefficients do not depend on the head run over flat (token, head) or (channel,
head) rows, the per-head bilinear ones over the heads, four terms per pass
(:func:`_add_combination` and the unrolled loops): each load and store of an accumulator then
serves four multiply-adds. Summation orders are fixed by the compiled code, the same for every
sample and thread.

numba is optional: :data:`AVAILABLE` says whether it is importable; without it the functions
stay plain Python (never called: :func:`.fast.require` refuses first). Kernels are compiled on
first use and cached on disk where numba finds a writable cache directory, else compiled
without a disk cache (see :mod:`.fast`).
"""

from __future__ import annotations

import numpy as np

try:  # pragma: no cover - exercised through AVAILABLE
    from numba import njit
    AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the environment
    AVAILABLE = False


#: LLVM fast-math flags of the attention kernels: fused multiply-add and reassociation (so that
#: the short reductions vectorise); no NaN/inf assumptions. The compiled code, hence the order of
#: every sum, is the same for every sample and thread.
_FLAGS = {"contract", "reassoc"}


#: Whether the kernels are cached on disk (False once numba found no writable directory).
_DISK_CACHE = {"on": True}


def _jit(**kw):
    def wrap(fn):
        if not AVAILABLE:
            return fn
        if _DISK_CACHE["on"]:
            try:
                return njit(cache=True, error_model="numpy", **kw)(fn)
            except RuntimeError:  # "no locator available": no writable cache directory
                _DISK_CACHE["on"] = False
        return njit(cache=False, error_model="numpy", **kw)(fn)
    return wrap


# ----------------------------------------------------------------------------------------------
# one evaluation of v_l on one sample (m real tokens), keeping what its VJP needs.
# Heads are the innermost (SIMD) axis of every array: q[a, f, h], A[a, b, h], Qt[f, j, h], ...

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693147180369123816490
_LN2_LO = 1.90821492927058770002e-10
_SHIFT = 6755399441055744.0  # 1.5 * 2^52: x + _SHIFT rounds x to an integer (low mantissa bits)
_EXP_LOW = -708.0  # exp(x) < 3.3e-308 below: flushed to 0 (rows always hold a 1)


#: 2^-k for k = 0 .. 1023 (and 0 beyond): the scale of exp(x) = 2^-k exp(r)
_POW2 = np.concatenate([2.0 ** -np.arange(1023.0), np.zeros(77)])


@_jit(fastmath={"contract"}, inline="never")
def _exp_nonpos(x):
    """exp(x) for x <= 0, vectorisable (relative error <= 2 ulp; 0 below -708 and at -inf).

    exp(x) = 2^k exp(r), k = round(x / log 2), r = x - k log 2 by the Cody–Waite split of log 2
    (|r| <= log(2) / 2), exp(r) by its degree-13 Taylor polynomial (remainder < 2e-17), 2^k from
    a table. Compiled without reassociation (the split must be evaluated as written); LLVM still
    inlines it into the vectorised loops of the callers.
    """
    y = x if x > _EXP_LOW else _EXP_LOW
    kf = (y * _LOG2E + _SHIFT) - _SHIFT
    r = (y - kf * _LN2_HI) - kf * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _POW2[np.int64(-kf)] if x > _EXP_LOW else 0.0


@_jit(fastmath=_FLAGS)
def _exp_array(x, out):
    """out = exp(x) elementwise for x <= 0 (tests and benchmarks of :func:`_exp_nonpos`)."""
    for t in range(x.shape[0]):
        out[t] = _exp_nonpos(x[t])


# Register tiling: every reduction over a short axis (coordinates j, i, key index f, tokens a
# or b) is unrolled by four inside the loop over heads (or over the flat (coordinate, head)
# axis), so each load and store of an accumulator serves four fused multiply-adds instead of
# one; the remainder (axis length mod 4) is added one term at a time.


@_jit(fastmath=_FLAGS)
def _add_combination(out, r, coef, a, terms, M, cols, scale):
    """out[r, c] += scale sum_{j < terms} coef[a, j] M[j, c] for c < cols.

    Four terms per pass over the long contiguous rows (each load and store of ``out`` serves
    four multiply-adds), then the remainder (terms mod 4) one term at a time.
    """
    j4 = terms - terms % 4
    for j in range(0, j4, 4):
        z0 = scale * coef[a, j]
        z1 = scale * coef[a, j + 1]
        z2 = scale * coef[a, j + 2]
        z3 = scale * coef[a, j + 3]
        for c in range(cols):
            out[r, c] += (z0 * M[j, c] + z1 * M[j + 1, c]) + (z2 * M[j + 2, c] + z3 * M[j + 3, c])
    for j in range(j4, terms):
        z = scale * coef[a, j]
        for c in range(cols):
            out[r, c] += z * M[j, c]


@_jit(fastmath=_FLAGS)
def _field(W, Z, lw, m, P, A, v, Ut, mx, e, with_v):
    """v_a = (1/H) sum_h sum_b A_hab V_h z_b, A_h = softmax_b(<Qe_h z_a, Ke_h z_b> + log w_b).

    W (d, 2e + d, H) the stacked projections: W[j, f, h] = Qe_h[f, j], W[j, e + f, h] =
    Ke_h[f, j], W[j, 2e + i, h] = V_h[i, j], e a multiple of 4 (Qe, Ke zero-padded by
    :func:`loss_and_gradient_fast`). Z (>=m, d), lw (>=m,). Writes the projections
    P[a] = [Qe z_a, Ke z_a, V z_a] (>=m, 2e + d, H), the attention A (>=m, >=m, H) and, when
    ``with_v``, v (>=m, d): v_ai = (1/H) sum over the flat (b, h) axis of A_abh U_bih, a dot
    product of length m H with U coordinate-major in Ut (d, >=m, H). Scratch: Ut, mx (2, H).
    """
    d, C, H = W.shape
    CH = C * H
    mH = m * H
    Wf = W.reshape(d, CH)
    Pf = P.reshape(P.shape[0], CH)
    Af = A.reshape(A.shape[0], A.shape[1] * H)
    Utf = Ut.reshape(d, Ut.shape[1] * H)
    invH = 1.0 / H
    o = 2 * e
    for a in range(m):
        for c in range(CH):
            Pf[a, c] = 0.0
        _add_combination(Pf, a, Z, a, d, Wf, CH, 1.0)
    for a in range(m):
        Aa = A[a]
        top = mx[0]
        total = mx[1]
        for h in range(H):
            top[h] = -np.inf
        for b in range(m):  # e is a multiple of 4 (zero-padded): four key indices a pass
            Ab = Aa[b]
            lb = lw[b]
            for h in range(H):
                Ab[h] = lb + ((P[a, 0, h] * P[b, e, h] + P[a, 1, h] * P[b, e + 1, h])
                              + (P[a, 2, h] * P[b, e + 2, h] + P[a, 3, h] * P[b, e + 3, h]))
            for f in range(4, e, 4):
                for h in range(H):
                    Ab[h] += ((P[a, f, h] * P[b, e + f, h] + P[a, f + 1, h] * P[b, e + f + 1, h])
                              + (P[a, f + 2, h] * P[b, e + f + 2, h]
                                 + P[a, f + 3, h] * P[b, e + f + 3, h]))
            for h in range(H):
                top[h] = max(top[h], Ab[h])
        for h in range(H):
            total[h] = 0.0
        for b in range(m):
            for h in range(H):
                t = _exp_nonpos(Aa[b, h] - top[h])
                Aa[b, h] = t
                total[h] += t
        for h in range(H):
            top[h] = 1.0 / total[h]
        for b in range(m):
            for h in range(H):
                Aa[b, h] *= top[h]
    if not with_v:
        return
    for i in range(d):
        for b in range(m):
            for h in range(H):
                Ut[i, b, h] = P[b, o + i, h]
    for a in range(m):
        for i in range(d):
            s = 0.0
            for c in range(mH):
                s += Af[a, c] * Utf[i, c]
            v[a, i] = s * invH


@_jit(fastmath=_FLAGS)
def _field_vjp(W, Z, m, P, A, kappa, gZ, gW, dP, D, T, row, dot, e):
    """Adds (dv/dZ)^T kappa to gZ (>=m, d) and the heads' gradient to gW (d, 2e + d, H).

    Per head, with g = kappa / H:  dA_ab = <g_a, U_b>,  dS_ab = A_ab (dA_ab - sum_c A_ac dA_ac)
    (kept in D);  dq_a = sum_b dS_ab k_b,  dk_b = sum_a dS_ab q_a,  dU_b = sum_a A_ab g_a;
    then with dP = [dq, dk, dU]:  gW[j] += sum_b z_bj dP_b,  gZ[b, j] += <dP_b, W[j]>.
    Every dP entry is one sum written once. dA and dU have coefficients g free of the head, so
    they are formed over the flat (token, head) axis with U and dU coordinate-major in T
    (d, >=m, H): loops of m H instead of H. Scratch: dP (>=m, 2e + d, H), D (>=m, >=m, H),
    T (d, >=m, H), row (>=m, H), dot (H,).
    """
    d, C, H = W.shape
    CH = C * H
    mH = m * H
    Wf = W.reshape(d, CH)
    gWf = gW.reshape(d, CH)
    dPf = dP.reshape(dP.shape[0], CH)
    Af = A.reshape(A.shape[0], A.shape[1] * H)
    Tf = T.reshape(d, T.shape[1] * H)
    rowf = row.reshape(1, row.shape[0] * H)
    invH = 1.0 / H
    o = 2 * e
    m4 = m - m % 4
    for i in range(d):
        for b in range(m):
            for h in range(H):
                T[i, b, h] = P[b, o + i, h]
    for a in range(m):
        Aa = A[a]
        Da = D[a]
        for c in range(mH):
            rowf[0, c] = 0.0
        _add_combination(rowf, 0, kappa, a, d, Tf, mH, invH)  # dA_a. = <g_a, U_.>
        for h in range(H):
            dot[h] = 0.0
        for b in range(m):
            for h in range(H):
                dot[h] += Aa[b, h] * row[b, h]
        for b in range(m):
            for h in range(H):
                Da[b, h] = Aa[b, h] * (row[b, h] - dot[h])  # dS_ab
        for f in range(e):  # dq_a = sum_b dS_ab k_b
            for h in range(H):
                dP[a, f, h] = 0.0
            for b in range(0, m4, 4):
                for h in range(H):
                    dP[a, f, h] += ((Da[b, h] * P[b, e + f, h] + Da[b + 1, h] * P[b + 1, e + f, h])
                                    + (Da[b + 2, h] * P[b + 2, e + f, h]
                                       + Da[b + 3, h] * P[b + 3, e + f, h]))
            for b in range(m4, m):
                for h in range(H):
                    dP[a, f, h] += Da[b, h] * P[b, e + f, h]
    for i in range(d):  # dU, coordinate-major: T[i, b, h] = sum_a g_ai A_abh
        for c in range(mH):
            Tf[i, c] = 0.0
        _add_combination(Tf, i, kappa.T, i, m, Af, mH, invH)
    for b in range(m):
        for f in range(e):  # dk_b = sum_a dS_ab q_a
            for h in range(H):
                dP[b, e + f, h] = 0.0
            for a in range(0, m4, 4):
                for h in range(H):
                    dP[b, e + f, h] += ((D[a, b, h] * P[a, f, h] + D[a + 1, b, h] * P[a + 1, f, h])
                                        + (D[a + 2, b, h] * P[a + 2, f, h]
                                           + D[a + 3, b, h] * P[a + 3, f, h]))
            for a in range(m4, m):
                for h in range(H):
                    dP[b, e + f, h] += D[a, b, h] * P[a, f, h]
        for i in range(d):
            for h in range(H):
                dP[b, o + i, h] = T[i, b, h]
    for j in range(d):
        _add_combination(gWf, j, Z.T, j, m, dPf, CH, 1.0)
    for b in range(m):
        for j in range(d):
            s = 0.0
            for c in range(CH):
                s += dPf[b, c] * Wf[j, c]
            gZ[b, j] += s
