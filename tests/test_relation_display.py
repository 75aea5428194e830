"""A printed relation never reads as a different exact identity (issue 19, point 1).

The text form rounds coefficients and affine terms for reading. It may show a small fraction
(1, 1/2, 0 ...) only when that fraction is within the value's own error: PRINT_ULPS units in the
last place for the coefficients (50-digit values rounded once to float64) plus, for the affine
terms, the error bound that ``affine_part`` derives. A wider rule (1e-9) printed the verified
relation LSE[A] - 0.9999999999 LSE[B] = 0 as ``LSE[A] - LSE[B] = 0``: a false relation.
Truth here comes from the construction, in exact rationals.
"""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
from hypothesis import given, settings, strategies as st

from ntkcheck import analyze
from ntkcheck.analysis import NOT_INJECTIVE
from ntkcheck.injectivity.dependencies import PRINT_ULPS, Dependency, _pretty
from ntkcheck.io import parse_spec

EPS = np.finfo(float).eps


def _scaled_pair(factor: str):
    """A and B with covariance(B) = factor * covariance(A): LSE[B] = factor LSE[A] exactly (zero
    means), so the only relation is LSE[A] - (1/factor) LSE[B] = 0; C is generic."""
    f = Fraction(factor)
    S = [[Fraction(2), Fraction(3, 10)], [Fraction(3, 10), Fraction(1)]]
    Sb = [[str(f * x) for x in row] for row in S]
    return parse_spec({"distribution": [
        {"name": "A", "kind": "gaussian_mixture", "weights": [1], "means": [[0, 0]],
         "covariances": [[[str(x) for x in row] for row in S]]},
        {"name": "B", "kind": "gaussian_mixture", "weights": [1], "means": [[0, 0]],
         "covariances": [Sb]},
        {"name": "C", "kind": "gaussian_mixture", "weights": [1], "means": [[1, 0]],
         "covariances": [[[1, 0], [0, 3]]]}]})


def _printed_coefficient(text: str, name: str) -> Fraction:
    """The coefficient of LSE[name] in a printed relation, as a rational."""
    m = re.search(r"([+-]?)\s*([0-9./e+-]*)\s*LSE\[" + re.escape(name) + r"\]",
                  text.replace(" - ", " -").replace(" + ", " +"))
    assert m, text
    sign, mag = m.group(1), m.group(2)
    value = Fraction(mag) if mag else Fraction(1)
    return -value if sign == "-" else value


def test_a_coefficient_near_one_is_not_printed_as_one():
    """LSE[B] = (1 + 1e-10) LSE[A] as written: the verified relation is printed with a
    coefficient within float64 rounding of 1/(1 + 1e-10), never as LSE[A] - LSE[B] = 0."""
    res = analyze(_scaled_pair("1.0000000001"), exact="never")
    assert res.verdict == NOT_INJECTIVE, res.reason
    (dep,) = res.dependencies
    text = dep.describe()
    truth = -1 / Fraction("1.0000000001")  # coefficient of B when A's is 1
    got = _printed_coefficient(text, "B") / _printed_coefficient(text, "A")
    assert abs(got - truth) <= 8 * EPS * abs(truth), (text, float(got - truth))
    assert text != "LSE[A] - LSE[B] = 0"


def test_an_exact_unit_coefficient_is_still_printed_as_one():
    """LSE[B] = 2 LSE[A] exactly: the printed relation reads LSE[A] - 1/2 LSE[B] = 0."""
    res = analyze(_scaled_pair("2"), exact="never")
    (dep,) = res.dependencies
    assert dep.describe() in ("LSE[A] - 1/2 LSE[B] = 0", "-LSE[A] + 1/2 LSE[B] = 0",
                              "2 LSE[A] - LSE[B] = 0", "-2 LSE[A] + LSE[B] = 0",
                              "LSE[B] - 2 LSE[A] = 0"), dep.describe()


def test_affine_terms_print_as_zero_only_within_their_tolerance():
    """An affine term of 1e-12 with a tolerance of 1e-15 is printed; with 1e-11 it is 0."""
    dep = Dependency({"a": 1.0, "b": -1.0}, 0.0, (1e-12,), 0.0, affine_tolerance=1e-15)
    assert dep.describe() == "LSE[a] - LSE[b] = 1e-12*z1"
    dep = Dependency({"a": 1.0, "b": -1.0}, 0.0, (1e-12,), 0.0, affine_tolerance=1e-11)
    assert dep.describe() == "LSE[a] - LSE[b] = 0"


def test_the_tolerance_survives_the_json_round_trip():
    """A dependency read back from its JSON prints the same relation."""
    from ntkcheck.results import dependency_from_dict

    dep = Dependency({"a": 1.0, "b": -1.0}, 0.0, (3e-17,), 0.0, affine_tolerance=1e-15)
    back = dependency_from_dict(dep.to_dict())
    assert back.describe() == dep.describe() == "LSE[a] - LSE[b] = 0"


def _value(text: str) -> Fraction:
    return Fraction(text) if "/" in text else Fraction(float(text))


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False),
       st.sampled_from([0.0, 1e-300, 1e-12]))
def test_pretty_never_reads_as_a_shorter_exact_value(x, tolerance):
    """Either the text is within tolerance + PRINT_ULPS ulps of x, or it carries all 6
    significant digits (a conventional rounding, within half a unit of the 6th digit)."""
    text = _pretty(x, 6, tolerance)
    err = abs(_value(text) - Fraction(x))
    slack = Fraction(tolerance) + Fraction(PRINT_ULPS * EPS * x)
    if err <= slack:
        return
    digits = len(text.split("e")[0].replace(".", "").lstrip("0"))
    assert digits == 6 and err <= Fraction(5, 10**6) * Fraction(x), (x, text)


def test_a_small_true_affine_term_is_printed():
    """mean(A) = (1e-10, 0), covariance(B) = 2 covariance(A), mean(B) = 0: the relation is
    LSE[A] - 1/2 LSE[B] = 1e-10 z1 exactly. The term is far above affine_part's error bound
    (~u |LSE|), so it must be printed, not rounded to 0."""
    data = _scaled_pair("2")
    doc = data.distributions[0]
    spec = parse_spec({"distribution": [
        {"name": "A", "kind": "gaussian_mixture", "weights": [1], "means": [["1e-10", 0]],
         "covariances": [[[str(x) for x in row] for row in doc.rational["covariances"][0]]]},
        {"name": "B", "kind": "gaussian_mixture", "weights": [1], "means": [[0, 0]],
         "covariances": [[[str(2 * x) for x in row] for row in doc.rational["covariances"][0]]]},
        {"name": "C", "kind": "gaussian_mixture", "weights": [1], "means": [[1, 0]],
         "covariances": [[[1, 0], [0, 3]]]}]})
    res = analyze(spec, exact="never")
    assert res.verdict == NOT_INJECTIVE, res.reason
    (dep,) = res.dependencies
    c_a = dep.coefficients["A"]
    assert abs(dep.linear[0] / c_a - 1e-10) <= 1e-20, dep.linear
    assert "z1" in dep.describe(), dep.describe()
