"""Exact-arithmetic primitives of the structural screen's candidate keys (SPEC §7): 64-bit
row hashing (splitmix-style mixing) and the error-free transformations two_sum / two_prod
(Knuth, Dekker), with which the screen decides equality of sums and products of stored
doubles exactly."""

from __future__ import annotations

import numpy as np

__all__ = ["_mix", "_hash_rows", "_two_sum", "_split", "_two_prod"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _hash_rows(Q: np.ndarray) -> np.ndarray:
    """64-bit hash of each row of Q (T, k) uint64: sum_c K_c Q[:, c] mod 2^64 with fixed
    random odd multipliers K (one pass, no transposition), then a splitmix64 finaliser.
    Collisions only cost a rejected verification."""
    K = _mix(np.arange(1, Q.shape[1] + 1, dtype=np.uint64) * _GOLD) | np.uint64(1)
    return _mix(np.einsum("tk,k->t", Q, K))


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s = fl(a + b) and e with a + b = s + e exactly (Knuth), barring overflow."""
    s = a + b
    ap = s - b
    bp = s - ap
    return s, (a - ap) + (b - bp)


def _split(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = 134217729.0 * a  # 2^27 + 1 (Veltkamp)
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p = fl(a b) and e with a b = p + e exactly (Dekker), barring over/underflow."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl
