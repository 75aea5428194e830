"""Every compiled (numba) kernel of ntkcheck: the fused training step (driven by
:mod:`ntkcheck.meanfield.fast`) and the log-sum-exp of the discrete laws' score tiles (driven by
:meth:`ntkcheck.dataset.Dataset.lse` on large inputs), both on one vectorisable exp.

Training, per sample (:func:`_sample`, chunks of samples in :func:`_chunk`): the forward pass,
the loss and the adjoint, layer by layer and RK stage by stage; per stage evaluation, the
projections of the m real tokens on every head, the attention and the velocity
(:func:`_field`) and the vector-Jacobian product (:func:`_field_vjp`), with
:func:`_exp_nonpos` for the softmax.

Every array has the heads innermost (the SIMD axis). Sums whose coefficients do not depend on
the head run over flat (token, head) or (channel, head) rows (:func:`_add_combinations`,
:func:`_add_dots`), the per-head bilinear ones (scores, dq, dk) over the heads; either way four
terms per pass, so that each load and store of an accumulator serves four multiply-adds.
Summation orders are fixed by the compiled code, the same for every sample and thread.

Analysis: :func:`lse_scores` reduces a tile of scores (tokens, laws, probes) to its log-sum-exp
per (law, probe) in two passes over the tile (the shifted maxima, then the exponentials' sums),
where numpy makes five; the operations and their rounding are those of numpy's evaluation, the
exp being :func:`_exp_nonpos` (relative error < 6 u) instead of the C library's.

All the compiled code is in this one file on purpose: numba's disk cache is invalidated per
source file, so a kernel calling a kernel of another file could keep running a stale compiled
copy of its callee after an edit. numba is optional: :data:`AVAILABLE` says whether it is
importable; without it the functions stay plain Python (never called:
:func:`ntkcheck.meanfield.fast.require` refuses first, and
:meth:`~ntkcheck.dataset.Dataset.lse` uses numpy).
"""
from __future__ import annotations

import math

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


#: exponent bias of binary64: 2^k has the bits (k + 1023) << 52 for -1022 <= k <= 1023
_BIAS = 1023
_MANTISSA_BITS = 52
#: bits of _SHIFT less the bias: for |k| < 2^51 the bits of k + _SHIFT are those of _SHIFT plus
#: k (k sits in the low mantissa bits), so 2^k has the bits (bits(k + _SHIFT) - this) << 52: an
#: integer subtraction and shift, where np.int64(kf) would be a float-to-int64 conversion that
#: AVX2 lacks (cvttpd2qq is AVX-512), scalarising the caller's loop.
_SHIFT_BITS_LESS_BIAS = int(np.float64(_SHIFT).view(np.int64)) - _BIAS
#: Taylor coefficients 1/i! of exp, i = 0 .. 13 (each rounded to nearest)
_C = tuple(1.0 / math.factorial(i) for i in range(14))


