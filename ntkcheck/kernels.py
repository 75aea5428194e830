"""Query-key / value / full NTKs and the feature Gram matrix, with their spectra (SPEC §5).

With probes z ~ rho (the probe law of the rank test, SPEC §3.2) and the distributions' LSE
functions LSE_i:

=========  ============================================================  =========================
kernel     K_ij                                                          null space
=========  ============================================================  =========================
``qk``     E_rho <Hess LSE_i(z), Hess LSE_j(z)>_F  (query-key NTK)       dependencies (SPEC §2)
``value``  E_rho <grad LSE_i(z), grad LSE_j(z)>    (value NTK)           dependencies with affine
                                                                         part a constant (b = 0)
``full``   K^qk + K^value                          (queries and values)  as ``value``
``gram``   F_perp^T F_perp / M                     (feature Gram)        dependencies
=========  ============================================================  =========================

Coordinates. Everything is computed on the probes and whitening of the rank test
(:func:`ntkcheck.injectivity.probes.make_whitening`, :func:`ntkcheck.injectivity.probes.make_probes`): z = T s with
T = ``whitening.transform`` (d x r) and s ~ rho the multi-scale Gaussian law in whitened
coordinates. The kernels are those of the whitened data y' = T^T (y - m): in s-coordinates

    Hess_s LSE_i = T^T Hess_z LSE_i(T s) T,        grad_s LSE_i = T^T grad_z LSE_i(T s).

* The query-key NTK is affine invariant (Hessians ignore translations), so it has the same null
  space with or without whitening: exactly the dependencies of the rank test.
* The value NTK is invariant under linear maps but **not** under translations: its null space is
  {c : sum_i c_i LSE_i = constant}, and a translation y -> y - m turns a constant into
  -(sum_i c_i) <m, z>. Centring the gradients at the pooled mean would therefore *add* the
  relations with b = (sum_i c_i) m and *remove* e.g. Binomial(2, 1/2) / Bernoulli(1/2)
  (b = 0, sum c = -1). So the value NTK uses only the linear part T^T of the whitening, never the
  centre: K^V_ij = E <T^T g_i, T^T g_j> + <P g_i, P g_j> with g_i = grad_z LSE_i(T s) and P the
  orthogonal projector onto the complement of col(T). The second term is zero for
  full-dimensional data; when the pooled tokens lie in an affine subspace m + V not through 0,
  P g_i = P m for every i and every probe, so it adds |P m|^2 to every entry and keeps a relation
  with sum c != 0 (whose LSE combination then has a linear part (sum c) <P m, z>) out of the null
  space.
* The expectation is the Monte-Carlo average over the M probes (each probe weight 1/M; the
  scales are drawn round-robin, so rho is the equal mixture of N(0, sigma^2 I_r) over
  ``scales``). Unlike the rank test no row weighting is applied.

Feature Gram. G = F_perp^T F_perp / M with the *column-normalised* F_perp of the rank test (rows
weighted by 1/sigma, projected off span{1, s}), so that its eigenvalues are exactly
sigma_k^2 / M for the singular values sigma_k of SPEC §3; they are computed from that SVD (not
by ``eigh`` of G, which would lose the small ones to the squaring). Its eigenvectors are in
normalised coordinates; :attr:`KernelSpectrum.min_coefficients` converts back to the
distributions' own scale (divides by the column norms).

Tolerance (the "zero" level of the eigenvalues, from round-off only):

* ``qk``, ``value``, ``full``: K = X^T X / M is accumulated from L = M p feature entries per
  column (p = r(r+1)/2 packed Hessian entries, or r (+1) gradient entries). The computed entries
  satisfy |dK_ij| <~ sqrt(L) u sqrt(K_ii K_jj) (random-walk summation), whence
  ||dK||_2 <~ 2 sqrt(N L) u max_i K_ii; ``eigh`` adds a backward error N u lambda_max. The
  tolerance is :data:`NOISE_SAFETY` (10) times their sum. Errors of the Hessians / gradients
  themselves (relative eta, ~1e-13 at worst) shift a null eigenvalue only by O(eta^2) and are
  neglected.
* ``gram``: tau^2 / M with tau the round-off level of the rank test
  (:func:`ntkcheck.injectivity.spectrum.svd_spectrum`), so ``gram`` and the rank test count the same null space.

A kernel is *numerically positive definite* when lambda_min > tolerance; otherwise it is singular
to working precision (a dependency, or an ill-conditioning the probes cannot resolve). This is
evidence on one probe draw, not a certificate (``analyze`` certifies).

Summaries: ``condition_number`` = lambda_max / lambda_min (inf when lambda_min <= tolerance);
``effective_rank`` = (sum_k lambda_k)^2 / sum_k lambda_k^2 (participation ratio of the clipped
eigenvalues max(lambda, 0): N for a multiple of the identity, 1 for rank one, continuous in K);
``numerical_rank`` = number of eigenvalues above the tolerance.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from enum import Enum
from typing import Callable

import numpy as np
from scipy.linalg.blas import dsyrk

from .dataset import CHUNK_ELEMENTS, Dataset
from .distributions import Discrete
from .errors import InputError
from .injectivity.features import feature_matrix
from .injectivity.probes import ProbeSet, Whitening
from .meanfield._parallel import num_threads

__all__ = ["Kernel", "qk_kernel", "value_kernel", "full_kernel", "gram_kernel", "kernel_matrix",
           "parse_kernel", "KERNEL_DESCRIPTIONS", "NOISE_SAFETY"]

#: Safety factor between the typical round-off estimate and the zero level of the eigenvalues.
NOISE_SAFETY = 10.0
_U = np.finfo(float).eps / 2  # unit round-off


class Kernel(str, Enum):
    """The kernel choice of SPEC §5."""

    QK = "qk"
    VALUE = "value"
    FULL = "full"
    GRAM = "gram"


KERNEL_DESCRIPTIONS = {
    Kernel.QK: "query-key NTK  E<Hess LSE_i, Hess LSE_j>_F",
    Kernel.VALUE: "value NTK  E<grad LSE_i, grad LSE_j>",
    Kernel.FULL: "full NTK  (query-key + value)",
    Kernel.GRAM: "feature Gram  F_perp^T F_perp / M",
}


def parse_kernel(value: "str | Kernel") -> Kernel:
    """'qk' -> Kernel.QK, or an InputError naming the option and the valid choices."""
    if isinstance(value, Kernel):
        return value
    try:
        return Kernel(str(value).strip().lower())
    except ValueError:
        choices = ", ".join(k.value for k in Kernel)
        raise InputError(f"'{value}' is not a kernel; choose one of {choices}",
                         field="kernel") from None


# --------------------------------------------------------------------------------------------
# kernel matrices


def _packed_hessians(hess: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """(m, N, d, d) Hessians -> (m * r(r+1)/2, N) packed whitened entries.

    Frobenius products of symmetric matrices: <A, B>_F = sum_a A_aa B_aa + 2 sum_{a<b} A_ab B_ab,
    so the upper triangle with off-diagonal entries times sqrt(2) gives the same Gram matrix
    at half the cost.
    """
    m, N = hess.shape[:2]
    r = transform.shape[1]
    hs = np.matmul(np.matmul(transform.T, hess), transform)  # (m, N, r, r)
    iu, ju = np.triu_indices(r)
    packed = hs[:, :, iu, ju]  # (m, N, p)
    packed[:, :, iu != ju] *= np.sqrt(2.0)
    return packed.transpose(0, 2, 1).reshape(m * len(iu), N)


def _complement_projector(transform: np.ndarray) -> np.ndarray:
    """Orthogonal projector onto the complement of col(transform) in R^d."""
    d, r = transform.shape
    if r == 0:
        return np.eye(d)
    q, _ = np.linalg.qr(transform)
    return np.eye(d) - q @ q.T


#: Progress callback of the kernels: called with (probes done, probes in total).
Progress = Callable[[int, int], None]


def _syrk_update(K: np.ndarray, X: np.ndarray) -> None:
    """K += X^T X on the upper triangle of the Fortran-ordered (N, N) K, X (L, N), by BLAS dsyrk
    (half the flops of a GEMM); C- or Fortran-ordered X is passed without a copy."""
    if X.shape[0] == 0:
        return
    if X.flags.f_contiguous:
        dsyrk(1.0, X, beta=1.0, c=K, trans=1, lower=0, overwrite_c=1)
    else:  # X^T is a Fortran-ordered (N, L) array: K += X^T (X^T)^T
        dsyrk(1.0, np.ascontiguousarray(X).T, beta=1.0, c=K, trans=0, lower=0, overwrite_c=1)


def _from_upper(K: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle is that of K (C-ordered copy)."""
    upper = np.triu(K)
    return np.ascontiguousarray(upper + np.triu(K, 1).T)


