"""Block iterations on an upper triangle R (SPEC §3 step 4, partial spectrum): the smallest
singular triplets by block inverse subspace iteration (triangular solves, or products with an
explicit R^-1 and a Chebyshev filter), and the largest singular value by block Krylov iteration.
Used by :mod:`ntkcheck.injectivity.spectrum`; each is documented on its function."""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .._threads import blas_single_thread, lapack_threads
from ..progress import Progress, ProgressUpdate
from .triangle import explicit_inverse as _explicit_inverse
from .triangle import inverse_times as _inverse_times

__all__ = ["smallest_singular_triplets", "largest_singular_value", "PARTIAL_MAX_ITER",
           "PARTIAL_RTOL", "EXPLICIT_INVERSE_MIN_N", "CHEBYSHEV_DEGREE"]

_U = np.finfo(float).eps / 2
#: Iteration limit and relative convergence tolerance of the block inverse iteration.
PARTIAL_MAX_ITER = 60
PARTIAL_RTOL = 1e-10
#: The block inverse iteration multiplies by an explicit R^-1 instead of solving with R when R
#: is well conditioned (:func:`ntkcheck.injectivity.triangle.explicit_inverse`), for N above
#: this (below, the inverse costs more than the solves it saves).
EXPLICIT_INVERSE_MIN_N = 500
#: Degree of the Chebyshev filter of each step of the block iteration with R^-1 (one product
#: with (A^T A)^-1 per degree, counted against PARTIAL_MAX_ITER). Measured on the benchmark's
#: N = 4000 triangle (32 values clustered within 10%): 33 products to the tolerance, 1.2 s,
#: values within 4e-13 of LAPACK's SVD, against 60 products (the limit), 2.6 s and 9e-8 for
#: the plain iteration; degrees 2, 3 and 6 took 35, 34 and 37.
CHEBYSHEV_DEGREE = 4
#: Largest gain T_k(2 lambda / b - 1) the filter may give one direction of the block over its
#: bottom b: columns whose sizes differ by g keep the weaker directions to u g relative
#: through the orthogonalisation, so 1 / sqrt(u) keeps them to sqrt(u) (an error in a vector
#: enters its Ritz value squared: u). Directions beyond it are locked once settled, the
#: filter's degree lowered for the rest (1: plain steps).
CHEBYSHEV_MAX_GAIN = 1.0 / np.sqrt(np.finfo(float).eps / 2)


def largest_singular_value(R: np.ndarray, block: int = 8, iterations: int = 50,
                           rtol: float = 1e-7, seed: int = 0) -> float:
    """sigma_max(R), R upper triangular: block Krylov iteration on R^T R (``block`` vectors,
    two triangular products per step, each one pass over R). Every new block R^T R X is
    orthogonalised against all earlier ones (twice, classical Gram-Schmidt) and the estimate is
    the Rayleigh-Ritz value on the whole Krylov space: the largest singular value of
    [R X_0, ..., R X_j] (orthonormal X's), the products already made. A lower estimate,
    increasing step by step, stopped when a step changes it by less than ``rtol`` relative.
    The whole space converges like a Chebyshev polynomial of the step count where the last
    block alone (power iteration) converges like a power: at N = 12000 (a random triangle,
    clustered top values) power iteration had not met 1e-7 after 50 steps (15.6 s);
    each step here is the same two passes over R."""
    N = R.shape[1]
    k = max(1, min(block, N))
    X = np.linalg.qr(np.random.default_rng(np.random.SeedSequence([seed, 0x51]))
                     .standard_normal((N, k)))[0]
    Q = np.empty((N, 0))  # the orthonormal Krylov basis [X_0, ..., X_j] (X_j may be narrower)
    images = np.empty((N, 0))  # R Q
    G = np.empty((0, 0))  # images^T images
    est = 0.0
    for _ in range(iterations):
        Y = _upper_times(R, X)
        cross = images.T @ Y
        G = np.block([[G, cross], [cross.T, Y.T @ Y]])
        Q, images = np.hstack([Q, X]), np.hstack([images, Y])
        # sigma_max([R X_0, ...])^2 = the largest eigenvalue of their Gram matrix (accurate
        # to u relative for the largest one; a few dozen columns: no pass over R)
        new = float(np.sqrt(max(scipy.linalg.eigvalsh(G, check_finite=False)[-1], 0.0)))
        done = abs(new - est) <= rtol * new
        est = max(est, new)
        if done or not np.isfinite(new) or Q.shape[1] >= N:
            break
        Z = scipy.linalg.blas.dtrmm(1.0, R, Y, side=0, lower=0, trans_a=1)
        size = np.linalg.norm(Z, axis=0).max(initial=0.0)
        Z = _project_out(Q, _project_out(Q, Z))
        # keep the new directions only: a column at the round-off of the projection (the
        # Krylov space exhausted, or nearly) would bring a vector not orthogonal to Q, and a
        # Rayleigh-Ritz value on a basis that is not orthonormal can exceed sigma_max
        X, rr = np.linalg.qr(Z)
        keep = np.abs(np.diagonal(rr)) > np.sqrt(_U) * size
        if not np.all(np.isfinite(X)) or not keep.any():
            break
        X = np.linalg.qr(_project_out(Q, X[:, keep]))[0]
    return est


