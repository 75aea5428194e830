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

from ._parallel import Workspace, chunk_bounds, run_chunks, workspace
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

    def __repr__(self) -> str:  # the shapes, not the (L, H, ...) parameter arrays
        return (f"MeanFieldTransformer({self.layers} layers x {self.heads} heads, key_dim "
                f"{self.key_dim}, d {self.dim}, {self.n_params} parameters, scheme "
                f"{self.scheme.name} x {self.substeps})")

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
        return attention_field(self.Q[layer], self.K[layer], self.V[layer], X, logw, mask,
                               keep_cache=False)[0]

    def substep_forward(self, layer: int, X: np.ndarray, logw: np.ndarray,
                        mask: np.ndarray) -> np.ndarray:
        """One Runge–Kutta step of length h = 1/(L substeps) with the parameters of ``layer``."""
        a, b, h = self.scheme.a, self.scheme.b, self.step
        ks: list[np.ndarray] = []
        for i in range(self.scheme.stages):
            ks.append(self.velocity(layer, stage_state(X, ks, a[i], h), logw, mask))
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


def stage_state(X: np.ndarray, ks: list[np.ndarray], a_row: np.ndarray, h: float) -> np.ndarray:
    """Runge–Kutta stage input Z_i = X + h sum_{j<i} a_ij k_j (i = len(ks), a_row = a[i])."""
    Z = X
    for j, k_j in enumerate(ks):
        if a_row[j] != 0.0:
            Z = Z + (h * a_row[j]) * k_j
    return Z


def log_weights(weights: np.ndarray) -> np.ndarray:
    """log w as (N, 1, 1, n), exactly -inf at padding (no warning), broadcastable to scores."""
    out = np.full(weights.shape, -np.inf)
    np.log(weights, out=out, where=weights > 0)
    return out[:, None, None, :]


def mask_of(weights: np.ndarray) -> np.ndarray:
    """(N, n, 1) float mask: 1 for real tokens, 0 for padding."""
    return (weights > 0).astype(np.float64)[:, :, None]


@dataclass(frozen=True, eq=False)
class AttentionChunk:
    """One chunk of samples [s0, s1) of an evaluation of v_l, in token-major layout.

    Scores are S_hab = x_a^T M_h x_b with M_h = Q_h^T K_h (d x d). E (Nc, n, H, n) holds the
    unnormalised attention exp(S_hab + log w_b - c) (axes: sample, query a, head, key b) with row
    scales r (Nc, n, H, 1), so that A = r E; Y (Nc, n, H, d) the tilted means A X; Pa
    (Nc, n, H, d+1) the rows [x_a^T M_h, 1]; Xa (Nc, n, d+1) the tokens [x_b, 1].
    """

    s0: int
    s1: int
    X: np.ndarray
    mask: np.ndarray
    E: np.ndarray
    r: np.ndarray
    Y: np.ndarray
    Pa: np.ndarray
    Xa: np.ndarray


@dataclass(frozen=True, eq=False)
class AttentionCache:
    """What the adjoint needs of one evaluation of v_l (recomputed, never stored per layer).

    X (N, n, d) input states, mask (N, n, 1), M (H, d, d) the heads' bilinear forms Q_h^T K_h,
    and the per-chunk intermediates (:class:`AttentionChunk`, chunks in sample order).
    """

    X: np.ndarray
    mask: np.ndarray
    M: np.ndarray
    chunks: list


#: stands for log 0: finite (safe inside a GEMM) and exp(LOG0 + O(1e3)) == 0
_LOG0 = -1e200
#: the fast path's shift is within 2 max_h gap of each row maximum; keep exp() above ~1e-261
_MAX_GAP = 300.0


def head_forms(Q: np.ndarray, K: np.ndarray) -> np.ndarray:
    """M_h = Q_h^T K_h, (H, d, d): <Q_h x, K_h y> = x^T M_h y."""
    return np.matmul(Q.transpose(0, 2, 1), K)


def score_bound(M: np.ndarray) -> float:
    """max_h |M_h|_2, which bounds every score; inf for non-finite heads (they take the
    NaN-propagating slow path of :func:`attention_chunk`)."""
    if not np.isfinite(M).all():
        return np.inf
    return float(np.linalg.norm(M, ord=2, axis=(1, 2)).max(initial=0.0))


def _alloc(ws: Workspace | None, name: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape) if ws is None else ws.get(name, shape)


