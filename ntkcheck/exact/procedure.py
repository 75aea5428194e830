"""The exact decision procedure of SPEC §4.

With D the common denominator of every exponent, substitute t_l = exp(z_l / D) (linear terms),
u_lm = exp(z_l z_m / D) (quadratic terms of Gaussian components, l <= m) and keep z_l (uniform
boxes). Then

* discrete:  exp LSE = sum_j w_j t^(D y_j);
* mixture:   exp LSE = sum_k pi_k t^(D m_k) u^(D q_k),  q_k the coefficients of z^T S_k z / 2;
* box:       exp LSE = prod_l t_l^(D a_l) (t_l^(D w_l) - 1) / (w_l z_l),  w = b - a (w_l > 0).

Each becomes C_i * (monomial in t, u) * z^(-...) * prod_k q_k^(e_ik) after factoring the
polynomials exactly over Q (negative exponents are first shifted away by a monomial, whose
t-part joins the affine term). Monomials in t are affine, constants are constants; every other
irreducible factor (non-monomial q_k, each u_lm, each z_l) is *non-affine* and gets a column of
the exponent matrix E (N x K). Then the condition holds iff rank(E) = N, and every rational c
with c^T E = 0 is an exact dependency

    sum_i c_i LSE_i(z) = a + <b, z>,   a = sum_i c_i log C_i,  b = D^-1 sum_i c_i (t-exponent of i).

Every C_i is positive: factors are normalised to a positive leading coefficient (lex order), so
each is positive for t_1 >> t_2 >> ... >> 1, where exp LSE and 1/z are positive too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from math import gcd, lcm
from typing import Callable, Sequence

from ..dataset import Dataset
from ..errors import InputError, install_hint
from ..progress import ProgressUpdate
from .engines import Engine, get_engine, resolve_engine
from .errors import ExactCheckFailed, ExactRefused
from .laws import UNIFORM, ExactLaw, common_denominator, degree_lower_bound, exact_law
from .matrix import left_null_space
from .verify import CHECK_DIGITS, CHECK_POINTS, CHECK_RTOL, check_identity
from .worker import run_with_deadline

__all__ = ["ExactBudget", "ExactDependency", "ExactResult", "decide", "STAGES"]

#: The stages of the exact test as its progress messages name them (``ProgressUpdate.stage``;
#: the first two report ``done`` / ``total`` distributions and polynomials).
STAGES = ("exact: rational parameters", "exact: factoring", "exact: rank",
          "exact: dependencies")


@dataclass(frozen=True)
class ExactBudget:
    """Limits of the exact test; beyond them it refuses (kind ``budget``) instead of running.

    Attributes
    ----------
    max_variables : polynomial variables t_1..t_d and u_lm together (default 16)
    max_degree : total degree of one polynomial to factor with python-flint (default 512)
    max_degree_sympy : the same with sympy, which is much slower on high degrees (default 96)
    max_terms : terms of one polynomial (distinct atoms / components; default 4096)
    max_distributions : N (default 100000)
    max_core : rows of E left after peeling, eliminated exactly by python-flint (default 3000)
    max_core_sympy : the same with sympy's DomainMatrix (default 400)
    """

    max_variables: int = 16
    max_degree: int = 512
    max_degree_sympy: int = 96
    max_terms: int = 4096
    max_distributions: int = 100_000
    max_core: int = 3000
    max_core_sympy: int = 400


@dataclass(frozen=True)
class ExactDependency:
    """An exact identity sum_i c_i LSE_i(z) = a + <b, z> (SPEC §2), checked at high precision.

    Attributes
    ----------
    coefficients : (N,) Fractions c_i (reduced echelon form: the first non-zero is 1)
    constant : sympy expression, a = log(prod_i C_i^c_i)
    linear : (d,) Fractions b
    check_residual : largest relative residual of the mpmath re-check (<= CHECK_RTOL)
    """

    coefficients: tuple[Fraction, ...]
    constant: object
    linear: tuple[Fraction, ...]
    check_residual: float

    @property
    def constant_value(self) -> float:
        return float(self.constant.evalf(30))

    def certificate(self, names: Sequence[str]) -> dict:
        """Strings of the exact identity, e.g. {"coefficients": {"a": "1", "b": "-1/2"},
        "constant": "log(3/4)", "linear": ["1/2"], ...}."""
        return {"coefficients": {n: str(c) for n, c in zip(names, self.coefficients) if c},
                "constant": str(self.constant),
                "linear": [str(b) for b in self.linear],
                "identity": self.describe(names),
                "check": {"points": CHECK_POINTS, "digits": CHECK_DIGITS,
                          "max_relative_residual": self.check_residual}}

    def describe(self, names: Sequence[str]) -> str:
        """``LSE[b] - LSE[a] = log(3/4) + 1/2*z1``."""
        left = _joined(_signed([(c, f"LSE[{n}]") for n, c in zip(names, self.coefficients)
                                if c]))
        const = str(self.constant)
        right = [("+", const)] if const != "0" else []
        right += _signed([(b, f"z{l + 1}") for l, b in enumerate(self.linear) if b])
        return f"{left} = {_joined(right)}"


def _signed(terms: list[tuple[Fraction, str]]) -> list[tuple[str, str]]:
    """(sign, body) pairs: ``c*z1`` for variables, ``c LSE[a]`` otherwise, no ``1`` factor."""
    out = []
    for c, label in terms:
        mag = abs(c)
        body = label if mag == 1 else (f"{mag}*{label}" if label.startswith("z")
                                       else f"{mag} {label}")
        out.append(("-" if c < 0 else "+", body))
    return out


def _joined(parts: list[tuple[str, str]]) -> str:
    """``a - b + c`` from [("+", "a"), ("-", "b"), ("+", "c")]; "0" when empty."""
    if not parts:
        return "0"
    text = ("-" if parts[0][0] == "-" else "") + parts[0][1]
    return text + "".join(f" {s} {b}" for s, b in parts[1:])


@dataclass(frozen=True)
class ExactResult:
    """The exact verdict with its certificate (SPEC §4).

    Attributes
    ----------
    verdict : "injective" (rank(E) = N) or "not_injective"
    names : the distributions' names (N)
    engine : "flint" or "sympy"
    denominator : D
    variables : descriptions, e.g. ("t1 = exp(z1/2)", "z1")
    factors : (K,) labels of the non-affine factors (columns of E)
    exponents : (N,) sparse rows of E, {column: exponent}
    rank : rank(E)
    constants : (N,) C_i > 0
    t_exponents : (N, d) integer exponents of t (in units of 1/D)
    dependencies : reduced-echelon basis of the exact dependencies
    pivots : peeled (row, column) pairs: row owns a column no later or core row uses
    core_rows : the rows left after peeling (eliminated exactly)
    timings : seconds per stage (rationals, factor, rank, verify, total)
    """

    verdict: str
    names: tuple[str, ...]
    engine: str
    denominator: int
    variables: tuple[str, ...]
    factors: tuple[str, ...]
    exponents: tuple[dict, ...]
    rank: int
    constants: tuple[Fraction, ...]
    t_exponents: tuple[tuple[int, ...], ...]
    dependencies: tuple[ExactDependency, ...]
    pivots: tuple[tuple[int, int], ...]
    core_rows: tuple[int, ...]
    timings: dict = field(default_factory=dict)
    polynomials: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.names), len(self.factors))

    @property
    def injective(self) -> bool:
        return self.rank == len(self.names)

    def reason(self) -> str:
        N, K = self.shape
        if self.injective:
            return (f"exact: the {N} x {K} exponent matrix of the non-affine factors has "
                    f"rank {self.rank} = N ({self.engine}, "
                    f"D = {_int_text(self.denominator, 4000)})")
        return (f"exact: the {N} x {K} exponent matrix of the non-affine factors has rank "
                f"{self.rank} < N = {N}: {N - self.rank} independent exact "
                f"{'dependency' if N - self.rank == 1 else 'dependencies'} "
                f"({self.engine}, D = {_int_text(self.denominator, 4000)})")

    def to_dict(self, max_listed: int = 500) -> dict:
        """JSON-ready summary; E and the factor list are included when K, N <= max_listed."""
        N, K = self.shape
        out = {"status": "decided", "verdict": self.verdict, "engine": self.engine,
               "denominator": (self.denominator if self.denominator < 10**300
                               else _int_text(self.denominator)),
               "variables": list(self.variables),
               "rank": self.rank, "shape": [N, K], "polynomials_factored": self.polynomials,
               "time": {k: round(v, 6) for k, v in self.timings.items()}}
        listed = K <= max_listed and N <= max_listed
        if listed:
            out["factors"] = list(self.factors)
            out["exponents"] = {n: {self.factors[k]: e for k, e in sorted(row.items())}
                                for n, row in zip(self.names, self.exponents)}
        if self.injective:
            proof = {"statement": "rank(E) = N, so sum_i c_i LSE_i affine forces c = 0",
                     "peeled": len(self.pivots),
                     "core": {"rows": [self.names[i] for i in self.core_rows],
                              "rank": len(self.core_rows)}}
            if listed:
                proof["pivots"] = [[self.names[i], self.factors[k]] for i, k in self.pivots]
            else:
                proof["omitted"] = (f"E has {N} rows and {K} columns; call "
                                    "ntkcheck.exact.decide() for the full certificate")
            out["proof"] = proof
        return out


def _key_label(key: tuple, var_names: Sequence[str]) -> str:
    if key[0] == "z":
        return f"z{key[1] + 1}"
    if key[0] == "u":
        return var_names[key[1]]
    return _poly_str(dict(key[1]), var_names)


def _poly_str(poly: dict, var_names: Sequence[str]) -> str:
    parts = []
    for exps in sorted(poly, reverse=True):
        c = poly[exps]
        mono = "*".join(f"{v}^{e}" if e > 1 else v for v, e in zip(var_names, exps) if e)
        mag = abs(c)
        body = mono if (mono and mag == 1) else (f"{mag}*{mono}" if mono else str(mag))
        parts.append(("-" if c < 0 else "+", body))
    return _joined(parts)


def _canonical(poly: dict) -> tuple[int, tuple]:
    """(sign, key): the factor with a positive lex-leading coefficient and content 1."""
    lead = max(poly)
    sign = -1 if poly[lead] < 0 else 1
    g = 0
    for v in poly.values():
        g = gcd(g, v)
    if g != 1:  # pragma: no cover - engines return primitive factors
        raise ArithmeticError("a factor is not primitive")
    return sign, tuple(sorted((k, sign * v) for k, v in poly.items()))


def _scaled(x: Fraction, D: int) -> int:
    """x * D as an int (D is a multiple of x's denominator)."""
    return x.numerator * (D // x.denominator)


@dataclass
class _Row:
    const: Fraction
    t: list[int]
    cols: dict  # key -> exponent
    polys: list  # poly dicts still to factor

    def absorb(self, content: int, factors: list, d: int) -> None:
        """Multiply in the factorisation of one of ``polys``: the content and every monomial
        factor (a variable to a power, times +-1) go to the constant, t (variables < d) and the
        u columns; every other factor gets the column of its canonical form."""
        self.const *= content
        for f, e in factors:
            if len(f) == 1:
                ((exps, c),) = f.items()
                self.const *= Fraction(c) ** e
                for v, ev in enumerate(exps):
                    if not ev:
                        continue
                    if v < d:
                        self.t[v] += ev * e
                    else:
                        self.cols[("u", v)] = self.cols.get(("u", v), 0) + ev * e
                continue
            sign, fkey = _canonical(f)
            self.const *= sign ** e
            self.cols[("p", fkey)] = self.cols.get(("p", fkey), 0) + e


class _Builder:
    """Turns exact laws into rows: constant, t-exponent, monomial columns, polynomials."""

    def __init__(self, laws: Sequence[ExactLaw], D: int):
        self.laws, self.D = laws, D
        self.d = laws[0].dim
        pairs = set()
        for law in laws:
            for k in range(len(law.covariances)):
                pairs.update(law.quadratic(k))
        self.pairs = sorted(pairs)
        self.nvars = self.d + len(self.pairs)

    def var_names(self) -> list[str]:
        return ([f"t{l + 1}" for l in range(self.d)]
                + [f"u{l + 1}{m + 1}" if self.d < 10 else f"u{l + 1}_{m + 1}"
                   for l, m in self.pairs])

    def descriptions(self, uses_z: Sequence[int]) -> list[str]:
        D = self.D
        den = "" if D == 1 else f"/{_int_text(D, 4000)}"
        names = self.var_names()
        out = [f"{names[l]} = exp(z{l + 1}{den})" for l in range(self.d)]
        for j, (l, m) in enumerate(self.pairs):
            arg = f"z{l + 1}^2" if l == m else f"z{l + 1}*z{m + 1}"
            out.append(f"{names[self.d + j]} = exp({arg}{den})")
        return out + [f"z{l + 1}" for l in uses_z]

    def row(self, law: ExactLaw) -> _Row:
        D, d = self.D, self.d
        if law.kind == UNIFORM:
            const, t, cols, polys = Fraction(1), [0] * d, {}, []
            for l, (a, b) in enumerate(zip(law.low, law.high)):
                t[l] += _scaled(a, D)
                n = _scaled(b, D) - _scaled(a, D)
                if n == 0:
                    continue
                const /= (b - a)
                cols[("z", l)] = -1
                exps_hi = tuple(n if j == l else 0 for j in range(self.nvars))
                polys.append({exps_hi: 1, (0,) * self.nvars: -1})
            return _Row(const, t, cols, polys)
        terms: dict[tuple[int, ...], Fraction] = {}
        for k, (p, w) in enumerate(zip(law.points, law.weights)):
            exps = [_scaled(x, D) for x in p] + [0] * len(self.pairs)
            if law.covariances:
                quad = law.quadratic(k)
                for j, pair in enumerate(self.pairs):
                    exps[d + j] = _scaled(quad.get(pair, Fraction(0)), D)
            key = tuple(exps)
            terms[key] = terms.get(key, Fraction(0)) + w
        shift = [min(e[v] for e in terms) for v in range(self.nvars)]
        L = 1
        for w in terms.values():
            L = lcm(L, w.denominator)
        poly = {tuple(e - s for e, s in zip(exps, shift)): int(w * L) for exps, w in terms.items()}
        cols = {("u", d + j): shift[d + j] for j in range(len(self.pairs)) if shift[d + j]}
        row = _Row(Fraction(1, L), shift[:d], cols, [])
        if len(poly) == 1:
            row.const *= next(iter(poly.values()))
        else:
            row.polys.append(poly)
        return row


@lru_cache(maxsize=4096)
def _valuations(C: Fraction) -> tuple[tuple[int, int], ...]:
    """((p, v_p(C)), ...) over the primes of C's numerator (v > 0) and denominator (v < 0)."""
    import sympy

    return (tuple(sympy.factorint(C.numerator).items())
            + tuple((p, -v) for p, v in sympy.factorint(C.denominator).items()))


def _log_product(constants: Sequence[Fraction], c: Sequence[Fraction]):
    """a = sum_i c_i log C_i in closed form: log(prod_p p^(sum_i c_i v_p(C_i))), collected over
    the primes p so that cancellations are exact (it is 0 for probability measures, as every
    LSE vanishes at z = 0, but it is computed, not assumed)."""
    import sympy

    powers: dict[int, Fraction] = {}
    for ci, C in zip(c, constants):
        if not ci:
            continue
        for p, v in _valuations(C):
            powers[p] = powers.get(p, Fraction(0)) + ci * v
    prod = sympy.Integer(1)
    for p, e in sorted(powers.items()):
        if e:
            prod *= sympy.Pow(sympy.Integer(p), sympy.Rational(e.numerator, e.denominator))
    return sympy.log(prod)


def _budget_check(builder: _Builder, rows: Sequence[_Row], names: Sequence[str],
                  budget: ExactBudget, engine: str, laws: Sequence[ExactLaw]) -> None:
    if len(rows) > budget.max_distributions:
        raise ExactRefused(f"{len(rows)} distributions exceed the exact budget of "
                           f"{budget.max_distributions}", kind="budget")
    if builder.nvars > budget.max_variables:
        raise ExactRefused(f"{builder.nvars} polynomial variables (t_l and u_lm) exceed the exact "
                           f"budget of {budget.max_variables}", kind="budget")
    max_deg = budget.max_degree if engine == "flint" else budget.max_degree_sympy
    for name, row in zip(names, rows):
        for poly in row.polys:
            deg = max(sum(e) for e in poly)
            if deg > max_deg:
                hint = _denominator_hint(laws, builder.D)
                raise ExactRefused(
                    f"'{name}' gives a polynomial of degree {_int_text(deg)} in t = exp(z/D), "
                    f"D = {_int_text(builder.D)}, above the {engine} budget of {max_deg}{hint}",
                    kind="budget")
            if len(poly) > budget.max_terms:
                raise ExactRefused(f"'{name}' gives a polynomial with {len(poly)} terms, above "
                                   f"the budget of {budget.max_terms}", kind="budget")


def _int_text(n: int, digits: int = 40) -> str:
    """``str(n)``, or its order of magnitude when it has more than ``digits`` digits (too long
    to read, or beyond Python's 4300-digit limit of int-to-str conversion)."""
    if abs(n) < 10**digits:
        return str(n)
    return f"~10^{int(abs(n).bit_length() * 0.30103)}"


def _denominator_hint(laws: Sequence[ExactLaw], D: int) -> str:
    if D == 1:
        return "; the exponents are large integers"
    worst = max((x for law in laws for x in law.exponents()), key=lambda x: x.denominator)
    if worst.denominator & (worst.denominator - 1) == 0 and worst.denominator > 1024:
        origin = ("a float is its exact binary64 value: write small-denominator rationals such "
                  "as \"1/10\" in a .toml spec")
    else:
        origin = "write exponents as small-denominator rationals such as \"1/10\""
    return (f"; D comes from an exponent of denominator {_int_text(worst.denominator)} "
            f"(~{float(worst):.6g}): {origin}")


def decide(data: Dataset, *, engine: str = "auto", budget: ExactBudget | None = None,
           timeout: float | None = None, progress: Callable[[str], None] | None = None,
           ) -> ExactResult:
    """Decide the injectivity condition exactly (SPEC §4) and certify the answer.

    Parameters
    ----------
    data : Dataset
        Distributions; their exact values are read as described in :mod:`.laws` (spec values
        as written, floats at their exact binary64 value).
    engine : "auto" | "flint" | "sympy"
        Factorisation and linear-algebra engine (see :mod:`ntkcheck.exact.engines`).
    budget : ExactBudget, optional
        Size limits checked before any factorisation.
    timeout : float, optional
        Seconds. The test then runs in a child process that is killed at the deadline
        (:mod:`.worker`), so the call returns within ``timeout`` plus a few milliseconds. None
        (or inf): no limit, run in this process.
    progress : callable(str), optional
        Receives short stage messages.

    Returns
    -------
    ExactResult

    Raises
    ------
    ExactRefused
        Over budget, out of time, a covariance not exactly PSD, an unsupported family, engine
        missing, or an internal failure of the worker process (``.kind``).
    ExactCheckFailed
        An exact dependency failed its high-precision re-check (a bug; never expected).
    InputError
        Unknown engine name or a timeout that is not a positive number.
    """
    name = resolve_engine(engine)
    budget = budget or ExactBudget()
    if timeout is None or timeout == math.inf:
        return _decide(data, name, budget, progress=progress)
    if not timeout > 0:
        raise InputError(f"must be a positive number of seconds, got {timeout}",
                         field="timeout")
    hint = " or install python-flint, much faster: " + install_hint("exact", "python-flint") \
        if name == "sympy" else ""
    _preload(name)
    start = time.monotonic()
    result = run_with_deadline(_decide, (data, name, budget), timeout=float(timeout),
                               progress=progress, timeout_hint=hint)
    result.timings["wall"] = time.monotonic() - start
    return result


_WARM: set[str] = set()


def _preload(engine: str) -> None:
    """Import and warm the engine's libraries in this process, once per engine: a forked child
    inherits them instead of importing them again on every call (about 1 s for sympy, whose
    polynomial modules load lazily on first use), and the parent needs sympy anyway to unpickle
    the result. Warming runs the whole procedure on a two-law case (a few ms)."""
    if engine in _WARM:
        return
    import numpy as np

    from ..distributions import Discrete

    coin = Discrete(np.array([[0.0], [1.0]]))
    binom = Discrete(np.array([[0.0], [1.0], [2.0]]), np.array([1.0, 2.0, 1.0]))
    _decide(Dataset(("coin", "binom"), (coin, binom)), engine, ExactBudget())
    _WARM.add(engine)


def _decide(data: Dataset, engine: str, budget: ExactBudget, *,
            progress: Callable[[str], None] | None = None) -> ExactResult:
    """The procedure of the module docstring, start to end (no time limit of its own)."""
    say = progress or (lambda msg: None)
    start = time.monotonic()
    timings: dict[str, float] = {}

    n_laws = len(data.names)
    every = max(1, n_laws // 100)  # about 100 progress messages per stage, whatever N
    say(ProgressUpdate("exact: rational parameters", stage=STAGES[0], done=0, total=n_laws))
    max_deg = budget.max_degree if engine == "flint" else budget.max_degree_sympy
    laws = []
    for i, (name, dist) in enumerate(zip(data.names, data.distributions)):
        if i and i % every == 0:
            say(ProgressUpdate(f"exact: rational parameters {i}/{n_laws}", stage=STAGES[0],
                               done=i, total=n_laws))
        law = exact_law(name, dist)
        bound, own = degree_lower_bound(law)
        if bound > max_deg:  # refuse at the first such law (float data), before reading all
            raise ExactRefused(
                f"'{name}' gives a polynomial of degree {_int_text(bound)} or more in "
                f"t = exp(z/D), D a multiple of {_int_text(own)}, above the {engine} budget "
                f"of {max_deg}{_denominator_hint([law], own)}", kind="budget")
        laws.append(law)
    D = common_denominator(laws)
    builder = _Builder(laws, D)
    rows = [builder.row(law) for law in laws]
    eng: Engine = get_engine(engine, builder.nvars)
    _budget_check(builder, rows, data.names, budget, eng.name, laws)
    timings["rationals"] = time.monotonic() - start

    t0 = time.monotonic()
    cache: dict[tuple, tuple[int, list]] = {}
    todo = sum(len(r.polys) for r in rows)
    every = max(1, todo // 100)
    say(ProgressUpdate(f"exact: factoring {todo} polynomials", stage=STAGES[1], done=0,
                       total=todo))
    done = 0
    for row in rows:
        for poly in row.polys:
            key = tuple(sorted(poly.items()))
            if key not in cache:
                cache[key] = eng.factor(poly)
            row.absorb(*cache[key], builder.d)
            done += 1
            if done % every == 0:
                say(ProgressUpdate(f"exact: factored {done}/{todo} polynomials",
                                   stage=STAGES[1], done=done, total=todo))
    timings["factor"] = time.monotonic() - t0
    constants = tuple(row.const for row in rows)
    for name, row in zip(data.names, rows):
        if row.const <= 0:  # pragma: no cover - see the module docstring
            raise ExactCheckFailed(f"non-positive constant C for '{name}'")

    t0 = time.monotonic()
    say(ProgressUpdate("exact: rank of the exponent matrix", stage=STAGES[2]))
    columns: dict[tuple, int] = {}
    sparse = []
    for row in rows:
        sparse.append({columns.setdefault(k, len(columns)): e for k, e in row.cols.items() if e})
    max_core = budget.max_core if eng.name == "flint" else budget.max_core_sympy
    null = left_null_space(sparse, eng, max_core)
    timings["rank"] = time.monotonic() - t0

    t0 = time.monotonic()
    deps = []
    if null.basis:
        say(ProgressUpdate("exact: checking the dependencies at 50 digits", stage=STAGES[3]))
        for c in null.basis:
            a = _log_product(constants, c)
            b = tuple(sum((ci * row.t[l] for ci, row in zip(c, rows) if ci), Fraction(0)) / D
                      for l in range(builder.d))
            residual = check_identity(laws, c, a, b)
            if not residual <= CHECK_RTOL:
                dep = ExactDependency(c, a, b, residual)
                raise ExactCheckFailed(
                    f"the exact identity {dep.describe(data.names)} fails its {CHECK_DIGITS}-digit "
                    f"re-check (relative residual {residual:.2g}); this is a bug in ntkcheck, "
                    "please report it")
            deps.append(ExactDependency(c, a, b, residual))
    timings["verify"] = time.monotonic() - t0
    timings["total"] = time.monotonic() - start

    var_names = builder.var_names()
    labels = [""] * len(columns)
    for k, j in columns.items():
        labels[j] = _key_label(k, var_names)
    uses_z = sorted({k[1] for k in columns if k[0] == "z"})
    return ExactResult(
        verdict="injective" if null.rank == len(rows) else "not_injective",
        names=tuple(data.names), engine=eng.name, denominator=D,
        variables=tuple(builder.descriptions(uses_z)), factors=tuple(labels),
        exponents=tuple(sparse), rank=null.rank, constants=constants,
        t_exponents=tuple(tuple(r.t) for r in rows), dependencies=tuple(deps),
        pivots=null.pivots, core_rows=null.core_rows, timings=timings, polynomials=len(cache))
