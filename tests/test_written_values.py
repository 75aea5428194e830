"""Every claim holds for the values the user wrote (SPEC §3a; issue 19, point 1, input side).

* ``.npz`` weights are stored unnormalised (``TokenArrays.raw_weights``, ``Discrete.rational``)
  and normalised only inside exact or 50-digit checks: integer weights (1, 3), (1, 2, 4) and
  their convolution's products are an *exact* relation, whatever the float normalisation does.
* Spec values that are not binary64 numbers are flagged (``rounded_inputs``), and a relation
  of their nearest doubles that fails for the written values is never printed as a dependency
  (level ``input_rounding``); one that holds for the written values is found although it fails
  for the doubles.

Truth comes from the construction and from this file's own rational / 50-digit arithmetic.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from ntkcheck import Dataset, Discrete, analyze
from ntkcheck.analysis import INCONCLUSIVE, INJECTIVE, NOT_INJECTIVE
from ntkcheck.arrays import as_dataset
from ntkcheck.injectivity.geometry import dataset_geometry
from ntkcheck.injectivity.verify import verify_relation
from ntkcheck.io import load_dataset, parse_spec
from ntkcheck.io.tokens import TokenArrays


# ---- .npz weights: normalised exactly, never in floating point --------------------------------

def _convolution_npz(tmp_path, wa, wb, d=2, seed=0, generic=4):
    """Sequences a, b (integer atoms, integer weights wa, wb), their convolution a*b (atom
    sums, weight products: exact in binary64) and ``generic`` Gaussian sequences."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-5, 6, size=(len(wa), d)).astype(float)
    b = rng.integers(-5, 6, size=(len(wb), d)).astype(float)
    conv = (a[:, None, :] + b[None, :, :]).reshape(-1, d)
    wc = (np.asarray(wa, float)[:, None] * np.asarray(wb, float)[None, :]).ravel()
    seqs = [(a, wa), (b, wb), (conv, wc)] + [(rng.normal(size=(5, d)), np.ones(5))
                                             for _ in range(generic)]
    n = max(len(x) for x, _ in seqs)
    T, W = np.zeros((len(seqs), n, d)), np.zeros((len(seqs), n))
    for i, (x, w) in enumerate(seqs):
        T[i, :len(x)], W[i, :len(x)] = x, w
    names = np.array(["a", "b", "ab"] + [f"g{i}" for i in range(generic)])
    path = tmp_path / "conv.npz"
    np.savez(path, tokens=T, weights=W, names=names)
    return path


# weight pairs whose float normalisation breaks the products (the old loader failed them:
# `failed` or `data_precision`), and the pair
WEIGHTS = [((1, 3), (1, 2, 4)), ((1, 5), (1, 3, 9)), ((2, 3), (1, 2, 4)), ((1, 3), (1, 1, 1)),
           ((1, 3), (5, 6, 7))]


def test_raw_weights_are_kept_and_become_the_exact_parameters(tmp_path):
    path = _convolution_npz(tmp_path, (1, 3), (1, 2, 4))
    from ntkcheck.io.tokens import load_token_npz
    ta = load_token_npz(path)
    assert list(ta.raw_weights[1, :3]) == [1.0, 2.0, 4.0]
    assert np.allclose(ta.weights.sum(axis=1), 1.0)
    data = ta.to_dataset()
    assert list(data.distributions[1].rational["weights"]) == [1.0, 2.0, 4.0]
    assert data.rounded_inputs == {}
    # no weights in the file: nothing to keep
    np.savez(tmp_path / "u.npz", tokens=np.zeros((2, 3, 1)) + np.arange(3)[:, None])
    assert load_token_npz(tmp_path / "u.npz").raw_weights is None


@pytest.mark.parametrize("wa, wb", WEIGHTS)
def test_integer_weight_convolution_verifies_as_exact(tmp_path, wa, wb):
    """The re-check normalises the stored weights exactly: level `exact` for every pair (with
    the float-normalised weights some pairs failed: pins verify's use of the written values)."""
    data = load_dataset(_convolution_npz(tmp_path, wa, wb, generic=0))
    g = dataset_geometry(data)
    chk = verify_relation(data.distributions, np.array([1.0, 1.0, -1.0]), g.transform,
                          g.spreads)
    assert chk.passed and chk.level == "exact", chk.reason
    assert "for the values as written" not in chk.reason  # nothing was rounded on input