def smallest_singular_triplets(R: np.ndarray, count: int, *, col_scale: np.ndarray | None = None,
                               max_iter: int = PARTIAL_MAX_ITER, rtol: float = PARTIAL_RTOL,
                               seed: int = 0, progress: Progress | None = None,
                               stage: str = "partial spectrum",
                               inverse: np.ndarray | None = None
                               ) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` smallest singular values (descending) and right singular vectors (N, count)
    of A = R diag(col_scale), R upper triangular (N, N).

    Block inverse subspace iteration on (A^T A)^-1: X <- orth(A^-1 A^-T X), two triangular
    solves (BLAS dtrsm) with 2 ``count`` right-hand sides per step (oversampled), then
    Rayleigh-Ritz (the SVD of the thin A X); when R is well conditioned (N above
    :data:`EXPLICIT_INVERSE_MIN_N`, :func:`_explicit_inverse`; or ``inverse`` = R^-1 given),
    two triangular products with R^-1 instead of the solves. Each step applies a Chebyshev
    filter of degree up to :data:`CHEBYSHEV_DEGREE` instead of one product (damping the Ritz
    interval below the block, so that clustered values converge in a fraction of the
    products): the largest degree whose gain over the block stays within
    :data:`CHEBYSHEV_MAX_GAIN`. Settled Ritz pairs beyond that gain (an exact dependency: 1 /
    sigma^2 at 1e28 times the rest; or a cluster of them, locked as a whole:
    :func:`_lock_count`) are locked: kept in the basis, and their right and left directions
    (x and A^-T x) projected off the block between and after the two halves of
    every later product, so that the filter runs on the rest (one-sided, the round-off of
    A^-T along a locked direction, amplified by 1 / sigma^2, swamps the block). Plain, the
    j-th value converges like (sigma_j / sigma_(2 count + 1))^2 per product; ``max_iter``
    counts the products. It stops when none of the ``count`` smallest
    Ritz values of (A^T A)^-1 on the current block (eigenvalues of X^T A^-1 A^-T X, as
    sigma = mu^(-1/2)) moves by more than ``rtol`` relative (or after ``max_iter`` steps). Diagonal
    entries of R below u max|R| are raised to u max|R| while solving (an exactly singular R
    gives its null directions; R itself is restored), a perturbation below the round-off the
    decision already allows for. Ritz values are upper bounds of the true ones.

    ``progress`` receives ``stage`` updates after every step with ``done`` the steps made and
    ``total`` the steps expected: ``max_iter`` until two steps show how fast the Ritz values
    settle, then the steps at which that geometric rate meets the tolerance
    (:class:`_Steps`; it never changes when the iteration stops).
    """
    N = R.shape[1]
    count = max(1, min(int(count), N))
    c = np.ones(N) if col_scale is None else np.asarray(col_scale, dtype=float)
    scale = max(float(R.max()), -float(R.min())) if R.size else 0.0  # no N x N temporary
    if scale == 0.0:
        return np.zeros(count), np.eye(N)[:, :count]
    floor = _U * scale
    idx = np.diag_indices(N)
    diag = R[idx].copy()
    raised = np.where(np.abs(diag) < floor, np.copysign(floor, diag + 0.0), diag)
    work = min(N, 2 * count)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5A]))
    X = np.linalg.qr(rng.standard_normal((N, work)))[0]
    prev = None
    atol = _U * scale * np.sqrt(N)  # round-off level of a singular value of R
    if not R.flags.writeable:
        R = np.array(R)
    try:
        R[idx] = raised
        if inverse is None and N > EXPLICIT_INVERSE_MIN_N:
            inverse = _explicit_inverse(R)
        # the step's small calls (thin QR, Rayleigh-Ritz) on one BLAS thread: they lose more
        # to thread start-up than they gain from a second one; the products with R^-1 or the
        # solves with R are single large calls on every BLAS thread
        small = blas_single_thread

        def apply(Y: np.ndarray, left: np.ndarray | None = None) -> np.ndarray:
            # A^-1 A^-T Y: two BLAS-3 triangular solves (R^T V = Y / c, R Z' = V), or two
            # triangular products with R^-1 when it is well conditioned; with ``left`` (locked
            # left directions, orthonormal), V is projected off them between the two
            between = None if left is None or left.shape[1] == 0 else (
                lambda V: _project_out(left, V))
            if inverse is None:
                return _solve_in_place(R, np.asfortranarray(Y / c[:, None]),
                                       between) / c[:, None]
            return _inverse_times(inverse, Y / c[:, None], between) / c[:, None]

        def half_apply(Y: np.ndarray) -> np.ndarray:
            # A^-T Y = R^-T (Y / c)
            if inverse is None:
                with lapack_threads():
                    return scipy.linalg.blas.dtrsm(1.0, R, np.asfortranarray(Y / c[:, None]),
                                                   lower=0, trans_a=1)
            return scipy.linalg.blas.dtrmm(1.0, inverse, np.asfortranarray(Y / c[:, None]),
                                           side=0, lower=0, trans_a=1)

        degree = CHEBYSHEV_DEGREE
        steps = _Steps(max_iter, progress, stage)
        applied, lock, mu_lock = 0, 0, np.zeros(0)  # X[:, :lock] are locked Ritz vectors
        UL = np.zeros((N, 0))  # and UL their left directions
        while applied < max_iter:
            XL, XU = X[:, :lock], X[:, lock:]
            Z = apply(XU, UL)
            applied += 1
            if not np.all(np.isfinite(Z)):
                break
            # Rayleigh-Ritz of (A^T A)^-1 on span(XU) (X orthonormal): eigenpairs of XU^T Z,
            # sigma ~ mu^(-1/2), no extra pass over R; XU and Z turned to its Ritz vectors
            # (scipy's BLAS and LAPACK, as for the products: numpy may bundle another BLAS,
            # whose idle threads spinning after a call slowed each step twofold on 2 cores;
            # and on one thread: the QR of the thin N x 2 count block took 35 ms on two
            # threads, 7 ms on one, N = 4000)
            with small():
                H = scipy.linalg.blas.dgemm(1.0, XU, Z, trans_a=1)
                mu_u, E = scipy.linalg.eigh((H + H.T) / 2, check_finite=False)
                XU = scipy.linalg.blas.dgemm(1.0, XU, E)
                Z = scipy.linalg.blas.dgemm(1.0, Z, E)
            mu = np.sort(np.concatenate([mu_u, mu_lock]))[work - count:]
            with np.errstate(divide="ignore", invalid="ignore"):
                s = 1.0 / np.sqrt(np.maximum(mu, 0.0))
                settled = (np.zeros(count, bool) if prev is None
                           else np.abs(s - prev) <= rtol * s + atol)
            done = bool(np.all(settled))
            if not done:
                # lock the settled Ritz pairs at the dominant end that stand more than
                # CHEBYSHEV_MAX_GAIN above the next value (e.g. an exact dependency at
                # round-off level: 1 / sigma^2 about 1e28 times the rest): kept as they are,
                # and projected out of the block after every product, so that they cannot
                # swamp the other directions. Only such a gap: while one swamps the block, the
                # values below it are noise, and one that looks settled must not be frozen
                run = int(np.argmin(settled[::-1]))  # settled ones at the dominant end
                new = _lock_count(mu_u, run - lock)
                if new:
                    keep = len(mu_u) - new
                    XL = np.hstack([XL, XU[:, keep:]])
                    # their left directions A^-T x / ||A^-T x||, taken off between the two
                    # halves of every later product (two-sided: a one-sided projection leaves
                    # u / sigma_locked^2 of them, which swamps the block at an exact dependency)
                    UL = scipy.linalg.qr(np.hstack([UL, half_apply(XU[:, keep:])]),
                                         mode="economic", check_finite=False)[0]
                    mu_lock = np.concatenate([mu_lock, mu_u[keep:]])
                    XU, Z, mu_u = XU[:, :keep], Z[:, :keep], mu_u[:keep]
                    lock += new
            Y = Z
            # Chebyshev filter of the largest degree (<= CHEBYSHEV_DEGREE) whose gain over the
            # unlocked block stays within CHEBYSHEV_MAX_GAIN: T_k of the operator mapped so that
            # [0, b] goes to [-1, 1], b the block's smallest Ritz value (<= the work-th
            # eigenvalue): what lies above b grows like T_k(2 lambda / b - 1), what lies below
            # stays within 1 (three-term recurrence, one product per degree)
            k = 1
            if not done and mu_u[0] > 0:
                k = max([j for j in range(1, degree + 1)
                         if _chebyshev_gain(j, mu_u[-1] / mu_u[0]) <= CHEBYSHEV_MAX_GAIN] or [1])
            if k > 1:
                half = float(mu_u[0]) / 2.0
                Y0, Y = XU, _project_out(XL, (Z - half * XU) / half)
                for _ in range(k - 1):
                    if applied >= max_iter:
                        break
                    Y0, Y = Y, _project_out(XL, 2.0 * (apply(Y, UL) - half * Y) / half) - Y0
                    applied += 1
                if not np.all(np.isfinite(Y)):
                    Y = Z
            with small():
                X = scipy.linalg.qr(np.hstack([XL, Y]), mode="economic", check_finite=False)[0]
            if done:
                break
            if progress is not None:
                with np.errstate(all="ignore"):
                    steps.advance(None if prev is None else np.abs(s - prev) / (rtol * s + atol))
            prev = s
    finally:
        R[idx] = diag
    _, s, wt = np.linalg.svd(_upper_times(R, c[:, None] * X), full_matrices=False)
    return s[work - count:], X @ wt[work - count:].T


def _lock_count(mu: np.ndarray, settled: int) -> int:
    """How many Ritz values at the dominant end of ``mu`` (ascending) to lock, of the top
    ``settled`` (settled ones): the top j standing more than CHEBYSHEV_MAX_GAIN above the next
    value, j the first such gap from the top (a cluster of dependencies, e.g. ten values of
    1e-9 ||R||, is locked as a whole: its span is settled even where its values are close),
    then one more for each next value that stands that far above its own next; none without
    such a gap (below a value that swamps the block the others are noise, and one that looks
    settled must not be frozen)."""
    top = min(settled, len(mu) - 1)
    j = next((j for j in range(1, top + 1) if mu[-j] > CHEBYSHEV_MAX_GAIN * abs(mu[-j - 1])), 0)
    while 0 < j < top and mu[-1 - j] > CHEBYSHEV_MAX_GAIN * abs(mu[-2 - j]):
        j += 1
    return j


class _Steps:
    """Progress of an iteration that stops when every ratio change / tolerance is <= 1: after
    a step with ratios c_k (worst c = max c_k), the expected total is the step at which the
    geometric decrease c_k / c_(k-1) seen over the last step brings c below 1 (at most
    ``max_iter``); ``max_iter`` until then. Only scalars per step: no cost in the iteration."""

    def __init__(self, max_iter: int, progress: Progress | None, stage: str):
        self.max_iter, self.progress, self.stage = max_iter, progress, stage
        self.done, self.last = 0, None

    def advance(self, ratios: np.ndarray | None) -> None:
        self.done += 1
        total = self.max_iter
        worst = float(np.max(ratios)) if ratios is not None and ratios.size else None
        if worst is not None and not np.isfinite(worst):
            worst = None
        if worst is not None and self.last is not None and 0 < worst < self.last:
            rate = worst / self.last
            more = np.log(worst) / -np.log(rate) if worst > 1 else 0.0
            if np.isfinite(more):
                total = int(min(self.max_iter, self.done + 1 + np.ceil(max(more, 0.0))))
        self.last = worst
        self.progress(ProgressUpdate(f"{self.stage} {self.done}/{total} steps",
                                     stage=self.stage, done=self.done, total=total))


def _chebyshev_gain(k: int, ratio: float) -> float:
    """T_k(2 ratio - 1): how much the degree-k filter on [0, b] raises an eigenvalue ratio b
    above b (T_k(x) = cosh(k arccosh x) for x >= 1; inf when it overflows)."""
    x = max(2.0 * float(ratio) - 1.0, 1.0)
    with np.errstate(over="ignore"):
        return float(np.cosh(k * np.arccosh(x))) if np.isfinite(x) else np.inf


def _project_out(L: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Y - L (L^T Y) for L with orthonormal columns (Y itself when L has none)."""
    if L.shape[1] == 0:
        return Y
    return Y - L @ (L.T @ Y)


def _solve_in_place(R: np.ndarray, B: np.ndarray, between=None) -> np.ndarray:
    """R^-1 R^-T B for upper-triangular R, in place on the Fortran-ordered B: two BLAS dtrsm
    calls on every BLAS thread (one pass over R each serves all the columns: at N = 5000-12000,
    64 columns, 2 cores, twice as fast as splitting the columns over threads with one BLAS
    thread each); ``between`` (optional) maps R^-T B, in place, before the second solve."""
    trsm = scipy.linalg.blas.dtrsm
    with lapack_threads():
        for trans in (1, 0):
            out = trsm(1.0, R, B, lower=0, trans_a=trans, overwrite_b=1)
            if out is not B and not np.shares_memory(out, B):
                B[...] = out
            if trans == 1 and between is not None:
                B[...] = between(B)
    return B


def _upper_times(R: np.ndarray, X: np.ndarray) -> np.ndarray:
    """R X for upper-triangular R (BLAS dtrmm: half the flops of a dense product)."""
    return scipy.linalg.blas.dtrmm(1.0, R, np.asfortranarray(X), side=0, lower=0)
