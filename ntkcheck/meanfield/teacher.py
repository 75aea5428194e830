"""Teacher data: tokens and the outputs of a random mean-field transformer with small heads.

A student of the same form started from small heads then has a small initial loss, the regime in
which SPEC §6 (and the paper) predict convergence of the gradient flow to a global minimum when the
attention NTK is injective (generic Gaussian tokens satisfy the LSE condition).
"""

from __future__ import annotations

import numpy as np

from .loss import LossKind
from .model import MeanFieldTransformer

__all__ = ["teacher_data"]


def teacher_data(*, samples: int, tokens: int, dim: int, layers: int, heads: int, key_dim: int,
                 target_dim: int, loss: str | LossKind = "token", scale: float = 0.5,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays of a teacher dataset, ready for ``numpy.savez``.

    Tokens x_ia ~ N(0, I_d) (uniform weights, no padding); a teacher with Q, K, V entries
    N(0, scale^2) maps them to X^L; targets are P X^L (token loss, (N, n, d')) or
    P sum_a w_ia x_ia^L (pooled loss, (N, d')), P = first d' coordinates.

    Returns
    -------
    dict with ``tokens`` (N, n, d), ``targets``, ``names`` and the teacher's heads
    ``teacher_Q``, ``teacher_K`` (L, H, k, d), ``teacher_V`` (L, H, d, d).
    """
    kind = LossKind(loss)
    if not 1 <= target_dim <= dim:
        raise ValueError(f"target_dim must lie in [1, dim = {dim}], got {target_dim}")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, tokens, dim))
    w = np.full((samples, tokens), 1.0 / tokens)
    teacher = MeanFieldTransformer.init(layers=layers, heads=heads, key_dim=key_dim, dim=dim,
                                        init_qk_std=scale, init_v_std=scale,
                                        seed=int(rng.integers(2**63)))
    XL = teacher.forward(X, w)[..., :target_dim]
    targets = XL if kind is LossKind.TOKEN else np.einsum("ia,iae->ie", w, XL)
    names = np.array([f"teacher{i}" for i in range(samples)], dtype=str)
    return {"tokens": X, "targets": targets, "names": names, "teacher_Q": teacher.Q,
            "teacher_K": teacher.K, "teacher_V": teacher.V}
