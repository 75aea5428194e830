"""The exact decision procedure of SPEC §4 (ntkcheck.exact): every dependency family of SPEC §2
in exact form, independent families, common denominators, 2-D / 3-D atoms, refusals, and the
exact linear algebra, with both engines."""

from __future__ import annotations

import importlib.util
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy

from ntkcheck import Dataset, Discrete, GaussianMixture, UniformBox
from ntkcheck.exact import ExactBudget, ExactRefused, decide
from ntkcheck.exact.engines import get_engine
from ntkcheck.exact.matrix import left_null_space
from ntkcheck.io.spec import parse_spec

HAVE_FLINT = importlib.util.find_spec("flint") is not None
ENGINES = [pytest.param("flint", marks=pytest.mark.skipif(not HAVE_FLINT,
                                                           reason="python-flint not installed")),
           "sympy"]


# ---------------------------------------------------------------- helpers

def disc(name, atoms, weights=None):
    entry = {"name": name, "kind": "discrete", "atoms": atoms}
    if weights is not None:
        entry["weights"] = weights
    return entry


def box(name, low, high):
    return {"name": name, "kind": "uniform", "low": low, "high": high}


def gmm(name, weights, means, covariances):
    return {"name": name, "kind": "gaussian_mixture", "weights": weights, "means": means,
            "covariances": covariances}


def spec(*entries) -> Dataset:
    return parse_spec({"distribution": list(entries)}, "<test>")


def q(x) -> mpmath.mpf:
    f = Fraction(str(x)) if not isinstance(x, Fraction) else x
    return mpmath.mpf(f.numerator) / f.denominator


def reference_lse(entry: dict, z: list) -> mpmath.mpf:
    """LSE from the spec entry itself, independently of ntkcheck: direct sums for discrete laws
    and mixtures, numerical quadrature (mpmath.quad) for boxes."""
    kind = entry["kind"]
    if kind == "uniform":
        total = mpmath.mpf(0)
        for a, b, zl in zip(entry["low"], entry["high"], z):
            a, b = q(a), q(b)
            if a == b:
                total += a * zl
            else:
                total += mpmath.log(mpmath.quad(lambda y: mpmath.exp(zl * y), [a, b]) / (b - a))
        return total
    if kind == "discrete":
        atoms = [a if isinstance(a, list) else [a] for a in entry["atoms"]]
        weights = entry.get("weights", [1] * len(atoms))
        quads = [0] * len(atoms)
    else:
        atoms, weights = entry["means"], entry["weights"]
        quads = [sum(q(S[l][m]) * z[l] * z[m] for l in range(len(z)) for m in range(len(z))) / 2
                 for S in entry["covariances"]]
    total_w = sum(q(w) for w in weights)
    terms = [q(w) / total_w * mpmath.exp(sum(q(y) * zl for y, zl in zip(a, z)) + qd)
             for a, w, qd in zip(atoms, weights, quads) if q(w) != 0]
    return mpmath.log(mpmath.fsum(terms))


def assert_certificate_holds(entries, certificate: dict, points: int = 3) -> None:
    """The *printed* certificate (strings) holds at random points to 1e-25 (mpmath, 40 digits)."""
    rng = np.random.default_rng(1)
    by_name = {e["name"]: e for e in entries}
    with mpmath.workdps(40):
        a = mpmath.mpf(str(sympy.N(sympy.sympify(certificate["constant"]), 50)))
        b = [q(x) for x in certificate["linear"]]
        for _ in range(points):
            z = [mpmath.mpf(int(v)) / 16 for v in rng.integers(-24, 25, size=len(b))]
            left = mpmath.fsum(q(c) * reference_lse(by_name[n], z)
                               for n, c in certificate["coefficients"].items())
            right = a + mpmath.fsum(bl * zl for bl, zl in zip(b, z))
            assert abs(left - right) <= mpmath.mpf("1e-25") * (1 + abs(left))


