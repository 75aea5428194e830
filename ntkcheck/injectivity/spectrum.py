"""Singular values of F_perp and their round-off levels: the spectrum of the rank decision
(SPEC §3 steps 4-6, §3a).

The matrix is the column-normalised F_perp (spectral norm <= sqrt(N)). Round-off is tracked
*per column* (SPEC §3a): column i carries a first-order bound beta_i and a typical level eta_i
(:func:`ntkcheck.injectivity.features.feature_matrix`, normalised), so one badly conditioned or
near-affine column can neither hide nor invent relations among the others.

``tolerance`` (delta)
    first-order bound on || computed F_perp - exact F_perp ||_2: the Frobenius norm of the
    beta_i plus the backward error of the SVD, 4 N u sqrt(N). sigma_min > delta is the fast
    path's test of full column rank; what is printed as ``certified`` is proved by
    :mod:`ntkcheck.injectivity.certify`.
``noise`` of a vector c (unit, normalised coordinates)
    tau(c) = NOISE_SAFETY * (sum_i |c_i| eta_i + N u): the round-off level of F_perp c built
    from its own columns. A singular value sigma_j <= tau(v_j) is indistinguishable from 0.
``gap``
    :data:`GAP` = 100: a numerical verdict needs every other singular value >= GAP * tau(v_j),
    otherwise it lies in the grey zone and the verdict is ``inconclusive``.

Partial spectrum (large N)
    Every singular value of an N x N triangle costs a bidiagonalisation (8/3 N^3 flops at
    level-2 BLAS speed: about 5 s at N = 3000 here, 11-17 s at N = 4000, 25 min at
    N = 20000). Beyond :data:`FULL_SPECTRUM_MAX_N` columns (or when asked for:
    ``analyze(spectrum="partial")``) the test computes only the :data:`PARTIAL_COUNT`
    smallest singular triplets of R, by block inverse subspace iteration (two triangular
    solves, or two products with R^-1, with twice that many right-hand sides per product,
    O(N^2) each; Rayleigh-Ritz, a Chebyshev filter and locking of settled directions:
    :func:`ntkcheck.injectivity.iteration.smallest_singular_triplets`), and the largest
    singular value by block Krylov iteration. The decision then uses these values
    only; the uncomputed ones lie above the computed block. While the largest computed value is
    below GAP x tau_max (a bound of every round-off level), the uncomputed ones could be small
    too (more dependencies than triplets: a basis of part of the null space yields no
    relation), so the iteration runs again on the same triangle with four times as many
    triplets, up to :data:`TAIL_COUNT_MAX` (:func:`complete_tail`). Ritz values are upper
    bounds of the singular values they approximate, which is why a partial spectrum never
    certifies anything by itself: ``injective`` still needs the rigorous certificate (or, as
    numerical evidence, a second probe draw), and every relation is re-checked independently
    before it is printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import scipy.linalg

from .._threads import lapack_threads
from ..progress import Progress, ProgressUpdate
from .features import FeatureMatrix
from .geometry import NOISE_SAFETY
from .iteration import (EXPLICIT_INVERSE_MIN_N, PARTIAL_MAX_ITER, largest_singular_value,
                        smallest_singular_triplets)
from .triangle import (GRAM_TRIANGLE_MARGIN, GramTriangle, gram_singular_values,
                       gram_triangle)
from .triangle import explicit_inverse as _explicit_inverse

__all__ = ["Spectrum", "ColumnScores", "svd_spectrum", "partial_spectrum",
           "smallest_singular_triplets", "compute_spectrum", "largest_singular_value",
           "classify_singular_values", "complete_tail",
           "FULL_SPECTRUM_MAX_N", "PARTIAL_COUNT", "TAIL_COUNT_MAX", "PARTIAL_MAX_ITER",
           "NOISE_SAFETY", "GAP"]

GAP = 100.0
_U = np.finfo(float).eps / 2
#: :meth:`Spectrum.scores` inverts R when sigma_min / sigma_max is at least this, else uses the SVD.
SCORE_TRIANGULAR_COND = 1e-8
#: Largest N whose dense test computes every singular value; beyond it, the partial spectrum.
FULL_SPECTRUM_MAX_N = 3000
#: Singular triplets computed by the partial spectrum (the smallest ones).
PARTIAL_COUNT = 32
#: Most singular triplets :func:`complete_tail` widens a partial spectrum to (memory: 2 of
#: them per column of the iteration's N x 2 count blocks).
TAIL_COUNT_MAX = 256
#: Most trailing directions :meth:`Spectrum.tail_levels` computes by block inverse iteration
#: (beyond, the full SVD).
TAIL_VECTORS_MAX = 64


@dataclass(frozen=True)
class ColumnScores:
    """Distances of the unit columns of F_perp to the span of the others (:meth:`Spectrum.scores`).

    Attributes
    ----------
    distance : (N,) dist_i in [0, 1]
    factor : (N, r) W with G^+ = W W^T on the complement of the exact null space
    null : (N, k) orthonormal basis of the exact null space (k = 0 on the triangular path)
    method : "triangular" (R^{-1}) or "svd"
    """

    distance: np.ndarray
    factor: np.ndarray
    null: np.ndarray
    method: str

    def approximation(self, i: int) -> np.ndarray:
        """x (N,) with x_i = 1 minimising || F_perp x ||: a_i = -sum_{j != i} x_j a_j + residual.

        For an exactly dependent column, the projection of e_i on the null space (a relation
        through column i), scaled to x_i = 1.
        """
        if self.distance[i] == 0.0 and self.null.shape[1]:
            g = self.null @ self.null[i]
        else:
            g = self.factor @ self.factor[i]
        return g / g[i] if g[i] != 0 else np.eye(len(g))[i]


@dataclass(frozen=True)
class Spectrum:
    """Singular values (descending) of F_perp with the thresholds of this probe draw.

    ``triangle`` is the R factor of F_perp = Q R (same singular values and right singular
    vectors), kept so that :meth:`right_vectors` costs one N x N SVD, only when needed.
    ``col_noise`` (eta_i) and ``col_bound`` (beta_i) are the per-column round-off levels.
    ``noise`` is the level of the worst unit vector (for display; decisions use per-vector
    levels, :meth:`vector_noise`).
    """

    singular_values: np.ndarray
    tolerance: float
    noise: float
    triangle: np.ndarray
    col_noise: np.ndarray | None = None
    col_bound: np.ndarray | None = None
    #: partial spectrum only: the right singular vectors of ``singular_values`` (N, count),
    #: the number of columns N and an estimate of the largest singular value
    vectors: np.ndarray | None = None
    columns: int | None = None
    largest: float | None = None
    #: R^-1 when the partial spectrum computed it (well-conditioned R, :func:`_explicit_inverse`):
    #: :meth:`scores` uses it instead of inverting R again
    inverse: np.ndarray | None = field(default=None, repr=False)
    #: ||R^T R||_F^2 when the triangle came from the Gram matrix (its Frobenius norm squared)
    gram_frobenius_sq: float | None = None

    @property
    def partial(self) -> bool:
        return self.vectors is not None

    @property
    def size(self) -> int:
        """N, the number of columns (``singular_values`` holds fewer on a partial spectrum)."""
        return int(self.columns) if self.columns is not None else self.singular_values.shape[0]

    def _floor(self) -> float:
        return NOISE_SAFETY * self.size * _U

    def vector_noise(self, vectors: np.ndarray) -> np.ndarray:
        """tau(c) for each column c of ``vectors`` (N, k) (normalised coordinates)."""
        eta = self.col_noise if self.col_noise is not None else np.zeros(vectors.shape[0])
        return NOISE_SAFETY * (np.abs(vectors).T @ eta) + self._floor()

    def max_vector_noise(self) -> float:
        """An upper bound of tau(c) over all unit vectors c: NOISE_SAFETY ||eta||_2 + the floor
        (Cauchy-Schwarz, sum_i |c_i| eta_i <= ||eta||_2). A singular value >= GAP times it is
        neither at the round-off level nor in the grey zone, whatever its direction."""
        eta = self.col_noise if self.col_noise is not None else np.zeros(1)
        return float(NOISE_SAFETY * np.linalg.norm(eta) + self._floor())

    def tail_levels(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(V_tail, tau, offset): the per-vector round-off levels the decision needs, without
        every singular vector.

        Only the trailing singular values below GAP x :meth:`max_vector_noise` can be at the
        round-off level or in the grey zone (the others clear GAP tau(v) for any v); their
        right vectors V_tail (N, m) are those of a partial spectrum, the block inverse
        iteration of :func:`smallest_singular_triplets` when m <= :data:`TAIL_VECTORS_MAX`
        (O(N^2) per step), else the full SVD's. ``tau`` (one per singular value) is tau(v_j)
        on that tail and the bound elsewhere; column j of V_tail is singular value
        ``offset + j``.
        """
        sv = self.singular_values
        p, N = sv.shape[0], self.size
        bound = self.max_vector_noise()
        m = int(np.sum(sv < GAP * bound))  # a suffix: sv is descending
        tau = np.full(p, bound)
        if m == 0:
            return np.zeros((N, 0)), tau, p
        V = self.trailing_right_vectors(m)
        tau[p - m:] = self.vector_noise(V)
        return V, tau, p - m

    def weighted_smallest(self) -> float:
        """sigma_min of F_perp diag(1 / beta) (columns scaled to unit round-off bound), or 0.

        The R factor of A D is R D, so this costs one N x N singular value computation. Its
        perturbation has Frobenius norm <= sqrt(N) + the SVD's backward error: sigma_min above
        that is the per-column version of sigma_min > delta (no column's error inflates the
        others' threshold).
        """
        beta = self.col_bound
        if beta is None or np.any(beta <= 0):
            return 0.0
        if self.partial:  # an estimate (a gate for the rigorous certificate, nothing more)
            sv, _ = smallest_singular_triplets(self.triangle, 4, col_scale=1.0 / beta)
            return float(sv[-1])
        sv = scipy.linalg.svdvals(self.triangle / beta[None, :], check_finite=False)
        return float(sv[-1]) if sv.shape[0] == beta.shape[0] else 0.0

    @cached_property
    def triangle_frobenius_sq(self) -> float:
        """||R||_F^2 = tr(R^T R), one pass over R (no N x N temporary), computed once: the
        summary's trace and :meth:`weighted_upper_bound` both read it."""
        R = self.triangle
        return float(np.einsum("ij,ij->", R, R))

    def weighted_upper_bound(self) -> float:
        """An upper bound of sigma_min(F_perp diag(1 / beta)) from the smallest right vector v
        already computed (no iteration): with x = beta v, || R diag(1 / beta) x || / ||x|| =
        ||R v|| / ||beta v||, and ||R v|| <= ||fl(R v)|| + gamma_(N+1) ||R||_F ||v|| (the rounding
        of the triangular product: || |R| |v| || <= ||R||_F ||v||). inf when it does not apply
        (no vector, no bounds)."""
        beta = self.col_bound
        if beta is None or np.any(beta <= 0) or self.vectors is None:
            return np.inf
        v = np.asarray(self.vectors[:, -1], dtype=float)
        R = np.asarray(self.triangle, dtype=float)
        # R v without copying R: a C-ordered R is the F-ordered lower triangle R^T
        Rv = (scipy.linalg.blas.dtrmv(R.T, v, lower=1, trans=1) if R.flags.c_contiguous
              else scipy.linalg.blas.dtrmv(np.asfortranarray(R), v))
        N = v.shape[0]
        gamma = (N + 1) * _U / (1 - (N + 1) * _U)
        top = (float(np.linalg.norm(Rv))
               + gamma * np.sqrt(self.triangle_frobenius_sq) * float(np.linalg.norm(v)))
        return top * (1 + 4 * _U) / (float(np.linalg.norm(beta * v)) * (1 - 4 * _U))

    @property
    def null_dim(self) -> int:
        """Number of singular values at round-off level (<= noise)."""
        return int(np.sum(self.singular_values <= self.noise))

    @property
    def smallest(self) -> float:
        return float(self.singular_values[-1]) if self.singular_values.size else 0.0

    def smallest_right_vector(self) -> np.ndarray:
        """Right singular vector of the smallest singular value: on a partial spectrum the one
        computed, else by block inverse iteration on R (:func:`smallest_singular_triplets`
        with 4 triplets and 8 vectors: two triangular solves with 8 right-hand sides per step;
        an exactly singular R yields its null direction). When the smallest values are
        (nearly) equal, any unit vector of their span may be returned."""
        if self.partial:
            return np.array(self.vectors[:, -1])
        R = np.asarray(self.triangle, dtype=float)
        N = self.singular_values.shape[0]
        if R.shape != (N, N) or N <= 8:  # fewer probes than columns, or tiny: the full SVD
            return self.right_vectors()[:, -1]
        return smallest_singular_triplets(np.asfortranarray(R), 4, inverse=self.inverse)[1][:, -1]

    def trailing_right_vectors(self, m: int) -> np.ndarray:
        """(N, m) orthonormal right vectors of the m smallest singular values (m >= 1): those
        of a partial spectrum, the block inverse iteration of :func:`smallest_singular_triplets`
        when m <= :data:`TAIL_VECTORS_MAX` (O(N^2) per step), else the full SVD's. Where
        values coincide only the span is determined."""
        p, N = self.singular_values.shape[0], self.size
        R = self.triangle
        if self.partial:
            return np.asarray(self.vectors)[:, p - m:]
        if m <= TAIL_VECTORS_MAX and N > 2 * m and R.shape == (N, N):
            return smallest_singular_triplets(np.asfortranarray(R), m, inverse=self.inverse)[1]
        return self.right_vectors()[:, p - m:]

    def scores(self) -> "ColumnScores":
        """Distance of each column of F_perp (unit columns) to the span of the other columns.

        With F_perp = Q R and G = R^T R, for a column i outside every exact dependency

            dist_i = min_{x : x_i = 1} || F_perp x || = 1 / sqrt((G^+)_{ii})
                   = 1 / || row i of R^{-1} ||   (R invertible),

        in [0, 1] (columns have norm 1; 0 = exactly dependent). sigma_min <= dist_i and
        min_i dist_i <= sqrt(N) sigma_min. The vector x attaining the minimum, scaled so that
        x_i = 1, is G^+ e_i / (G^+)_{ii}: a_i ~ -sum_{j != i} x_j a_j is the best approximation of
        column i by the others.

        When sigma_min >= :data:`SCORE_TRIANGULAR_COND` * sigma_max this costs one triangular
        inverse of R (N^3 / 3 flops, no second QR; ``factor`` = R^{-1}, G^{-1} = factor
        factor^T). Otherwise R^{-1} would be inaccurate or overflow and the SVD R = U S V^T is
        used: the directions with sigma_j at the round-off level of their own direction
        (:meth:`vector_noise`, as in the decision) are the exact null space ``null`` (N, k); a
        column with a non-negligible entry there (row norm > sqrt(u)) is exactly dependent,
        dist_i = 0; the others use G^+ = V_r S_r^{-2} V_r^T (``factor`` = V_r S_r^{-1}).
        """
        if not self.has_scores():
            raise ValueError("column scores of a partial spectrum need a well-conditioned R "
                             "(sigma_min >= SCORE_TRIANGULAR_COND sigma_max); use the full "
                             "spectrum")
        R = np.asarray(self.triangle, dtype=float)
        N = self.size
        if N == 0:
            return ColumnScores(np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0)), "empty")
        if self._well_conditioned():
            W = self.inverse
            if W is None:
                with lapack_threads():  # R^-1 (upper): N^3 / 3 flops
                    W, _ = scipy.linalg.lapack.dtrtri(np.asfortranarray(R), lower=0)
            dist = 1.0 / np.sqrt(np.einsum("ij,ij->i", W, W))
            return ColumnScores(np.minimum(dist, 1.0), W, np.zeros((N, 0)), "triangular")
        _, s, vt = scipy.linalg.svd(R, full_matrices=True, check_finite=False,
                                    lapack_driver="gesdd")
        V = vt.T
        s = np.concatenate([s, np.zeros(N - s.shape[0])])[:N]
        null = s <= self.vector_noise(V)
        V0, Vr, sr = V[:, null], V[:, ~null], s[~null]
        W = Vr / sr[None, :]
        dependent = np.linalg.norm(V0, axis=1) > np.sqrt(_U)
        with np.errstate(divide="ignore"):
            dist = np.where(dependent, 0.0, 1.0 / np.linalg.norm(W, axis=1))
        return ColumnScores(np.minimum(dist, 1.0), W, V0, "svd")

    def has_scores(self) -> bool:
        """Whether :meth:`scores` can be computed: always on a full spectrum; on a partial
        one when R is square and sigma_min >= :data:`SCORE_TRIANGULAR_COND` x the estimate of
        sigma_max (then R^-1 is accurate and gives every score without the SVD)."""
        return not self.partial or self._well_conditioned()

    def _well_conditioned(self) -> bool:
        """R square and sigma_min >= SCORE_TRIANGULAR_COND x sigma_max (its estimate on a
        partial spectrum): R^-1 is then accurate."""
        sv = self.singular_values
        top = float(self.largest or 0.0) if self.partial else float(sv[0]) if sv.size else 0.0
        return (self.triangle.shape == (self.size, self.size) and self.smallest > 0
                and self.smallest >= SCORE_TRIANGULAR_COND * top)

    def right_vectors(self) -> np.ndarray:
        """(N, N) right singular vectors, columns in the order of ``singular_values``
        ((N, count) on a partial spectrum)."""
        if self.partial:
            return self.vectors
        N = self.singular_values.shape[0]
        _, _, vt = scipy.linalg.svd(self.triangle, full_matrices=True, check_finite=False,
                                    lapack_driver="gesdd")
        return vt.T[:, :N]


