"""Hostile and unusual ``.toml``/``.json`` specs (ntkcheck.io.spec): exact decimals, bounded
numbers, nesting, types at every key, sizes and special files.

The contract for every bad input: an InputError (exit 2 in the CLI) whose one-line message names
the file and the field and states the limit, raised quickly (well under a second: the checks
run before any costly conversion). Exact values are compared with Python's own
``fractions.Fraction`` / ``decimal.Decimal`` reading of the literal, never with ntkcheck.
"""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ntkcheck.cli import app
from ntkcheck.errors import InputError
from ntkcheck.io import load_spec, parse_spec
from ntkcheck.io import spec as spec_module

runner = CliRunner()

#: Every refusal below must come back faster than this (seconds): far below the minutes that
#: expanding 10^99999999 or parsing a bomb would take, far above the milliseconds it takes.
FAST = 2.0


def write(tmp_path, fmt: str, entries: list, name: str = "spec") -> str:
    path = tmp_path / f"{name}.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps({"distribution": entries}))
    else:
        path.write_text(to_toml(entries))
    return str(path)


def to_toml(entries: list) -> str:
    return "".join(to_toml_inline(e) for e in entries)


def to_toml_inline(entry: dict) -> str:
    """One [[distribution]] table; Raw values verbatim, dicts as inline tables."""
    def val(v):
        if isinstance(v, Raw):
            return str(v)
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return json.dumps(v)
    return "[[distribution]]\n" + "".join(f"{k} = {val(v)}\n" for k, v in entry.items())


class Raw(str):
    """A value written verbatim (a literal such as 1e400 that json.dumps cannot produce)."""


def raw_json(entries: list) -> str:
    """JSON text with Raw values spliced in verbatim."""
    marks = {}

    def mark(v):
        if isinstance(v, Raw):
            key = f"@@{len(marks)}@@"
            marks[key] = str(v)
            return key
        if isinstance(v, list):
            return [mark(x) for x in v]
        return v

    text = json.dumps({"distribution": [{k: mark(v) for k, v in e.items()} for e in entries]})
    for key, value in marks.items():
        text = text.replace(f'"{key}"', value)
    return text


def refused(path, field: str | None = None) -> str:
    """The one-line InputError message for ``path``, checked for file, field and speed."""
    t0 = time.perf_counter()
    with pytest.raises(InputError) as info:
        load_spec(path)
    elapsed = time.perf_counter() - t0
    msg = str(info.value)
    assert elapsed < FAST, f"refusal took {elapsed:.2f} s"
    assert msg.startswith(str(path)) and "\n" not in msg
    if field is not None:
        assert f"field '{field}'" in msg, msg
    return msg


def disc(atoms, weights=None, name="a"):
    e = {"name": name, "kind": "discrete", "atoms": atoms}
    if weights is not None:
        e["weights"] = weights
    return e


# ---------------------------------------------------------------- exact decimals (SPEC §3a)

@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_decimal_literals_are_exact_and_floats_are_their_nearest_doubles(tmp_path, fmt):
    """0.49 in a file is 49/100 in ``rational`` and the double nearest to 49/100 in the arrays;
    an integer is exact; "1e-3" is 1/1000."""
    path = write(tmp_path, fmt, [disc([0, 1, 2], [0.49, 0.42, 0.09]),
                                 disc(["1e-3", 2, 123456789012345678901], name="b")])
    ds = load_spec(path)
    a, b = ds.distributions
    assert list(a.rational["weights"]) == [Fraction(49, 100), Fraction(42, 100), Fraction(9, 100)]
    # the arrays: nearest doubles, normalised in float (a few ulps from 0.49, 0.42, 0.09)
    assert np.allclose(a.weights, [0.49, 0.42, 0.09], rtol=4 * np.finfo(float).eps, atol=0)
    assert b.rational["atoms"][:, 0].tolist() == [Fraction(1, 1000), 2, 123456789012345678901]
    assert b.atoms[2, 0] == float(123456789012345678901)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(digits=st.integers(1, 10**17), exponent=st.integers(-60, 60),
       sign=st.sampled_from(["", "-"]), fmt=st.sampled_from(["toml", "json"]))
def test_round_trip_of_decimal_literals(tmp_path, digits, exponent, sign, fmt):
    """Any literal d x 10^e with <= 18 digits reads as Fraction(that decimal string) exactly
    (Python's reading, independent of ntkcheck), and the array holds float(that fraction)."""
    literal = f"{sign}{digits}e{exponent}"
    path = tmp_path / f"r.{fmt}"
    entries = [disc([Raw(literal), 0])]
    path.write_text(to_toml(entries) if fmt == "toml" else raw_json(entries))
    truth = Fraction(literal)
    a = load_spec(path).distributions[0]
    assert a.rational["atoms"][0, 0] == truth
    assert a.atoms.ravel().tolist() == [float(truth), 0.0]


