"""Rigorous certificate that LSE functions are linearly independent modulo affine functions.

SPEC §3a "Certified means rigorous". The certified object is the exact real matrix

    A = diag(2^r) [1, Z, F] diag(2^k),   F[m, i] = LSE_i(z_m) - <z_m, c_i>        (M' x (N+d+1))

built from the stored binary64 parameters of the distributions and the probes z_m (all taken as
exact real numbers), a shift c_i per distribution (any vector: <z, c_i> is affine) and power-of-two
row and column scalings (r, k) chosen here. A lower bound sigma_min(A) >= beta > 0 proves full
column rank, hence independence: a relation sum_i a_i LSE_i = a_0 + <b, z> would give the null
vector (-a_0, sum_i a_i c_i - b, a_1..a_N) of [1, Z, F] (before scaling). Dropping probes only
lowers singular values, so a certificate on a subset of probe rows certifies every larger set.

beta = beta_float - ||Rad||_F, where (Weyl's inequality for A = A~ + E, |E| <= Rad entrywise):

1. **Entry enclosures** ``|F[m, i] - F~[m, i]| <= rad[m, i]`` by Arb or by an a-priori float64
   bound (:mod:`ntkcheck.injectivity.enclosure`, which states the assumptions of each).
2. **beta_float**, a rigorous lower bound on sigma_min of the float matrix A~ (its condition
   number is never squared): R from a QR of A~, Y ~ R^-1 (both approximations, any Y is
   valid); with the exact C := A~ Y, sigma_min(A~) >= sigma_min(C) / ||Y||_2, where
   sigma_min(C) >= sqrt(1 - ||C~^T C~ - I||_2) - ||C - C~||_F for the computed C~, and
   ||Y||_2 <= sqrt(alpha) is proved by a Cholesky factorisation of alpha I - Y^T Y run to
   completion (Higham's backward error bound for Cholesky, as in Rump's verification of
   positive definiteness). Float products obey |fl(X Y) - X Y| <= gamma_k |X| |Y| (k the
   inner dimension, any summation order, FMA allowed: the standard model, which BLAS
   satisfies as it uses no Strassen-like algorithm), with Cauchy-Schwarz for |X| |Y|; every
   bound is evaluated in float64 with an explicit upward (or downward) margin.
3. **Weyl**: sigma_min(A) >= beta_float - ||Rad||_F.

[1, Z] must itself have full column rank (probes not in a hyperplane), which the certificate
proves along the way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import scipy.linalg

from .._threads import lapack_threads
from ..distributions import Distribution
from ..errors import InputError
from .enclosure import (_NO_FLINT, ARB_PREC, DEFAULT_BUDGET, SCRATCH_BYTES, _enclose_apriori,
                        _enclose_arb, _have_flint, _validate, _work, feature_enclosure)
from .. import resources
from ..dataset import Dataset
from ..resources import default_max_memory, format_bytes
from ..progress import Progress, Work
from .features import FeatureMatrix
from .rounding import _ETA, _TINY, _U, LIBM_ULPS, _down, _gamma, _norm_up, _up
from .reuse import pass_enclosure

__all__ = ["Certificate", "certify_independence", "feature_enclosure", "sigma_min_lower_bound",
           "certificate_flops", "LIBM_ULPS", "DEFAULT_BUDGET", "ARB_PREC", "SCRATCH_BYTES"]


# ------------------------------------------------------------------------------------------
# Certificate


@dataclass(frozen=True)
class Certificate:
    """Outcome of :func:`certify_independence`.

    Attributes
    ----------
    certified : bool
        True when ``lower_bound > 0``: the LSE functions are linearly independent modulo
        affine functions (a proof, under the stated assumptions of ``method``).
    lower_bound : float
        Rigorous lower bound on sigma_min of the scaled exact matrix A (<= 0 or nan when not
        certified).
    method : "arb" or "a-priori"
        How the entries of F were enclosed.
    rows : (M',) int array
        The probe indices used.
    columns : int
        N + d + 1.
    row_exponents, column_exponents : int arrays
        The scalings diag(2^r), diag(2^k) of A.
    max_radius : float
        Largest entry radius of F (in the scaled A).
    sigma_float : float
        Rigorous lower bound on sigma_min of the float matrix A~.
    radius_norm : float
        Upper bound on ||A - A~||_F.
    seconds : float
    reason : str
        Why it is or is not certified, with the numbers.
    statement : str
        One sentence saying exactly what is proved (or that nothing is).
    """

    certified: bool
    lower_bound: float
    method: str
    rows: np.ndarray
    columns: int
    row_exponents: np.ndarray
    column_exponents: np.ndarray
    max_radius: float
    sigma_float: float
    radius_norm: float
    seconds: float
    reason: str
    statement: str = field(default="")

    def to_dict(self) -> dict:
        """JSON-ready dictionary (row indices as a list)."""
        return {
            "certified": self.certified,
            "lower_bound": _json_float(self.lower_bound),
            "method": self.method,
            "rows": int(self.rows.size),
            "row_indices": [int(r) for r in self.rows],
            "columns": self.columns,
            "row_exponents": [int(e) for e in self.row_exponents],
            "column_exponents": [int(e) for e in self.column_exponents],
            "max_radius": _json_float(self.max_radius),
            "sigma_float": _json_float(self.sigma_float),
            "radius_norm": _json_float(self.radius_norm),
            "seconds": self.seconds,
            "reason": self.reason,
            "statement": self.statement,
        }


def _json_float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


# ------------------------------------------------------------------------------------------
# progress


#: Work of one (probe, term) pair of the a-priori enclosure and of the Arb one, in flops of
#: the linear algebra (a score's 2 d flops come on top): the exponential, the logarithm and
#: the error terms cost about as much as ENCLOSURE_FLOPS flops of the factorisations (the
#: enclosure took 45% of the certificate at N = 1000 and 4000, d = 16); an Arb pair about
#: 1.5 us. These weights only shape the progress (its ETA), never the certificate.
ENCLOSURE_FLOPS, ARB_FLOPS = 350, 20000


def certificate_flops(rows: int, columns: int, terms: int, d: int, arb: bool = False) -> dict:
    """The work of :func:`certify_independence` on ``rows`` x ``columns`` (N + d + 1), with
    ``terms`` atoms and components in all, by step (flops; the enclosure's pairs at
    ENCLOSURE_FLOPS or ARB_FLOPS each): the entries, the scalings (a few passes over the
    matrix), R^-1 by Cholesky QR (M n^2 + 2/3 n^3), C = A R^-1 and C^T C (2 M n^2), and the
    bound on ||R^-1||_2 (Y^T Y, n^3; Lanczos; one Cholesky, n^3 / 3)."""
    M, n = float(rows), float(columns)
    per = ARB_FLOPS if arb else ENCLOSURE_FLOPS + 2 * d
    return {"enclosure": M * terms * per, "scaling": 12 * M * n,
            "inverse": M * n * n + 2 * n**3 / 3, "orthogonality": 2 * M * n * n,
            "norm": 4 * n**3 / 3 + 80 * n * n}


# ------------------------------------------------------------------------------------------
# sigma_min of a float matrix


#: ||C~^T C~ - I|| bound above which the Cholesky-QR inverse factor Y is refined once more
#: (CholeskyQR2): sqrt(1 - eta) then costs at most 2^-21 of the certified bound.
REFINE_ETA = 2.0**-20


def _inverse_factor(A: np.ndarray, At: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Y ~ R^-1 for the R factor of A (M x n), upper triangular, and how it was obtained.

    Cholesky QR first: R = chol(fl(A^T A)) (one symmetric rank-k update at BLAS-3 speed,
    M n^2 flops); when the Gram matrix is not numerically positive definite (kappa_2(A) beyond
    about u^-1/2) a Householder QR (2 M n^2 flops at panel speed). Either is an approximation
    only: the bound of :func:`sigma_min_lower_bound` holds for any Y, the factorisation affects
    its tightness and cost, never its validity. Returns (None, reason) when R is singular to
    working precision.
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore"), lapack_threads():
        G = scipy.linalg.blas.dsyrk(1.0, At, trans=0)  # upper triangle of fl(A^T A)
        R, info = scipy.linalg.lapack.dpotrf(G, lower=0, clean=1, overwrite_a=1)
    how = "Cholesky QR"
    if info != 0 or not np.all(np.isfinite(np.diagonal(R))):
        del G, R
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


def sigma_min_lower_bound(A: np.ndarray, work: Work | None = None) -> tuple[float, str]:
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
    bound (~ 1.3 n^3), plus 2 M n^2 + n^3 per refinement.
    """
    A = np.asarray(A, dtype=np.float64)
    M, n = A.shape
    if M < n:
        return 0.0, f"fewer rows ({M}) than columns ({n})"
    if not np.all(np.isfinite(A)):
        return float("nan"), "the float matrix has non-finite entries"
    A = np.ascontiguousarray(A)
    At = A.T  # Fortran-ordered view: BLAS takes it without a copy
    Y, how = _inverse_factor(A, At)
    if work is not None:
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
# Entry point


def certify_independence(distributions: Sequence[Distribution], z: np.ndarray, *,
                         centre: np.ndarray | None = None, rows=None, row_weights=None,
                         budget: int = DEFAULT_BUDGET, method: str = "auto",
                         progress: Progress | None = None, enclosure=None) -> Certificate:
    """Prove that the LSE functions are linearly independent modulo affine functions.

    Certifies sigma_min(A) >= lower_bound > 0 for the exact matrix
    A = diag(2^r) [1, Z, F] diag(2^k), F[m, i] = LSE_i(z_m) - <z_m, c_i>, on the probe rows
    ``rows`` (module docstring; SPEC §3a).

    Parameters
    ----------
    distributions : sequence of N Discrete / UniformBox / GaussianMixture on R^d; their stored
        float64 parameters are the exact values certified.
    z : (M, d) probes (exact doubles).
    centre : (d,) or (N, d), optional
        Shift c (or c_i per distribution) subtracted inside the enclosure; any value is valid,
        a value near each distribution's mean keeps |F| and its radii small.
    rows : int array, optional
        Probe indices to use (all by default); needs at least N + d + 1.
    row_weights : (M,) positive, optional
        Row weights, rounded down to powers of two 2^r (exact scaling).
    budget : int
        ``method="auto"`` uses Arb when M' * (atoms + components (1 + d) + d per box) <= budget
        and python-flint is installed, else the a-priori bound.
    method : "auto", "arb" or "a-priori"
    progress : callable(str), optional
        Receives ``rigorous certificate`` updates with ``done`` / ``total`` in millions of
        flops (:func:`certificate_flops`) as the enclosure's blocks and each factorisation end.
    enclosure : (mid, rad) of shape (M', N), optional
        Entry enclosures already proved (:func:`ntkcheck.injectivity.reuse.pass_enclosure`),
        used instead of the a-priori ones when that method is chosen.

    Returns
    -------
    Certificate
    """
    t0 = time.perf_counter()
    if method not in ("auto", "arb", "a-priori"):
        raise InputError(f"unknown method {method!r}; choose 'auto', 'arb' or 'a-priori'",
                         field="method")
    dists, z, centres, rows, row_exp = _validate(distributions, z, centre, rows, row_weights)
    N, d = len(dists), z.shape[1]
    n_cols = N + d + 1
    Mp = rows.size
    chosen = method if method != "auto" else ("arb" if Mp * _work(dists) <= budget else "a-priori")
    if chosen == "arb" and not _have_flint():
        if method == "arb":
            raise InputError(_NO_FLINT, field="method")
        chosen = "a-priori"

    def result(certified, lower, reason, col_exp=np.zeros(n_cols, int), max_rad=np.nan,
               sig=np.nan, radn=np.nan):
        statement = _statement(certified, lower, chosen, Mp, N, d)
        return Certificate(bool(certified), float(lower), chosen, rows, n_cols, row_exp,
                           np.asarray(col_exp, int), float(max_rad), float(sig), float(radn),
                           time.perf_counter() - t0, reason, statement)

    if Mp < n_cols:
        return result(False, np.nan, f"{Mp} probe rows < N + d + 1 = {n_cols} columns: "
                      "add probes")
    zs = z[rows]
    terms = _work(dists)
    steps = certificate_flops(Mp, n_cols, terms, d, arb=chosen == "arb")
    work = Work(progress, "rigorous certificate", sum(steps.values()), unit=1e6)
    if chosen == "arb":
        fmid, frad = _enclose_arb(dists, zs, centres)
        work.add(steps["enclosure"])
    elif enclosure is not None:
        fmid, frad = enclosure
        work.add(steps["enclosure"])
    else:
        per = steps["enclosure"] / max(Mp * terms, 1)
        with np.errstate(over="ignore", invalid="ignore"):
            fmid, frad = _enclose_apriori(dists, zs, centres, tick=lambda k: work.add(k * per))
    if not (np.all(np.isfinite(fmid)) and np.all(np.isfinite(frad))):
        return result(False, np.nan, "an LSE entry could not be enclosed in float64 range")
    original = np.column_stack([np.ones(Mp), zs, fmid])
    del fmid
    col = np.empty(n_cols)
    step = max(1, (1 << 20) // max(Mp, 1))  # column blocks: temporaries of ~2^20 entries
    with np.errstate(over="ignore", under="ignore"):
        for j0 in range(0, n_cols, step):
            col[j0:j0 + step] = _norm_up(np.ldexp(original[:, j0:j0 + step], row_exp[:, None]),
                                         axis=0)
    _, e = np.frexp(np.where((col > 0) & np.isfinite(col), col, 1.0))
    col_exp = -(e - 1)  # any power of two is valid; this one brings column norms into [1, 2)
    # scale in column blocks (temporaries stay small); 2^k scaling is exact unless the result
    # overflows (caught below) or is subnormal (checked by scaling back)
    A = np.empty_like(original)
    rad = frad
    inexact = 0
    with np.errstate(over="ignore", under="ignore"):
        for j0 in range(0, n_cols, step):
            j1 = min(n_cols, j0 + step)
            ex = row_exp[:, None] + col_exp[None, j0:j1]
            blk = np.ldexp(original[:, j0:j1], ex)
            A[:, j0:j1] = blk
            small = np.abs(blk) < _TINY
            inexact += int(np.count_nonzero(np.ldexp(blk[small], -ex[small])
                                            != original[:, j0:j1][small]))
            f0, f1 = max(j0, d + 1), j1
            if f1 > f0:  # radii of the F columns, rounded up (<= 1 ulp lost when subnormal)
                fr = rad[:, f0 - d - 1:f1 - d - 1]
                fr[...] = np.nextafter(np.ldexp(fr, ex[:, f0 - j0:]), np.inf)
    del original
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(rad))):
        return result(False, np.nan, "overflow when scaling the matrix", col_exp)
    # each inexactly scaled entry is within 2^-1074 of its exact value
    radn = float(_up(_norm_up(rad) + np.sqrt(inexact) * 2 * _ETA, 2))
    max_rad = float(rad.max()) + (2 * _ETA if inexact else 0.0) if rad.size else 0.0
    del rad, frad  # M' x n numbers fewer while the factorisation runs
    work.add(steps["scaling"])
    sig, note = sigma_min_lower_bound(A, work)
    if not np.isfinite(sig):
        return result(False, np.nan, note, col_exp, max_rad, sig, radn)
    lower = sig - radn
    lower = float(np.nextafter(lower, -np.inf))
    if lower > 0:
        reason = f"{note}; entry radii ||Rad||_F <= {radn:.3g}, so sigma_min(A) >= {lower:.6g}"
    else:
        reason = (f"not certified: {note}; entry radii ||Rad||_F <= {radn:.3g} "
                  f"(lower bound {lower:.3g} <= 0)")
    return result(lower > 0, lower, reason, col_exp, max_rad, sig, radn)