def _triangle(features: FeatureMatrix, progress: Progress | None = None) -> np.ndarray:
    """R factor of F_perp (QR when the features are in memory, else the streamed one); F_perp
    itself when it has fewer rows than columns. The QR is one LAPACK call: ``progress`` hears
    the stage ``QR`` start (its share of the time comes from the estimate)."""
    A = features.perp if features.perp is not None else features.triangle
    M, N = A.shape
    if features.perp is not None and M >= N:
        if progress is not None:
            progress(ProgressUpdate(f"QR ({M} x {N})", stage="QR"))
        with lapack_threads():
            return scipy.linalg.qr(A, mode="r", check_finite=False, overwrite_a=False)[0][:N]
    return A


def _levels(features: FeatureMatrix, N: int) -> tuple[float, float]:
    svd_err = 4 * N * _U * np.sqrt(N)
    delta = float(np.sqrt(np.sum(features.error_bound**2)) + svd_err)
    tau = float(NOISE_SAFETY * (np.sqrt(np.sum(features.error_typical**2)) + svd_err))
    return delta, tau


def _gram_route(features: FeatureMatrix, progress: Progress | None,
                keep: bool = False) -> GramTriangle | None:
    """The Cholesky factor of the Gram matrix as F_perp's triangle
    (:func:`ntkcheck.injectivity.triangle.gram_triangle`, ``keep``: with G itself), when the
    features are in memory with M >= N > EXPLICIT_INVERSE_MIN_N (it needs R^-1, which costs
    more than it saves below); None otherwise or when refused. ``progress`` hears ``QR``."""
    A = features.perp
    if A is None or not A.shape[0] >= A.shape[1] > EXPLICIT_INVERSE_MIN_N:
        return None
    if progress is not None:
        progress(ProgressUpdate(f"QR ({A.shape[0]} x {A.shape[1]}, by the Gram matrix)",
                                stage="QR"))
    return gram_triangle(A, keep=keep)


