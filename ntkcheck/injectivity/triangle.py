"""Triangles for the spectrum (SPEC §3 step 4): R^-1 when R is well conditioned, and the
Cholesky factor of the Gram matrix as F_perp's triangle when that is accurate enough (with,
for the full spectrum, every singular value from the Gram matrix's eigenvalues:
:func:`gram_singular_values`).

Any upper-triangular R with R^T R = A^T A has the singular values and right singular vectors
of A: the partial spectrum, the scores (rows of R^-1), the summary's traces and the weighted
smallest value use nothing else. A Householder QR gives such an R to backward error O(u) in
2 M N^2 flops at about half the GEMM rate; the Cholesky factor of fl(A^T A) costs M N^2 flops
at the GEMM rate (dsyrk) plus N^3 / 3, but carries the Gram matrix's rounding:

    R^T R = A^T A + E,  ||E||_2 <= e = gamma_M ||A||_F^2 + 2 M N 2^-1074      (dsyrk)
                                     + gamma_(N+1) / (1 - gamma_(N+1)) tr(fl(A^T A))  (dpotrf)

(:func:`ntkcheck.injectivity.rounding.gram_rounding` and ``cholesky_rounding``, the terms of
the certificate's Gram route)

so |sigma_i(R)^2 - sigma_i(A)^2| <= e for every i (Weyl), and |sigma_i(R) - sigma_i(A)| <=
e / sigma_i(R). That bound is a worst case (every rounding error of the M-term sums aligned);
the typical size, as for the features' typical levels (round-off accumulating like a random
walk over the M terms of each sum and the N + 1 of each Cholesky step), is

    e_typ = u (sqrt(M) + sqrt(N + 1)) ||A||_F^2.

The spectrum takes R only when sigma_min(R)^2 >= :data:`GRAM_TRIANGLE_MARGIN` e_typ
(the singular values then move by about 5e-7 relative at most, far from every round-off level
the decision compares with) and adds the worst case e / sigma_min(R) to its tolerance;
otherwise (near dependencies, ill conditioning) it runs the Householder QR.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

from .._threads import lapack_threads
from .rounding import _U, _gamma, _up, cholesky_rounding, gram_rounding

__all__ = ["explicit_inverse", "inverse_times", "gram_triangle", "gram_singular_values",
           "GramTriangle", "EXPLICIT_INVERSE_RCOND", "GRAM_TRIANGLE_MARGIN"]

#: :func:`explicit_inverse` inverts R when LAPACK's reciprocal 1-norm condition estimate of R
#: is at least this.
EXPLICIT_INVERSE_RCOND = 1e-6
#: The partial spectrum keeps the Gram triangle only when sigma_min(R)^2 >= this x e_typ.
GRAM_TRIANGLE_MARGIN = 1e6


def explicit_inverse(R: np.ndarray) -> np.ndarray | None:
    """R^-1 (LAPACK dtrtri, N^3 / 3 flops) when R is well conditioned: LAPACK's estimate of
    its reciprocal 1-norm condition number (dtrcon, O(N^2)) at least
    :data:`EXPLICIT_INVERSE_RCOND`; else None (the iteration then solves with R).

    Why the condition: the iteration needs (A^T A)^-1 X only in the directions it converges to.
    A triangular solve is backward stable whatever kappa(R); a product with a computed inverse
    has an error of about u kappa(R) ||R^-1|| ||X||, which for kappa <= 1e6 is below u kappa^2 =
    1e-4 of the weakest converged direction's size and enters the Ritz values (Rayleigh-Ritz with
    R itself) squared. Measured at N = 4000 (the benchmark's triangle, kappa_1 ~ 1e4): the 32
    values agree with the solves' to 1e-13 relative, the steps take 35 ms instead of 70 ms."""
    # dtrcon's estimate of ||R^-1||_1 is a lower bound (so its rcond may be too high); each
    # 1 / |r_ii| is an entry of R^-1: a diagonal entry below rcond max|R| rules it out for sure
    diag = np.abs(np.diagonal(R))
    top = max(float(R.max()), -float(R.min())) if R.size else 0.0  # max |R|, no N x N temporary
    if not diag.size or not diag.min() >= EXPLICIT_INVERSE_RCOND * top:
        return None
    rcond, info = _rcond_upper(R)
    if info != 0 or not rcond >= EXPLICIT_INVERSE_RCOND:
        return None
    with lapack_threads():
        W, info = scipy.linalg.lapack.dtrtri(R, lower=0)
    if info != 0 or not np.all(np.isfinite(np.diagonal(W))):
        return None
    return np.asfortranarray(W)


def _rcond_upper(R: np.ndarray) -> tuple[float, int]:
    """LAPACK's estimate of the reciprocal 1-norm condition number of the upper triangle of R:
    dtrcon; where scipy has no dtrcon wrapper (before 1.11), dgecon on R read as the LU
    factors of itself (L = I: the strict lower triangle zeroed first), the same estimator
    (Hager / Higham's dlacn2 on R^-1) given ||R||_1."""
    lapack = scipy.linalg.lapack
    with lapack_threads():
        if hasattr(lapack, "dtrcon"):
            rcond, info = lapack.dtrcon(R, norm="1", uplo="U", diag="N")
            return float(rcond), int(info)
        U = np.triu(R)
        anorm = float(np.abs(U).sum(axis=0).max())
        rcond, info = lapack.dgecon(np.asfortranarray(U), anorm, norm="1")
        return float(rcond), int(info)


def inverse_times(W: np.ndarray, X: np.ndarray, between=None) -> np.ndarray:
    """W W^T X for upper-triangular W = R^-1: two BLAS-3 triangular products (on every BLAS
    thread: each is one large call); ``between`` (optional) maps W^T X before the second."""
    with lapack_threads():
        Y = scipy.linalg.blas.dtrmm(1.0, W, np.asfortranarray(X), side=0, lower=0, trans_a=1)
        if between is not None:
            Y = np.asfortranarray(between(Y))
        return scipy.linalg.blas.dtrmm(1.0, W, Y, side=0, lower=0, overwrite_b=1)


class GramTriangle(NamedTuple):
    """What :func:`gram_triangle` returns: R, R^-1, e >= ||R^T R - A^T A||_2, its typical
    size e_typ, ||G||_F^2, and G = fl(A^T A) itself (upper triangle) when asked to keep it."""

    triangle: np.ndarray
    inverse: np.ndarray
    e: float
    e_typ: float
    gram_sq: float
    gram: np.ndarray | None = None


def gram_triangle(A: np.ndarray, keep: bool = False) -> GramTriangle | None:
    """(R, R^-1, e, e_typ, ||G||_F^2[, G]) for A (M x N, M >= N, finite): R the Cholesky factor
    of G = fl(A^T A), e the bound on ||R^T R - A^T A||_2 and e_typ its typical size (module
    docstring), ||G||_F^2 (the summary's tr((A^T A)^2), without another N^3 product) and, with
    ``keep``, G itself (for :func:`gram_singular_values`); None when the Gram matrix is not
    numerically positive definite or R is not well conditioned (:func:`explicit_inverse`).
    The caller checks sigma_min(R)^2 against :data:`GRAM_TRIANGLE_MARGIN` e_typ before using
    R."""
    M, N = A.shape
    if M < N or N == 0:
        return None
    with np.errstate(over="ignore", under="ignore", invalid="ignore"), lapack_threads():
        G = scipy.linalg.blas.dsyrk(1.0, np.asarray(A).T, trans=0)  # upper triangle of A^T A
    diag = np.diagonal(G).copy()
    if not np.all(np.isfinite(diag)):
        return None
    # ||A||_F^2 <= tr(fl(A^T A)) / (1 - gamma_M): each diagonal entry is a rounded sum of squares
    fro_sq = float(_up(float(_up(diag.sum(), N)) / (1.0 - _gamma(M)), 2))
    e = float(_up(gram_rounding(M, N, float(_up(np.sqrt(fro_sq), 1)))
                  + cholesky_rounding(N, diag), 1))
    e_typ = _U * (np.sqrt(M) + np.sqrt(N + 1)) * fro_sq
    # dsyrk leaves the strict lower triangle zero: ||G||_F^2 = 2 sum(upper^2) - sum(diag^2)
    gram_sq = 2.0 * float(np.einsum("ij,ij->", G, G)) - float(np.dot(diag, diag))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"), lapack_threads():
        R, info = scipy.linalg.lapack.dpotrf(G, lower=0, clean=1, overwrite_a=int(not keep))
    if not keep:
        del G
    if info != 0 or not np.all(np.isfinite(np.diagonal(R))):
        return None
    R = np.asfortranarray(R)
    W = explicit_inverse(R)
    if W is None:
        return None
    return GramTriangle(R, W, e, float(e_typ), gram_sq, G if keep else None)


def gram_singular_values(tri: GramTriangle) -> tuple[np.ndarray, float, float]:
    """(sigma, e', e_typ') from a kept Gram matrix: sigma_i = sqrt(lambda_i(G)), descending
    (LAPACK dsyevd, eigenvalues only: 4/3 N^3 flops, a quarter of the bidiagonalisation that
    every singular value of R costs), with the bound e' and the typical size e_typ' of
    |sigma_i^2 - sigma_i(A)^2| (Weyl: G's own rounding e, plus the eigensolver's backward
    error, first order as the SVD's in :mod:`ntkcheck.injectivity.spectrum`: 4 N u ||G||_2
    <= 4 N u tr(G), typically u sqrt(N) tr(G)). So |sigma_i - sigma_i(A)| <= e' / sigma_i, and
    R, whose R^T R is within e of A^T A as well, has the same values within that. G is
    overwritten (``tri.gram`` is spent)."""
    G = tri.gram
    N = G.shape[0]
    trace = float(_up(np.diagonal(G).sum(), N))
    with lapack_threads():
        lam = scipy.linalg.eigh(G, lower=False, eigvals_only=True, driver="evd",
                                overwrite_a=True, check_finite=False)
    sigma = np.sqrt(np.maximum(lam[::-1], 0.0))
    e = float(_up(tri.e + 4 * N * _U * trace, 3))
    return sigma, e, tri.e_typ + _U * np.sqrt(N) * trace