def _statement(certified: bool, lower: float, method: str, rows: int, N: int, d: int) -> str:
    how = ("Arb ball arithmetic" if method == "arb" else
           f"a float64 error bound with all orders, assuming libm exp/log/log1p within "
           f"{LIBM_ULPS} ulps")
    if not certified:
        return (f"Nothing is proved: no positive lower bound on sigma_min of the "
                f"{rows} x {N + d + 1} matrix [1, Z, F] was found ({how}).")
    return (f"For the stored binary64 parameters and the {rows} probes taken as exact reals, "
            f"the {rows} x {N + d + 1} matrix [1, Z, F] with F[m, i] = LSE_i(z_m) - <z_m, c_i> "
            f"(power-of-two row/column scaling) has smallest singular value >= {lower:.3g} > 0 "
            f"(entries by {how}; verification in IEEE float64 with Higham's gamma_k bounds), so "
            f"the {N} LSE functions are linearly independent modulo affine functions.")


#: Bytes the certificate holds per entry of its M' x (N + d + 1) matrix and per entry of its
#: (N + d + 1)^2 factors, besides the enclosure's block temporaries
#: (:data:`ntkcheck.injectivity.certify.SCRATCH_BYTES`). At most three M' x n arrays live at
#: once (mid, rad and [1, Z, F]; then rad, [1, Z, F] and A; then A and C = A Y, or A and the
#: Householder QR's copy): tracemalloc measured 23 bytes per entry beyond the scratch
#: (N = 1500, d = 16, M' = 3100, both factorisation paths); 32 leaves a third for the
#: allocator.
CERT_BYTES_PER_ENTRY = 4 * 8

CERT_BYTES_PER_SQUARE = 3 * 8


def rigorous_certificate(dataset: Dataset, feats: FeatureMatrix, geom, seed: int,
                         max_memory: int | None = None, progress: Progress | None = None
                         ) -> dict:
    """The rigorous lower bound on sigma_min of :mod:`ntkcheck.injectivity.certify` on the
    test's probes (when the data's hull is lower-dimensional, each probe also gets a random
    component along the complement of the hull, of its own scale, so that [1, Z] has full
    column rank; any probes are valid for the certificate).

    When the features were streamed, its memory (about ``CERT_BYTES_PER_ENTRY`` M' n +
    ``CERT_BYTES_PER_SQUARE`` n^2 bytes, n = N + d + 1) must fit in what ``max_memory``
    (default: half the machine) leaves beside what the process already holds (its resident
    size: the tokens and their packed copies, the streamed R factor, the probes): it runs on
    the first M' rows that fit (dropping probe rows only lowers singular values, so the
    certificate stays valid), at least n + n / 4 of them; if even those do not fit it is not
    attempted (``certified`` False, with the reason)."""
    z = feats.probes.z
    extra = geom.complement.shape[1] if geom.complement is not None else 0
    if extra:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCE27]))
        g = rng.standard_normal((len(z), extra)) * feats.probes.scale[:, None]
        z = z + g @ geom.complement.T
    rows = None
    if feats.perp is None:
        limit = default_max_memory() if max_memory is None else int(max_memory)
        held = resources.resident_bytes()
        n = len(dataset) + z.shape[1] + 1
        fit = int((limit - held - CERT_BYTES_PER_SQUARE * n * n - SCRATCH_BYTES)
                  // (CERT_BYTES_PER_ENTRY * n))
        need = n + -(-n // 4)
        if fit < min(need, len(z)):
            need_bytes = (CERT_BYTES_PER_ENTRY * need * n + CERT_BYTES_PER_SQUARE * n * n
                          + SCRATCH_BYTES)
            return {"certified": False, "method": "rigorous certificate",
                    "reason": f"not attempted: it needs about {format_bytes(need_bytes)} for "
                              f"{need} probe rows, over the {format_bytes(max(limit - held, 0))}"
                              f" the memory limit of {format_bytes(limit)} leaves beside the "
                              f"{format_bytes(held)} already held"}
        if fit < len(z):
            rows = np.arange(fit)
    enclosure = None
    if not extra and feats.values is not None and feats.source is not None:
        # the features pass's values with a bound on the algorithm that computed them
        rad = pass_enclosure(dataset.distributions, feats.source.distributions, z,
                             feats.centres, feats.values)
        enclosure = None if rad is None else (feats.values, rad)
    cert = certify_independence(dataset.distributions, z, centre=feats.centres,
                                row_weights=1.0 / feats.probes.scale, rows=rows,
                                progress=progress, enclosure=enclosure)
    out = cert.to_dict()
    out.pop("row_indices", None)  # the probes are reproducible from the seed; keep JSON small
    out["enclosure"] = cert.method
    out["method"] = "rigorous certificate"
    out["complement_probes"] = bool(extra)
    return out
