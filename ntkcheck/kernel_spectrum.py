"""Kernel spectra (SPEC §5): the eigen-decomposition of one kernel of :mod:`ntkcheck.kernels`
with its round-off tolerance and summaries (``ntkcheck spectrum``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import scipy.linalg

from .arrays import as_dataset
from .dataset import CHUNK_ELEMENTS
from .errors import InputError
from .injectivity.features import feature_matrix
from .injectivity.probes import (DEFAULT_SCALES, Whitening, make_probes, make_whitening,
                                 probe_settings)
from .injectivity.spectrum import svd_spectrum
from .injectivity.summary import condition_number, effective_rank, null_representative
from .kernels import (_U, KERNEL_DESCRIPTIONS, NOISE_SAFETY, Kernel, Progress, _symmetrise,
                      kernel_matrix, parse_kernel)
from .results import SpectrumDisplay

if TYPE_CHECKING:
    from .arrays import DataLike

__all__ = ["KernelSpectrum", "kernel_spectrum", "spectrum_summary"]

@dataclass(frozen=True, repr=False)
class KernelSpectrum(SpectrumDisplay):
    """Eigen-decomposition of one kernel with its round-off tolerance (SPEC §5).

    Attributes
    ----------
    kernel : 'qk' | 'value' | 'full' | 'gram'
    names : (N,) distribution names
    matrix : (N, N) symmetric kernel
    eigenvalues : (N,) ascending
    eigenvectors : (N, N) orthonormal columns, in the order of ``eigenvalues``; each column's
        largest-magnitude entry is positive (a deterministic sign)
    tolerance : eigenvalues <= tolerance are zero to working precision (module notes)
    coefficient_scale : (N,) column scaling of the kernel's coordinates (the column norms of the
        projected features for ``gram``, ones otherwise); c_i = v_i / scale_i
    settings : probes, scales, seed, whitening, affine-hull dimension, probe law, tolerance rule
    whitening : the whitening used (for plots; not serialised)
    """

    kernel: str
    names: tuple[str, ...]
    matrix: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    tolerance: float
    coefficient_scale: np.ndarray
    settings: dict
    whitening: Whitening | None = field(default=None, repr=False, compare=False)

    @property
    def min_eigenvalue(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def max_eigenvalue(self) -> float:
        return float(self.eigenvalues[-1])

    @property
    def min_vector(self) -> np.ndarray:
        """Unit eigenvector (N,) of the smallest eigenvalue; when several eigenvalues are at
        or below the tolerance, the canonical vector of their space
        (:func:`ntkcheck.injectivity.summary.null_representative`), which does not depend on
        the basis the eigensolver happened to return."""
        if self.null_dim >= 2:
            return null_representative(self.null_vectors())
        return self.eigenvectors[:, 0]

    @property
    def min_eigenvector(self) -> dict[str, float]:
        """{name: v_i} for the eigenvector of the smallest eigenvalue (unit norm)."""
        return {n: float(v) for n, v in zip(self.names, self.min_vector)}

    @property
    def min_coefficients(self) -> dict[str, float]:
        """The same vector in the distributions' own scale, c = v / scale, max |c_i| = 1.

        For ``qk``/``value``/``full`` this is ``min_eigenvector`` rescaled; for ``gram`` it
        undoes the column normalisation, giving the coefficients of sum_i c_i LSE_i.
        """
        c = self.min_vector / self.coefficient_scale
        top = np.abs(c).max()
        c = c / (c[np.argmax(np.abs(c))] if top > 0 else 1.0)
        return {n: float(v) for n, v in zip(self.names, c)}

    @property
    def numerical_rank(self) -> int:
        """Number of eigenvalues above the tolerance."""
        return int(np.sum(self.eigenvalues > self.tolerance))

    @property
    def null_dim(self) -> int:
        return len(self.names) - self.numerical_rank

    @property
    def positive_definite(self) -> bool:
        """lambda_min > tolerance: positive definite to working precision on these probes."""
        return bool(self.eigenvalues.size and self.min_eigenvalue > self.tolerance)

    @property
    def condition_number(self) -> float:
        """lambda_max / lambda_min, or inf when lambda_min <= tolerance."""
        return condition_number(self.eigenvalues, self.tolerance)

    @property
    def effective_rank(self) -> float:
        """(sum lambda)^2 / sum lambda^2 over the clipped eigenvalues max(lambda, 0); 0 if K = 0."""
        return effective_rank(self.eigenvalues)

    @property
    def exit_code(self) -> int:
        """0 positive definite beyond the tolerance, 3 singular to working precision."""
        return 0 if self.positive_definite else 3

    def null_vectors(self) -> np.ndarray:
        """(N, k) orthonormal eigenvectors of the eigenvalues <= tolerance."""
        return self.eigenvectors[:, : self.null_dim]

    def null_coefficients(self) -> np.ndarray:
        """(N, k) the null vectors in the distributions' own scale (c = v / scale, unit norm):
        a basis of the relations sum_i c_i LSE_i the kernel cannot see."""
        c = self.null_vectors() / self.coefficient_scale[:, None]
        norms = np.linalg.norm(c, axis=0)
        return c / np.where(norms > 0, norms, 1.0)

    def to_dict(self, *, arrays: bool = False) -> dict:
        """JSON-ready dictionary (the ``spectrum --json`` schema, docs/spectrum.md); with
        ``arrays=True`` also the kernel matrix, the eigenvectors and the coefficient scale, so
        that :meth:`from_dict` can rebuild the spectrum."""
        cond = self.condition_number
        out = {
            "kernel": self.kernel,
            "description": KERNEL_DESCRIPTIONS[Kernel(self.kernel)],
            "names": list(self.names),
            "eigenvalues": [float(x) for x in self.eigenvalues],
            "min_eigenvalue": self.min_eigenvalue,
            "max_eigenvalue": self.max_eigenvalue,
            "min_eigenvector": self.min_eigenvector,
            "min_coefficients": self.min_coefficients,
            "condition_number": cond if np.isfinite(cond) else "inf",
            "effective_rank": self.effective_rank,
            "numerical_rank": self.numerical_rank,
            "positive_definite": self.positive_definite,
            "tolerance": self.tolerance,
            "settings": dict(self.settings),
        }
        if arrays:
            out["matrix"] = self.matrix.tolist()
            out["eigenvectors"] = self.eigenvectors.tolist()
            out["coefficient_scale"] = [float(x) for x in self.coefficient_scale]
        return out


def spectrum_summary(spectrum: KernelSpectrum, top: int = 5) -> dict:
    """Short JSON-ready summary (for embedding in other reports, e.g. ``analyze``).

    Keys: kernel, min_eigenvalue, max_eigenvalue, condition_number (float or "inf"),
    effective_rank, numerical_rank, tolerance, positive_definite and ``min_eigenvector_top``:
    the ``top`` largest-magnitude entries {name: v_i} of the smallest eigenvector.
    """
    d = spectrum.to_dict()
    v = spectrum.min_vector
    order = np.argsort(-np.abs(v), kind="stable")[:top]
    return {k: d[k] for k in ("kernel", "min_eigenvalue", "max_eigenvalue", "condition_number",
                              "effective_rank", "numerical_rank", "tolerance",
                              "positive_definite")} | {
        "min_eigenvector_top": {spectrum.names[i]: float(v[i]) for i in order}}


def _fix_signs(vectors: np.ndarray) -> np.ndarray:
    idx = np.argmax(np.abs(vectors), axis=0)
    signs = np.sign(vectors[idx, np.arange(vectors.shape[1])])
    signs[signs == 0] = 1.0
    return vectors * signs


def _ntk_tolerance(K: np.ndarray, lam_max: float, features_per_column: int) -> float:
    N = K.shape[0]
    diag = float(np.max(np.diag(K))) if N else 0.0
    return float(NOISE_SAFETY * _U * (2.0 * np.sqrt(N * max(features_per_column, 1)) * diag
                                      + N * max(lam_max, 0.0)))


def kernel_spectrum(dataset: "DataLike", kernel: "str | Kernel" = Kernel.QK, *,
                    names: "Sequence[str] | None" = None, weights: Any = None,
                    lengths: Any = None, mask: Any = None, probes: "int | None" = None, scales: Sequence[float] = DEFAULT_SCALES,
                    seed: int = 0, whiten: bool = True,
                    budget: int = CHUNK_ELEMENTS,
                    progress: Progress | None = None) -> KernelSpectrum:
    """Kernel of SPEC §5 on the rank test's probes and whitening, and its spectrum.

    Parameters
    ----------
    dataset : Dataset, sequence of Distribution, token array (N, n, d), list of (n_i, d)
        arrays, or an object with ``__array__`` (see :func:`ntkcheck.arrays.as_dataset`)
        The distributions mu_1..mu_N on R^d.
    kernel : 'qk' (default), 'value', 'full' or 'gram'
    names, weights, lengths, mask : optional
        Names, token weights and padding of token arrays, as for ``analyze``.
    probes : int, optional
        Number M of probes; default max(2 (N + d + 1), 256) as for ``analyze``.
    scales : sequence of float
        Probe scales in whitened coordinates (probes split round-robin), default (1, 3, 10, 30).
    seed : int
        Seed of the probe draw (the rank test's first draw uses the same).
    whiten : bool
        Whiten with the pooled covariance (the affine hull is always reduced to).
    budget : int
        Largest number of Hessian entries held at once (chunking over probes).
    progress : callable, optional
        ``progress(done, total)`` after every chunk of probes (qk, value, full), e.g. for a
        progress bar; the core never prints.

    Returns
    -------
    KernelSpectrum
    """
    dataset = as_dataset(dataset, names=names, weights=weights, lengths=lengths, mask=mask)
    kind = parse_kernel(kernel)
    N, d = len(dataset), dataset.dim
    scales, M = probe_settings(scales, probes, N, d)
    if budget < 1:
        raise InputError(f"must be >= 1, got {budget}", field="budget")
    white = make_whitening(dataset, whiten)
    probe_set = make_probes(white, M, scales, seed)
    r = white.rank
    settings = {"probes": M, "scales": list(scales), "seed": seed, "whitening": whiten,
                "affine_hull_dim": r, "probe_law": "gaussian"}
    scale = np.ones(N)
    if kind is Kernel.GRAM:
        feats = feature_matrix(dataset, white, probe_set)
        spec = svd_spectrum(feats)  # the rank test's singular values and round-off level tau
        sv, V = spec.singular_values, spec.right_vectors()
        # eigenpairs from the SVD of F_perp: accurate small eigenvalues (module notes)
        K = _symmetrise(feats.perp.T @ feats.perp / M)
        lam = (sv**2 / M)[::-1].copy()
        V = V[:, ::-1]
        tol = float(spec.noise**2 / M)
        scale = feats.col_norms.copy()
        settings["tolerance_rule"] = "rank-test round-off level tau^2 / M"
    else:
        K = kernel_matrix(dataset, kind, white, probe_set, budget, progress)
        lam, V = scipy.linalg.eigh(K, check_finite=False)
        p = {Kernel.QK: r * (r + 1) // 2, Kernel.VALUE: r + 1,
             Kernel.FULL: r * (r + 1) // 2 + r + 1}[kind]
        tol = _ntk_tolerance(K, float(lam[-1]) if N else 0.0, M * p)
        settings["tolerance_rule"] = (f"{NOISE_SAFETY:g} u (2 sqrt(N L) max K_ii + N lambda_max), "
                                      f"L = {M * p}")
    return KernelSpectrum(kind.value, dataset.names, K, np.asarray(lam, float), _fix_signs(V),
                          tol, scale, settings, white)