def only_dependency(result):
    assert result.verdict == "not_injective"
    assert len(result.dependencies) == 1
    return result.dependencies[0]


# ---------------------------------------------------------------- dependency families (SPEC §2)

@pytest.mark.parametrize("engine", ENGINES)
def test_translate_is_an_exact_dependency_with_shift_as_linear_part(engine):
    """mu(. - t) and mu: LSE differs by <t, z>, found exactly with b = t (1-D, t = 1/2)."""
    entries = [disc("a", [0, 1, 3], ["1/6", "1/3", "1/2"]),
               disc("b", ["1/2", "3/2", "7/2"], ["1/6", "1/3", "1/2"])]
    res = decide(spec(*entries), engine=engine)
    dep = only_dependency(res)
    cert = dep.certificate(res.names)
    assert cert["coefficients"] == {"a": "1", "b": "-1"}
    assert cert["constant"] == "0" and cert["linear"] == ["-1/2"]
    assert res.denominator == 2
    assert_certificate_holds(entries, cert)


@pytest.mark.parametrize("engine", ENGINES)
def test_dirac_alone_is_a_dependency(engine):
    """A Dirac mass has an affine LSE: c = (1) with b = its atom, a = 0."""
    entries = [disc("dirac", [["2/3", "-1"]]), disc("pair", [[0, 0], [1, 2]])]
    res = decide(spec(*entries), engine=engine)
    dep = only_dependency(res)
    cert = dep.certificate(res.names)
    assert cert["coefficients"] == {"dirac": "1"}
    assert cert["linear"] == ["2/3", "-1"] and cert["constant"] == "0"
    assert res.exponents[0] == {}  # no non-affine factor at all
    assert_certificate_holds(entries, cert)


@pytest.mark.parametrize("engine", ENGINES)
def test_binomial_is_twice_bernoulli(engine):
    """Binomial(2, 1/2) = Bernoulli(1/2) * Bernoulli(1/2): LSE[binom] - 2 LSE[coin] = 0."""
    entries = [disc("binom", [0, 1, 2], ["1/4", "1/2", "1/4"]), disc("coin", [0, 1])]
    res = decide(spec(*entries), engine=engine)
    cert = only_dependency(res).certificate(res.names)
    assert cert["coefficients"] == {"binom": "1", "coin": "-2"}
    assert cert["constant"] == "0" and cert["linear"] == ["0"]
    assert_certificate_holds(entries, cert)


@pytest.mark.parametrize("engine", ENGINES)
def test_uniform_convolution_with_bernoulli(engine):
    """Uniform[0,2] = Uniform[0,1] * (delta_0 + delta_1)/2, with a generic third law."""
    entries = [box("box2", [0], [2]), box("box1", [0], [1]), disc("coin", [0, 1]),
               disc("skewed", [0, 1, 3], ["1/6", "1/3", "1/2"])]
    res = decide(spec(*entries), engine=engine)
    cert = only_dependency(res).certificate(res.names)
    assert cert["coefficients"] == {"box2": "1", "box1": "-1", "coin": "-1"}
    assert cert["identity"] == "LSE[box2] - LSE[box1] - LSE[coin] = 0"
    assert_certificate_holds(entries, cert)


@pytest.mark.parametrize("engine", ENGINES)
def test_uniform_boxes_in_2d_with_offsets_and_scaled_widths(engine):
    """Box [-1/2, 3/2] x [1, 2] is the box [0, 2] x [0, 1] translated, and [0,2] = [0,1] * coin:
    two exact dependencies with linear parts read off the offsets."""
    entries = [box("b", [0, 0], [2, 1]), box("b_shift", ["-1/2", 1], ["3/2", 2]),
               box("unit", [0, 0], [1, 1]), disc("coin_x", [[0, 0], [1, 0]]),
               disc("generic", [[0, 0], [1, 0], [0, 1]], [1, 2, 3])]
    res = decide(spec(*entries), engine=engine)
    assert res.verdict == "not_injective" and len(res.dependencies) == 2
    certs = [d.certificate(res.names) for d in res.dependencies]
    # reduced echelon form: leading 1 on b in the first, on b_shift in the second
    assert certs[0]["coefficients"] == {"b": "1", "unit": "-1", "coin_x": "-1"}
    assert certs[1]["coefficients"] == {"b_shift": "1", "unit": "-1", "coin_x": "-1"}
    assert certs[1]["linear"] == ["-1/2", "1"]
    for cert in certs:
        assert_certificate_holds(entries, cert)


