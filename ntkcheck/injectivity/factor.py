"""Streaming rank factorisation of a tall matrix given as row blocks (SPEC §7).

A = [B_1; B_2; ...] (M x N, M >= N, never held in memory) is reduced to an upper-triangular
R (N x N) with A + E = Q R, Q with (nearly) orthonormal columns, so sigma_i(A) ~ sigma_i(R).
Peak memory is about N^2 + b N numbers for blocks of b rows.

Two algorithms:

* ``householder`` (TSQR): the first N rows gathered and factored by LAPACK ``dgeqrt``
  (4/3 N^3 flops), then R <- R factor of [R; B_k] for each later block (``dtpqrt``, the
  triangular-pentagonal QR, 2 b N^2 flops per block), and ``merge_r`` for trees of partial
  factors. Backward error (Higham, *Accuracy and Stability of Numerical Algorithms*, 2002,
  Thm 19.4, applied to the first factorisation, m_0 = N rows, and to every fold): each fold
  of a stacked matrix S_k with m_k rows entering each reflector is exact for S_k + dS_k,
  ||dS_k||_F <= g(m_k N) ||S_k||_F with g(k) = c k u / (1 - c k u); errors of successive
  folds add, and the Q factor of the analysis is exactly orthogonal:

      ||E||_2 <= ||E||_F <= sum_k g(m_k N) ||S_k||_F,          ||Q^T Q - I|| = 0.

  The constant c of Higham's theorem is unspecified ("a small integer"); we take
  :data:`HOUSEHOLDER_C` = 4. The bound is first order in u, like the rest of the certificate.
* ``cholqr2`` (CholeskyQR2, two passes over the blocks at GEMM speed): G = sum B_k^T B_k,
  R_1 = chol(G); G_2 = sum (B_k R_1^-1)^T (B_k R_1^-1), R_2 = chol(G_2); R = R_2 R_1. By
  Yamamoto, Nakatsukasa, Yanagisawa and Fukaya (ETNA 44, 2015, Thms 3.3-3.4), if
  8 kappa_2(A) sqrt(M N u + N (N + 1) u) <= 1 then

      ||Q^T Q - I||_F <= 6 (M N u + N (N + 1) u),      ||Q R - A||_F <= 5 N^2 u ||A||_2.

  It is *safe* only under that condition; kappa_2(A) is estimated from R_1 (power and inverse
  iteration on R_1^T R_1, times :data:`KAPPA_SAFETY`) after the first pass. When the estimate
  fails the condition, or the Cholesky factorisation breaks down (G numerically singular: an
  ill-conditioned or rank-deficient A, the typical dependent case), the Householder path is
  run instead and the reason recorded. Two passes need blocks that can be iterated twice.

Singular values: with A + E = Q R and ||Q^T Q - I||_2 <= eta,

    sigma_i(R) sqrt(1 - eta) - ||E||_2  <=  sigma_i(A)  <=  sigma_i(R) sqrt(1 + eta) + ||E||_2

(sigma_i(Q R) lies between sigma_min(Q) sigma_i(R) and sigma_max(Q) sigma_i(R); then Weyl).
:meth:`Factor.sigma_bounds` returns these intervals; the rounding of the SVD of R itself is
the caller's to add.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Sequence

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack

from .._threads import blas_single_thread  # re-exported: dtpqrt folds run on one BLAS thread
from ..errors import InputError

__all__ = ["Method", "Factor", "blas_single_thread", "GramPart", "fold_blocks",
           "householder_fold", "merge_r",
           "merge_factors", "tree_reduce", "gram_pass", "sum_grams", "first_cholesky",
           "finish_cholqr2", "HOUSEHOLDER_C", "KAPPA_SAFETY"]

U = 2.0**-53
#: Constant c of g(k) = c k u / (1 - c k u) in the Householder backward error bound.
HOUSEHOLDER_C = 4
#: Factor applied to the estimated kappa_2(A) before testing the CholeskyQR2 condition.
KAPPA_SAFETY = 4.0
#: Block size of the compact-WY reflectors in ``dtpqrt``: each panel streams the whole block
#: through memory, so wider panels mean fewer passes (N = 12000, 1200-row blocks, 2 threads:
#: 44 / 52 / 55 / 50 GFLOP/s for 32 / 64 / 128 / 256).
TPQRT_NB = 128
#: Wider panels for taller blocks, where their longer updates pay: (rows at least, panel
#: width), first match (2 threads; N = 8000: 1600 rows 68 GFLOP/s with 128, 47 with 256; 3200
#: rows 63 against 77; N = 20000: 2504 rows 66 against 69, 4096 rows 73 against 82, 4958 rows
#: 86 with 256, 88-89 with 384, 87 with 512).
TPQRT_TALL = ((4096, 384), (3072, 256))
#: Panel width of ``dgeqrt`` on the first N rows of a fold (N = 8000, 2 threads: 72.7 / 74.4 /
#: 74.8 / 75.0 GFLOP/s for 128 / 256 / 384 / 512).
GEQRT_NB = 256


class Method(str, Enum):
    """Factorisation algorithm: ``auto`` takes ``cholqr2`` when blocks can be iterated twice
    and the condition holds, else ``householder``."""

    AUTO = "auto"
    HOUSEHOLDER = "householder"
    CHOLQR2 = "cholqr2"


def _method(method: str | Method) -> Method:
    try:
        return Method(method)
    except ValueError:
        raise InputError(f"unknown method '{method}'; choose one of "
                         + ", ".join(m.value for m in Method), field="method") from None


def _gamma(k: float) -> float:
    ck = HOUSEHOLDER_C * k * U
    return ck / (1.0 - ck) if ck < 1.0 else float("inf")


@dataclass(frozen=True)
class Factor:
    """R factor of a tall matrix A (rows x N) with its error analysis.

    Attributes
    ----------
    R : array (N, N)
        Upper triangular with non-negative diagonal.
    rows : int
        Number of rows M of A.
    method : str
        Algorithm actually used (``householder`` or ``cholqr2``).
    backward_error_bound : float
        Bound on ||E||_2 where A + E = Q R.
    orthogonality_bound : float
        Bound on ||Q^T Q - I||_2 (0 for Householder, whose Q is exactly orthogonal).
    frobenius_norm : float
        ||A||_F accumulated over the blocks.
    condition_estimate : float
        Estimated kappa_2(A) used for the CholeskyQR2 safety test (nan when not computed).
    fallback : str or None
        Why CholeskyQR2 was not used, when it was asked for or chosen by ``auto``.
    timings : dict
        Seconds per stage (``blocks``: producing blocks, ``fold``, ``gram``, ``cholesky``,
        ``merge``), summed over workers when blocks are folded in parallel.
    """

    R: np.ndarray
    rows: int
    method: str
    backward_error_bound: float
    orthogonality_bound: float
    frobenius_norm: float
    condition_estimate: float = float("nan")
    fallback: str | None = None
    timings: dict = field(default_factory=dict)

    def singular_values(self) -> np.ndarray:
        """Singular values of R, descending."""
        return sla.svdvals(self.R, check_finite=False)

    def sigma_bounds(self, s: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Intervals [lower, upper] containing sigma_i(A), from s = sigma_i(R) (module
        docstring); ``s`` defaults to :meth:`singular_values`."""
        s = self.singular_values() if s is None else np.asarray(s, float)
        eta = min(self.orthogonality_bound, 1.0)
        e = self.backward_error_bound
        return np.maximum(s * np.sqrt(1.0 - eta) - e, 0.0), s * np.sqrt(1.0 + eta) + e

    def to_dict(self) -> dict:
        return {"method": self.method, "rows": self.rows, "columns": int(self.R.shape[1]),
                "backward_error_bound": self.backward_error_bound,
                "orthogonality_bound": self.orthogonality_bound,
                "frobenius_norm": self.frobenius_norm,
                "condition_estimate": self.condition_estimate, "fallback": self.fallback,
                "timings": dict(self.timings)}