@pytest.mark.parametrize("wa, wb", WEIGHTS[:3])
def test_integer_weight_convolution_is_reported(tmp_path, wa, wb):
    """Through analyze (dense test, exact test off): the convolution among generic sequences is
    a verified relation, not "holds only up to the rounding of the stored values"."""
    res = analyze(load_dataset(_convolution_npz(tmp_path, wa, wb)), exact="never")
    assert res.verdict == NOT_INJECTIVE, res.reason
    (dep,) = res.dependencies
    assert set(dep.coefficients) == {"a", "b", "ab"}
    c = dep.coefficients
    assert c["a"] == pytest.approx(c["b"]) and c["ab"] == pytest.approx(-c["a"])
    assert dep.verification["level"] == "exact"


def test_exact_atoms_with_float_weights_keep_the_weights():
    """Fraction atoms with float weights (as_dataset): the exact parameters must carry the given
    weights, not uniform ones by omission (the exact test then printed the false exact relation
    LSE[seq1] - LSE[seq2] = 0 between Binomial(2, 1/2) and the uniform law on {0, 1, 2})."""
    F = Fraction
    data = as_dataset([[[F(0)], [F(1)]], [[F(0)], [F(1)], [F(2)]], [[F(0)], [F(1)], [F(2)]]],
                      weights=[np.array([1.0, 1.0]), np.array([1.0, 2.0, 1.0]),
                               np.array([1.0, 1.0, 1.0])])
    assert list(data.distributions[1].rational["weights"]) == [1.0, 2.0, 1.0]
    res = analyze(data, exact="always")
    assert res.verdict == NOT_INJECTIVE and res.evidence == "exact"
    (dep,) = res.dependencies
    assert set(dep.coefficients) == {"seq0", "seq1"}  # 2 LSE[Bernoulli] = LSE[Binomial]
    assert dep.coefficients["seq0"] == pytest.approx(-2 * dep.coefficients["seq1"])


# ---- spec values that are not binary64 numbers ---------------------------------------------------

def _gaussians(c12: str, c3: str = "0.5") -> Dataset:
    """G1 + G2 = G3 in covariance for the doubles of the written values; as written, the
    off-diagonal entries give S1 + S2 - S3 = [[0, e], [e, 0]] with e = c12 - c3."""
    return parse_spec({"distribution": [
        {"name": "G1", "kind": "gaussian_mixture", "weights": [1], "means": [[0, 0]],
         "covariances": [[[1, 0], [0, 1]]]},
        {"name": "G2", "kind": "gaussian_mixture", "weights": [1], "means": [[1, 0]],
         "covariances": [[[2, c12], [c12, 3]]]},
        {"name": "G3", "kind": "gaussian_mixture", "weights": [1], "means": [[0, 2]],
         "covariances": [[[3, c3], [c3, 4]]]}]})


def test_rounded_inputs_are_recorded():
    data = _gaussians("0.500000000000000001")
    assert data.rounded_inputs == {"G2": ("covariances",)}
    assert data.distributions[0].rounded_inputs == ()
    flags = parse_spec({"distribution": [
        {"name": "x", "kind": "discrete", "atoms": [[0.5], ["1/3"]], "weights": ["0.1", 2]},
        {"name": "y", "kind": "uniform", "low": ["0.25"], "high": [1]}]}).rounded_inputs
    assert flags == {"x": ("atoms", "weights")}


def test_relation_of_the_rounded_doubles_is_not_a_dependency():
    """The issue's case: independent as written (the coefficient matrix of the covariances
    has determinant ~ -5e-18), dependent for the doubles. The dense test's candidate
    LSE[G1] + LSE[G2] - LSE[G3] holds at 50 digits for the doubles only: level
    `input_rounding`, never printed as a dependency (it was `not_injective`); the exact test,
    on the written rationals, proves independence."""
    data = _gaussians("0.500000000000000001")
    g = dataset_geometry(data)
    chk = verify_relation(data.distributions, np.array([1.0, 1.0, -1.0]), g.transform,
                          g.spreads)
    assert chk.passed is False and chk.level == "input_rounding", chk.reason
    assert "not for the values as written" in chk.reason and "covariances" in chk.reason
    res = analyze(data, exact="never")
    assert res.verdict == INCONCLUSIVE and not res.dependencies, res.reason
    assert "not for the values as written" in res.reason
    res = analyze(data)  # the exact test decides
    assert (res.verdict, res.evidence) == (INJECTIVE, "exact"), res.reason


