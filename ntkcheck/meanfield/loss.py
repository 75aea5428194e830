"""Regression losses on the transformer's output tokens and their residual vectors (SPEC §6).

With the readout P = first d' coordinates (d' <= d):

    token  : R = (1/N) sum_i sum_a w_ia |P x_ia^L - T_ia|^2 / 2,   targets T (N, n, d')
    pooled : R = (1/N) sum_i |P sum_a w_ia x_ia^L - T_i|^2 / 2,     targets T (N, d')

The residual vector r satisfies R = |r|^2 / 2: r_{i,a,e} = sqrt(w_ia / N) (P x_ia^L - T_ia)_e over
real tokens (token loss), r_{i,e} = (P sum_a w_ia x_ia^L - T_i)_e / sqrt(N) (pooled loss).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

__all__ = ["LossKind", "RegressionLoss"]


class LossKind(str, Enum):
    """Which regression the flow minimises."""

    TOKEN = "token"
    POOLED = "pooled"


@dataclass(frozen=True, eq=False)
class RegressionLoss:
    """A token or pooled regression loss with fixed targets and readout P = first d' coords.

    Attributes
    ----------
    kind : LossKind
    targets : (N, n, d') for ``token`` (zero at padding) or (N, d') for ``pooled``, float64.
    """

    kind: LossKind
    targets: np.ndarray

    @property
    def target_dim(self) -> int:
        return int(self.targets.shape[-1])

    def _misfit(self, XL: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """P x^L - T (token, (N, n, d')) or P sum_a w_a x_a^L - T (pooled, (N, d'))."""
        e = self.target_dim
        if self.kind is LossKind.TOKEN:
            return XL[..., :e] - self.targets
        return np.einsum("ia,iae->ie", weights, XL[..., :e]) - self.targets

    def value_and_cotangent(self, XL: np.ndarray,
                            weights: np.ndarray) -> tuple[float, np.ndarray]:
        """R and p^L = dR/dX^L (N, n, d) at output tokens ``XL`` (N, n, d)."""
        N = XL.shape[0]
        e = self.target_dim
        p = np.zeros_like(XL)
        res = self._misfit(XL, weights)
        if self.kind is LossKind.TOKEN:
            wres = weights[..., None] * res
            R = float(np.sum(wres * res)) / (2 * N)
            p[..., :e] = wres / N
        else:
            R = float(np.sum(res * res)) / (2 * N)
            p[..., :e] = weights[..., None] * res[:, None, :] / N
        return R, p

    def residual(self, XL: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """r with R = |r|^2 / 2: (real tokens x d') entries for ``token``, N d' for ``pooled``."""
        N = XL.shape[0]
        res = self._misfit(XL, weights)
        if self.kind is LossKind.TOKEN:
            r = np.sqrt(weights / N)[..., None] * res
            return r[weights > 0].reshape(-1)
        return (res / np.sqrt(N)).reshape(-1)

    def residual_cotangents(self, weights: np.ndarray, dim: int) -> np.ndarray:
        """dr_{i,c}/dX^L for every per-sample component c, as (C, N, n, d).

        Component c of sample i only depends on sample i, so C = n d' (token) or d' (pooled)
        batched adjoints give every row of the Jacobian. Rows of padded tokens are zero and
        dropped by :meth:`row_mask`.
        """
        N, n = weights.shape
        e = self.target_dim
        if self.kind is LossKind.TOKEN:
            P = np.zeros((n, e, N, n, dim))
            a, f = np.meshgrid(np.arange(n), np.arange(e), indexing="ij")
            P[a, f, :, a, f] = np.sqrt(weights / N).T[:, None, :]
            return P.reshape(n * e, N, n, dim)
        P = np.zeros((e, N, n, dim))
        f = np.arange(e)
        P[f, :, :, f] = weights[None] / np.sqrt(N)
        return P

    def row_mask(self, weights: np.ndarray) -> np.ndarray:
        """Which of the N C batched rows (ordered sample-major, as r) are kept in r."""
        if self.kind is LossKind.TOKEN:
            return np.repeat((weights > 0).reshape(-1), self.target_dim)
        return np.ones(weights.shape[0] * self.target_dim, dtype=bool)
