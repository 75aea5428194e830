"""The exact test inside ``analyze`` and the ``analyze`` CLI (SPEC §4 integration): modes,
evidence, refusals, the disagreement report, and agreement with the numerical test on random
small rational datasets."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import ntkcheck.analysis as analysis
import ntkcheck.injectivity.combine as combine
from ntkcheck import Dataset, Discrete, NtkcheckWarning
from ntkcheck.analysis import analyze
from ntkcheck.cli import app
from ntkcheck.errors import InputError
from ntkcheck.exact import decide
from ntkcheck.io import load_dataset
from ntkcheck.io.spec import parse_spec

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
MIXED = SAMPLES / "mixed.toml"


def coins() -> Dataset:
    return parse_spec({"distribution": [
        {"name": "binom", "kind": "discrete", "atoms": [0, 1, 2], "weights": ["1/4", "1/2", "1/4"]},
        {"name": "coin", "kind": "discrete", "atoms": [0, 1]},
        {"name": "third", "kind": "discrete", "atoms": [0, 1], "weights": ["2/3", "1/3"]}]})


# ---------------------------------------------------------------- library

def test_always_gives_exact_evidence_and_certified_dependencies():
    """mixed.toml: evidence exact, the one dependency exact with string certificate, and the
    JSON exact field describes the engine, D, variables, rank and shape of E."""
    res = analyze(load_dataset(MIXED), exact="always")
    assert (res.verdict, res.evidence) == ("not_injective", "exact")
    (dep,) = res.dependencies
    assert dep.exact and dep.certificate["identity"] == "LSE[box2] - LSE[box1] - LSE[coin] = 0"
    assert dep.coefficients == {"box2": 1.0, "box1": -1.0, "coin": -1.0}
    doc = res.to_dict()
    assert doc["exact"]["status"] == "decided" and doc["exact"]["rank"] == 5
    assert doc["exact"]["shape"][0] == 6 and doc["exact"]["denominator"] == 4
    assert doc["exact"]["engine"] in ("flint", "sympy")
    assert "disagreement" not in doc


def test_never_keeps_the_numerical_result_unchanged():
    """exact='never' is the numerical test alone: no exact field, numerical evidence."""
    ds = load_dataset(MIXED)
    res = analyze(ds, exact="never")
    assert res.exact is None and res.evidence == "numerical"
    assert all(not d.exact for d in res.dependencies)
    auto = analyze(ds)
    np.testing.assert_array_equal(auto.singular_values, res.singular_values)


def test_exact_and_numerical_dependencies_coincide():
    """The exact dependency equals the numerical one (same echelon normalisation) to 1e-8."""
    ds = coins()
    num = analyze(ds, exact="never").dependencies
    ex = analyze(ds, exact="always").dependencies
    assert len(num) == len(ex) == 1
    for n, e in zip(num, ex):
        assert n.coefficients.keys() == e.coefficients.keys()
        for k in n.coefficients:
            assert n.coefficients[k] == pytest.approx(e.coefficients[k], abs=1e-8)
        assert n.linear == pytest.approx(e.linear, abs=1e-6)


def test_injective_case_carries_a_proof():
    """Bernoulli(1/2) vs Bernoulli(1/3): injective with exact evidence and a pivot proof."""
    res = analyze(parse_spec({"distribution": [
        {"name": "half", "kind": "discrete", "atoms": [0, 1]},
        {"name": "third", "kind": "discrete", "atoms": [0, 1], "weights": ["2/3", "1/3"]}]}))
    assert (res.verdict, res.evidence) == ("injective", "exact")
    assert res.exact["proof"]["peeled"] == 2 and res.exit_code == 0


def test_auto_skips_float_data_and_says_why():
    """Random float tokens are exact binary64 values with denominators up to 2^60: the degree in
    t = exp(z/D) is far over budget, so auto keeps the numerical verdict and records why."""
    ds = load_dataset(SAMPLES / "tokens_injective.npz")
    res = analyze(ds)
    assert res.evidence in ("certified", "numerical")
    assert res.exact["status"] == "skipped" and res.exact["kind"] == "budget"
    assert "binary64" in res.exact["reason"]


def test_always_on_float_data_keeps_the_numerical_verdict():
    """exact='always' on float tokens: over budget is not an input error (the values are exact),
    the numerical verdict stands and the exact field says why."""
    res = analyze(load_dataset(SAMPLES / "tokens_injective.npz"), exact="always")
    assert res.evidence in ("certified", "numerical") and res.exact["kind"] == "budget"


def test_always_on_a_covariance_symmetric_only_up_to_rounding_is_an_input_error():
    """exact='always' with an inexact value (a covariance that is symmetric only to 1e-17, so
    the numerical test accepts it): InputError naming the value."""
    ds = parse_spec({"distribution": [{"name": "g", "kind": "gaussian_mixture", "weights": [1],
                                       "means": [[0, 0]],
                                       "covariances": [[[1, "1/3"], [0.3333333333333333, 1]]]}]})
    with pytest.raises(InputError, match="not exactly symmetric"):
        analyze(ds, exact="always")


def test_always_over_budget_keeps_the_numerical_verdict():
    """Over the time limit: the numerical verdict stands, the exact field gives the reason."""
    res = analyze(load_dataset(MIXED), exact="always", exact_timeout=1e-9)
    assert res.evidence == "numerical"
    assert res.exact["status"] == "skipped" and res.exact["kind"] == "timeout"


def test_invalid_mode_and_timeout_are_input_errors():
    """exact must be auto/always/never and exact_timeout positive; messages list the fix."""
    with pytest.raises(InputError, match="auto, always, never"):
        analyze(coins(), exact="sometimes")
    with pytest.raises(InputError, match="positive"):
        analyze(coins(), exact_timeout=0)


def test_exact_settles_an_inconclusive_numerical_verdict(monkeypatch):
    """When the numerical test is inconclusive, the exact verdict decides (evidence exact)."""
    real = analysis._analyze_numerical

    def inconclusive(*args, **kwargs):
        res = real(*args, **kwargs)
        return replace(res, verdict="inconclusive", evidence=None, dependencies=(),
                       reason="grey zone")

    monkeypatch.setattr(analysis, "_analyze_numerical", inconclusive)
    res = analyze(coins())
    assert (res.verdict, res.evidence) == ("not_injective", "exact")
    assert "settles the inconclusive" in res.reason and len(res.dependencies) == 1


def forged_injective(dataset, **kwargs):
    """A wrong exact answer (claims injective) to test the disagreement report."""
    res = decide(dataset, **kwargs)
    return replace(res, rank=len(res.names), verdict="injective", dependencies=())


def test_disagreement_is_loud(monkeypatch):
    """Exact and numerical decisive but different: warning, verdict inconclusive, JSON field."""
    monkeypatch.setattr(combine, "decide", forged_injective)
    with pytest.warns(NtkcheckWarning, match="this is a bug"):
        res = analyze(coins())
    assert res.verdict == "inconclusive" and res.exit_code == 3
    doc = res.to_dict()
    assert doc["disagreement"]["exact"] == "injective"
    assert doc["disagreement"]["numerical"] == "not_injective"


# ---------------------------------------------------------------- agreement on random data

@st.composite
def rational_datasets(draw):
    """2-5 discrete laws in 1-D or 2-D, atoms in {0, 1/2, 1, 3/2, 2}, weights 1..4, sometimes
    with a planted translate. Laws may be Dirac masses (one atom: an exactly affine LSE)."""
    dim = draw(st.integers(1, 2))
    n_laws = draw(st.integers(2, 5))
    coord = st.sampled_from([0, Fraction(1, 2), 1, Fraction(3, 2), 2])
    entries = []
    for i in range(n_laws):
        n = draw(st.integers(1, 4))
        atoms = draw(st.lists(st.tuples(*[coord] * dim), min_size=n, max_size=n, unique=True))
        weights = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
        entries.append({"name": f"m{i}", "kind": "discrete",
                        "atoms": [[str(a) for a in p] for p in atoms], "weights": weights})
    if draw(st.booleans()):
        src = entries[0]
        shift = draw(st.tuples(*[coord] * dim))
        entries.append({"name": "shifted", "kind": "discrete", "weights": src["weights"],
                        "atoms": [[str(Fraction(a) + s) for a, s in zip(p, shift)]
                                  for p in src["atoms"]]})
    return parse_spec({"distribution": entries})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rational_datasets())
def test_exact_agrees_with_numerical_on_random_rational_data(ds):
    """Whenever the numerical test is decisive, the exact verdict and number of dependencies
    agree with it (no disagreement is ever reported)."""
    num = analyze(ds, exact="never")
    ex = decide(ds)
    if num.verdict != "inconclusive":
        assert ex.verdict == num.verdict
        assert len(ex.dependencies) == len(num.dependencies)
    assert len(ex.dependencies) == len(ds) - ex.rank


# ---------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_exact_always_on_mixed_sample():
    """`analyze mixed.toml --exact always --json`: exit 1, evidence exact, the exact identity."""
    res = runner.invoke(app, ["analyze", str(MIXED), "--exact", "always", "--json"])
    assert res.exit_code == 1, res.stderr
    doc = json.loads(res.stdout)
    assert doc["evidence"] == "exact"
    (dep,) = doc["dependencies"]
    assert dep["exact"] is True
    assert dep["certificate"]["identity"] == "LSE[box2] - LSE[box1] - LSE[coin] = 0"
    assert dep["certificate"]["coefficients"] == {"box2": "1", "box1": "-1", "coin": "-1"}
    assert doc["exact"]["variables"][0] == "t1 = exp(z1/4)"


def test_cli_text_report_shows_the_exact_line():
    """The text report names the engine and E, and prints the identity tagged exact."""
    res = runner.invoke(app, ["analyze", str(MIXED)])
    assert res.exit_code == 1
    assert "not_injective (exact evidence)" in res.stdout
    assert "exact     " in res.stdout and "E 6 x 12, rank 5" in res.stdout
    assert "LSE[box2] - LSE[box1] - LSE[coin] = 0   (exact;" in res.stdout


def test_cli_timeout_message():
    """--exact-timeout too small with --exact always: numerical verdict, clear skip line."""
    res = runner.invoke(app, ["analyze", str(MIXED), "--exact", "always",
                              "--exact-timeout", "0.001", "--probes", "256"])
    # a clean refusal, whatever the speed of the machine: either it ran in time or it says why
    assert res.exit_code == 1
    assert ("exact evidence" in res.stdout) or ("exact     skipped:" in res.stdout
                                                and "time limit" in res.stdout)


def test_cli_budget_refusal_message(tmp_path):
    """A degree far over budget: `exact skipped: ... budget` and the numerical verdict."""
    spec = tmp_path / "far.toml"
    spec.write_text('[[distribution]]\nname = "far"\nkind = "discrete"\natoms = [0, 1, 100000]\n'
                    '[[distribution]]\nname = "near"\nkind = "discrete"\natoms = [0, 1]\n')
    res = runner.invoke(app, ["analyze", str(spec), "--exact", "always"])
    assert res.exit_code in (0, 3)
    assert "exact     skipped:" in res.stdout and "budget" in res.stdout


def test_cli_always_on_an_inexact_covariance_exits_2(tmp_path):
    """--exact always on a covariance that is symmetric only up to rounding: one error line,
    exit 2."""
    spec = tmp_path / "g.toml"
    spec.write_text('[[distribution]]\nname = "g"\nkind = "gaussian_mixture"\nweights = [1]\n'
                    'means = [[0, 0]]\ncovariances = [[[1, "1/3"], [0.3333333333333333, 1]]]\n')
    res = runner.invoke(app, ["analyze", str(spec), "--exact", "always"])
    assert res.exit_code == 2
    assert res.stderr.startswith("ntkcheck: error:") and res.stderr.count("\n") == 1
    assert "not exactly symmetric" in res.stderr


def test_cli_disagreement_warns_on_stderr_and_exits_3(monkeypatch):
    """A (forged) disagreement: warning line saying it is a bug, JSON field, exit 3."""
    monkeypatch.setattr(combine, "decide", forged_injective)
    path = SAMPLES / "mixed.toml"
    res = runner.invoke(app, ["analyze", str(path), "--json"])
    assert res.exit_code == 3
    assert "ntkcheck: warning:" in res.stderr and "bug" in res.stderr
    assert json.loads(res.stdout)["disagreement"]["exact"] == "injective"


def test_cli_exact_never_and_invalid_choice():
    """--exact never: numerical evidence; --exact bogus: usage error, exit 2."""
    res = runner.invoke(app, ["analyze", str(MIXED), "--exact", "never", "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["evidence"] == "numerical"
    assert "exact" not in json.loads(res.stdout)
    bad = runner.invoke(app, ["analyze", str(MIXED), "--exact", "bogus"])
    assert bad.exit_code == 2


def test_python_objects_from_small_dyadic_floats_get_exact_evidence():
    """Objects built in Python from exact binary fractions are decided exactly."""
    ds = Dataset(("a", "b", "c"), (Discrete([[0.0], [0.5]]), Discrete([[0.25], [0.75]]),
                                   Discrete([[0.0], [1.0]], [0.25, 0.75])))
    res = analyze(ds)
    assert (res.verdict, res.evidence) == ("not_injective", "exact")
    assert res.dependencies[0].certificate["linear"] == ["-1/4"]


# ---------------------------------------------------------------- exact decimals (SPEC §3a)

DECIMAL_TOML = """
[[distribution]]
name = "binom"
kind = "discrete"
atoms = [0, 1, 2]
weights = [0.49, 0.42, 0.09]