def attention_chunk(M: np.ndarray, Mnorm: float, Vs: np.ndarray | None, X: np.ndarray,
                    lw: np.ndarray, mask: np.ndarray, s0: int, s1: int,
                    v_out: np.ndarray | None, ws: Workspace | None = None) -> AttentionChunk:
    """Forward of the samples [s0, s1); writes (1/H) sum_h V_h Y_h (masked) into v_out[s0:s1].

    M (H, d, d) head forms, Mnorm = max_h |M_h|_2, Vs (H d, d) stacked V_h^T, lw (N, n) log w
    (-inf at padding). With a workspace ``ws`` the returned arrays are its scratch buffers
    (valid until the workspace is reused); otherwise they are fresh.
    """
    Xc, lwc, mc = X[s0:s1], lw[s0:s1], mask[s0:s1]
    Nc, n, d = Xc.shape
    H = M.shape[0]
    Xa = _alloc(ws, "Xa", (Nc, n, d + 1))
    Xa[..., :d] = Xc
    Xa[..., d] = 1.0
    # Rows [x_a^T M_h, 1] of all heads in one GEMM: Maug[(i, d), (h, j)] = M_h[i, j], with the
    # row of the constant input producing the trailing 1.
    Maug = np.zeros((d + 1, H, d + 1))
    Maug[:d, :, :d] = M.transpose(1, 0, 2)
    Maug[d, :, d] = 1.0
    Pa = _alloc(ws, "Pa", (Nc, n, H, d + 1))
    np.matmul(Xa.reshape(Nc * n, d + 1), Maug.reshape(d + 1, H * (d + 1)),
              out=Pa.reshape(Nc * n, H * (d + 1)))
    # Keys side [x_b, log w_b - c]: the score GEMM yields S_hab + log w_b - c directly.
    xmax2 = np.einsum("nad,nad->na", Xc, Xc).max(axis=-1)  # (Nc,) max_a |x_a|^2
    gap = Mnorm * xmax2 if np.isfinite(Mnorm) else np.full(Nc, np.inf)  # |S_hab| <= gap
    finite = np.isfinite(lwc)
    fast = float(gap.max(initial=0.0)) <= _MAX_GAP
    KaT = np.empty((Nc, d + 1, n))  # stored transposed: contiguous GEMM operand
    KaT[:, :d, :] = Xc.transpose(0, 2, 1)
    if fast:
        # Shift c = gap + max_b log w_b >= every row maximum, and <= it + 2 max gap
        # (Cauchy–Schwarz), so exp neither overflows nor loses a row; no max-reduction needed.
        lwmax = np.where(finite, lwc, -np.inf).max(axis=-1)
        KaT[:, d, :] = np.where(finite, lwc - (gap + lwmax)[:, None], _LOG0)
    else:
        KaT[:, d, :] = np.where(finite, lwc, _LOG0)
    E = _alloc(ws, "E", (Nc, n * H, n))
    np.matmul(Pa.reshape(Nc, n * H, d + 1), KaT, out=E)
    if not fast:
        # Every sample has a real token, so the row maximum is finite and exp(LOG0 - m) = 0.
        E -= E.max(axis=-1, keepdims=True)
    np.exp(E, out=E)
    # Tilted means and row sums in one batched GEMM per sample: E [X, 1].
    Yu = _alloc(ws, "Yu", (Nc, n, H, d + 1))
    np.matmul(E, Xa, out=Yu.reshape(Nc, n * H, d + 1))
    r = _alloc(ws, "r", (Nc, n, H, 1))
    np.divide(1.0, Yu[..., d:], out=r)
    Y = _alloc(ws, "Y", (Nc, n, H, d))
    np.multiply(Yu[..., :d], r, out=Y)
    if v_out is not None:
        assert Vs is not None
        v = v_out[s0:s1].reshape(Nc * n, d)
        np.matmul(Y.reshape(Nc * n, H * d), Vs, out=v)
        v *= mc.reshape(Nc * n, 1) * (1.0 / H)
    return AttentionChunk(s0, s1, Xc, mc, E.reshape(Nc, n, H, n), r, Y, Pa, Xa)


def attention_bounds(N: int, n: int, H: int) -> list[tuple[int, int]]:
    """The fixed chunks of samples of one layer evaluation."""
    return chunk_bounds(N, 8 * n * n * H)


def attention_field(Q: np.ndarray, K: np.ndarray, V: np.ndarray, X: np.ndarray,
                    logw: np.ndarray, mask: np.ndarray,
                    keep_cache: bool = True) -> tuple[np.ndarray, AttentionCache | None]:
    """v(X) = (1/H) sum_h V_h softmax(<Q_h x_a, K_h x_b> + log w_b) X, for one layer.

    Parameters
    ----------
    Q, K : (H, k, d); V : (H, d, d); X : (N, n, d); logw : (N, 1, 1, n); mask : (N, n, 1).
    keep_cache : return the cache (else None: the intermediates live in per-thread scratch).

    Returns
    -------
    v : (N, n, d), zero at padded tokens; cache : AttentionCache.
    """
    N, n, d = X.shape
    H = Q.shape[0]
    M = head_forms(Q, K)
    Mnorm = score_bound(M)
    Vs = V.transpose(0, 2, 1).reshape(H * d, d)
    lw = logw.reshape(N, n)
    v = np.empty((N, n, d))
    chunks = run_chunks(
        lambda s0, s1: attention_chunk(M, Mnorm, Vs, X, lw, mask, s0, s1, v,
                                       None if keep_cache else workspace()),
        attention_bounds(N, n, H))
    return v, (AttentionCache(X, mask, M, chunks) if keep_cache else None)