def _moved(delta: float, e: float, smallest: float) -> float:
    """``delta`` plus the worst-case move e / sigma_min of the Gram route's values, rounded up."""
    return float(np.nextafter(delta + float(np.nextafter(e / smallest, np.inf)), np.inf))


def svd_spectrum(features: FeatureMatrix, progress: Progress | None = None) -> Spectrum:
    """Singular values of F_perp via a QR factorisation (2 M N^2 + O(N^3) flops); when the
    features were streamed, of their R factor ``features.triangle`` (O(N^3)). ``progress``
    hears the stages ``QR`` and ``SVD`` start (each one LAPACK call).

    In memory above EXPLICIT_INVERSE_MIN_N columns, the Gram route first
    (:mod:`ntkcheck.injectivity.triangle`): R the Cholesky factor of fl(A^T A) (M N^2 flops
    at the GEMM rate) and the values sigma_i = sqrt(lambda_i(G)) (:func:`gram_singular_values`,
    a quarter of the bidiagonalisation's flops), kept when sigma_min^2 >= GRAM_TRIANGLE_MARGIN
    e_typ'; ``tolerance`` then also counts their worst-case move e' / sigma_min. Otherwise the
    Householder QR and the SVD of R, as without it."""
    tri = _gram_route(features, progress, keep=True)
    if tri is not None:
        N = tri.triangle.shape[1]
        if progress is not None:
            progress(ProgressUpdate(f"SVD ({N} x {N}, eigenvalues of the Gram matrix)",
                                    stage="SVD"))
        sv, e, e_typ = gram_singular_values(tri)
        if sv[-1] ** 2 >= GRAM_TRIANGLE_MARGIN * e_typ:
            delta, tau = _levels(features, N)
            return Spectrum(sv, _moved(delta, e, sv[-1]), tau, tri.triangle,
                            features.error_typical, features.error_bound, inverse=tri.inverse,
                            gram_frobenius_sq=tri.gram_sq)
    R = _triangle(features, progress)
    N = R.shape[1]
    if progress is not None:
        progress(ProgressUpdate(f"SVD ({N} x {N})", stage="SVD"))
    with lapack_threads():
        sv = scipy.linalg.svdvals(R, check_finite=False)
    if sv.shape[0] < N:  # fewer probes than distributions: the missing values are zeros
        sv = np.concatenate([sv, np.zeros(N - sv.shape[0])])
    delta, tau = _levels(features, N)
    return Spectrum(sv, delta, tau, R, features.error_typical, features.error_bound)


