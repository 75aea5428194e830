"""Rigorous lower bounds on sigma_min of a float matrix (the certificate's step 2, SPEC §3a).

Split from :mod:`ntkcheck.injectivity.certify`, which states the whole certificate. Two ways,
each rigorous for the algorithm that actually runs (IEEE binary64, conventional BLAS/LAPACK:
|fl(X Y) - X Y| <= gamma_k |X| |Y|, k the inner dimension, any summation order, FMA allowed;
underflow adds 2^-1074 per operation; every bound evaluated in float64 with upward margins by
:mod:`ntkcheck.injectivity.rounding`):

* :func:`gram_sigma_lower_bound` (tried first): one Gram matrix fl(A^T A) (a dsyrk, M n^2
  flops), its Cholesky factor and a shifted Cholesky factorisation prove lambda_min(A^T A);
  it squares the condition number, so it certifies only sigma_min(A) above about
  sqrt((M + n) u) ||A||_F.
* :func:`sigma_min_lower_bound` (the fallback, which never squares the condition number):
  C = A Y for Y ~ R^-1 and ||C^T C - I||, ||Y||_2 by a Cholesky certificate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg

from .._threads import lapack_threads
from ..progress import Work
from .rounding import _ETA, _U, _down, _gamma, _norm_up, _up, cholesky_rounding, gram_rounding

__all__ = ["sigma_min_lower_bound", "gram_sigma_lower_bound", "float_sigma_lower_bound",
           "REFINE_ETA"]

# ------------------------------------------------------------------------------------------
# sigma_min of a float matrix


#: ||C~^T C~ - I|| bound above which the Cholesky-QR inverse factor Y is refined once more
#: (CholeskyQR2): sqrt(1 - eta) then costs at most 2^-21 of the certified bound.
REFINE_ETA = 2.0**-20


def _inverse_factor(A: np.ndarray, At: np.ndarray, gram_factor=None
                    ) -> tuple[np.ndarray | None, str]:
    """Y ~ R^-1 for the R factor of A (M x n), upper triangular, and how it was obtained.

    Cholesky QR first: R = chol(fl(A^T A)) (one symmetric rank-k update at BLAS-3 speed,
    M n^2 flops); when the Gram matrix is not numerically positive definite (kappa_2(A) beyond
    about u^-1/2) a Householder QR (2 M n^2 flops at panel speed). Either is an approximation
    only: the bound of :func:`sigma_min_lower_bound` holds for any Y, the factorisation affects
    its tightness and cost, never its validity. Returns (None, reason) when R is singular to
    working precision. ``gram_factor``, when given, is a callable returning the Cholesky factor
    of fl(A^T A) from the Gram matrix :func:`gram_sigma_lower_bound` formed, or None when that
    factorisation broke down: the Gram matrix is then not formed again.
    """
    if gram_factor is None:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"), lapack_threads():
            G = scipy.linalg.blas.dsyrk(1.0, At, trans=0)  # upper triangle of fl(A^T A)
            R, info = scipy.linalg.lapack.dpotrf(G, lower=0, clean=1, overwrite_a=1)
        del G
    else:
        R = gram_factor()
        info = 0 if R is not None else 1
    how = "Cholesky QR"
    if info != 0 or not np.all(np.isfinite(np.diagonal(R))):
        del R
        with lapack_threads():
            R = scipy.linalg.qr(A, mode="raw", check_finite=False)[1]  # (n, n); Q not formed
        how = "Householder QR"
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"), \
            lapack_threads():
        Y, info = scipy.linalg.lapack.dtrtri(R, lower=0)
    if info != 0 or not np.all(np.isfinite(Y)):
        rmin = float(np.abs(np.diagonal(R)).min()) if R.size else 1.0
        return None, (f"the triangular factor is singular to working precision "
                      f"(min |R_jj| {rmin:.3g})")
    return np.asfortranarray(Y), how


def _orthogonality(At: np.ndarray, Y: np.ndarray, fro_a: float):
    """(C~^T, e_c, fro_c, eta, gram) for C~ = fl(A Y) (kept as its transpose, (n, M)): the
    bound e_c >= ||C~ - A Y||_F, ||C~||_F, eta >= ||C~^T C~ - I||_2, and fl(C~^T C~) (upper)."""
    n, M = At.shape
    fro_y = float(_norm_up(Y))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        Ct = scipy.linalg.blas.dtrmm(1.0, Y, At, side=0, lower=0, trans_a=1)  # (A Y)^T
    if not (np.all(np.isfinite(Ct)) and np.isfinite(fro_y)):
        return None
    e_c = float(_up(_gamma(n) * fro_a * fro_y + np.sqrt(float(M) * n) * n * 2 * _ETA, 4))
    fro_c = float(_norm_up(Ct))
    gram = scipy.linalg.blas.dsyrk(1.0, Ct, trans=0)  # upper triangle of fl(C~^T C~), lower 0
    diag = np.diagonal(gram).copy()
    gram[np.diag_indices(n)] = 0.0  # the strictly upper part, in place (no N x N copy)
    fro_off = float(_norm_up(gram))
    gram[np.diag_indices(n)] = diag
    fro_g = float(_up(np.sqrt(_up(2.0 * fro_off**2 + _norm_up(diag - 1.0) ** 2, 4)), 1))
    eta = float(_up(fro_g * (1 + 2 * _U) + _gamma(M) * fro_c**2 + M * n * _ETA, 4))
    return Ct, e_c, fro_c, eta, gram


def _validated(A: np.ndarray) -> tuple[np.ndarray, int, int, tuple | None]:
    """(A as a C-contiguous float64 array, M, n, None), or a refusal (bound, note) in the last
    place: fewer rows than columns (0.0) or a non-finite entry (nan)."""
    A = np.asarray(A, dtype=np.float64)
    M, n = A.shape
    if M < n:
        return A, M, n, (0.0, f"fewer rows ({M}) than columns ({n})")
    if not np.all(np.isfinite(A)):
        return A, M, n, (float("nan"), "the float matrix has non-finite entries")
    return np.ascontiguousarray(A), M, n, None


def sigma_min_lower_bound(A: np.ndarray, work: Work | None = None, gram_factor=None
                          ) -> tuple[float, str]:
    """Rigorous lower bound on sigma_min of the float matrix A (M x n, M >= n), with a note.

    Y ~ R^-1 (:func:`_inverse_factor`: Cholesky QR, or Householder QR when the Gram matrix is
    numerically singular; refined as in CholeskyQR2, Y <- Y chol(C~^T C~)^-1, while
    eta > :data:`REFINE_ETA`, at most twice) is an
    approximation only; with the exact product C := A Y, sigma_min(A) >= sigma_min(C) /
    ||Y||_2 (A = C Y^-1), where

    * sigma_min(C) >= sqrt(1 - eta) - ||C - C~||_F (Weyl), C~ = fl(A Y) with
      ||C~ - C||_F <= gamma_n ||A||_F ||Y||_F (|fl(A Y) - A Y| <= gamma_n |A| |Y|), and
      eta >= ||C~^T C~ - I||_2: ||fl(C~^T C~) - I||_F + gamma_M ||C~||_F^2;
    * ||Y||_2 <= sqrt(alpha), alpha proved >= lambda_max(Y^T Y) by :func:`_norm2_upper`.

    C is nearly orthonormal, so the condition number of A is never squared in the bound (the
    Cholesky QR only squares it in the approximation Y, which the refinement repairs). Cost: the
    Gram matrix (M n^2), A Y (M n^2), C^T C (M n^2), a triangular inverse (n^3/3) and the norm
    bound (~ 1.3 n^3), plus 2 M n^2 + n^3 per refinement. ``gram_factor``: see
    :func:`_inverse_factor`.
    """
    A, M, n, refused = _validated(A)
    if refused is not None:
        return refused
    At = A.T  # Fortran-ordered view: BLAS takes it without a copy
    Y, how = _inverse_factor(A, At, gram_factor)
    if work is not None and gram_factor is None:
        work.add(M * n * n + 2 * n**3 / 3)
    if Y is None:
        return 0.0, how
    fro_a = float(_norm_up(A))
    for refinement in range(3):
        state = _orthogonality(At, Y, fro_a)
        if work is not None:
            work.add(2 * M * n * n)
        if state is None:
            return float("nan"), "overflow in A R^-1"
        Ct, e_c, fro_c, eta, gram = state
        if eta <= REFINE_ETA or refinement == 2:
            break
        # CholeskyQR2: Y <- Y chol(C~^T C~)^-1, still upper triangular
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"), \
                lapack_threads():
            R2, info = scipy.linalg.lapack.dpotrf(gram, lower=0, clean=1, overwrite_a=1)
            Y2, info2 = (scipy.linalg.lapack.dtrtri(R2, lower=0) if info == 0 else (None, 1))
        if info2 != 0 or not np.all(np.isfinite(Y2)):
            state = _orthogonality(At, Y, fro_a)  # gram was overwritten: the current Y's bound
            if state is None:
                return float("nan"), "overflow in A R^-1"
            Ct, e_c, fro_c, eta, gram = state
            break  # (valid, if loose)
        del Ct
        Y = np.asfortranarray(scipy.linalg.blas.dtrmm(1.0, Y2, Y, side=1, lower=0))
        how = how.split(",")[0] + (", refined" if refinement == 0 else
                                   f", refined {refinement + 1}x")
    del Ct, gram
    fro_y = float(_norm_up(Y))
    if not eta < 1.0:
        return 0.0, f"||C^T C - I|| bound {eta:.3g} >= 1 (A~ too ill-conditioned to verify)"
    sc = float(_down(np.sqrt(_down(1.0 - eta, 1)), 1)) - e_c
    if not sc > 0:
        return float(sc), (f"||C - C~||_F bound {e_c:.3g} exceeds sigma_min(C~) "
                           "(A~ too ill-conditioned to verify)")
    sc = float(_down(sc, 1))
    norm_y, norm_how = _norm2_upper(Y, fro_y)
    if work is not None:
        work.add(4 * n**3 / 3 + 80 * n * n)
    bound = float(_down(sc / norm_y, 2))
    return bound, (f"sigma_min(A~) >= {bound:.6g} (Y ~ R^-1 by {how}; ||C^T C - I|| <= "
                   f"{eta:.2g}, ||C - C~||_F <= {e_c:.2g}, ||R^-1||_2 <= {norm_y:.6g} by "
                   f"{norm_how})")


#: Relative margins tried for alpha = lambda_est (1 + delta) in :func:`_norm2_upper`.
_NORM_MARGINS = (1e-4, 3e-3, 3e-2, 0.3, 3.0)
#: Relative tolerance of the Lanczos estimate of lambda_max(Y^T Y) in _norm2_upper (the
#: smallest margin tried above it is 1e-4).
_LANCZOS_RTOL = 1e-10


def _largest_eigenvalue(G: np.ndarray) -> float:
    """Estimate of lambda_max of the symmetric G (upper triangle stored), by Lanczos (ARPACK
    via scipy's eigsh, matrix-vector products with BLAS dsymv: one pass over G each); if
    ARPACK does not converge, its best Ritz value, else a block power iteration. Any estimate
    is valid for :func:`_norm2_upper`: the Cholesky test proves the bound, the estimate only
    decides how tight it is."""
    import scipy.sparse.linalg as sparse_linalg

    n = G.shape[0]
    if n <= 64:  # dense: cheaper than iterating
        return float(scipy.linalg.eigvalsh(G, lower=False, subset_by_index=[n - 1, n - 1])[0])
    op = sparse_linalg.LinearOperator(
        (n, n), matvec=lambda x: scipy.linalg.blas.dsymv(1.0, G, np.ravel(x), lower=0),
        dtype=float)
    v0 = np.random.default_rng(0).standard_normal(n)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            w = sparse_linalg.eigsh(op, k=1, which="LA", tol=_LANCZOS_RTOL, v0=v0,
                                    return_eigenvectors=False)
        return float(w[-1])
    except sparse_linalg.ArpackNoConvergence as err:
        if len(err.eigenvalues):
            return float(np.max(err.eigenvalues))
    except sparse_linalg.ArpackError:
        pass
    X = v0[:, None]
    for _ in range(100):  # plain power iteration (a lower estimate)
        X = X / np.linalg.norm(X)
        W = scipy.linalg.blas.dsymv(1.0, G, X[:, 0], lower=0)[:, None]
        lam = float(X[:, 0] @ W[:, 0])
        X = W
    return lam


def _norm2_upper(Y: np.ndarray, fro_y: float) -> tuple[float, str]:
    """Upper bound on ||Y||_2 (Y square), tight to ~(1 + delta)^(1/2), else ||Y||_F.

    G~ = fl(Y^T Y) with ||G~ - Y^T Y||_2 <= e_g = gamma_n ||Y||_F^2. For alpha slightly above
    a Lanczos estimate of lambda_max (:func:`_largest_eigenvalue`), X' = fl(fl(alpha I - G~) - c I) is given to
    Cholesky (LAPACK dpotrf). If it runs to completion, L L^T = X' + D with
    |D| <= gamma_(n+1) |L| |L^T|, hence ||D||_2 <= rho = gamma_(n+1) / (1 - gamma_(n+1)) tr(X')
    (Higham, Accuracy and Stability, Thm 10.3, valid for the blocked and recursive variants of
    LAPACK with conventional BLAS; Rump, BIT 46 (2006), who also gives the underflow terms),
    so X' >= -rho I and
    alpha I - Y^T Y = X' + (G~ - Y^T Y) + c I - (diagonal roundings) is positive definite when
    c > rho + e_g + u (max|X~_ii| + max|X'_ii|) (+ underflow terms): then ||Y||_2 < sqrt(alpha).
    """
    n = Y.shape[0]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        G = scipy.linalg.blas.dsyrk(1.0, Y, trans=1)
    # the upper triangle is the computed G~ (dsymv and dpotrf read only that part)
    if not np.all(np.isfinite(G)):
        return float(fro_y), "||R^-1||_F"
    e_g = float(_up(_gamma(n) * fro_y**2 + n * n * _ETA, 2))
    lam = _largest_eigenvalue(G)
    if not (np.isfinite(lam) and lam > 0):
        return float(fro_y), "||R^-1||_F"
    rho_factor = _gamma(n + 1) / (1.0 - _gamma(n + 1))
    idx = np.diag_indices(n)
    for delta in _NORM_MARGINS:
        alpha = float(_up((lam + e_g) * (1.0 + delta), 2))
        X = -G
        X[idx] += alpha
        diag1 = np.abs(X[idx]).max()
        tr = float(_up(np.abs(X[idx]).sum(), n))
        under = 4 * n * (2 * (n + 1) + diag1) * _ETA  # underflow terms (Rump 2006)
        c = 2.0 * (rho_factor * tr + e_g + 2 * _U * diag1 + under)
        if not c < alpha:
            break
        X[idx] -= c
        diag_x = X[idx].copy()  # the diagonal of X' actually factored
        diag2 = np.abs(diag_x).max()
        with lapack_threads():
            _, info = scipy.linalg.lapack.dpotrf(X, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            continue
        rho = rho_factor * float(_up(np.abs(diag_x).sum(), n + 4))
        slack = c - float(_up(rho + e_g + _U * (diag1 + diag2) * (1 + 4 * _U)
                              + under, 6))
        if slack > 0:
            bound = float(_up(np.sqrt(alpha), 1))
            if bound < fro_y:
                return bound, f"a Cholesky certificate (alpha = lambda_est (1 + {delta:g}))"
            break
    return float(fro_y), "||R^-1||_F"




# ------------------------------------------------------------------------------------------
# sigma_min from the Gram matrix (one pass over A), with the fallback above


#: Relative shifts tried in :func:`gram_sigma_lower_bound`: s = lambda_est (1 - delta). The
#: certified sigma_min is then about sqrt(1 - delta) of the estimate, i.e. within 2^-13 of it
#: on the first try when the estimate converged (else 16 times its last relative step, at most
#: the second entry); larger shifts only when that Cholesky factorisation breaks down.
GRAM_SHIFTS = (2.0**-12, 2.0**-7, 2.0**-3, 0.5)
#: Largest share of s that the rounding terms c_chol + e_G may take in the Gram route: beyond
#: it (sigma_min(A)^2 within 2^6 (M + n) u ||A||_F^2, roughly) the bound would be looser than
#: 1 - 2^-7 relative and the fallback, which does not square the condition number, is run.
GRAM_LOSS = 2.0**-6
#: Block size, iteration cap and relative tolerance of the inverse subspace iteration that
#: estimates lambda_min(R^T R) (an estimate only: the shifted Cholesky proves the bound).
_INVERSE_BLOCK, _INVERSE_ITERS, _INVERSE_RTOL = 8, 20, 2.0**-20


def _lambda_min_estimate(R: np.ndarray) -> tuple[float, float]:
    """Estimate of lambda_min(R^T R) for the upper-triangular R (n x n), and the relative
    change of its last step (0 when exact): inverse subspace iteration on R^T R (two
    triangular solves per step, a block of 8 vectors, re-orthonormalised by a k x k
    Cholesky), the estimate 1 / mu_max of the Rayleigh-Ritz values mu of (R^T R)^-1, which is
    >= lambda_min(R^T R) and decreases to it; dense for n <= 64. Never part of the proof."""
    n = R.shape[0]
    if n <= 64:
        s = scipy.linalg.svdvals(np.triu(R), check_finite=False)
        return float(s.min()) ** 2, 0.0
    k = min(_INVERSE_BLOCK, n)
    V = np.linalg.qr(np.random.default_rng(0).standard_normal((n, k)))[0]
    prev = lam = np.inf
    change = 1.0
    blas = scipy.linalg.blas
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        for _ in range(_INVERSE_ITERS):
            W = blas.dtrsm(1.0, R, blas.dtrsm(1.0, R, V, trans_a=1))  # (R^T R)^-1 V
            mu = np.linalg.eigvalsh(V.T @ W)[-1]  # largest Ritz value of (R^T R)^-1
            lam = float(1.0 / mu) if mu > 0 else float("nan")
            if not np.isfinite(lam):
                return lam, 1.0
            change = abs(prev - lam) / lam if np.isfinite(prev) else 1.0
            if change <= _INVERSE_RTOL:
                break
            prev = lam
            L, info = scipy.linalg.lapack.dpotrf(W.T @ W, lower=1)  # orthonormalise (k x k)
            if info != 0 or not np.all(np.isfinite(L)):
                break
            V = scipy.linalg.solve_triangular(L, W.T, lower=True, check_finite=False).T
    return lam, float(change)


def _shifted_cholesky_bound(G: np.ndarray, s: float, in_place: bool = False) -> float:
    """A proved lower bound on lambda_min(S) - s, S the symmetric matrix whose upper triangle
    is ``G`` (n x n), or -inf when the Cholesky factorisation of fl(S - s I) breaks down.
    ``in_place``: factor in G itself (Fortran-ordered; its upper triangle and diagonal are
    overwritten, the strict lower one untouched: :class:`_GramStore`), else in a copy.

    X' = fl(S - s I) (only the diagonal is computed: X'_ii = (S_ii - s)(1 + e_i), |e_i| <= u,
    so X' = S - s I + D with |D_ii| <= u |X'_ii| / (1 - u)) is given to LAPACK dpotrf. If it
    runs to completion, R^T R = X' + Delta with |Delta| <= gamma_(n+1) |R^T| |R| (Higham,
    Thm 10.3, any blocked or recursive variant with conventional BLAS), so
    ||Delta||_2 <= gamma_(n+1) ||R||_F^2 = gamma_(n+1) tr(X' + Delta) and
    ||Delta||_2 <= rho = gamma_(n+1) / (1 - gamma_(n+1)) sum_i |X'_ii|; with Rump's (BIT 46,
    2006) underflow term 4 n (2 (n + 1) + max |X'_ii|) 2^-1074,

        S - s I = R^T R - Delta - D  >=  -(rho + u (1 + 4u) max|X'_ii| + underflow) I.
    """
    n = G.shape[0]
    X = G if in_place else np.array(G, order="F", copy=True)
    idx = np.diag_indices(n)
    X[idx] -= s
    diag = X[idx].copy()  # the diagonal actually factored
    if not np.all(np.isfinite(diag)):
        return float("-inf")
    with np.errstate(over="ignore", under="ignore", invalid="ignore"), lapack_threads():
        Rs, info = scipy.linalg.lapack.dpotrf(X, lower=0, clean=0, overwrite_a=1)
    # a NaN pivot passes a "<= 0" test: completion also needs a finite factor's diagonal
    finite = bool(np.all(np.isfinite(np.diagonal(Rs))))
    del X, Rs
    if info != 0 or not finite:
        return float("-inf")
    dmax = float(np.abs(diag).max())
    rho = cholesky_rounding(n, diag)
    under = 4 * n * (2 * (n + 1) + dmax) * _ETA
    return -float(_up(rho + _U * dmax * (1 + 4 * _U) + under, 6))


#: Column block of the transposed copies between the triangles of :class:`_GramStore`.
_MIRROR_BLOCK = 256


def _mirror(X: np.ndarray, to_lower: bool) -> None:
    """Copy the strict upper triangle of the square X into its strict lower one, transposed
    (``to_lower``), or back: in column blocks (views and block copies, no index arrays or
    n x n temporaries)."""
    n = X.shape[0]
    for j0 in range(0, n, _MIRROR_BLOCK):
        j1 = min(n, j0 + _MIRROR_BLOCK)
        D = X[j0:j1, j0:j1]
        low = np.tril_indices(j1 - j0, -1)
        if to_lower:
            X[j1:, j0:j1] = X[j0:j1, j1:].T
            D[low] = D.T[low]
        else:
            X[j0:j1, j1:] = X[j1:, j0:j1].T
            D.T[low] = D[low]


class _GramStore:
    """fl(A^T A) (``G``, from dsyrk: upper triangle, Fortran order) kept in the strict lower
    triangle of its own array and its diagonal in a vector, so that the upper triangle can
    hold the Cholesky factors: one n x n array serves the Gram matrix and every factorisation
    of it (a machine that maps fresh memory slowly spent as long on copying G as on
    factoring it). LAPACK's dpotrf on the upper triangle neither reads nor writes the strict
    lower one."""

    def __init__(self, G: np.ndarray):
        self.X = np.asfortranarray(G)  # (dsyrk's output already is: no copy)
        self.diag = np.diagonal(self.X).copy()
        _mirror(self.X, to_lower=True)
        self._intact = True  # the upper triangle and diagonal still hold G

    def upper(self) -> np.ndarray:
        """The array with G in its upper triangle and diagonal (restored from below when a
        factorisation overwrote them; the lower triangle kept)."""
        if not self._intact:
            _mirror(self.X, to_lower=False)
            np.fill_diagonal(self.X, self.diag)
            self._intact = True
        return self.X

    def shifted_bound(self, s: float) -> float:
        """:func:`_shifted_cholesky_bound` of G and ``s``, factored in place above the diagonal."""
        X = self.upper()
        self._intact = False
        return _shifted_cholesky_bound(X, s, in_place=True)

    def cholesky(self) -> np.ndarray | None:
        """G's upper Cholesky factor in place (the array's strict lower triangle still holds G:
        for upper-triangle readers only), or None when dpotrf breaks down or its diagonal is not
        finite. An approximation only (the estimate's triangle)."""
        X = self.upper()
        self._intact = False
        return _cholesky_in_place(X)

    def factor(self) -> np.ndarray | None:
        """G's upper Cholesky factor in a new array, strict lower triangle zero (the fallback's
        preconditioner: it reads the whole matrix), or None when dpotrf breaks down."""
        return _cholesky_in_place(np.triu(self.upper()))


def _cholesky_in_place(X: np.ndarray) -> np.ndarray | None:
    """LAPACK dpotrf on the upper triangle of the Fortran-ordered X, in place (the strict
    lower triangle neither read nor written), or None when it breaks down or its diagonal is
    not finite."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore"), lapack_threads():
        R, info = scipy.linalg.lapack.dpotrf(X, lower=0, clean=0, overwrite_a=1)
    if info != 0 or not np.all(np.isfinite(np.diagonal(R))):
        return None
    return R


def _sqrt_lower(s: float, c_chol: float, e_g: float) -> float:
    """A double <= sqrt(s - c_chol - e_g) (c_chol, e_g >= 0), or a value <= 0 when that is not
    positive: the two positive terms are summed upwards, then one subtraction of two doubles
    (relative error <= u whatever the cancellation), its lower bound, the square root (correctly
    rounded) and its lower bound."""
    lam_lo = s - float(_up(e_g + c_chol, 1))
    if not lam_lo > 0:
        return float(lam_lo)
    return float(_down(np.sqrt(float(_down(lam_lo, 1))), 1))


def gram_sigma_lower_bound(A: np.ndarray, work: Work | None = None
                           ) -> tuple[float, str, Callable[[], np.ndarray | None]]:
    """Rigorous lower bound on sigma_min of the float matrix A (M x n, M >= n, finite) from
    its Gram matrix, with a note and a callable giving the Cholesky factor of fl(A^T A) (None
    if it broke down) for the fallback :func:`sigma_min_lower_bound`. The bound is 0 when this
    way proves nothing.

    sigma_min(A)^2 = lambda_min(A^T A) exactly. G~ = fl(A^T A) (dsyrk, upper triangle; S the
    symmetric matrix it defines) satisfies |S - A^T A| <= gamma_M |A|^T |A| + 2 M 2^-1074
    entrywise, and || |A|^T |A| ||_2 <= ||A||_F^2 (Cauchy-Schwarz: |A|^T |A| <= a a^T with a
    the column norms, ||a a^T||_2 = ||A||_F^2), so (Weyl)

        lambda_min(A^T A) >= lambda_min(S) - e_G,   e_G = gamma_M ||A||_F^2 + 2 M n 2^-1074.

    With s = lambda_est (1 - delta) (lambda_est from :func:`_lambda_min_estimate` on
    R = chol(G~); delta from :data:`GRAM_SHIFTS`), :func:`_shifted_cholesky_bound` proves
    lambda_min(S) >= s - c_chol, hence

        sigma_min(A) >= sqrt(s - c_chol - e_G)          (evaluated downwards),

    used only when c_chol + e_G <= :data:`GRAM_LOSS` s (else 0 is returned: the fallback is
    tighter there).

    Cost: M n^2 (the Gram matrix) + n^3 / 3 per Cholesky factorisation (two when the first
    shift succeeds) + the iteration's O(n^2) triangular solves: a third of the fallback's
    three M n^2 products. The condition number is squared: it proves nothing when
    sigma_min(A)^2 is below about (M + n) u ||A||_F^2.
    """
    M, n = A.shape
    At = A.T
    with np.errstate(over="ignore", under="ignore", invalid="ignore"), lapack_threads():
        G = scipy.linalg.blas.dsyrk(1.0, At, trans=0)  # upper triangle of fl(A^T A)
    if work is not None:
        work.add(M * n * n)
    if not np.all(np.isfinite(G)):  # (a finite G keeps NaN out of every Cholesky below)
        return 0.0, "the Gram matrix overflows", lambda: None
    store = _GramStore(G)
    del G
    R = store.cholesky()
    if R is None:
        return 0.0, "the Gram matrix is not numerically positive definite", lambda: None
    factor = store.factor  # for the fallback: G's factor again, in an array of its own
    e_g = gram_rounding(M, n, float(_norm_up(A)))
    lam, change = _lambda_min_estimate(R)
    if work is not None:
        work.add(2 * n**3 / 3)
    if not (np.isfinite(lam) and lam > e_g):
        return 0.0, (f"lambda_min(A^T A) ~ {lam:.3g} is within the Gram matrix's rounding "
                     f"{e_g:.3g}"), factor
    # first shift: 2^-12, or 16 times the last step's relative change when larger (the
    # iteration converges linearly: its remaining error is a few times its last step)
    first = min(max(GRAM_SHIFTS[0], 16.0 * change), GRAM_SHIFTS[1])
    for delta in (first,) + tuple(x for x in GRAM_SHIFTS if x > first):
        s = float(_down(lam * (1.0 - delta), 2))
        c_lo = store.shifted_bound(s)
        if work is not None:
            work.add(n**3 / 3)
        if not np.isfinite(c_lo):
            continue
        if not e_g - c_lo <= GRAM_LOSS * s:
            break  # the Gram matrix's rounding is too large a share: the fallback is tighter
        bound = _sqrt_lower(s, -c_lo, e_g)
        if not bound > 0:
            break
        return bound, (f"sigma_min(A~) >= {bound:.6g} (Gram matrix fl(A~^T A~), its rounding "
                       f"<= {e_g:.2g}; lambda_min >= s - {-c_lo:.2g} by a Cholesky "
                       f"certificate of G - s I, s = lambda_est (1 - {delta:g}))"), factor
    return 0.0, ("no shifted Cholesky certificate of the Gram matrix with rounding terms "
                 f"below {GRAM_LOSS:g} of the shift"), factor


def float_sigma_lower_bound(A: np.ndarray, work: Work | None = None, need: float = 0.0
                            ) -> tuple[float, str]:
    """Rigorous lower bound on sigma_min of the float matrix A: :func:`gram_sigma_lower_bound`
    first; when it does not exceed ``need`` (the certificate's ||Rad||_F: the bound must beat
    it), :func:`sigma_min_lower_bound`, reusing the Gram matrix's Cholesky factor (so the
    fallback costs what it cost alone). Both bounds are rigorous; the larger is returned."""
    A, M, n, refused = _validated(A)
    if refused is not None:
        return refused
    bound, note, factor = gram_sigma_lower_bound(A, work)
    if bound > need:
        return bound, note
    old, old_note = sigma_min_lower_bound(A, work, gram_factor=factor)
    if not old > bound:
        return (bound, note) if bound > 0 else (old, old_note)
    return old, old_note