@pytest.mark.parametrize("engine", ENGINES)
def test_mixture_with_shared_covariance_is_a_convolution(engine):
    """sum_k pi_k N(m_k, S) = N(0, S) * sum_k pi_k delta_{m_k}, here in 2-D with a negative
    off-diagonal (exercises the shift of negative u-exponents)."""
    S = [[1, "-1/2"], ["-1/2", "3/2"]]
    entries = [gmm("mix", ["1/3", "2/3"], [[0, 1], [2, -1]], [S, S]),
               gmm("gauss", [1], [[0, 0]], [S]),
               disc("means", [[0, 1], [2, -1]], ["1/3", "2/3"]),
               disc("other", [[0, 0], [1, 1], [2, 0]])]
    res = decide(spec(*entries), engine=engine)
    cert = only_dependency(res).certificate(res.names)
    assert cert["coefficients"] == {"mix": "1", "gauss": "-1", "means": "-1"}
    assert cert["constant"] == "0" and cert["linear"] == ["0", "0"]
    assert any(v.startswith("u12 = exp(z1*z2") for v in res.variables)
    assert_certificate_holds(entries, cert)


@pytest.mark.parametrize("engine", ENGINES)
def test_any_two_gaussians_in_1d_are_dependent(engine):
    """N(1/2, 1) and N(-1, 3): 3 LSE_1 - LSE_2 = (3/2 + 1) z, i.e. c = (1, -1/3), b = 5/6."""
    entries = [gmm("g1", [1], [["1/2"]], [[[1]]]), gmm("g2", [1], [[-1]], [[[3]]])]
    res = decide(spec(*entries), engine=engine)
    cert = only_dependency(res).certificate(res.names)
    assert cert["coefficients"] == {"g1": "1", "g2": "-1/3"}
    assert cert["linear"] == ["5/6"] and cert["constant"] == "0"
    assert_certificate_holds(entries, cert)


@pytest.mark.parametrize("engine", ENGINES)
def test_four_gaussians_in_2d_are_dependent_three_are_not(engine):
    """Symmetric 2x2 matrices form a 3-dim space: S4 = S2 + S3 gives exactly one dependency;
    S1, S2, S3 alone are independent, so their Gaussians are (SPEC §2)."""
    S1, S2 = [[1, 0], [0, 1]], [[1, 0], [0, 2]]
    S3, S4 = [[1, "1/2"], ["1/2", 1]], [[2, "1/2"], ["1/2", 3]]
    means = [[0, 0], [1, 0], [0, "1/3"], [1, 1]]
    entries = [gmm(f"g{k + 1}", [1], [m], [S]) for k, (m, S) in enumerate(zip(means,
                                                                              [S1, S2, S3, S4]))]
    res = decide(spec(*entries), engine=engine)
    cert = only_dependency(res).certificate(res.names)
    assert cert["coefficients"] == {"g2": "1", "g3": "1", "g4": "-1"}
    assert cert["linear"] == ["0", "-2/3"]
    assert_certificate_holds(entries, cert)
    three = decide(spec(*entries[:3]), engine=engine)
    assert three.verdict == "injective" and three.rank == 3


# ---------------------------------------------------------------- independence and structure

