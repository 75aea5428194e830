"""Teacher data: tokens and the outputs of a random mean-field transformer with small heads.

A student of the same form started from small heads then has a small initial loss, the regime in
which SPEC §6 (and the paper) predict convergence of the gradient flow to a global minimum when the
attention NTK is injective (generic Gaussian tokens satisfy the LSE condition).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError
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

    Raises
    ------
    InputError
        A non-finite or negative ``scale``, a ``target_dim`` outside [1, dim], or a teacher so
        large that its targets overflow (never writes NaN or Inf targets).
    """
    kind = LossKind(loss)
    if not 1 <= target_dim <= dim:
        raise InputError(f"must lie in [1, dim = {dim}], got {target_dim}", field="target_dim")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale >= 0):
        raise InputError(f"must be a finite number >= 0, got {scale}", field="scale")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, tokens, dim))
    w = np.full((samples, tokens), 1.0 / tokens)
    teacher = MeanFieldTransformer.init(layers=layers, heads=heads, key_dim=key_dim, dim=dim,
                                        init_qk_std=scale, init_v_std=scale,
                                        seed=int(rng.integers(2**63)))
    with np.errstate(over="ignore", invalid="ignore"):
        XL = teacher.forward(X, w)[..., :target_dim]
        targets = XL if kind is LossKind.TOKEN else np.einsum("ia,iae->ie", w, XL)
    if not np.all(np.isfinite(targets)):
        raise InputError(f"makes the teacher's outputs overflow (scale {scale:g}); use a smaller "
                         "scale, e.g. 1", field="scale")
    names = np.array([f"teacher{i}" for i in range(samples)], dtype=str)
    return {"tokens": X, "targets": targets, "names": names, "teacher_Q": teacher.Q,
            "teacher_K": teacher.K, "teacher_V": teacher.V}
