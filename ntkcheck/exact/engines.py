"""Exact factorisation over Q and exact linear algebra: python-flint or sympy (SPEC §4).

Both engines offer the same two operations on the same plain data:

``factor(poly)``
    ``poly`` is ``{exponent tuple: int coefficient}`` (integer coefficients, fixed variable
    order); returns ``(content, [(factor dict, multiplicity), ...])`` with irreducible factors
    over Q, and the product is re-multiplied and compared with ``poly`` before returning.
``left_null_space(rows, ncols)``
    ``rows`` are the rows of an integer matrix A (r x k) as lists; returns ``(rank, basis)`` with
    the basis of {c in Q^r : c^T A = 0} in reduced row echelon form (list of lists of Fraction).

``flint`` uses ``fmpz_mpoly.factor`` and ``fmpz_mat.nullspace`` / ``fmpq_mat.rref`` (optional
extra ``ntkcheck[exact]``); ``sympy`` uses ``Poly.factor_list`` and ``DomainMatrix`` over QQ.
``engine="auto"`` picks flint when importable; the environment variable
``NTKCHECK_EXACT_ENGINE`` (``flint`` / ``sympy``) overrides ``auto`` (for tests and debugging).
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import Sequence

from ..errors import InputError, install_hint
from .errors import ExactRefused

__all__ = ["Engine", "get_engine", "resolve_engine", "ENGINES", "ENGINE_ENV"]

ENGINES = ("auto", "flint", "sympy")
ENGINE_ENV = "NTKCHECK_EXACT_ENGINE"

Poly = dict  # {tuple[int, ...]: int}


class Engine:
    """Interface (see module docstring)."""

    name = ""

    def __init__(self, nvars: int):
        self.nvars = nvars
        self.names = tuple(f"x{i}" for i in range(nvars))

    def factor(self, poly: Poly) -> tuple[int, list[tuple[Poly, int]]]:
        raise NotImplementedError

    def left_null_space(self, rows: Sequence[Sequence[int]],
                        ncols: int) -> tuple[int, list[list[Fraction]]]:
        r = len(rows)
        if r == 0:
            return 0, []
        if ncols == 0:
            return 0, [[Fraction(int(i == j)) for j in range(r)] for i in range(r)]
        return self._left_null_space(rows, ncols)

    def _left_null_space(self, rows: Sequence[Sequence[int]],
                         ncols: int) -> tuple[int, list[list[Fraction]]]:
        """``left_null_space`` for at least one row and one column."""
        raise NotImplementedError


class FlintEngine(Engine):
    name = "flint"

    def __init__(self, nvars: int):
        super().__init__(nvars)
        import flint

        self._flint = flint
        self._ctx = flint.fmpz_mpoly_ctx.get(self.names, "lex") if nvars else None

    def factor(self, poly: Poly) -> tuple[int, list[tuple[Poly, int]]]:
        p = self._ctx.from_dict(poly)
        content, factors = p.factor()
        check = self._ctx.from_dict({(0,) * self.nvars: int(content)})
        for f, e in factors:
            check *= f ** e
        if check != p:  # pragma: no cover - would be a bug in python-flint
            raise ArithmeticError("flint factorisation does not multiply back to the input")
        return int(content), [({k: int(v) for k, v in f.to_dict().items()}, int(e))
                              for f, e in factors]

    def _left_null_space(self, rows, ncols):
        flint = self._flint
        r = len(rows)
        At = flint.fmpz_mat(ncols, r, [int(rows[i][j]) for j in range(ncols) for i in range(r)])
        null, nullity = At.nullspace()
        rank = r - int(nullity)
        if nullity == 0:
            return rank, []
        B = flint.fmpq_mat(int(nullity), r, [null[i, j] for j in range(int(nullity))
                                             for i in range(r)])
        R, _ = B.rref()
        return rank, [[Fraction(int(R[i, j].p), int(R[i, j].q)) for j in range(r)]
                      for i in range(int(nullity))]


class SympyEngine(Engine):
    name = "sympy"

    def __init__(self, nvars: int):
        super().__init__(nvars)
        import sympy

        self._sympy = sympy
        self._gens = sympy.symbols(self.names) if nvars else ()

    def factor(self, poly: Poly) -> tuple[int, list[tuple[Poly, int]]]:
        sp = self._sympy
        p = sp.Poly.from_dict(poly, *self._gens, domain=sp.ZZ)
        content, factors = p.factor_list()
        check = sp.Poly(int(content), *self._gens, domain=sp.ZZ)
        for f, e in factors:
            check *= f ** e
        if check != p:  # pragma: no cover - would be a bug in sympy
            raise ArithmeticError("sympy factorisation does not multiply back to the input")
        return int(content), [({k: int(v) for k, v in f.as_dict().items()}, int(e))
                              for f, e in factors]

    def _left_null_space(self, rows, ncols):
        from sympy import QQ
        from sympy.polys.matrices import DomainMatrix

        r = len(rows)
        At = {j: {i: QQ(int(rows[i][j])) for i in range(r) if rows[i][j]} for j in range(ncols)}
        At = {j: v for j, v in At.items() if v}
        M = DomainMatrix(At, (ncols, r), QQ)
        null = M.nullspace()
        nullity = null.shape[0]
        if nullity == 0:
            return r, []
        R, _ = null.rref()
        dense = R.to_Matrix()
        return r - nullity, [[Fraction(int(dense[i, j].p), int(dense[i, j].q)) for j in range(r)]
                             for i in range(nullity)]


def _flint_available() -> bool:
    try:
        import flint  # noqa: F401
    except ImportError:
        return False
    return True


def _engine_name(value: str, field: str) -> str:
    if value not in ENGINES:
        raise InputError(f"is '{value}'; choose one of {', '.join(ENGINES)}", field=field)
    return value


def resolve_engine(engine: str) -> str:
    """"flint" or "sympy" for ``engine`` (``auto``: flint if importable, else sympy; the
    environment variable NTKCHECK_EXACT_ENGINE overrides ``auto``); InputError for an unknown
    name, ExactRefused (kind ``engine``) when python-flint is asked for but not installed."""
    engine = _engine_name(engine, "engine")
    if engine == "auto":
        env = os.environ.get(ENGINE_ENV, "").strip().lower()
        if env:
            engine = _engine_name(env, ENGINE_ENV)
    if engine == "auto":
        engine = "flint" if _flint_available() else "sympy"
    elif engine == "flint" and not _flint_available():
        raise ExactRefused("python-flint is not installed; install it with "
                           f"{install_hint('exact', 'python-flint')}, or use engine 'sympy'",
                           kind="engine")
    return engine


def get_engine(engine: str, nvars: int) -> Engine:
    """The engine named ``engine`` (see :func:`resolve_engine`) for ``nvars`` variables."""
    engine = resolve_engine(engine)
    return FlintEngine(nvars) if engine == "flint" else SympyEngine(nvars)