@pytest.mark.parametrize("engine", ENGINES)
def test_bernoulli_half_and_third_are_independent(engine):
    """Bernoulli(1/2) and Bernoulli(1/3): distinct irreducible factors, rank(E) = N."""
    res = decide(spec(disc("half", [0, 1]), disc("third", [0, 1], ["2/3", "1/3"])), engine=engine)
    assert res.verdict == "injective" and res.injective
    assert res.rank == 2 and res.shape == (2, 2) and res.dependencies == ()
    proof = res.to_dict()["proof"]
    assert proof["peeled"] == 2 and {p[0] for p in proof["pivots"]} == {"half", "third"}


@pytest.mark.parametrize("engine", ENGINES)
def test_denominators_force_a_common_d(engine):
    """Atoms 1/2 and 1/3 give D = 6; a translate by 1/3 of {0, 1/2} is found with b = 1/3."""
    entries = [disc("a", [0, "1/2"]), disc("b", ["1/3", "5/6"]), disc("c", [0, "1/3"])]
    res = decide(spec(*entries), engine=engine)
    assert res.denominator == 6
    assert res.variables[0] == "t1 = exp(z1/6)"
    cert = only_dependency(res).certificate(res.names)
    assert cert["coefficients"] == {"a": "1", "b": "-1"} and cert["linear"] == ["-1/3"]
    assert_certificate_holds(entries, cert)


@pytest.mark.parametrize("engine", ENGINES)
def test_three_dimensional_atoms(engine):
    """3-D: a translate and a convolution (product of two 1-D coins on orthogonal axes is the
    uniform law on the square's corners) among generic laws."""
    entries = [disc("a", [[0, 0, 0], [1, 0, 2], [0, 1, 1]], [1, 2, 3]),
               disc("a_t", [["1/2", 1, -1], ["3/2", 1, 1], ["1/2", 2, 0]], [1, 2, 3]),
               disc("cx", [[0, 0, 0], [1, 0, 0]]), disc("cy", [[0, 0, 0], [0, 1, 0]]),
               disc("sq", [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]),
               disc("g", [[0, 0, 0], [1, 1, 1], [2, 0, 1], [0, 2, 2]], [1, 1, 2, 3])]
    res = decide(spec(*entries), engine=engine)
    assert res.verdict == "not_injective" and len(res.dependencies) == 2
    certs = [d.certificate(res.names) for d in res.dependencies]
    assert certs[0]["coefficients"] == {"a": "1", "a_t": "-1"}
    assert certs[0]["linear"] == ["-1/2", "-1", "1"]
    assert certs[1]["coefficients"] == {"cx": "1", "cy": "1", "sq": "-1"}
    for cert in certs:
        assert_certificate_holds(entries, cert)


@pytest.mark.parametrize("engine", ENGINES)
def test_fractional_coefficient_and_exact_constant(engine):
    """Binomial(3, 1/3) is three Bernoulli(1/3): LSE[bern] - 1/3 LSE[binom3] = 0, with
    constants C = 1/3 and 1/27 whose closed-form combination cancels exactly to 0 (every LSE
    vanishes at z = 0, so a = 0 for probability measures)."""
    entries = [disc("bern", [0, 1], ["2/3", "1/3"]),
               disc("binom3", [0, 1, 2, 3], ["8/27", "4/9", "2/9", "1/27"]),
               disc("other", [0, 2, 3], [1, 1, 1])]
    res = decide(spec(*entries), engine=engine)
    assert res.constants[:2] == (Fraction(1, 3), Fraction(1, 27))
    cert = only_dependency(res).certificate(res.names)
    assert cert["coefficients"] == {"bern": "1", "binom3": "-1/3"}
    assert cert["constant"] == "0" and cert["linear"] == ["0"]
    assert_certificate_holds(entries, cert)


# ---------------------------------------------------------------- the float rule and refusals

def test_small_denominator_floats_are_accepted_exactly():
    """Python objects from floats: 0.5, 1.25 and weights 1/4, 3/4 are exact binary rationals."""
    ds = Dataset(("a", "b"), (Discrete([[0.5], [1.25]], [0.25, 0.75]),
                              Discrete([[1.5], [2.25]], [0.25, 0.75])))
    res = decide(ds)
    cert = only_dependency(res).certificate(res.names)
    assert cert["linear"] == ["-1"] and res.denominator == 4