def test_the_result_says_which_written_values_were_rounded():
    """A spec holding values that are not binary64 numbers: the result says so, in the JSON
    settings (name -> fields) and in the reason, whatever the verdict; data whose values are
    all binary64 numbers carry no such note."""
    res = analyze(_gaussians("0.500000000000000001"), exact="never")
    assert res.settings["rounded_inputs"] == {"G2": ["covariances"]}
    assert "G2 (covariances) are not binary64 numbers" in res.reason
    assert res.to_dict()["settings"]["rounded_inputs"] == {"G2": ["covariances"]}
    plain = analyze(_gaussians("0.5"), exact="never")
    assert "rounded_inputs" not in plain.settings and "binary64" not in plain.reason


def test_relation_of_the_written_values_is_found_though_the_doubles_miss_it():
    """Written 0.1 + 0.2 = 0.3 holds; for the doubles 0.1 + 0.2 != 0.3. The relation holds for
    the values as written, so it is verified and reported (exact level)."""
    spec = parse_spec({"distribution": [
        {"name": n, "kind": "gaussian_mixture", "weights": [1], "means": [[0, i]],
         "covariances": [[[1 + i, c], [c, 2]]]}
        for i, (n, c) in enumerate([("G1", "0.1"), ("G2", "0.2"), ("G3", "0.3")])]})
    # S3 - S2 = S2 - S1 as written (and the means are affine), so G1 - 2 G2 + G3 is affine
    assert sum(Fraction(c) * k for c, k in (("0.1", 1), ("0.2", -2), ("0.3", 1))) == 0
    assert 0.1 - 2 * 0.2 + 0.3 != 0.0
    g = dataset_geometry(spec)
    chk = verify_relation(spec.distributions, np.array([1.0, -2.0, 1.0]), g.transform,
                          g.spreads)
    assert chk.passed and chk.level == "exact" and "for the values as written" in chk.reason
    res = analyze(spec, exact="never")
    assert res.verdict == NOT_INJECTIVE, res.reason
    (dep,) = res.dependencies
    assert dep.verification["level"] == "exact"


def test_npz_data_are_never_rounded_inputs(tmp_path):
    """float32 and float64 files hold binary64 values (float32 widened exactly)."""
    x = np.random.default_rng(0).normal(size=(3, 4, 2)).astype(np.float32)
    np.savez(tmp_path / "f.npz", tokens=x, weights=np.ones((3, 4), np.float32) * 3)
    data = load_dataset(tmp_path / "f.npz")
    assert data.rounded_inputs == {}
    ta = TokenArrays.from_arrays({"tokens": x.astype(float)})
    assert ta.raw_weights is None
    assert Discrete(x[0].astype(float), [1, 2, 3, 4]).rounded_inputs == ()


def test_exact_tokens_keep_the_weights_as_given():
    """Fraction tokens with float weights (1, 2): the exact parameters are the weights as
    given (normalised exactly to 1/3, 2/3 by the exact test), not fl(1/3), fl(2/3); without
    weights the law stays exactly uniform (no float 1/n recorded)."""
    from fractions import Fraction

    from ntkcheck import as_dataset

    X = np.array([[[Fraction(0)], [Fraction(1)]], [[Fraction(0)], [Fraction(2)]]], dtype=object)
    ds = as_dataset(X, weights=np.array([[1.0, 2.0], [1.0, 1.0]]))
    assert list(ds.distributions[0].rational["weights"]) == [1.0, 2.0]
    assert as_dataset(X).distributions[0].rational["weights"] is None


# ---- coefficients that are not binary64 numbers: never printed as their doubles ----------------

LAMBDA = Fraction("1.000000000000000001")  # 1 + 1e-18: its double is 1.0


def _lambda_spec():
    """cov(G3) = cov(G1) + LAMBDA cov(G2), written as decimals: LSE[G1] + LAMBDA LSE[G2] -
    LSE[G3] is affine (Gaussian LSE = <m, z> + z^T S z / 2), and with coefficient 1 in place of
    LAMBDA it is not (the doubles 1, 1, -1 are not the relation)."""
    S1, S2 = np.array([[1, 0], [0, 1]]), np.array([[2, 1], [1, 3]])
    S3 = [[_decimal(int(a) + LAMBDA * int(b)) for a, b in zip(r1, r2)] for r1, r2 in zip(S1, S2)]

    def g(name, mean, S):
        return {"name": name, "kind": "gaussian_mixture", "weights": [1], "means": [mean],
                "covariances": [S]}

    return parse_spec({"distribution": [g("G1", [0, 0], S1.tolist()), g("G2", [1, 0], S2.tolist()),
                                        g("G3", [0, 2], S3), g("G4", [1, 1], [[5, 2], [2, 1]])]})