@_jit(fastmath={"contract"}, inline="never")
def _exp_nonpos(x):
    """exp(x) for x <= 0, vectorisable (relative error < 3 eps; 0 below -708 and at -inf).

    exp(x) = 2^k exp(r), k = round(x / log 2), r = x - k log 2 by the Cody–Waite split of log 2
    (|r| <= log(2) / 2), exp(r) by its degree-13 Taylor polynomial (remainder < 2e-17) in
    Estrin's scheme (four dependent multiply-adds instead of Horner's thirteen, so consecutive
    elements' chains overlap), 2^k (-1022 <= k <= 0 since x >= -708) from the bits of
    k + _SHIFT by integer arithmetic, without a table lookup (a gather in the vectorised loops)
    or a float-to-integer conversion. Rounding (u = eps / 2): the reduction's error is below
    u |r| <= 0.35 u, the truncation 0.2 u, each of the four Estrin levels one rounding of a
    value within 5 % of exp(r) (1 + r, then partial sums of the series; |r| <= 0.35) plus
    0.2 u from the powers of r and the small terms, the scaling exact and the product one
    rounding: below 6 u in all. Measured against 120-bit exponentials at 9 million points of
    [-708, 0]: at most 1.85 eps (the former Horner evaluation with a float-to-integer
    conversion: 1 eps, at 1.6x the time on AVX2). Compiled without
    reassociation (the split and the scheme must be evaluated as written); LLVM still inlines
    it into the vectorised loops of the callers.
    """
    y = x if x > _EXP_LOW else _EXP_LOW
    t = y * _LOG2E + _SHIFT
    kf = t - _SHIFT
    r = (y - kf * _LN2_HI) - kf * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    s0 = (_C[0] + _C[1] * r) + (_C[2] + _C[3] * r) * r2
    s1 = (_C[4] + _C[5] * r) + (_C[6] + _C[7] * r) * r2
    s2 = (_C[8] + _C[9] * r) + (_C[10] + _C[11] * r) * r2
    p = (s0 + s1 * r4) + (s2 + (_C[12] + _C[13] * r) * r4) * (r4 * r4)
    bits = np.int64((np.float64(t).view(np.int64) - _SHIFT_BITS_LESS_BIAS) << _MANTISSA_BITS)
    return p * bits.view(np.float64) if x > _EXP_LOW else 0.0  # p 2^k, 2^k exactly


@_jit(fastmath=_FLAGS, nogil=True)
def _exp_array(x, out):
    """out = exp(x) elementwise for x <= 0 (tests and benchmarks of :func:`_exp_nonpos`;
    vectorised when x and out do not overlap, released from the GIL)."""
    for t in range(x.shape[0]):
        out[t] = _exp_nonpos(x[t])



@_jit(fastmath={"contract"}, nogil=True)
def lse_scores(s, lw, out):
    """out[f, p] = log sum_j exp(s[j, f, p] + lw[j, f]) for a tile of scores s (n tokens, laws,
    probes), C-ordered, overwritten with the shifted scores; lw (n, laws) the log weights
    (-inf at padding). The operations are numpy's evaluation in
    :meth:`ntkcheck.dataset._DiscretePack.lse_tile`, in its order: t = fl(s + lw), the maximum
    over the tokens, fl(t - max), its exp, the sum over the tokens in order, log of the sum plus
    the maximum. The exp is :func:`_exp_nonpos` (relative error < 6 u; the largest term is
    exp(0) = 1 exactly, and a term below e^-708, flushed to 0, moves the sum by less than
    2^-1021). Two passes over the tile instead of five, the exponentials four to a vector: the
    probes are the innermost, contiguous axis. Compiled without reassociation, so that every
    sum is added in the order written. A NaN score (an overflowed one) gives NaN, as numpy's
    evaluation does; released from the GIL (the callers' threads each reduce their own tile)."""
    n, nf, m = s.shape
    mx = np.empty((nf, m))
    acc = np.empty((nf, m))
    for f in range(nf):
        w = lw[0, f]
        for p in range(m):
            t = s[0, f, p] + w
            s[0, f, p] = t
            mx[f, p] = t
    for j in range(1, n):
        for f in range(nf):
            w = lw[j, f]
            for p in range(m):
                t = s[j, f, p] + w
                s[j, f, p] = t
                mx[f, p] = t if t > mx[f, p] else mx[f, p]
    for j in range(n):
        for f in range(nf):
            for p in range(m):
                y = s[j, f, p] - mx[f, p]
                e = _exp_nonpos(y)
                e = y if y != y else e  # NaN stays NaN (_exp_nonpos returns 0 for it)
                acc[f, p] = e if j == 0 else acc[f, p] + e
    for f in range(nf):
        for p in range(m):
            out[f, p] = np.log(acc[f, p]) + mx[f, p]

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
def _add_combinations(out, coef, rows, terms, M, cols, scale):
    """:func:`_add_combination` for rows r = a = 0 .. rows-1, two rows a pass.

    Both rows share each load of M; every entry's terms are grouped as in
    :func:`_add_combination`.
    """
    for r in range(0, rows - rows % 2, 2):
        j4 = terms - terms % 4
        for j in range(0, j4, 4):
            z0 = scale * coef[r, j]
            z1 = scale * coef[r, j + 1]
            z2 = scale * coef[r, j + 2]
            z3 = scale * coef[r, j + 3]
            y0 = scale * coef[r + 1, j]
            y1 = scale * coef[r + 1, j + 1]
            y2 = scale * coef[r + 1, j + 2]
            y3 = scale * coef[r + 1, j + 3]
            for c in range(cols):
                m0 = M[j, c]
                m1 = M[j + 1, c]
                m2 = M[j + 2, c]
                m3 = M[j + 3, c]
                out[r, c] += (z0 * m0 + z1 * m1) + (z2 * m2 + z3 * m3)
                out[r + 1, c] += (y0 * m0 + y1 * m1) + (y2 * m2 + y3 * m3)
        for j in range(j4, terms):
            z = scale * coef[r, j]
            y = scale * coef[r + 1, j]
            for c in range(cols):
                out[r, c] += z * M[j, c]
                out[r + 1, c] += y * M[j, c]
    if rows % 2:
        _add_combination(out, rows - 1, coef, rows - 1, terms, M, cols, scale)