def test_equal_float_weights_are_read_as_uniform():
    """Token data: weights 1/3 in float are all equal, hence the uniform law exactly."""
    ds = Dataset.from_tokens([np.array([[0.0], [1.0], [2.0]]), np.array([[1.0], [2.0], [3.0]])])
    res = decide(ds)
    assert only_dependency(res).certificate(res.names)["linear"] == ["-1"]


def test_float_atom_is_its_binary_value_and_the_budget_says_how_to_fix_it():
    """A Python float 0.1 is its binary64 value 3602879701896397/2^55 (never rounded to 1/10):
    D = 2^55 makes the degree far over budget; the refusal names the binary value and the fix."""
    ds = Dataset(("a", "b"), (Discrete([[0.0], [0.1]]), Discrete([[0.0], [1.0]])))
    with pytest.raises(ExactRefused) as err:
        decide(ds)
    assert err.value.kind == "budget"
    assert f"D a multiple of {2**55}" in err.value.reason
    assert "binary64" in err.value.reason and '"1/10"' in err.value.reason


def test_float_weights_are_normalised_exactly_from_the_values_given():
    """Weights [1., 4., 4.] on atoms 0, 1, 2 are (1 + 2t)^2 / 9, and [1., 2.] on 0, 1 is
    (1 + 2t) / 3: LSE[sq] = 2 LSE[lin] exactly. Normalising in float first (1/9 and 4/9 are not
    binary fractions) would have lost the identity; the exact test normalises the given values."""
    ds = Dataset(("sq", "lin"), (Discrete([[0.0], [1.0], [2.0]], [1.0, 4.0, 4.0]),
                                 Discrete([[0.0], [1.0]], [1.0, 2.0])))
    res = decide(ds)
    cert = only_dependency(res).certificate(res.names)
    assert cert["coefficients"] == {"sq": "1", "lin": "-2"} and cert["constant"] == "0"
    assert res.constants[:2] == (Fraction(1, 9), Fraction(1, 3))


@pytest.mark.parametrize("engine", ENGINES)
def test_decimal_weights_are_exact_decimals(engine):
    """Binomial(2, 3/10) written in decimals, [0.49, 0.42, 0.09] (Decimal, as a .toml/.json file
    gives them), next to Bernoulli(3/10) as [0.7, 0.3]: 0.49 + 0.42 t + 0.09 t^2 = (0.7 + 0.3 t)^2
    exactly, so LSE[binom] - 2 LSE[bern] = 0. The same numbers as Python floats are binary64
    values, for which the identity fails ((0.7)^2 != 0.49 in binary64): independent."""
    from decimal import Decimal as Dec

    dec = [disc("binom", [0, 1, 2], [Dec("0.49"), Dec("0.42"), Dec("0.09")]),
           disc("bern", [0, 1], [Dec("0.7"), Dec("0.3")])]
    res = decide(spec(*dec), engine=engine)
    cert = only_dependency(res).certificate(res.names)
    assert cert["identity"] == "LSE[binom] - 2 LSE[bern] = 0"
    assert Fraction(0.7) ** 2 != Fraction(0.49)  # why the binary64 reading is independent
    floats = [disc("binom", [0, 1, 2], [0.49, 0.42, 0.09]), disc("bern", [0, 1], [0.7, 0.3])]
    assert decide(spec(*floats), engine=engine).verdict == "injective"


def test_zero_weight_atoms_are_dropped_from_the_exact_data():
    """A zero-weight atom in the spec changes neither the law nor the exact answer."""
    with_zero = spec(disc("a", [0, 1, 7], ["1/2", "1/2", 0]), disc("b", [0, 2]))
    without = spec(disc("a", [0, 1]), disc("b", [0, 2]))
    r1, r2 = decide(with_zero), decide(without)
    assert r1.factors == r2.factors and r1.exponents == r2.exponents
    assert r1.constants == r2.constants