def _decimal(q: Fraction) -> str:
    """A terminating fraction as its exact decimal text."""
    from decimal import Decimal, localcontext
    with localcontext() as ctx:
        ctx.prec = 60
        return str(Decimal(q.numerator) / Decimal(q.denominator))


def _printed_terms(text: str) -> dict[str, Fraction]:
    """A printed relation 'c1 LSE[G1] + ... = a + b1*z1 - ...' moved to one side, each printed
    number read as an exact rational: {'G1': c1, ..., 'z1': -b1, '1': -a}."""
    import re
    out: dict[str, Fraction] = {}
    for side, sign in zip(text.split(" = "), (1, -1)):
        for term in re.split(r" (?=[+-] )", side.strip()):
            term = term.replace("+ ", "").replace("- ", "-")
            if term == "0":
                continue
            m = re.fullmatch(r"(-?)([0-9./e+-]+)?\s*\*?\s*(?:LSE\[(\w+)\]|(z\d+))?", term)
            assert m, term
            coef = Fraction(m.group(2)) if m.group(2) else Fraction(1)
            key = m.group(3) or m.group(4) or "1"
            out[key] = out.get(key, 0) + sign * (-coef if m.group(1) else coef)
    return out


@pytest.mark.parametrize("exact", ["never", "auto"])
def test_a_relation_whose_coefficients_are_not_doubles_is_printed_as_it_holds(exact):
    """The printed relation, read as exact rationals, holds for the written values: the
    quadratic parts sum_i c_i S_i vanish exactly and the printed linear part is sum_i c_i m_i
    (Gaussian LSE_i(z) = <m_i, z> + z^T S_i z / 2, constant 0). Before, the doubles were
    printed: LSE[G1] + LSE[G2] - LSE[G3] = z1 - 2*z2, false for the written values."""
    spec = _lambda_spec()
    res = analyze(spec, exact=exact)
    assert res.verdict == NOT_INJECTIVE, res.reason
    (dep,) = res.dependencies
    text = dep.describe(6)
    terms = _printed_terms(text)
    written = {"G1": ([0, 0], [[1, 0], [0, 1]]), "G2": ([1, 0], [[2, 1], [1, 3]]),
               "G3": ([0, 2], [[Fraction(1) + 2 * LAMBDA, LAMBDA], [LAMBDA, 1 + 3 * LAMBDA]])}
    quad = [[sum(terms.get(n, 0) * Fraction(S[a][b]) for n, (_, S) in written.items())
             for b in range(2)] for a in range(2)]
    assert quad == [[0, 0], [0, 0]], text
    for j in range(2):  # sum_i c_i m_i = b_j, i.e. it cancels the printed b_j moved left
        assert sum(terms.get(n, 0) * m[j] for n, (m, _) in written.items()) + \
            terms.get(f"z{j + 1}", 0) == 0, text
    assert terms.get("1", 0) == 0, text
    assert "LSE[G1] + LSE[G2] - LSE[G3]" not in text
    doc = dep.to_dict()
    if exact == "never":
        assert doc["precise_coefficients"] == {"G2": "1.000000000000000001"}, doc
        from ntkcheck.results import dependency_from_dict
        assert dependency_from_dict(doc).describe(6) == text
    else:
        assert text == doc["certificate"]["identity"]


def test_a_relation_with_double_coefficients_carries_no_precise_text():
    """Binary64 coefficients (written 0.1, 0.2, 0.3: G1 - 2 G2 + G3): the doubles are the
    relation, no text form is added and the printed form is the usual one."""
    spec = parse_spec({"distribution": [
        {"name": n, "kind": "gaussian_mixture", "weights": [1], "means": [[0, i]],
         "covariances": [[[1 + i, c], [c, 2]]]}
        for i, (n, c) in enumerate([("G1", "0.1"), ("G2", "0.2"), ("G3", "0.3")])]})
    (dep,) = analyze(spec, exact="never").dependencies
    assert dep.precise_coefficients is None and dep.precise_affine is None
    assert dep.describe(6).startswith("LSE[G1] - 2 LSE[G2] + LSE[G3]"), dep.describe(6)