def _check_block(block, n_cols: int, k: int) -> np.ndarray:
    b = np.asarray(block, dtype=np.float64)
    if b.ndim != 2 or b.shape[1] != n_cols:
        raise InputError(f"block {k} has shape {b.shape}, expected (rows, {n_cols})",
                         field="blocks")
    if not np.all(np.isfinite(b)):
        raise InputError(f"block {k} contains NaN or Inf", field="blocks")
    return b


def _positive_diagonal(R: np.ndarray) -> np.ndarray:
    """The unique R with diag >= 0 (rows of negative pivot flipped: Q absorbs the signs),
    made in place (LAPACK leaves reflectors below the diagonal: zeroed column by column, so
    no second N x N array is needed)."""
    for j in range(R.shape[1] - 1):
        R[j + 1:, j] = 0.0
    neg = np.diag(R) < 0
    R[neg] *= -1.0
    return R


def _tpqrt(R: np.ndarray, B: np.ndarray, l: int, copy_b: bool = True) -> np.ndarray:
    """R factor of [R; B] in place of R (F-ordered); B is destroyed unless copied."""
    nb = next((w for rows, w in TPQRT_TALL if B.shape[0] >= rows), TPQRT_NB)
    nb = max(1, min(nb, R.shape[1]))
    Bf = np.array(B, dtype=np.float64, order="F") if copy_b else np.asfortranarray(B)
    # BLAS threads as the caller set them: several folds on threads (ntkcheck.backends.local)
    # run each on one BLAS thread (dtpqrt's narrow panels spend their time synchronising when
    # BLAS threads compete with other work: measured 20x slower on a loaded 2-core machine);
    # a single fold (one worker, e.g. when memory allows only one R) uses every BLAS thread
    # (52 GFLOP/s on 2 threads against 30 on one, quiet machine, N = 4000)
    a, _, _, info = lapack.dtpqrt(l, nb, R, Bf, overwrite_a=1, overwrite_b=1)
    if info != 0:  # pragma: no cover - LAPACK argument error
        raise RuntimeError(f"dtpqrt failed with info={info}")
    return a