def _pack_outer(A: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out[..., :] = packed upper triangle of a a^T for every row a = A[..., :] (r,): diagonal
    entries a_i^2, off-diagonal ones sqrt(2) a_i a_j (i < j), row-major (np.triu_indices order),
    so that <a a^T, b b^T>_F = <pack(a a^T), pack(b b^T)>. Contiguous slices, no gather."""
    r = A.shape[-1]
    off = 0
    for i in range(r):
        ai = A[..., i:i + 1]
        np.multiply(ai[..., 0], ai[..., 0], out=out[..., off])
        np.multiply(ai, A[..., i + 1:], out=out[..., off + 1:off + r - i])
        out[..., off + 1:off + r - i] *= _SQRT2
        off += r - i
    return out


_SQRT2 = float(np.sqrt(2.0))


def _pack_outer_rows(AT: np.ndarray, out: np.ndarray) -> np.ndarray:
    """:func:`_pack_outer` with the vector axis second: AT (B, r, m) -> out (B, p, m), the
    packed products of the columns AT[b, :, k]; every operation is a block of contiguous runs
    of length >= m (rows i, i+1..r-1 of the packed triangle)."""
    r = AT.shape[1]
    off = 0
    for i in range(r):
        ai = AT[:, i:i + 1]
        np.multiply(ai, ai, out=out[:, off:off + 1])
        np.multiply(ai, AT[:, i + 1:], out=out[:, off + 1:off + r - i])
        out[:, off + 1:off + r - i] *= _SQRT2
        off += r - i
    return out


def _discrete_qk(dataset: Dataset, transform: np.ndarray, s: np.ndarray, budget: int,
                 K: np.ndarray, progress: Progress | None, done: int, total: int) -> None:
    """Add sum_m <H_i(s_m), H_j(s_m)>_F to the upper triangle of K for discrete laws.

    Works in whitened coordinates from the start: with y' = T^T (y - ybar_i) (each law's atoms
    centred on their untilted mean ybar_i; the tilted covariance ignores translations), the
    Hessian of s -> LSE_i(T s) is the covariance of y' under the weights
    p_a(s) = softmax_a(<s, y'_a> + log w_a). In packed coordinates (upper triangle, off-diagonal
    entries times sqrt 2, so that Frobenius products are dot products), per chunk of m probes and
    block of B laws:

        P (B, n, m) softmax weights,  mc = Y'^T P (B, r, m),  O (B, n, p) = pack(y'_a y'_a^T),
        H (B, p, m) = O^T P - pack(mc mc^T)          (batched GEMMs),

    then K += H H^T over the m p packed entries of the chunk (BLAS dsyrk, all N laws at once).
    Cost: O(M N n p) for H and O(M p N^2 / 2) for the Gram update (p = r (r + 1) / 2), the
    latter dominant once N > 2 n; memory: H (N m p <= 8 budget entries), O for all laws (N n p
    entries; rebuilt per block when that exceeds ``_OUTER_CAP``) and K.
    """
    dists = dataset.distributions
    N, r = len(dists), transform.shape[1]
    n = max(len(d.weights) for d in dists)
    Y = np.zeros((N, n, r))
    logw = np.full((N, n), -np.inf)
    for i, dist in enumerate(dists):
        k = len(dist.weights)
        Y[i, :k] = (dist.atoms - dist.weights @ dist.atoms) @ transform
        logw[i, :k] = np.log(dist.weights)
    p = r * (r + 1) // 2
    M = s.shape[0]
    step = max(1, min(M, 8 * budget // max(N * p, 1)))
    block = max(1, min(N, budget // max(n * max(p, step), 1)))
    blocks = [(b0, min(N, b0 + block)) for b0 in range(0, N, block)]
    # the packed outer products once, transposed (N, p, n) (O(N n p) memory; per block beyond
    # _OUTER_CAP), and the atoms transposed (N, r, n): every GEMM below is (p or r) x n x m
    Yt = np.ascontiguousarray(Y.transpose(0, 2, 1))

    def outer_t(b0: int, b1: int) -> np.ndarray:
        return _pack_outer(Y[b0:b1], np.empty((b1 - b0, n, p))).transpose(0, 2, 1)

    Ot_all = None
    if N * n * p <= _OUTER_CAP:
        Ot_all = np.empty((N, p, n))
        for b0, b1 in blocks:
            Ot_all[b0:b1] = outer_t(b0, b1)

    def fill(H: np.ndarray, b0: int, b1: int, scT: np.ndarray) -> None:
        # every matmul operand C-contiguous: numpy hands those to BLAS
        P = np.matmul(Y[b0:b1], scT)  # (B, n, m) scores
        P += logw[b0:b1, :, None]
        P -= P.max(axis=1, keepdims=True)
        np.exp(P, out=P)
        P /= P.sum(axis=1, keepdims=True)
        Ot = Ot_all[b0:b1] if Ot_all is not None else np.ascontiguousarray(outer_t(b0, b1))
        mcT = np.matmul(Yt[b0:b1], P)  # (B, r, m) tilted means
        Hb = H[b0:b1]  # (B, p, m)
        np.matmul(Ot, P, out=Hb)
        Hb -= _pack_outer_rows(mcT, np.empty(Hb.shape))

    blas = _BlasThreads()
    threads = num_threads() if blas.available else 1
    with ThreadPoolExecutor(threads) as pool:
        for start in range(0, M, step):
            sc = s[start:start + step]
            m = sc.shape[0]
            scT = np.ascontiguousarray(sc.T)
            H = np.empty((N, p, m))  # packed Hessians of the chunk, rows (entry, probe) per law
            # many small GEMMs: one BLAS thread each, blocks of laws on our threads; then one
            # large dsyrk on all of BLAS's threads (never both at once: no oversubscription)
            with blas.limit(1):
                list(pool.map(lambda b: fill(H, b[0], b[1], scT), blocks))
            _syrk_update(K, H.reshape(N, p * m).T)
            del H
            if progress is not None:
                progress(done + start + m, total)


#: largest number of packed outer products kept for the whole dataset (512 MiB)
_OUTER_CAP = 1 << 26


class _BlasThreads:
    """BLAS thread limits through threadpoolctl when installed (else a no-op, and the blocks of
    :func:`_discrete_qk` run serially so that BLAS keeps its own threads)."""

    def __init__(self) -> None:
        try:
            from threadpoolctl import ThreadpoolController
            self._ctl = ThreadpoolController()
        except ImportError:  # pragma: no cover - optional dependency
            self._ctl = None

    @property
    def available(self) -> bool:
        return self._ctl is not None

    def limit(self, n: int):
        if self._ctl is None:
            return nullcontext()
        return self._ctl.limit(limits=n, user_api="blas")


def _accumulate(dataset: Dataset, whitening: Whitening, probes: ProbeSet, qk: bool,
                value: bool, budget: int,
                progress: Progress | None = None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One pass over the probes in chunks: (K^qk or None, K^value or None), each (N, N).

    Token datasets (all laws discrete) take :func:`_discrete_qk` for K^qk; other families
    go through :meth:`Dataset.iter_tilted_moments`. ``progress(done, total)`` is called after
    every chunk of probes.
    """
    N = len(dataset)
    T = whitening.transform
    r = T.shape[1]
    M = probes.z.shape[0]
    k_qk = np.zeros((N, N), order="F") if qk else None
    k_v = np.zeros((N, N), order="F") if value else None
    discrete = qk and all(isinstance(d, Discrete) for d in dataset.distributions)
    passes = int(discrete) + int(value or (qk and not discrete))
    total = max(M, 1) * passes
    if r == 0 or M == 0:
        # one point: every Hessian is 0 and every gradient the same vector (added below)
        pass
    else:
        done = 0
        if discrete:
            _discrete_qk(dataset, T, probes.s, budget, k_qk, progress, 0, total)
            done = M
        if value or (qk and not discrete):
            hess_here = qk and not discrete
            # iter_tilted_moments bounds its own (m, N, d, d) arrays; our whitened copies are
            # no larger (r <= d), so the peak stays a small multiple of ``budget`` entries.
            for sl, grad, hess in dataset.iter_tilted_moments(probes.z, covariance=hess_here,
                                                              budget=budget):
                if hess_here:
                    _syrk_update(k_qk, _packed_hessians(hess, T))
                if value:
                    G = np.matmul(grad, T)  # (m, N, r)
                    _syrk_update(k_v, G.transpose(0, 2, 1).reshape(-1, N))
                if progress is not None:
                    progress(done + sl.stop, total)
    if value:
        k_v = _from_upper(k_v)
        # component of every gradient outside col(T): P grad = P m for all i and all probes
        P = _complement_projector(T)
        off = P @ dataset.pooled_moments[0]
        k_v += float(off @ off) * max(M, 1) * np.ones((N, N))
    scale = 1.0 / max(M, 1)
    if k_qk is not None:
        k_qk = _symmetrise(_from_upper(k_qk) * scale)
    if k_v is not None:
        k_v = _symmetrise(k_v * scale)
    return k_qk, k_v