def test_python_values_keep_their_meaning():
    """From Python: Decimal and Fraction are exact, a float (Python or numpy) is its binary64
    value, a numpy integer an integer; a numpy boolean is refused like a Python one."""
    ds = parse_spec({"distribution": [disc([Decimal("0.1"), Fraction(1, 3), 0.1,
                                            np.float32(0.1), np.int64(-7)])]})
    assert ds.distributions[0].rational["atoms"][:, 0].tolist() == [
        Fraction(1, 10), Fraction(1, 3), Fraction(3602879701896397, 2**55),
        Fraction(13421773, 2**27), -7]
    with pytest.raises(InputError, match="boolean"):
        parse_spec({"distribution": [disc([np.bool_(True), 0])]})


# ---------------------------------------------------------------- bounded numbers

HUGE = {
    "tiny_exponent_string": ("1e-99999999", "outside the supported range"),
    "huge_exponent_string": ("1e400", "outside the supported range"),
    "many_digits_string": ("1" * 60, "significant digits"),
    "huge_denominator": ("1/" + "7" * 60, "significant digits"),
    "long_string": ("0." + "0" * 300 + "1", "characters"),
    "atom_1e200": ("1e200", "1e-300 <= |x| <= 1e150"),
    "subnormal": ("1e-310", "1e-300 <= |x| <= 1e150"),
}


@pytest.mark.parametrize("fmt", ["toml", "json"])
@pytest.mark.parametrize("case", sorted(HUGE))
def test_huge_string_numbers_are_refused_quickly(tmp_path, fmt, case):
    """Long or out-of-range numbers as strings: one line, the field, the bound, fast."""
    value, words = HUGE[case]
    msg = refused(write(tmp_path, fmt, [disc([0, value])]), "distribution[0].atoms[1]")
    assert words in msg


LITERALS = {
    "exp_-99999999": ("1e-99999999", "outside the supported range"),
    "exp_400": ("1e400", "outside the supported range"),
    "int_400_digits": ("7" * 400, "digits"),
    "int_5000_digits": ("7" * 5000, "digits"),
    "decimal_60_digits": ("0." + "3" * 60, "significant digits"),
    "atom_1e200": ("1e200", "1e150"),
}


@pytest.mark.parametrize("fmt", ["toml", "json"])
@pytest.mark.parametrize("case", sorted(LITERALS))
def test_huge_number_literals_are_refused_quickly(tmp_path, fmt, case):
    """Number literals beyond the bounds (including Python's 4300-digit int limit, which must
    never surface as a ValueError): one line naming the file and the bound, fast. The field is
    named, except for TOML integers of thousands of digits, caught by line before parsing."""
    value, words = LITERALS[case]
    path = tmp_path / f"n.{fmt}"
    entries = [disc([0, Raw(value)])]
    path.write_text(to_toml(entries) if fmt == "toml" else raw_json(entries))
    by_line = fmt == "toml" and case == "int_5000_digits"
    msg = refused(path, None if by_line else "distribution[0].atoms[1]")
    assert words in msg
    if by_line:
        assert "line 4" in msg


@pytest.mark.parametrize("fmt,literal", [("toml", "inf"), ("toml", "nan"), ("toml", "-inf"),
                                         ("json", "NaN"), ("json", "Infinity")])
def test_non_finite_literals_are_refused(tmp_path, fmt, literal):
    """inf/nan literals (TOML) and NaN/Infinity (JSON extensions): refused with the field."""
    path = tmp_path / f"x.{fmt}"
    entries = [disc([0, Raw(literal)])]
    path.write_text(to_toml(entries) if fmt == "toml" else raw_json(entries))
    assert "NaN or Inf" in refused(path, "distribution[0].atoms[1]")


def test_the_range_bounds_are_inclusive(tmp_path):
    """1e150 and 1e-300 themselves are accepted (exactly), 1.0000000001e150 is not."""
    ds = load_spec(write(tmp_path, "toml", [disc([Raw("1e150"), Raw("-1e-300"), 0])]))
    assert ds.distributions[0].rational["atoms"][:, 0].tolist() == [
        Fraction(10**150), Fraction(-1, 10**300), 0]
    refused(write(tmp_path, "toml", [disc([Raw("1.0000000001e150"), 0])], "over"),
            "distribution[0].atoms[0]")