# ---------------------------------------------------------------------------------------------
# Householder TSQR
# ---------------------------------------------------------------------------------------------

def _geqrt_r(S: np.ndarray, m: int) -> np.ndarray:
    """R factor (N, N; reflectors left below the diagonal) of the first m rows of S (N, N,
    F-ordered; the other rows are ignored), by LAPACK ``dgeqrt`` (recursive panels of
    :data:`GEQRT_NB` columns), in S's own memory. With m < N the m rows of every column are
    first moved to the front of that memory (an F-ordered (m, N) array, 2 m^2 N flops to
    factor instead of 4/3 N^3), and the result moved back with zero rows below: columns in
    increasing order going there and decreasing order coming back, so that no copy overwrites
    a column not yet moved."""
    N = S.shape[1]
    if m == 0:
        S[...] = 0.0
        return S
    flat = S.reshape(-1, order="F")
    if not np.shares_memory(flat, S):  # pragma: no cover - S is F-contiguous by construction
        raise RuntimeError("the gathered rows are not one F-ordered array")
    if m < N:
        for j in range(1, N):
            flat[j * m:(j + 1) * m] = flat[j * N:j * N + m]
    A = flat[:m * N].reshape((m, N), order="F")
    a, _, info = lapack.dgeqrt(max(1, min(GEQRT_NB, N, m)), A, overwrite_a=1)
    if info != 0:  # pragma: no cover - LAPACK argument error
        raise RuntimeError(f"dgeqrt failed with info={info}")
    if not np.shares_memory(a, A):  # pragma: no cover - scipy worked on a copy
        A[...] = a
    if m < N:
        for j in range(N - 1, -1, -1):
            flat[j * N:j * N + m] = flat[j * m:(j + 1) * m]
            flat[j * N + m:(j + 1) * N] = 0.0
    return S