def partial_spectrum(features: FeatureMatrix, count: int = PARTIAL_COUNT,
                     seed: int = 0, progress: Progress | None = None) -> Spectrum:
    """The ``count`` smallest singular triplets of F_perp and an estimate of the largest
    (module docstring, "Partial spectrum"); the thresholds are those of :func:`svd_spectrum`.
    Needs at least as many probes as columns. ``progress`` hears ``QR`` start (in memory) and
    the iterations of ``partial spectrum`` (:func:`smallest_singular_triplets`).

    In memory, the triangle is first sought as the Cholesky factor of the Gram matrix
    (:mod:`ntkcheck.injectivity.triangle`: half the flops of the QR, at the GEMM rate), kept
    when sigma_min(R)^2 >= GRAM_TRIANGLE_MARGIN e_typ after the iteration; ``tolerance`` then
    also counts its worst-case move e / sigma_min(R) (>= |sigma_i(R) - sigma_i(A)|). Otherwise
    (the Gram matrix singular or R ill conditioned in floating point, or sigma_min too small)
    the Householder QR, as without it."""
    tri, extra, gram_sq, W = _gram_route(features, progress), None, None, None
    if tri is not None:
        R, W = tri.triangle, tri.inverse
        N = R.shape[1]
        sv, V = smallest_singular_triplets(R, min(count, N), seed=seed, progress=progress,
                                           inverse=W)
        if sv[-1] ** 2 >= GRAM_TRIANGLE_MARGIN * tri.e_typ:
            extra, gram_sq = (tri.e, sv[-1]), tri.gram_sq
        else:
            tri, W = None, None
    if tri is None:
        R = _triangle(features, progress)
        N = R.shape[1]
        if R.shape[0] < N:
            raise ValueError("a partial spectrum needs at least as many probes as columns")
        R = np.asfortranarray(R)  # (the streamed triangle already is: no copy)
        W = _explicit_inverse(R) if N > EXPLICIT_INVERSE_MIN_N else None
        sv, V = smallest_singular_triplets(R, min(count, N), seed=seed, progress=progress,
                                           inverse=W)
    delta, tau = _levels(features, N)
    delta = _moved(delta, *extra) if extra else delta
    return Spectrum(sv, delta, tau, R, features.error_typical, features.error_bound,
                    vectors=V, columns=N, largest=largest_singular_value(R, seed=seed),
                    inverse=W, gram_frobenius_sq=gram_sq)


