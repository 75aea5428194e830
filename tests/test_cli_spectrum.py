"""``ntkcheck spectrum`` like a user: real files, exit codes, parsed --json, --save, errors.

Expected values come from the data's structure (SPEC §2): samples/mixed.toml has exactly one
dependency (box2 = box1 * coin, b = 0), so every kernel is singular (exit 3) with the smallest
eigenvector supported on {box2, box1, coin}; a generic token set is positive definite (exit 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ntkcheck.cli import app

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def generic_npz(tmp_path) -> Path:
    path = tmp_path / "generic.npz"
    np.savez(path, tokens=np.random.default_rng(0).normal(size=(6, 5, 2)))
    return path


@pytest.mark.parametrize("kernel", ["qk", "value", "full", "gram"])
def test_json_on_a_dependent_sample(kernel):
    """Exit 3 (singular); JSON has the documented keys; the smallest eigenvector is the planted
    relation box2 - box1 - coin (entries outside its support below 1e-6, eigenvector accuracy
    ~ sqrt(u) at worst)."""
    result = run("spectrum", str(SAMPLES / "mixed.toml"), "--kernel", kernel, "--json")
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    for key in ("kernel", "names", "eigenvalues", "min_eigenvalue", "min_eigenvector",
                "condition_number", "effective_rank", "tolerance", "settings"):
        assert key in doc
    assert doc["kernel"] == kernel
    assert doc["condition_number"] == "inf"
    assert doc["eigenvalues"] == sorted(doc["eigenvalues"])
    assert doc["min_eigenvalue"] <= doc["tolerance"]
    c = doc["min_coefficients"]
    assert {n for n, v in c.items() if abs(v) > 1e-6} == {"box2", "box1", "coin"}
    assert c["box1"] == pytest.approx(c["coin"], abs=1e-8)
    assert c["box2"] == pytest.approx(-c["coin"], abs=1e-8)
    assert doc["settings"]["probes"] == 256 and doc["file"].endswith("mixed.toml")


def test_positive_definite_exit_zero_and_report(generic_npz):
    """A generic dataset: exit 0, the rich report names the kernel, the condition number and
    the smallest eigenvector."""
    result = run("spectrum", str(generic_npz), "--kernel", "value")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "positive definite" in out and "condition number" in out
    assert "eigenvector of the smallest eigenvalue" in out and "value NTK" in out


def test_translate_pair_exit_codes_differ_between_kernels():
    """samples/tokens_dependent.npz has a translate pair and a permuted duplicate: qk sees two
    null directions, value only the duplicate (the translate's LSE difference is linear)."""
    qk = json.loads(run("spectrum", str(SAMPLES / "tokens_dependent.npz"), "--json").stdout)
    value = json.loads(run("spectrum", str(SAMPLES / "tokens_dependent.npz"), "--json",
                           "--kernel", "value").stdout)
    assert qk["numerical_rank"] == 28 and value["numerical_rank"] == 29


def test_options_reach_the_computation(generic_npz):
    """--probes, --seed, --scales and --no-whiten are recorded in settings and change results."""
    a = json.loads(run("spectrum", str(generic_npz), "--json", "--probes", "40", "--seed", "3",
                       "--scales", "1,2", "--no-whiten").stdout)
    assert a["settings"] == {**a["settings"], "probes": 40, "seed": 3, "scales": [1.0, 2.0],
                             "whitening": False}
    b = json.loads(run("spectrum", str(generic_npz), "--json", "--probes", "40").stdout)
    assert a["eigenvalues"] != b["eigenvalues"]


def test_save_writes_the_eigendecomposition(tmp_path, generic_npz):
    """--save: an npz with the matrix and eigenpairs such that V diag(lambda) V^T = K (to
    1e-12 relative), plus names and settings; --quiet prints nothing."""
    out = tmp_path / "spec.npz"
    result = run("spectrum", str(generic_npz), "--save", str(out), "--quiet")
    assert result.exit_code == 0 and result.stdout == ""
    with np.load(out) as data:
        K, lam, V = data["matrix"], data["eigenvalues"], data["eigenvectors"]
        np.testing.assert_allclose((V * lam) @ V.T, K, atol=1e-12 * np.abs(K).max())
        assert list(data["names"]) == [f"seq{i}" for i in range(6)]
        assert str(data["kernel"]) == "qk"
        assert json.loads(str(data["settings"]))["probes"] == 256


@pytest.mark.parametrize("args, needle", [
    (["--kernel", "ntk"], "choose one of qk, value, full, gram"),
    (["--scales", "1,x"], "--scales"),
    (["--scales", "0,1"], "--scales"),
    (["--save", "out.txt"], "--save"),
])
def test_input_errors_exit_two_with_one_line(generic_npz, args, needle):
    """Bad options: exit 2 and a single 'ntkcheck: error:' line naming the option."""
    result = run("spectrum", str(generic_npz), *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkcheck: error:") and needle in lines[0]


def test_missing_file_exits_two(tmp_path):
    """An unknown extension / missing file is an input error (exit 2), not a traceback."""
    result = run("spectrum", str(tmp_path / "nothing.csv"))
    assert result.exit_code == 2 and "ntkcheck: error:" in result.stderr


def test_help_mentions_every_option():
    """``spectrum --help`` documents the options and the exit codes."""
    result = run("spectrum", "--help")
    assert result.exit_code == 0
    for option in ("--kernel", "--probes", "--seed", "--scales", "--no-whiten", "--json",
                   "--save", "--plot", "--quiet"):
        assert option in result.stdout