def _symmetrise(K: np.ndarray) -> np.ndarray:
    return (K + K.T) / 2.0


def qk_kernel(dataset: Dataset, whitening: Whitening, probes: ProbeSet,
              budget: int = CHUNK_ELEMENTS, progress: Progress | None = None) -> np.ndarray:
    """Query-key NTK K_ij = (1/M) sum_m <T^T H_i(z_m) T, T^T H_j(z_m) T>_F, shape (N, N).

    H_i = Hess LSE_i = tilted covariance (SPEC §1), T = ``whitening.transform`` (d, r), probes
    z_m = T s_m. Memory: chunks of at most ~``budget`` Hessian entries (SPEC §5).
    """
    return _accumulate(dataset, whitening, probes, True, False, budget, progress)[0]


def value_kernel(dataset: Dataset, whitening: Whitening, probes: ProbeSet,
                 budget: int = CHUNK_ELEMENTS, progress: Progress | None = None) -> np.ndarray:
    """Value NTK K^V_ij = (1/M) sum_m <T^T g_i(z_m), T^T g_j(z_m)> + <P m, P m>, shape (N, N).

    g_i = grad LSE_i = tilted mean (not centred: see the module notes), P the projector onto
    the complement of col(T), m the pooled mean (the term vanishes for full-dimensional data).
    """
    return _accumulate(dataset, whitening, probes, False, True, budget, progress)[1]