# ---- the screen's matches of the doubles that fail for the written values --------------------

def _discrete_spec(*entries):
    return parse_spec({"distribution": [
        {"name": f"d{i}", "kind": "discrete", "atoms": a, **({"weights": w} if w else {})}
        for i, (a, w) in enumerate(entries)]})


G_ATOMS = [[1, 2], [-1, 3]]
ROUNDED_MATCHES = {
    # written atoms differ by 1e-18: the doubles are duplicates
    "duplicate": _discrete_spec(([[0, "0.500000000000000001"]] + G_ATOMS, None),
                                ([[0, "0.5"]] + G_ATOMS, None), ([[2, 1], [0, 0]], None)),
    # written atoms 1e-19 apart: the doubles are a Dirac mass
    "dirac": _discrete_spec(([["0.1"], ["0.1000000000000000001"]], None), ([[1], [2]], None),
                            ([[0], [3], [5]], None)),
    # written weights differ by 1e-19: the doubles are duplicates
    "weights": _discrete_spec(([[0, 0], [1, 2]], ["0.3", "0.7"]),
                              ([[0, 0], [1, 2]], ["0.3000000000000000001", "0.7"]),
                              ([[2, 1], [0, 0], [1, 1]], None)),
}


@pytest.mark.parametrize("case", sorted(ROUNDED_MATCHES))
def test_a_match_of_the_doubles_only_is_never_a_dependency(case):
    """The doubles are duplicates or a Dirac mass, the written values are not (they differ by
    1e-18..1e-19, read exactly): such data are independent as written (two distinct
    two-to-three-atom laws and a third), so `not_injective` would be false. The screen leaves
    them in the core; the dense test's relation of the doubles fails for the written values and
    is reported at the input's precision: inconclusive, with the reason, no dependency."""
    res = analyze(ROUNDED_MATCHES[case], exact="never")
    assert res.verdict == INCONCLUSIVE and not res.dependencies, res.reason
    assert "holds for the nearest doubles of the written values" in res.reason, res.reason
    assert "are not binary64 numbers" in res.reason


def test_a_near_dirac_as_written_is_rechecked_at_its_own_written_scale():
    """Atoms 0.1 and 0.1 + 1e-19: the float spread is 0 (one double), and at the pooled scales
    the written law's curvature (variance 2.5e-39) is below the 50-digit misfit threshold; the
    re-check takes its own scale from the written law (1/rho ~ 2e19), where LSE is visibly
    not affine: the relation 'LSE = 0.1 z' fails as written, holds for the doubles."""
    data = ROUNDED_MATCHES["dirac"]
    g = dataset_geometry(data)
    chk = verify_relation(data.distributions[:1], np.array([1.0]), g.transform, g.spreads[:1])
    assert chk.passed is False and chk.level == "input_rounding", chk.reason


def test_a_class_splits_along_its_matches_that_fail_as_written():
    """Members a, b (= a as written, '1/10' against 0.1), c (0.1 + 1e-18 written) and e
    (= c as written): the doubles make one class of four. As written, {a, b} and {c, e} are
    exact duplicate classes and the two are distinct laws: two classes, c's class rooted at a
    member that joins the core."""
    from ntkcheck.injectivity.screen import screen

    base = [[2, 1], [0, 3]]
    data = _discrete_spec(([["0.1", 0]] + base, None), ([["1/10", 0]] + base, None),
                          ([["0.100000000000000001", 0]] + base, None),
                          ([["0.100000000000000001", 0]] + base, None),
                          ([[5, 5], [1, 0]], None))
    r = screen(data)
    groups = sorted(tuple(sorted(c.members)) for c in r.classes)
    assert groups == [(0, 1), (2, 3)], r.classes
    assert all(c.class_evidence == "exact" for c in r.classes)
    assert all(c.parents[0] == c.members[0] and c.members[0] in r.core for c in r.classes)
    assert set(r.core) == {min(g) for g in groups} | {4}
    res = analyze(data, exact="never")
    assert res.verdict == NOT_INJECTIVE and res.evidence == "exact", res.reason
    assert res.to_dict()["structure"]["reductions"] == 2
    assert len(res.dependencies) == 2 and all(d.exact for d in res.dependencies)