def test_asymmetric_exact_covariance_is_refused():
    """A covariance that is symmetric only up to round-off is not exact: refused."""
    ds = spec(gmm("g", [1], [[0, 0]], [[[1, "1/3"], [0.3333333333333333, 1]]]))
    with pytest.raises(ExactRefused, match="not exactly symmetric"):
        decide(ds)


def test_degree_budget_refuses_with_the_reason():
    """Atoms 0 and 1000 need degree 1000 in t: over a budget of 512, refused before factoring."""
    with pytest.raises(ExactRefused) as err:
        decide(spec(disc("far", [0, 1000])), budget=ExactBudget(max_degree=512))
    assert err.value.kind == "budget" and "degree 1000" in err.value.reason


def test_python_float_in_a_spec_dict_hits_the_budget_with_a_hint():
    """A Python float 0.1 given to parse_spec is its exact binary value (denominator 2^55): the
    degree is far over budget and the message points at the "1/10" spelling."""
    with pytest.raises(ExactRefused) as err:
        decide(spec(disc("a", [0, 0.1]), disc("b", [0, 1])))
    assert err.value.kind == "budget" and '"1/10"' in err.value.reason


def test_decimal_atom_gives_a_decimal_denominator():
    """The decimal 0.1 (Decimal or the string "0.1") is 1/10: D = 10, the translate by 1/10 is
    found with b = 1/10."""
    from decimal import Decimal as Dec

    res = decide(spec(disc("a", [0, 1, 3]), disc("b", [Dec("0.1"), "1.1", "3.1"])))
    assert res.denominator == 10
    assert only_dependency(res).certificate(res.names)["linear"] == ["-1/10"]


def test_timeout_refuses_cleanly():
    """A deadline already passed stops before the first factorisation, kind timeout."""
    with pytest.raises(ExactRefused) as err:
        decide(spec(disc("a", [0, 1]), disc("b", [0, 2])), timeout=1e-9)
    assert err.value.kind == "timeout" and "--exact-timeout" in err.value.reason


def test_unknown_engine_is_an_input_error():
    """engine must be auto, flint or sympy; the message lists the choices."""
    from ntkcheck.errors import InputError

    with pytest.raises(InputError, match="auto, flint, sympy"):
        decide(spec(disc("a", [0, 1])), engine="maple")


def test_environment_variable_forces_the_engine(monkeypatch):
    """NTKCHECK_EXACT_ENGINE=sympy overrides engine='auto'."""
    monkeypatch.setenv("NTKCHECK_EXACT_ENGINE", "sympy")
    assert decide(spec(disc("a", [0, 1]))).engine == "sympy"


@pytest.mark.skipif(not HAVE_FLINT, reason="python-flint not installed")
def test_engines_agree_on_a_mixed_dataset():
    """flint and sympy give the same factors, exponent matrix, rank and certificates."""
    entries = [box("box2", [0], [2]), box("box1", [0], [1]), disc("coin", [0, 1]),
               disc("die", [1, 2, 3, 4, 5, 6]), gmm("mix", ["1/4", "3/4"], [[-1], [2]],
                                                     [[["1/2"]], [[1]]]),
               gmm("g", [1], [[0]], [[[2]]]), disc("t", ["1/3", "4/3"])]
    ds = spec(*entries)
    a, b = decide(ds, engine="flint"), decide(ds, engine="sympy")
    assert (a.engine, b.engine) == ("flint", "sympy")
    assert a.factors == b.factors and a.exponents == b.exponents and a.rank == b.rank
    assert [d.certificate(a.names) for d in a.dependencies] == \
        [d.certificate(b.names) for d in b.dependencies]


# ---------------------------------------------------------------- exact linear algebra