def full_kernel(dataset: Dataset, whitening: Whitening, probes: ProbeSet,
                budget: int = CHUNK_ELEMENTS, progress: Progress | None = None) -> np.ndarray:
    """Full NTK K^qk + K^V (queries and values trained), one pass over the probes."""
    k_qk, k_v = _accumulate(dataset, whitening, probes, True, True, budget, progress)
    return _symmetrise(k_qk + k_v)


def gram_kernel(dataset: Dataset, whitening: Whitening, probes: ProbeSet) -> np.ndarray:
    """Feature Gram G = F_perp^T F_perp / M with the column-normalised F_perp of SPEC §3."""
    perp = feature_matrix(dataset, whitening, probes).perp
    return _symmetrise(perp.T @ perp / perp.shape[0])


def kernel_matrix(dataset: Dataset, kernel: "str | Kernel", whitening: Whitening,
                  probes: ProbeSet, budget: int = CHUNK_ELEMENTS,
                  progress: Progress | None = None) -> np.ndarray:
    """Dispatch on ``kernel`` ('qk', 'value', 'full', 'gram'); ``progress(done, total)`` is
    called after every chunk of probes (not for 'gram')."""
    kind = parse_kernel(kernel)
    if kind is Kernel.GRAM:
        return gram_kernel(dataset, whitening, probes)
    return {Kernel.QK: qk_kernel, Kernel.VALUE: value_kernel,
            Kernel.FULL: full_kernel}[kind](dataset, whitening, probes, budget, progress)


