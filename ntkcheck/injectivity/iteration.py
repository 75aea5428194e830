"""Block iterations on an upper triangle R (SPEC §3 step 4, partial spectrum): the smallest
singular triplets by block inverse subspace iteration (triangular solves, or products with an
explicit R^-1 and a Chebyshev filter), and the largest singular value by block power iteration.
Used by :mod:`ntkcheck.injectivity.spectrum`; each is documented on its function."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.linalg

from .._threads import blas_single_thread
from ..backends.local import usable_cores
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


def largest_singular_value(R: np.ndarray, block: int = 8, iterations: int = 50,
                           rtol: float = 1e-7, seed: int = 0) -> float:
    """sigma_max(R), R upper triangular: block power iteration on R^T R (``block`` vectors, two
    triangular products per step, each one pass over R) with Rayleigh-Ritz; a lower estimate,
    stopped when a step changes it by less than ``rtol`` relative."""
    N = R.shape[1]
    k = max(1, min(block, N))
    X = np.random.default_rng(np.random.SeedSequence([seed, 0x51])).standard_normal((N, k))
    est = 0.0
    for _ in range(iterations):
        X = np.linalg.qr(X)[0]
        Y = _upper_times(R, X)
        new = float(np.linalg.svd(Y, compute_uv=False)[0])
        X = scipy.linalg.blas.dtrmm(1.0, R, Y, side=0, lower=0, trans_a=1)
        done = abs(new - est) <= rtol * new
        est = max(est, new)
        if done or not np.all(np.isfinite(X)):
            break
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
    two triangular products with R^-1 instead of the solves, and each step applies a Chebyshev
    filter of degree :data:`CHEBYSHEV_DEGREE` instead of one product (damping the Ritz
    interval below the block, so that clustered values converge in a fraction of the
    products). Plain, the j-th value converges like (sigma_j / sigma_(2 count + 1))^2 per
    product; ``max_iter`` counts the products. It stops when none of the ``count`` smallest
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
    stack = contextlib.ExitStack()
    try:
        R[idx] = raised
        if inverse is None and N > EXPLICIT_INVERSE_MIN_N:
            inverse = _explicit_inverse(R)
        # the step's small calls on one BLAS thread (already so on the solving path)
        small = blas_single_thread if inverse is not None else contextlib.nullcontext
        if inverse is None:
            # each step's small BLAS calls lose more to thread start-up than they gain from a
            # second thread (measured at N = 4000, 64 columns, 2 cores: 150 ms a step with 2
            # BLAS threads, 80 ms with 1): BLAS on one thread, the solves split by columns
            stack.enter_context(blas_single_thread())
            pool = stack.enter_context(ThreadPoolExecutor(max(1, min(usable_cores(),
                                                                     work // 16))))

        def apply(Y: np.ndarray) -> np.ndarray:
            # A^-1 A^-T Y: two BLAS-3 triangular solves (R^T V = Y / c, R Z' = V), or two
            # triangular products with R^-1 when it is well conditioned
            if inverse is None:
                return _solve_in_place(R, np.asfortranarray(Y / c[:, None]), pool) / c[:, None]
            return _inverse_times(inverse, Y / c[:, None]) / c[:, None]

        degree = CHEBYSHEV_DEGREE if inverse is not None else 1
        steps = _Steps(-(-max_iter // degree), progress, stage)
        applied = 0
        while applied < max_iter:
            Z = apply(X)
            applied += 1
            if not np.all(np.isfinite(Z)):
                break
            # convergence test on the Ritz values of (A^T A)^-1 on span(X) (X orthonormal):
            # eigenvalues mu of X^T Z, sigma ~ mu^(-1/2), no extra pass over R
            # (scipy's BLAS and LAPACK, as for the products: numpy may bundle another BLAS,
            # whose idle threads spinning after a call slowed each step twofold on 2 cores;
            # and on one thread: the QR of the thin N x 2 count block took 35 ms on two
            # threads, 7 ms on one, N = 4000)
            with small():
                H = scipy.linalg.blas.dgemm(1.0, X, Z, trans_a=1)
                mu_all = scipy.linalg.eigh((H + H.T) / 2, eigvals_only=True,
                                           check_finite=False)
            mu = mu_all[work - count:]
            with np.errstate(divide="ignore", invalid="ignore"):
                s = 1.0 / np.sqrt(np.maximum(mu, 0.0))
            done = prev is not None and np.all(np.abs(s - prev) <= rtol * s + atol)
            Y = Z
            if degree > 1 and not done and mu_all[0] > 0:
                # Chebyshev filter: T_degree of the operator mapped so that [0, b] goes to
                # [-1, 1], b the block's smallest Ritz value (<= the work-th eigenvalue): what
                # lies above b grows like T_degree(2 lambda / b - 1), what lies below stays
                # within 1 (three-term recurrence, one product per degree)
                half = float(mu_all[0]) / 2.0
                Y0, Y = X, (Z - half * X) / half
                for _ in range(degree - 1):
                    if applied >= max_iter:
                        break
                    Y0, Y = Y, 2.0 * (apply(Y) - half * Y) / half - Y0
                    applied += 1
                if not np.all(np.isfinite(Y)):
                    Y = Z
            with small():
                X = scipy.linalg.qr(Y, mode="economic", check_finite=False)[0]
            if done:
                break
            if progress is not None:
                with np.errstate(all="ignore"):
                    steps.advance(None if prev is None else np.abs(s - prev) / (rtol * s + atol))
            prev = s
    finally:
        R[idx] = diag
        stack.close()
    _, s, wt = np.linalg.svd(_upper_times(R, c[:, None] * X), full_matrices=False)
    return s[work - count:], X @ wt[work - count:].T


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


def _solve_in_place(R: np.ndarray, B: np.ndarray, pool: ThreadPoolExecutor) -> np.ndarray:
    """R^-1 R^-T B for upper-triangular R, in place on the Fortran-ordered B, in column blocks
    on the pool's threads (BLAS dtrsm releases the GIL)."""
    trsm = scipy.linalg.blas.dtrsm
    parts = getattr(pool, "_max_workers", 1)
    cuts = np.linspace(0, B.shape[1], parts + 1).astype(int)

    def solve(ab: tuple[int, int]) -> None:
        block = B[:, ab[0]:ab[1]]  # a Fortran-contiguous view: solved in place
        for trans in (1, 0):
            out = trsm(1.0, R, block, lower=0, trans_a=trans, overwrite_b=1)
            if out is not block and not np.shares_memory(out, block):
                block[...] = out

    list(pool.map(solve, [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]))
    return B


def _upper_times(R: np.ndarray, X: np.ndarray) -> np.ndarray:
    """R X for upper-triangular R (BLAS dtrmm: half the flops of a dense product)."""
    return scipy.linalg.blas.dtrmm(1.0, R, np.asfortranarray(X), side=0, lower=0)