def householder_fold(blocks: Iterable[np.ndarray], n_cols: int) -> Factor:
    """Householder QR of the stacked blocks, one pass: the first N rows gathered into an
    N x N array and factored by ``dgeqrt`` in place (4/3 N^3 flops), every later row folded
    into R by ``dtpqrt`` on [R; B_k] (2 b_k N^2 flops per block). Folding every block from
    R = 0 would cost 2 N^3 for those first N rows (at N = 8000, 2 threads: 9.1 s against
    14.8 s), and the gathered rows take the memory R takes anyway.

    Parameters
    ----------
    blocks : iterable of arrays (b_k, N)
    n_cols : int
        N.
    """
    N = int(n_cols)
    S = np.empty((N, N), order="F")  # the first N rows, then R in the same memory
    R: np.ndarray | None = None
    rows, bound, sumsq = 0, 0.0, 0.0
    t_blocks = t_fold = 0.0
    t0 = time.perf_counter()
    for k, block in enumerate(blocks):
        B = _check_block(block, N, k)
        t1 = time.perf_counter()
        t_blocks += t1 - t0
        if R is None and B.shape[0]:  # gathering the first N rows
            head = B[:N - rows]
            S[rows:rows + head.shape[0]] = head
            rows += head.shape[0]
            sumsq += float(np.einsum("ij,ij->", head, head))
            B = B[head.shape[0]:]
            del head
            if rows == N:
                bound += _gamma(N * N) * np.sqrt(sumsq)
                R = _geqrt_r(S, N)
        if B.shape[0]:  # R is set: fold the rest
            bsq = float(np.einsum("ij,ij->", B, B))
            bound += _gamma((B.shape[0] + 1) * N) * np.sqrt(sumsq + bsq)
            sumsq += bsq
            R = _tpqrt(R, B, 0)
            rows += B.shape[0]
        # released before the next block is made (a loop variable lives until reassigned)
        del block, B
        t0 = time.perf_counter()
        t_fold += t0 - t1
    if R is None:  # fewer than N rows in all
        t1 = time.perf_counter()
        bound += _gamma(max(rows, 1) * N) * np.sqrt(sumsq)
        R = _geqrt_r(S, rows)
        t0 = time.perf_counter()
        t_fold += t0 - t1
    t_blocks += time.perf_counter() - t0
    return Factor(_positive_diagonal(R), rows, Method.HOUSEHOLDER.value, bound, 0.0,
                  float(np.sqrt(sumsq)), timings={"blocks": t_blocks, "fold": t_fold})