def test_weights_more_than_1e300_apart_are_refused(tmp_path):
    """Normalised, a weight 1e-301 times the largest underflows: refused with the fix."""
    msg = refused(write(tmp_path, "toml", [disc([0, 1], [Raw("1e100"), Raw("1e-250")])]),
                  "distribution[0].weights")
    assert "1e300" in msg


# ---------------------------------------------------------------- nesting and structure

@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_deep_nesting_is_refused_without_recursion(tmp_path, fmt):
    """Lists nested 2000 deep: a clean error stating the limit (never a RecursionError)."""
    deep = "[" * 2000 + "]" * 2000
    path = tmp_path / f"deep.{fmt}"
    if fmt == "json":
        path.write_text('{"distribution": [{"name": "a", "kind": "discrete", "atoms": '
                        + deep + "}]}")
    else:
        path.write_text(f'[[distribution]]\nname = "a"\nkind = "discrete"\natoms = {deep}\n')
    msg = refused(path)
    assert f"above the limit of {spec_module.MAX_NESTING}" in msg and "levels deep" in msg


def test_brackets_inside_strings_and_comments_do_not_count(tmp_path):
    """A name full of brackets, and brackets in a TOML comment, are not nesting."""
    name = "[" * 100 + "{" * 100
    path = tmp_path / "s.toml"
    path.write_text(f'# {"[" * 100}\n[[distribution]]\nname = {json.dumps(name)}\n'
                    'kind = "discrete"\natoms = [0, 1]  # ]]]]\n')
    assert load_spec(path).names == (name,)
    jpath = tmp_path / "s.json"
    jpath.write_text(json.dumps({"distribution": [disc([0, 1], name=name + '"\\')]}))
    assert load_spec(jpath).names == (name + '"\\',)


WRONG_TYPES = {
    "kind_table": ({"kind": {}}, "distribution[0].kind",
                   "must be a string, one of discrete|uniform|gaussian_mixture"),
    "kind_number": ({"kind": 3}, "distribution[0].kind", "must be a string"),
    "name_list": ({"name": [1]}, "distribution[0].name", "non-empty string"),
    "name_number": ({"name": 5}, "distribution[0].name", "non-empty string"),
    "atoms_table": ({"atoms": {"a": 1}}, "distribution[0].atoms", "nested list"),
    "atoms_string": ({"atoms": "0, 1"}, "distribution[0].atoms", "nested list"),
    "atoms_too_deep": ({"atoms": [[[0]]]}, "distribution[0].atoms", "nested list"),
    "atom_table": ({"atoms": [[0], {}]}, "distribution[0].atoms[1]", "a table"),
    "atom_leaf_table": ({"atoms": [[0], [{"x": 1}]]}, "distribution[0].atoms[1][0]", "a table"),
    "atom_bool": ({"atoms": [[0], [True]]}, "distribution[0].atoms[1][0]", "boolean"),
    "atom_text": ({"atoms": [[0], ["one"]]}, "distribution[0].atoms[1][0]", "not a number"),
    "weights_nested": ({"weights": [[1], [1]]}, "distribution[0].weights",
                       "1-level nested list"),
    "weights_string": ({"weights": "uniform"}, "distribution[0].weights", "nested list"),
    "weight_list": ({"weights": [1, [1]]}, "distribution[0].weights[1]", "a list"),
    "atoms_empty": ({"atoms": []}, "distribution[0].atoms", "empty"),
    "entry_number": (7, "distribution[0]", "give a table"),
    "entry_list": ([1], "distribution[0]", "give a table"),
}


@pytest.mark.parametrize("fmt", ["toml", "json"])
@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_wrong_types_name_the_field_path(tmp_path, fmt, case):
    """A wrong type at any key is an InputError naming the full field path and what is
    expected (never a TypeError about unhashable or unorderable values)."""
    change, field, words = WRONG_TYPES[case]
    if fmt == "toml" and not isinstance(change, dict):
        pytest.skip("a TOML array of tables holds only tables")
    entry = {**disc([[0], [1]]), **change} if isinstance(change, dict) else change
    path = tmp_path / f"t.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps({"distribution": [entry]}))
    else:
        path.write_text(to_toml_inline(entry))
    msg = refused(path, field)
    assert words in msg, msg


def test_wrong_types_in_mixtures_and_boxes(tmp_path):
    """Covariances of the wrong depth and a box bound given as a table: field paths."""
    gm = {"name": "g", "kind": "gaussian_mixture", "weights": [1], "means": [[0]],
          "covariances": [[1]]}
    assert "3-level" in refused(write(tmp_path, "json", [gm], "g"), "distribution[0].covariances")
    box = {"name": "b", "kind": "uniform", "low": [0], "high": [{"x": 1}]}
    refused(write(tmp_path, "json", [box], "b"), "distribution[0].high[0]")