[[distribution]]
name = "bern"
kind = "discrete"
atoms = [0, 1]
weights = [0.7, 0.3]
"""


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_cli_decimal_weights_are_the_decimals_written(tmp_path, fmt):
    """Binomial(2, 0.3) written as weights [0.49, 0.42, 0.09] next to Bernoulli(0.3) as
    [0.7, 0.3]: with the decimals read exactly, 0.49 + 0.42 t + 0.09 t^2 = (0.7 + 0.3 t)^2, so the
    answer is not_injective with exact evidence and LSE[binom] - 2 LSE[bern] = 0 (at the binary64
    values of the same numbers the identity fails and the exact test would prove independence)."""
    import tomllib

    path = tmp_path / f"decimal.{fmt}"
    if fmt == "toml":
        path.write_text(DECIMAL_TOML)
    else:
        doc = tomllib.loads(DECIMAL_TOML)  # floats -> JSON decimals 0.49, 0.42, ...
        path.write_text(json.dumps(doc))
        assert "0.49" in path.read_text()
    res = runner.invoke(app, ["analyze", str(path), "--json"])
    assert res.exit_code == 1, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["verdict"], doc["evidence"]) == ("not_injective", "exact")
    assert [d["certificate"]["identity"] for d in doc["dependencies"]] == \
        ["LSE[binom] - 2 LSE[bern] = 0"]
    assert doc["exact"]["status"] == "decided" and doc["exact"]["denominator"] == 1