def merge_r(R1: np.ndarray, R2: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """R factor of [R1; R2] for two upper-triangular (N, N) factors (``dtpqrt`` with a
    triangular lower part), diagonal made non-negative.

    With ``overwrite`` the inputs are destroyed (the result may share R1's memory): peak
    2 N^2 numbers instead of 4 N^2."""
    if overwrite:
        A = np.asfortranarray(R1, dtype=np.float64)
    else:
        A = np.array(R1, dtype=np.float64, order="F")
    return _positive_diagonal(_tpqrt(A, R2, R1.shape[1], copy_b=not overwrite))


def merge_factors(a: Factor, b: Factor, overwrite: bool = False) -> Factor:
    """Factor of the stacked matrix [A_a; A_b] from factors of both parts (Householder);
    bounds add, plus the merge's own g((N + 1) N) ||[R_a; R_b]||_F. ``overwrite``: the R
    arrays of ``a`` and ``b`` may be destroyed (see :func:`merge_r`)."""
    N = a.R.shape[1]
    t0 = time.perf_counter()
    R = merge_r(a.R, b.R, overwrite)
    norm = float(np.hypot(a.frobenius_norm, b.frobenius_norm))
    bound = a.backward_error_bound + b.backward_error_bound + _gamma((N + 1) * N) * norm
    timings = {k: a.timings.get(k, 0.0) + b.timings.get(k, 0.0)
               for k in set(a.timings) | set(b.timings)}
    timings["merge"] = timings.get("merge", 0.0) + time.perf_counter() - t0
    return Factor(R, a.rows + b.rows, Method.HOUSEHOLDER.value, bound, 0.0, norm,
                  timings=timings)


def tree_reduce(factors: Sequence[Factor], overwrite: bool = False) -> Factor:
    """Merge factors pairwise, (0, 1), (2, 3), ... level by level: a fixed tree, so the
    result does not depend on when the parts were computed. Intermediate factors are merged
    in place; the given ones only with ``overwrite``."""
    level = list(factors)
    if not level:
        raise InputError("no blocks to factorise; give at least one block", field="blocks")
    first = True
    while len(level) > 1:
        nxt = [merge_factors(level[i], level[i + 1], overwrite=overwrite or not first)
               for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level, first = nxt, False
    return level[0]


# ---------------------------------------------------------------------------------------------
# CholeskyQR2
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GramPart:
    """Partial Gram matrix sum_k C_k^T C_k of some blocks (C_k = B_k, or B_k R_1^-1)."""

    G: np.ndarray
    rows: int
    sumsq: float
    seconds: float
    block_seconds: float


def gram_pass(blocks: Iterable[np.ndarray], n_cols: int,
              R1: np.ndarray | None = None) -> GramPart:
    """sum_k C_k^T C_k with C_k = B_k, or C_k = B_k R1^-1 (triangular solve) when R1 is given."""
    N = int(n_cols)
    G = np.zeros((N, N))
    rows, sumsq, t_gram, t_blocks = 0, 0.0, 0.0, 0.0
    t0 = time.perf_counter()
    for k, block in enumerate(blocks):
        B = _check_block(block, N, k)
        t1 = time.perf_counter()
        t_blocks += t1 - t0
        sumsq += float(np.einsum("ij,ij->", B, B))
        if R1 is not None:
            B = sla.solve_triangular(R1, B.T, trans="T", lower=False, check_finite=False).T
        G += B.T @ B
        rows += B.shape[0]
        t0 = time.perf_counter()
        t_gram += t0 - t1
    return GramPart(G, rows, sumsq, t_gram, t_blocks)


def sum_grams(parts: Sequence[GramPart]) -> GramPart:
    """Sum of partial Gram matrices in the given (fixed) order."""
    G = np.zeros_like(parts[0].G)
    for p in parts:
        G += p.G
    return GramPart(G, sum(p.rows for p in parts), sum(p.sumsq for p in parts),
                    sum(p.seconds for p in parts), sum(p.block_seconds for p in parts))


def _kappa_estimate(R1: np.ndarray, iters: int = 30, seed: int = 0) -> float:
    """kappa_2(R1) by power iteration on R1^T R1 and on its inverse (triangular solves)."""
    rng = np.random.default_rng(seed)
    x = np.asarray(rng.normal(size=R1.shape[1]), dtype=np.float64)
    y = np.array(x)
    smax2 = smin2inv = 0.0
    for _ in range(iters):
        x = R1.T @ (R1 @ (x / np.linalg.norm(x)))
        smax2 = float(np.linalg.norm(x))
        y = sla.solve_triangular(
            R1, sla.solve_triangular(R1, y / np.linalg.norm(y), trans="T", check_finite=False),
            check_finite=False)
        smin2inv = float(np.linalg.norm(y))
    return float(np.sqrt(smax2 * smin2inv))


def first_cholesky(part: GramPart) -> tuple[np.ndarray | None, float, str | None]:
    """R_1 = chol(G) and the CholeskyQR2 safety test.

    Returns ``(R1, kappa_estimate, None)`` when safe, ``(None, kappa_estimate, reason)``
    otherwise."""
    M, N = part.rows, part.G.shape[0]
    if M < N:
        return None, float("nan"), f"fewer rows ({M}) than columns ({N})"
    try:
        R1 = sla.cholesky(part.G, lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        return None, float("inf"), "the Gram matrix is numerically singular (Cholesky failed)"
    with blas_single_thread():  # level-2 work: threads only add synchronisation
        kappa = _kappa_estimate(R1) * KAPPA_SAFETY
    limit = 1.0 / (8.0 * np.sqrt(M * N * U + N * (N + 1) * U))
    if not kappa <= limit:
        return None, kappa, (f"estimated condition number {kappa:.3g} exceeds the CholeskyQR2 "
                             f"limit {limit:.3g} for {M} x {N}")
    return R1, kappa, None


def finish_cholqr2(R1: np.ndarray, part2: GramPart, kappa: float, frobenius_norm: float,
                   timings: dict) -> Factor:
    """R = chol(G_2) R_1 with the CholeskyQR2 bounds (module docstring)."""
    M, N = part2.rows, R1.shape[0]
    try:
        R2 = sla.cholesky(part2.G, lower=False, check_finite=False)
    except np.linalg.LinAlgError:  # pragma: no cover - excluded by the safety test
        raise RuntimeError("CholeskyQR2 second factorisation failed") from None
    R = _positive_diagonal(R2 @ R1)
    eta = 6.0 * (M * N * U + N * (N + 1) * U)
    # ||A||_2 <= ||A||_F: a rigorous stand-in for the 2-norm in the residual bound
    return Factor(R, M, Method.CHOLQR2.value, 5.0 * N * N * U * frobenius_norm, eta,
                  frobenius_norm,
                  kappa / KAPPA_SAFETY, None, timings)


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------

def _reiterable(blocks) -> bool:
    return iter(blocks) is not blocks


def fold_blocks(blocks: Iterable[np.ndarray], n_cols: int,
                method: str | Method = Method.AUTO) -> Factor:
    """Rank factorisation A + E = Q R of A = [B_1; B_2; ...] without holding A.

    Parameters
    ----------
    blocks : iterable of arrays (b_k, N)
        Row blocks. ``cholqr2`` (and ``auto`` choosing it) iterates twice, so it needs a
        re-iterable (a list, or a sequence that recomputes blocks); a one-shot iterator gets
        the one-pass Householder path under ``auto``.
    n_cols : int
        N.
    method : {"auto", "householder", "cholqr2"}

    Returns
    -------
    Factor
        R (N, N), the method used, the error bounds and timings.
    """
    m = _method(method)
    if m is Method.HOUSEHOLDER or (m is Method.AUTO and not _reiterable(blocks)):
        return householder_fold(blocks, n_cols)
    if not _reiterable(blocks):
        raise InputError("cholqr2 needs two passes over the blocks; give a list or a "
                         "re-iterable sequence, or use method 'householder'", field="blocks")
    part = gram_pass(blocks, n_cols)
    t0 = time.perf_counter()
    R1, kappa, reason = first_cholesky(part)
    t_chol = time.perf_counter() - t0
    timings = {"blocks": part.block_seconds, "gram": part.seconds, "cholesky": t_chol}
    if R1 is None:
        f = householder_fold(blocks, n_cols)
        t = {k: f.timings.get(k, 0.0) + timings.get(k, 0.0) for k in set(f.timings) | set(timings)}
        return Factor(f.R, f.rows, f.method, f.backward_error_bound, 0.0, f.frobenius_norm,
                      kappa, reason, t)
    part2 = gram_pass(blocks, n_cols, R1)
    timings["blocks"] += part2.block_seconds
    timings["gram"] += part2.seconds
    return finish_cholqr2(R1, part2, kappa, float(np.sqrt(part.sumsq)), timings)