# ---------------------------------------------------------------- sizes and special files

def test_too_many_distributions(tmp_path, monkeypatch):
    """More distributions than the limit: refused before reading them, the limit stated."""
    monkeypatch.setattr(spec_module, "MAX_DISTRIBUTIONS", 3)
    msg = refused(write(tmp_path, "json", [disc([0, 1], name=f"a{i}") for i in range(4)]),
                  "distribution")
    assert "limit of 3" in msg and ".npz" in msg


def test_too_many_values(tmp_path, monkeypatch):
    """More numbers than the limit, across distributions: refused at the entry that crosses
    it, before converting its values."""
    monkeypatch.setattr(spec_module, "MAX_VALUES", 10)
    entries = [disc([0, 1, 2, 3], name="a"), disc([[0]] * 7, name="b")]
    msg = refused(write(tmp_path, "toml", entries), "distribution[1].atoms")
    assert "10 numbers" in msg


def test_default_limits_are_generous_for_specs():
    """The documented limits (module constants), as the README states them."""
    assert spec_module.MAX_DIGITS == 50 and spec_module.MAX_MAGNITUDE == 10**150
    assert spec_module.MIN_MAGNITUDE == Fraction(1, 10**300)
    assert spec_module.MAX_NESTING == 32 and spec_module.MAX_DISTRIBUTIONS == 100_000
    assert spec_module.MAX_VALUES == 1_000_000 and spec_module.MAX_SPEC_BYTES == 16 * 2**20


def test_file_over_the_size_limit(tmp_path, monkeypatch):
    """A spec larger than MAX_SPEC_BYTES is refused from its size, before parsing."""
    monkeypatch.setattr(spec_module, "MAX_SPEC_BYTES", 100)
    path = write(tmp_path, "toml", [disc(list(range(50)))])
    assert "above the spec limit of 100 bytes" in refused(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_refused_without_blocking(tmp_path):
    """A FIFO named like a spec: refused at once (opened non-blocking), never a hang."""
    path = tmp_path / "pipe.toml"
    os.mkfifo(path)
    assert "not a regular file" in refused(path)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_symlink_to_a_device_is_refused_without_reading(tmp_path):
    """A link to /dev/zero is refused from fstat, not read until memory runs out."""
    path = tmp_path / "zero.json"
    path.symlink_to("/dev/zero")
    assert "not a regular file" in refused(path)


def test_cli_reports_one_line_and_exit_2(tmp_path):
    """Through the CLI: `ntkcheck: error: FILE: field '...': ...`, exit 2, no traceback."""
    path = write(tmp_path, "toml", [disc([0, Raw("1e-99999999")])])
    res = runner.invoke(app, ["analyze", path])
    assert res.exit_code == 2
    assert res.stderr.startswith(f"ntkcheck: error: {path}: field 'distribution[0].atoms[1]'")
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_valid_spec_with_every_kind_still_loads(tmp_path):
    """Regression: a spec with the three kinds, decimals, strings and ints loads, and its
    arrays equal the nearest doubles of the exact values."""
    entries = [disc([[0, 0], ["1/3", 0.25]], ["2/3", 0.5]),
               {"name": "b", "kind": "uniform", "low": [0, "-1/2"], "high": [1.5, 2]},
               {"name": "g", "kind": "gaussian_mixture", "weights": [1, 3],
                "means": [[0, 0], [1, "1/7"]],
                "covariances": [[[1, 0.5], [0.5, 1]], [[2, 0], [0, "1/3"]]]}]
    ds = load_spec(write(tmp_path, "toml", entries))
    for dist in ds.distributions:
        for key, exact in dist.rational.items():
            got = np.asarray(getattr(dist, key), dtype=float)
            if key == "weights":
                total = sum(exact)
                expected = [float(w / total) for w in exact]
                assert np.allclose(got, expected, rtol=4 * np.finfo(float).eps, atol=0)
            else:
                assert got.ravel().tolist() == [float(x) for x in np.asarray(exact).ravel()]


@pytest.mark.parametrize("fmt", ["toml", "json"])
@pytest.mark.parametrize("body", ['x = "' + '\\"' * 500_000, '"""' + '"\\' * 500_000,
                                  "'" * 1_000_000])
def test_adversarial_quoting_is_scanned_in_linear_time(tmp_path, fmt, body):
    """1 MB of escaped or unbalanced quotes (each quote a new unterminated string for a naive
    scanner, quadratic time): refused as invalid in about a second, not hours."""
    path = tmp_path / f"q.{fmt}"
    path.write_text(body)
    t0 = time.perf_counter()
    with pytest.raises(InputError):
        load_spec(path)
    assert time.perf_counter() - t0 < 4 * FAST
