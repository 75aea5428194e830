"""The mean-field attention-only transformer: heads, attention field and forward pass (SPEC §6).

Shapes: N samples, n (padded) tokens per sample, d coordinates, L layers, H heads per layer,
k = key_dim. Parameters ``Q``, ``K`` are (L, H, k, d) and ``V`` is (L, H, d, d).

    Att_theta(mu)(x) = V sum_j softmax_j(<Q x, K x_j> + log w_j) x_j
    v_l(x; mu)       = (1/H) sum_h Att_{theta_{l,h}}(mu)(x)
    X^{l+1}          = X^l + (1/L) v_l(X^l; mu^l)

Padded tokens (weight 0) never attend (log 0 = -inf is handled exactly, without NaN) and keep a zero
velocity, so they stay at their (zero) value and never influence real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schemes import ButcherTableau, get_scheme

__all__ = ["MeanFieldTransformer", "AttentionCache", "attention_field", "log_weights"]


@dataclass(frozen=True, eq=False)
class MeanFieldTransformer:
    """L layers of H attention heads integrated in depth by an explicit Runge–Kutta scheme.

    Attributes
    ----------
    Q, K : (L, H, key_dim, d) float64
        Query and key matrices of every head.
    V : (L, H, d, d) float64
        Value matrices.
    scheme : ButcherTableau
        Depth integrator (``euler`` = the finite transformer).
    substeps : int
        Sub-steps per layer, each of length 1 / (L substeps), with the layer's parameters.
    """

    Q: np.ndarray
    K: np.ndarray
    V: np.ndarray
    scheme: ButcherTableau = get_scheme("euler")
    substeps: int = 1

    @property
    def layers(self) -> int:
        return int(self.Q.shape[0])

    @property
    def heads(self) -> int:
        return int(self.Q.shape[1])

    @property
    def key_dim(self) -> int:
        return int(self.Q.shape[2])

    @property
    def dim(self) -> int:
        return int(self.Q.shape[3])

    @property
    def n_params(self) -> int:
        return int(self.Q.size + self.K.size + self.V.size)

    @classmethod
    def init(cls, *, layers: int, heads: int, key_dim: int, dim: int, init_qk_std: float,
             init_v_std: float, seed: int, scheme: str | ButcherTableau = "euler",
             substeps: int = 1) -> "MeanFieldTransformer":
        """Random heads: Q, K entries N(0, init_qk_std^2), V entries N(0, init_v_std^2).

        Drawn in the order Q, K, V from ``numpy.random.default_rng(seed)``.
        """
        rng = np.random.default_rng(seed)
        Q = init_qk_std * rng.standard_normal((layers, heads, key_dim, dim))
        K = init_qk_std * rng.standard_normal((layers, heads, key_dim, dim))
        V = init_v_std * rng.standard_normal((layers, heads, dim, dim))
        return cls(Q, K, V, get_scheme(scheme), substeps)

    def with_params(self, Q: np.ndarray, K: np.ndarray, V: np.ndarray) -> "MeanFieldTransformer":
        """The same architecture with other head parameters."""
        return MeanFieldTransformer(Q, K, V, self.scheme, self.substeps)

    def params_finite(self) -> bool:
        return bool(np.isfinite(self.Q).all() and np.isfinite(self.K).all()
                    and np.isfinite(self.V).all())

    @property
    def step(self) -> float:
        """Depth step h = 1 / (L substeps)."""
        return 1.0 / (self.layers * self.substeps)

    def velocity(self, layer: int, X: np.ndarray, logw: np.ndarray,
                 mask: np.ndarray) -> np.ndarray:
        """v_l(X) of shape (N, n, d) (no cache kept)."""
        v = attention_field(self.Q[layer], self.K[layer], self.V[layer], X, logw, mask)[0]
        assert v is not None
        return v

    def substep_forward(self, layer: int, X: np.ndarray, logw: np.ndarray,
                        mask: np.ndarray) -> np.ndarray:
        """One Runge–Kutta step of length h = 1/(L substeps) with the parameters of ``layer``."""
        a, b, h = self.scheme.a, self.scheme.b, self.step
        ks: list[np.ndarray] = []
        for i in range(self.scheme.stages):
            Z = X
            for j in range(i):
                if a[i, j] != 0.0:
                    Z = Z + (h * a[i, j]) * ks[j]
            ks.append(self.velocity(layer, Z, logw, mask))
        out = X.copy()
        for i, k_i in enumerate(ks):
            if b[i] != 0.0:
                out += (h * b[i]) * k_i
        return out

    def layer_forward(self, layer: int, X: np.ndarray, logw: np.ndarray,
                      mask: np.ndarray) -> np.ndarray:
        """Integrate layer ``layer`` (all its sub-steps) from X; returns the next state."""
        for _ in range(self.substeps):
            X = self.substep_forward(layer, X, logw, mask)
        return X

    def states(self, tokens: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Token states X^0 .. X^L, shape (L+1, N, n, d); X^0 = tokens (zero at padding)."""
        logw, mask = log_weights(weights), mask_of(weights)
        out = np.empty((self.layers + 1,) + tokens.shape)
        out[0] = tokens * mask
        for layer in range(self.layers):
            out[layer + 1] = self.layer_forward(layer, out[layer], logw, mask)
        return out

    def forward(self, tokens: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Output tokens X^L, shape (N, n, d)."""
        logw, mask = log_weights(weights), mask_of(weights)
        X = tokens * mask
        for layer in range(self.layers):
            X = self.layer_forward(layer, X, logw, mask)
        return X


def log_weights(weights: np.ndarray) -> np.ndarray:
    """log w as (N, 1, 1, n), exactly -inf at padding (no warning), broadcastable to scores."""
    out = np.full(weights.shape, -np.inf)
    np.log(weights, out=out, where=weights > 0)
    return out[:, None, None, :]


def mask_of(weights: np.ndarray) -> np.ndarray:
    """(N, n, 1) float mask: 1 for real tokens, 0 for padding."""
    return (weights > 0).astype(np.float64)[:, :, None]


@dataclass(frozen=True, eq=False)
class AttentionCache:
    """What the adjoint needs of one evaluation of v_l (recomputed, never stored per layer).

    X (N, n, d) input states; E (N, H, n, n) unnormalised attention exp(S_ab + log w_b - c) with
    row scales r (N, H, n, 1), so that A = r E (rows: queries, columns: keys); Y (N, H, n, d)
    tilted means A X; q, kk (N, H, n, k) queries Q x_a and keys K x_b.
    """

    X: np.ndarray
    mask: np.ndarray
    E: np.ndarray
    r: np.ndarray
    Y: np.ndarray
    q: np.ndarray
    kk: np.ndarray


#: stands for log 0 in the fast path: finite (safe inside a GEMM) and exp(LOG0 + O(1e3)) == 0
_LOG0 = -1e200
#: the fast path's shift is within 2 max|q| max|k| of each row maximum; keep exp() above ~1e-261
_MAX_GAP = 300.0


def attention_field(Q: np.ndarray, K: np.ndarray, V: np.ndarray, X: np.ndarray,
                    logw: np.ndarray, mask: np.ndarray,
                    need_v: bool = True) -> tuple[np.ndarray | None, AttentionCache]:
    """v(X) = (1/H) sum_h V_h softmax(<Q_h x_a, K_h x_b> + log w_b) X, for one layer.

    Parameters
    ----------
    Q, K : (H, k, d); V : (H, d, d); X : (N, n, d); logw : (N, 1, 1, n); mask : (N, n, 1).
    need_v : compute v (the adjoint of an Euler step only needs the cache).

    Returns
    -------
    v : (N, n, d), zero at padded tokens (None if not ``need_v``); cache : AttentionCache.
    """
    N, n, d = X.shape
    H, k, _ = Q.shape
    Xf = X.reshape(N * n, d)
    # Queries and keys of all heads in one GEMM each, written into (N, H, n, k+1) buffers whose
    # last column folds the softmax shift and log w into the score GEMM itself:
    # [q_a, 1] . [k_b, log w_b - c] = S_ab + log w_b - c.
    qa = np.empty((N, H, n, k + 1))
    ka = np.empty((N, H, k + 1, n))  # keys stored transposed: contiguous GEMM operand
    qa[..., :k] = (Xf @ Q.reshape(H * k, d).T).reshape(N, n, H, k).transpose(0, 2, 1, 3)
    ka[..., :k, :] = (Xf @ K.reshape(H * k, d).T).reshape(N, n, H, k).transpose(0, 2, 3, 1)
    q, kk = qa[..., :k], ka[..., :k, :].transpose(0, 1, 3, 2)
    qmax = np.sqrt(np.einsum("nhak,nhak->nha", q, q).max(axis=-1))
    kmax = np.sqrt(np.einsum("nhbk,nhbk->nhb", kk, kk).max(axis=-1))
    gap = qmax * kmax  # (N, H); |S_ab| <= gap
    lw = logw[:, 0, 0, :]  # (N, n)
    if float(gap.max(initial=0.0)) <= _MAX_GAP:
        # Shift c = gap + max_b log w_b >= every row maximum, and <= it + 2 gap (Cauchy–Schwarz),
        # so exp neither overflows nor loses a row; it replaces a max-reduction over n^2 entries.
        shift = gap + lw.max(axis=-1)[:, None]
        qa[..., k] = 1.0
        ka[..., k, :] = np.where(np.isfinite(lw), lw, _LOG0)[:, None, :] - shift[..., None]
        E = qa @ ka
    else:
        E = q @ ka[..., :k, :]
        E += logw
        # Every sample has a real token, so the row maximum is finite and exp(-inf - m) = 0.
        E -= E.max(axis=-1, keepdims=True)
    np.exp(E, out=E)
    # Tilted means and row sums in one batched GEMM per sample: E [X, 1].
    Xa = np.empty((N, n, d + 1))
    Xa[..., :d] = X
    Xa[..., d] = 1.0
    Yu = (E.reshape(N, H * n, n) @ Xa).reshape(N, H, n, d + 1)
    r = 1.0 / Yu[..., d:]
    Y = Yu[..., :d] * r
    v = None
    if need_v:
        v = Y.transpose(0, 2, 1, 3).reshape(N * n, H * d) @ V.transpose(0, 2, 1).reshape(H * d, d)
        v = v.reshape(N, n, d)
        v *= mask * (1.0 / H)
    return v, AttentionCache(X, mask, E, r, Y, q, kk)