@_jit(fastmath=_FLAGS)
def _add_dots(out, X, Y, rows, n_out, length, scale):
    """out[a, i] += scale sum_{c < length} X[a, c] Y[i, c] for a < rows, i < n_out.

    Two rows of X a pass, sharing each load of Y.
    """
    for a in range(0, rows - rows % 2, 2):
        for i in range(n_out):
            s = 0.0
            t = 0.0
            for c in range(length):
                y = Y[i, c]
                s += X[a, c] * y
                t += X[a + 1, c] * y
            out[a, i] += scale * s
            out[a + 1, i] += scale * t
    if rows % 2:
        a = rows - 1
        for i in range(n_out):
            s = 0.0
            for c in range(length):
                s += X[a, c] * Y[i, c]
            out[a, i] += scale * s


@_jit(fastmath=_FLAGS)
def _field(W, Z, lw, m, P, A, v, Ut, mx, e, with_v):
    """v_a = (1/H) sum_h sum_b A_hab V_h z_b, A_h = softmax_b(<Qe_h z_a, Ke_h z_b> + log w_b).

    W (d, 2e + d, H) the stacked projections: W[j, f, h] = Qe_h[f, j], W[j, e + f, h] =
    Ke_h[f, j], W[j, 2e + i, h] = V_h[i, j], e a multiple of 4 (Qe, Ke zero-padded by
    :func:`loss_and_gradient_fast`). Z (>=m, d), lw (>=m,). Writes the projections
    P[a] = [Qe z_a, Ke z_a, V z_a] (>=m, >=2e + d, H), the attention A (>=m, >=m, H) and, when
    ``with_v``, v (>=m, d): v_ai = (1/H) sum over the flat (b, h) axis of A_abh U_bih, a dot
    product of length m H with U coordinate-major in Ut (d, >=m, H). Scratch: Ut, mx (2, H).
    """
    d, C, H = W.shape
    CH = C * H
    mH = m * H
    Wf = W.reshape(d, CH)
    Pf = P.reshape(P.shape[0], P.shape[1] * H)
    Af = A.reshape(A.shape[0], A.shape[1] * H)
    Utf = Ut.reshape(d, Ut.shape[1] * H)
    invH = 1.0 / H
    o = 2 * e
    for a in range(m):
        for c in range(CH):
            Pf[a, c] = 0.0
    _add_combinations(Pf, Z, m, d, Wf, CH, 1.0)
    for a in range(m):
        Aa = A[a]
        top = mx[0]
        total = mx[1]
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
        # the row maxima in a loop nest of their own, two keys a pass (interleaved with the
        # scores' loops, the running maxima kept them from vectorising well: 1.6x the time)
        for h in range(H):
            top[h] = -np.inf
        for b in range(0, m - m % 2, 2):
            for h in range(H):
                top[h] = max(max(top[h], Aa[b, h]), Aa[b + 1, h])
        if m % 2:
            for h in range(H):
                top[h] = max(top[h], Aa[m - 1, h])
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
            v[a, i] = 0.0
    _add_dots(v, Af, Utf, m, d, mH, invH)