def test_a_shift_below_the_doubles_resolution_is_printed_not_rounded_to_zero():
    """d1 is d0 translated by t = (1e-19, 0) as written ("0.1000000000000000001" against 0.1):
    one double, so the screen leaves both in the core; the dense test's relation
    LSE[d0] - LSE[d1] holds as written (second differences are blind to the affine part) and its
    affine part, -<t, z>, is printed as -1e-19*z1: with coefficients that pass the re-check
    themselves the affine error bound is 10^-24 of the sums, not 4u (which printed '= 0', a
    false relation for the written values)."""
    data = _discrete_spec(([["0.1", 0], [1, 2]], None),
                          ([["0.1000000000000000001", 0], ["1.0000000000000000001", 2]], None),
                          ([[2, 1], [0, 0], [1, 1]], None))
    res = analyze(data, exact="never")
    assert res.verdict == NOT_INJECTIVE, res.reason
    (dep,) = res.dependencies
    terms = _printed_terms(dep.describe(6))
    assert terms == {"d0": 1, "d1": -1, "z1": Fraction("1e-19")}, dep.describe(6)


def test_a_verified_third_is_printed_as_a_fraction():
    """cov(B) = 3 cov(A) (binary64 values): LSE[A] - 1/3 LSE[B] = -1/3 z1 (means (0,0), (1,0)).
    1/3 is not a binary64 number, so the doubles fail the 50-digit re-check and the text form is
    used; within its 25 digits it is the fraction 1/3, printed as such (not 0.3333...)."""
    S = np.array([[2.0, 1.0], [1.0, 3.0]])
    from ntkcheck import GaussianMixture
    dists = (GaussianMixture([1.0], [[0, 0]], [S]), GaussianMixture([1.0], [[1, 0]], [3 * S]),
             GaussianMixture([1.0], [[0, 1]], [[[1, 0.25], [0.25, 1]]]),
             GaussianMixture([1.0], [[0, 2]], [[[4, -1], [-1, 1]]]))
    res = analyze(Dataset(("A", "B", "C", "D"), dists), exact="never")
    (dep,) = res.dependencies
    text = dep.describe(6)
    assert _printed_terms(text) == {"A": 1, "B": Fraction(-1, 3), "z1": Fraction(1, 3)}, text


def test_the_cli_prints_and_the_json_schema_carries_the_precise_relation(tmp_path):
    """`ntkcheck analyze --exact never` on the 1 + 1e-18 spec as a TOML file: the text shows
    the 25-digit coefficient, the JSON carries precise_coefficients / precise_affine and is
    valid against the published schema (1.5, where those keys were added, or later)."""
    import json

    jsonschema = pytest.importorskip("jsonschema")
    from typer.testing import CliRunner

    from ntkcheck.cli import app
    from ntkcheck.report.json import schema

    lines = []
    covs = {"G1": "[[1, 0], [0, 1]]", "G2": "[[2, 1], [1, 3]]",
            "G3": '[["3.000000000000000002", "1.000000000000000001"], '
                  '["1.000000000000000001", "4.000000000000000003"]]', "G4": "[[5, 2], [2, 1]]"}
    means = {"G1": "[0, 0]", "G2": "[1, 0]", "G3": "[0, 2]", "G4": "[1, 1]"}
    for name in covs:
        lines += ["[[distribution]]", f'name = "{name}"', 'kind = "gaussian_mixture"',
                  "weights = [1]", f"means = [{means[name]}]", f"covariances = [{covs[name]}]", ""]
    path = tmp_path / "lambda.toml"
    path.write_text("\n".join(lines))
    text = CliRunner().invoke(app, ["analyze", str(path), "--exact", "never"])
    assert "LSE[G1] + 1.000000000000000001 LSE[G2] - LSE[G3]" in text.output, text.output
    out = CliRunner().invoke(app, ["analyze", str(path), "--exact", "never", "--json"])
    doc = json.loads(out.output)
    major, minor = map(int, doc["schema_version"].split("."))
    assert (major, minor) >= (1, 5)
    (dep,) = doc["dependencies"]
    assert dep["precise_coefficients"] == {"G2": "1.000000000000000001"}
    assert dep["precise_affine"] == {"z1": "1.000000000000000001"}
    errors = [e.message for e in jsonschema.Draft7Validator(schema()).iter_errors(doc)]
    assert not errors, errors


# ---- written values closer than the 50-digit threshold can see -------------------------------

TINY = "0.1000000000000000000000000000001"  # 0.1 + 1e-31 as written: the double of 0.1


