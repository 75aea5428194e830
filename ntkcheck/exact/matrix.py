"""Exact rank and left null space of the sparse exponent matrix E (SPEC §4).

E (N x K) is very sparse: a distribution has a handful of irreducible factors. Before any
elimination, *peeling* removes every row that owns a column nobody else uses: if column k is
non-zero only in row i (among the remaining rows), every c with c^T E = 0 has c_i = 0, and
rank(E) = 1 + rank(E without row i and column k). Repeating this leaves a small *core*; only
the core goes to exact elimination (flint or sympy). The peeled (row, column) pairs are a
triangular certificate of independence that anyone can check by reading E.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from .engines import Engine
from .errors import ExactRefused

__all__ = ["NullSpace", "left_null_space"]


@dataclass(frozen=True)
class NullSpace:
    """rank(E), a reduced-echelon basis of {c : c^T E = 0} (rows, length N), the peeled
    pivots ((row, column) pairs in peeling order) and the core rows."""

    rank: int
    basis: tuple[tuple[Fraction, ...], ...]
    pivots: tuple[tuple[int, int], ...]
    core_rows: tuple[int, ...]


def _peel(rows: Sequence[dict[int, int]]) -> tuple[list[tuple[int, int]], list[int]]:
    users: dict[int, set[int]] = {}
    for i, row in enumerate(rows):
        for k in row:
            users.setdefault(k, set()).add(i)
    queue = sorted(k for k, u in users.items() if len(u) == 1)
    alive = [True] * len(rows)
    pivots = []
    while queue:
        k = queue.pop()
        if len(users[k]) != 1:
            continue
        (i,) = users[k]
        pivots.append((i, k))
        alive[i] = False
        for col in rows[i]:
            users[col].discard(i)
            if len(users[col]) == 1:
                queue.append(col)
    return pivots, [i for i in range(len(rows)) if alive[i]]


def left_null_space(rows: Sequence[dict[int, int]], engine: Engine,
                    max_core: int | None = None) -> NullSpace:
    """rank(E) and a reduced-echelon basis of the rational left null space of E.

    Parameters
    ----------
    rows : sequence of {column: exponent}, length N
        The sparse rows of E (integer exponents, zero entries omitted).
    engine : Engine
        Does the exact elimination of the core.
    max_core : int, optional
        Largest core (rows left after peeling) sent to exact elimination; beyond it the
        computation is refused (kind ``budget``) instead of running for an unknown time.
    """
    N = len(rows)
    pivots, core = _peel(rows)
    if max_core is not None and len(core) > max_core:
        raise ExactRefused(f"{len(core)} distributions share their non-affine factors (the core "
                           f"of E after peeling), above the {engine.name} budget of {max_core}",
                           kind="budget")
    cols = sorted({k for i in core for k in rows[i]})
    where = {k: j for j, k in enumerate(cols)}
    dense = [[0] * len(cols) for _ in core]
    for a, i in enumerate(core):
        for k, e in rows[i].items():
            dense[a][where[k]] = e
    core_rank, core_basis = engine.left_null_space(dense, len(cols))
    basis = []
    for vec in core_basis:
        full = [Fraction(0)] * N
        for a, i in enumerate(core):
            full[i] = vec[a]
        basis.append(tuple(full))
    # core rows keep their order, so an echelon basis of the core is one of E
    return NullSpace(len(pivots) + core_rank, tuple(basis), tuple(pivots), tuple(core))