@_jit(fastmath=_FLAGS)
def _field_vjp(W, Z, m, P, A, kappa, gZ, gW, dP, D, T, row, dot, e):
    """Adds (dv/dZ)^T kappa to gZ (>=m, d) and the heads' gradient to gW (d, 2e + d, H).

    Per head, with g = kappa / H:  dA_ab = <g_a, U_b>,  dS_ab = A_ab (dA_ab - sum_c A_ac dA_ac)
    (kept in D);  dq_a = sum_b dS_ab k_b,  dk_b = sum_a dS_ab q_a,  dU_b = sum_a A_ab g_a;
    then with dP = [dq, dk, dU]:  gW[j] += sum_b z_bj dP_b,  gZ[b, j] += <dP_b, W[j]>.
    Every dP entry is one sum written once. dA and dU have coefficients g free of the head, so
    they are formed over the flat (token, head) axis with U and dU coordinate-major in T
    (d, >=m, H): loops of m H instead of H. Scratch: dP (>=m, >=2e + d, H), D (>=m, >=m, H),
    T (d, >=m, H), row (>=m, H), dot (H,).
    """
    d, C, H = W.shape
    CH = C * H
    mH = m * H
    Wf = W.reshape(d, CH)
    gWf = gW.reshape(d, CH)
    dPf = dP.reshape(dP.shape[0], dP.shape[1] * H)
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
    _add_combinations(Tf, kappa.T, d, m, Af, mH, invH)
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
    _add_combinations(gWf, Z.T, d, m, dPf, CH, 1.0)
    _add_dots(gZ, dPf, Wf, m, d, CH, 1.0)


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
def _chunk(W, X, w, T, token_loss, inv_N, a, b, hstep, substeps, e, s0, s1, gW, losses, keep,
           pad):
    """Samples s0 .. s1-1, in order: gW (L, d, 2e + d, H) = sum_i dR_i/dW, losses[i] = R_i.

    ``keep``: keep the forward pass's stage inputs and attention for the backward pass (L
    substeps slots) instead of recomputing them (one slot). ``pad``: unused rows in the middle
    axis of the projections, attention and VJP scratch (C + pad, n + pad; see
    :data:`ntkcheck.resources.KERNEL_ROW_PAD`). Runs without the GIL, so chunks run
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
    P = np.empty((slots, s, n, C + pad, H))
    A = np.empty((slots, s, n, n + pad, H))
    lam = np.empty((n, d))
    new_lam = np.empty((n, d))
    mu = np.empty((s, n, d))
    kappa = np.empty((n, d))
    dP = np.empty((n, C + pad, H))
    D = np.empty((n, n + pad, H))
    U = np.empty((d, n + pad, H))
    row = np.empty((n, H))
    dot = np.empty(H)
    Ut = np.empty((d, n + pad, H))
    mx = np.empty((2, H))
    idx = np.empty(n, dtype=np.int64)
    lw = np.empty(n)
    gW[...] = 0.0
    for i in range(s0, s1):
        losses[i] = _sample(i, W, X, w, T, token_loss, inv_N, a, b, hstep, substeps, e, gW, S,
                            starts, Zs, ks, P, A, lam, new_lam, mu, kappa, dP, D, U, row, dot,
                            Ut, mx, idx, lw, keep)