def _written(rows):
    """Decimal text, as a .toml file's decimal literals are read: exact (0.1 is 1/10)."""
    return [[str(x) for x in row] for row in rows]


_OTHERS = [{"name": "other", "kind": "discrete",
            "atoms": _written([[0.5, 0.1], [-1.1, 0.2], [0.3, 0.3]])}]
SUB_THRESHOLD = {
    # weights 0.1 + 1e-31 against 0.1: distinct laws as written, duplicates as doubles
    "weights": parse_spec({"distribution": [
        {"name": "w1", "kind": "discrete", "atoms": _written([[0.1, 0.3], [1.7, -0.2], [0.4, 2.9]]),
         "weights": ["0.1", "0.2", "0.7"]},
        {"name": "w2", "kind": "discrete", "atoms": _written([[0.1, 0.3], [1.7, -0.2], [0.4, 2.9]]),
         "weights": [TINY, "0.2", "0.7"]}] + _OTHERS + [
        {"name": "other2", "kind": "discrete", "atoms": _written([[1.5, 0.7], [-0.1, 0.9]]),
         "weights": ["1/3", "2/3"]}]}),
    # an atom 0.1 + 1e-31 against 0.1
    "atoms": parse_spec({"distribution": [
        {"name": "x1", "kind": "discrete", "atoms": _written([[0.1, 0.3], [1.7, -0.2]])},
        {"name": "x2", "kind": "discrete", "atoms": [[TINY, "0.3"], ["1.7", "-0.2"]]}] + _OTHERS
        + [{"name": "u", "kind": "uniform", "low": [0, "1/3"], "high": [1, 2]}]}),
}


@pytest.mark.parametrize("case", sorted(SUB_THRESHOLD))
def test_a_relation_broken_below_the_50_digit_threshold_is_not_verified(case, monkeypatch):
    """LSE[x1] - LSE[x2] = 0 holds for the doubles and fails for the written values by about
    1e-31 relative: at analyze's fresh points its 50-digit misfit (~1e-32) is below the
    threshold 1e-25 (it used to be printed as a verified dependency: `not_injective`, false
    as written). The re-check confirms at more digits, where that misfit stays while a true
    relation's falls: `input_rounding`, never a dependency; inconclusive, and the exact test
    (discrete laws, rational exponents) proves the data injective as written."""
    from ntkcheck.injectivity import decide

    data = SUB_THRESHOLD[case]
    assert Fraction(TINY) != Fraction(1, 10) and float(Fraction(TINY)) == 0.1
    checks = []

    def spy(*args, **kwargs):
        checks.append(verify_relation(*args, **kwargs))
        return checks[-1]

    monkeypatch.setattr(decide, "verify_relation", spy)
    res = analyze(data, exact="never")
    assert res.verdict == INCONCLUSIVE and not res.dependencies, res.reason
    assert "holds for the nearest doubles of the written values" in res.reason
    (chk,) = checks
    assert chk.passed is False and chk.level == "input_rounding", chk.reason
    # the case the confirmation exists for: below the 50-digit threshold, measured at more
    assert 1e-40 < chk.misfit < 1e-25 and chk.digits >= 100, chk
    if case == "weights":  # discrete laws with rational exponents: the exact test decides
        res = analyze(data)
        assert (res.verdict, res.evidence) == (INJECTIVE, "exact"), res.reason


def test_a_true_relation_of_long_written_values_passes_the_confirmation():
    """The same laws written with 31-digit values on both sides (d1 = d0 as written, 1/3
    weights as rationals against their 40-digit decimals' complement): the relation is true
    as written, and its misfit at the confirmation's precision falls below that precision's
    threshold: verified, exact level."""
    third = "1/3"
    data = _discrete_spec(([[TINY, 0.3], [1.7, -0.2]], [third, "2/3"]),
                          ([["1000000000000000000000000000001/10000000000000000000000000000000",
                             0.3], [1.7, -0.2]], ["2/6", "4/6"]),
                          ([[0.5, 0.1], [-1.1, 0.2], [0.3, 0.3]], None))
    g = dataset_geometry(data)
    chk = verify_relation(data.distributions[:2], np.array([1.0, -1.0]), g.transform,
                          g.spreads[:2])
    assert chk.passed and chk.level == "exact" and chk.digits >= 100, chk.reason
    assert chk.misfit <= chk.threshold <= 1e-75