@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(6))
def test_left_null_space_matches_sympy_matrix(engine, seed):
    """Peeling + engine elimination: rank and echelon basis equal sympy's on random sparse
    integer matrices (some rows duplicated or combined to force dependencies)."""
    rng = np.random.default_rng(seed)
    N, K = 7, 6
    E = rng.integers(-2, 3, size=(N, K)) * (rng.random((N, K)) < 0.35)
    E[5] = E[1] + 2 * E[2]
    E[6] = E[3] if seed % 2 else 0
    rows = [{k: int(v) for k, v in enumerate(r) if v} for r in E]
    ns = left_null_space(rows, get_engine(engine, 1))
    M = sympy.Matrix(E.tolist())
    assert ns.rank == M.rank()
    expected = sympy.Matrix.hstack(*M.T.nullspace()).T.rref()[0] if ns.basis else None
    if expected is None:
        assert M.rank() == N
    else:
        got = sympy.Matrix([[sympy.Rational(c.numerator, c.denominator) for c in v]
                            for v in ns.basis])
        assert got == expected
        assert got * M == sympy.zeros(len(ns.basis), K)


@pytest.mark.parametrize("engine", ENGINES)
def test_grid_dataset_scales_and_finds_planted_translates(engine):
    """A small digit-like dataset (60 laws on a 4 x 4 grid, integer weights) with two planted
    translates: exactly those two dependencies, everything else peeled."""
    rng = np.random.default_rng(3)
    ys, xs = np.mgrid[0:4, 0:4]
    pts = np.column_stack([xs.ravel(), ys.ravel()])
    entries = []
    for i in range(58):
        w = rng.integers(0, 5, size=16)
        w[i % 16] += 1
        entries.append(disc(f"img{i}", pts.tolist(), [int(x) for x in w]))
    for j in range(2):
        src = entries[j]
        entries.append(disc(f"shift{j}", (pts + [0, 1]).tolist(), src["weights"]))
    res = decide(spec(*entries), engine=engine)
    assert res.verdict == "not_injective" and len(res.dependencies) == 2
    for j, dep in enumerate(res.dependencies):
        cert = dep.certificate(res.names)
        assert cert["coefficients"] == {f"img{j}": "1", f"shift{j}": "-1"}
        assert cert["linear"] == ["0", "-1"]


def test_core_budget_refuses_instead_of_a_long_elimination():
    """Eleven 1-D Gaussians all share the factor u11: nothing peels, the core has 11 rows; with
    max_core = 5 the test refuses (kind budget), with the default it finds 10 dependencies."""
    entries = [gmm(f"g{k}", [1], [[k]], [[[k]]]) for k in range(1, 12)]
    ds = spec(*entries)
    with pytest.raises(ExactRefused) as err:
        decide(ds, budget=ExactBudget(max_core=5, max_core_sympy=5))
    assert err.value.kind == "budget" and "core" in err.value.reason
    res = decide(ds)
    assert len(res.core_rows) == 11 and len(res.dependencies) == 10
    assert_certificate_holds(entries, res.dependencies[-1].certificate(res.names))


def test_float_data_are_refused_at_the_first_law_without_reading_the_rest():
    """Float tokens (denominators ~2^52) are over the degree budget whatever the common D: the
    test refuses at the first such law, before converting the others (here a second law of a
    family the exact test does not know, which would otherwise be refused as unsupported)."""
    from ntkcheck import Distribution

    class Unknown(Distribution):
        dim, rational = 1, None

    rng = np.random.default_rng(0)
    ds = Dataset(("floats", "unknown"), (Discrete(rng.normal(size=(5, 1))), Unknown()))
    with pytest.raises(ExactRefused) as err:
        decide(ds)
    assert err.value.kind == "budget" and "'floats'" in err.value.reason
    with pytest.raises(ExactRefused) as err:
        decide(Dataset(("unknown", "floats"), ds.distributions[::-1]))
    assert err.value.kind == "unsupported"