def complete_tail(spec: Spectrum, progress: Progress | None = None,
                  most: int = TAIL_COUNT_MAX) -> Spectrum:
    """A partial spectrum widened until no singular value it leaves out can be at the
    round-off level or in the grey zone: while its largest computed value is below GAP x
    :meth:`Spectrum.max_vector_noise` (so the next ones, not computed, could be; e.g. more
    dependencies than triplets, whose relations a basis of only part of the null space cannot
    separate), the smallest triplets again, four times as many, on the same triangle (up to N
    and ``most``). A full spectrum, or a partial one whose values already reach that bound, is
    returned as it is."""
    N = spec.size
    while spec.partial:
        sv = spec.singular_values
        p = sv.shape[0]
        if p >= min(N, most) or not sv[0] < GAP * spec.max_vector_noise():
            break
        values, vectors = smallest_singular_triplets(
            spec.triangle, min(N, most, 4 * p), progress=progress, inverse=spec.inverse)
        spec = replace(spec, singular_values=values, vectors=vectors)
    return spec


def classify_singular_values(sv: np.ndarray, tau: np.ndarray) -> tuple[int, list[int]]:
    """(k, grey): k trailing singular values at the round-off level of their own directions
    (sigma_j <= tau_j), and the indices of the others that lie in the grey zone
    (sigma_j < GAP tau_j). ``sv`` descending, ``tau`` the per-vector levels in the same order."""
    k = 0
    for j in range(len(sv) - 1, -1, -1):
        if sv[j] > tau[j]:
            break
        k += 1
    grey = [j for j in range(len(sv) - k) if sv[j] < GAP * tau[j]]
    return k, grey


def compute_spectrum(feats: FeatureMatrix, partial: bool,
                     progress: Progress | None = None) -> Spectrum:
    """Every singular value of F_perp, or (``partial``) the smallest ones, as many as
    :func:`complete_tail` needs; ``progress`` hears the stages (``QR``, ``SVD``, ``partial
    spectrum`` with its steps)."""
    if partial:
        return complete_tail(partial_spectrum(feats, progress=progress), progress)
    return svd_spectrum(feats, progress)
