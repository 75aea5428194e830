"""Empirical neural tangent kernel of the mean-field transformer (SPEC §6).

With r the residual vector (R = |r|^2 / 2) and J = dr/dtheta over all head parameters,

    K = (H L) J J^T,     r^T K r = (H L) |dR/dtheta|^2 >= 2 lambda_min(K) R,

the Polyak–Lojasiewicz bound of the conditional-Wasserstein gradient flow. J is computed by
batched discrete adjoints: residual component c of sample i only depends on sample i, so one
backward pass with C = n d' (token loss) or d' (pooled loss) cotangents per sample gives every
row; the batch is chunked to bound memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from ..errors import InputError
from .adjoint import backward
from .loss import RegressionLoss
from .model import MeanFieldTransformer

__all__ = ["EmpiricalNTK", "residual_jacobian", "empirical_ntk", "ntk_size", "ntk_bytes"]

#: default bound on the bytes of the largest intermediate of a batched backward chunk
CHUNK_BYTES = 64 * 2**20
#: default bound on the bytes of J and K together
MAX_BYTES = 2 * 2**30


@dataclass(frozen=True, eq=False)
class EmpiricalNTK:
    """K = (H L) J J^T at the current heads, with its spectrum.

    Attributes
    ----------
    kernel : (M, M) symmetric PSD.
    residual : (M,) r, with R = |r|^2 / 2.
    eigenvalues : (M,) ascending (scipy.linalg.eigh).
    """

    kernel: np.ndarray
    residual: np.ndarray
    eigenvalues: np.ndarray

    @property
    def min_eig(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def loss(self) -> float:
        return float(self.residual @ self.residual) / 2

    def quadratic_form(self) -> float:
        """r^T K r, equal to (H L) |dR/dtheta|^2."""
        return float(self.residual @ self.kernel @ self.residual)


def ntk_size(weights: np.ndarray, loss: RegressionLoss) -> int:
    """M, the length of the residual vector."""
    return int(loss.row_mask(weights).sum())


def ntk_bytes(M: int, n_params: int) -> int:
    """Bytes of J (M x P) and K (M x M, plus its symmetrised copy)."""
    return 8 * (M * n_params + 2 * M * M)


def residual_jacobian(model: MeanFieldTransformer, tokens: np.ndarray, weights: np.ndarray,
                      loss: RegressionLoss, *,
                      chunk_bytes: int = CHUNK_BYTES) -> tuple[np.ndarray, np.ndarray]:
    """r (M,) and J = dr/dtheta (M, P), columns ordered as Q, K, V each flattened C-order."""
    states = model.states(tokens, weights)
    r = loss.residual(states[-1], weights)
    basis = loss.residual_cotangents(weights, model.dim)  # (C, N, n, d)
    C, N, n, d = basis.shape
    H, k, s = model.heads, model.key_dim, model.scheme.stages
    per_c = N * H * n * (n + k + d) * 8 * max(s, 1) * 3
    step = max(1, min(C, chunk_bytes // max(per_c, 1)))
    L = model.layers
    P_q, P_v = L * H * k * d, L * H * d * d
    J = np.empty((C, N, 2 * P_q + P_v))
    for c0 in range(0, C, step):
        _, gQ, gK, gV = backward(model, states, weights, basis[c0:c0 + step], per_row=True)
        c1 = c0 + gQ.shape[0]
        J[c0:c1, :, :P_q] = gQ.reshape(c1 - c0, N, P_q)
        J[c0:c1, :, P_q:2 * P_q] = gK.reshape(c1 - c0, N, P_q)
        J[c0:c1, :, 2 * P_q:] = gV.reshape(c1 - c0, N, P_v)
    J = J.transpose(1, 0, 2).reshape(N * C, -1)[loss.row_mask(weights)]
    return r, J


def empirical_ntk(model: MeanFieldTransformer, tokens: np.ndarray, weights: np.ndarray,
                  loss: RegressionLoss, *, max_bytes: int = MAX_BYTES,
                  chunk_bytes: int = CHUNK_BYTES) -> EmpiricalNTK:
    """The empirical NTK K = (H L) J J^T and its eigenvalues (ascending).

    Memory is O(M P + M^2) for M residual entries and P parameters; an :class:`InputError`
    is raised beforehand when that exceeds ``max_bytes``.
    """
    M = ntk_size(weights, loss)
    need = ntk_bytes(M, model.n_params)
    if need > max_bytes:
        raise InputError(f"the empirical NTK needs {need / 2**30:.1f} GiB for M = {M} residual "
                         f"entries and {model.n_params} parameters (limit "
                         f"{max_bytes / 2**30:.1f} GiB); set output.ntk_every = 0 or use "
                         "fewer samples/tokens", field="ntk")
    r, J = residual_jacobian(model, tokens, weights, loss, chunk_bytes=chunk_bytes)
    K = J @ J.T
    K *= model.heads * model.layers
    K = (K + K.T) / 2  # exact symmetry for eigh; the asymmetry is round-off only
    eig = scipy.linalg.eigh(K, eigvals_only=True)
    return EmpiricalNTK(K, r, eig)
