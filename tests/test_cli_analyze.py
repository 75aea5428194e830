"""``ntkcheck analyze`` tested like a user would: real files, exit codes, stderr lines, --json.

Exit codes (ntkcheck.cli.app): 0 injective, 1 not injective, 2 input error, 3 inconclusive.
"""

from __future__ import annotations

import gc
import json
import subprocess
import warnings
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ntkcheck.cli import app

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def run(*args: str):
    """Invoke the CLI in-process; stdout and stderr are captured separately."""
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit 2, nothing on stdout, exactly one stderr line 'ntkcheck: error: ...' containing each
    fragment, and no traceback (the exception is the SystemExit of typer.Exit)."""
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ntkcheck: error: ")
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("sample,code", [("tokens_injective.npz", 0),
                                         ("tokens_dependent.npz", 1), ("mixed.toml", 1)])
def test_samples_exit_codes_and_report(sample, code):
    """Each bundled sample: documented exit code, a human report starting with the verdict on
    stdout, only progress lines on stderr (stages longer than a second, on a loaded machine)."""
    r = run(SAMPLES / sample)
    assert r.exit_code == code, (r.stdout, r.stderr, r.exception)
    verdict = {0: "injective", 1: "not_injective"}[code]
    assert r.stdout.startswith(verdict)
    # lines of ntkcheck's own (a library's logging from another test's lingering threads, e.g.
    # an older distributed's, can reach the swapped stderr too): progress only, no warning
    ours = [line for line in r.stderr.splitlines() if line.startswith("ntkcheck:")]
    assert all(line.startswith("ntkcheck: analyze ") for line in ours), r.stderr


def test_relays_warnings_about_the_input_not_the_garbage_collectors(monkeypatch):
    """A warning raised while a file is analysed reaches stderr as 'ntkcheck: warning: <file>:';
    a ResourceWarning (the collector finding another test's event loop unclosed, whenever it
    runs) is not about the input and is not relayed (it once failed the samples' check in CI)."""
    import ntkcheck.cli.analyze as cli_analyze
    real = cli_analyze.analyze

    def noisy(*args, **kwargs):
        warnings.warn("unclosed event loop <stand-in>", ResourceWarning)
        warnings.warn("a note about the data", UserWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli_analyze, "analyze", noisy)
    r = run(SAMPLES / "tokens_injective.npz")
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    ours = [line for line in r.stderr.splitlines() if line.startswith("ntkcheck: warning")]
    assert ours == [f"ntkcheck: warning: {SAMPLES / 'tokens_injective.npz'}: a note about the data"]


def deps_by_names(doc) -> list[set[str]]:
    return [set(d["coefficients"]) for d in doc["dependencies"]]


def test_json_tokens_dependent():
    """--json on tokens_dependent.npz: one parseable document with the two planted relations
    {base, translated} (b = -(0.5, -1, 2) for c_base = 1) and {other, permuted}."""
    r = run(SAMPLES / "tokens_dependent.npz", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "not_injective" and doc["n_distributions"] == 30 and doc["dim"] == 3
    deps = deps_by_names(doc)
    assert sorted(map(sorted, deps)) == [["base", "translated"], ["other", "permuted"]]
    tr = next(d for d in doc["dependencies"] if "base" in d["coefficients"])
    c = tr["coefficients"]["base"]
    assert tr["coefficients"]["translated"] / c == pytest.approx(-1, rel=1e-7, abs=0)
    assert np.allclose(np.array(tr["affine"]["linear"]) / c, [-0.5, 1.0, -2.0], atol=1e-7)
    assert doc["file"].endswith("tokens_dependent.npz")


def test_json_mixed_toml():
    """--json on mixed.toml: the convolution box2 = box1 * coin, c ∝ (1, -1, -1)."""
    r = run(SAMPLES / "mixed.toml", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    (dep,) = doc["dependencies"]
    c = dep["coefficients"]
    assert set(c) == {"box2", "box1", "coin"}
    assert c["box1"] / c["box2"] == pytest.approx(-1, rel=1e-7, abs=0)
    assert c["coin"] / c["box2"] == pytest.approx(-1, rel=1e-7, abs=0)


def test_json_injective():
    """--json on tokens_injective.npz: verdict injective, full rank, no dependencies."""
    r = run(SAMPLES / "tokens_injective.npz", "--json")
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "injective" and doc["rank"] == 40 and doc["dependencies"] == []


#: The keys of the document's run-to-run fields (ntkcheck.report.json.TIMING_FIELDS).
_VARYING = {field.rsplit(".", 1)[-1] for field in __import__(
    "ntkcheck.report.json", fromlist=["TIMING_FIELDS"]).TIMING_FIELDS}


def strip_times(doc):
    """Drop the run-to-run fields (timings, the estimate's times and resident memory:
    ntkcheck.report.json.TIMING_FIELDS), the only variation of the document."""
    if isinstance(doc, dict):
        return {k: strip_times(v) for k, v in doc.items() if k not in _VARYING}
    if isinstance(doc, list):
        return [strip_times(v) for v in doc]
    return doc


def test_output_file_equals_stdout_json(tmp_path):
    """--output FILE writes the document --json prints, to FILE instead of stdout (stdout stays
    empty); no temporary file left behind; --quiet does not stop the file."""
    out = tmp_path / "res.json"
    printed = run(SAMPLES / "mixed.toml", "--json")
    r = run(SAMPLES / "mixed.toml", "--json", "--output", out)
    assert r.exit_code == 1 and printed.exit_code == 1 and r.stdout == ""
    assert strip_times(json.loads(out.read_text())) == strip_times(json.loads(printed.stdout))
    assert [p.name for p in tmp_path.iterdir()] == ["res.json"]
    out.unlink()
    r2 = run(SAMPLES / "mixed.toml", "-f", "json", "-o", out, "--quiet")
    assert r2.exit_code == 1 and r2.stdout == ""
    assert strip_times(json.loads(out.read_text())) == strip_times(json.loads(printed.stdout))


def test_quiet_silences_the_text_report_only():
    """--quiet: no text report and nothing on stderr, the exit code carries the verdict; a
    machine format asked for (--json) is still printed in full."""
    r = run(SAMPLES / "tokens_dependent.npz", "--quiet")
    assert r.exit_code == 1 and r.stdout == "" and r.stderr == ""
    r = run(SAMPLES / "tokens_dependent.npz", "--quiet", "--json")
    assert r.exit_code == 1 and r.stderr == ""
    assert json.loads(r.stdout)["verdict"] == "not_injective"


def test_options_reach_the_analysis():
    """--probes/--seed/--scales/--no-whiten appear in the JSON settings."""
    r = run(SAMPLES / "mixed.toml", "--json", "--probes", "100", "--seed", "5", "--scales",
            "1,4", "--no-whiten")
    doc = json.loads(r.stdout)
    assert doc["settings"]["probes"] == 100 and doc["settings"]["seed"] == 5
    assert doc["settings"]["scales"] == [1.0, 4.0] and doc["settings"]["whitening"] is False


# ---- bad inputs -----------------------------------------------------------------------------------

def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


Z = np.zeros((2, 3, 1)) + np.arange(3)[None, :, None]
BAD = {
    "missing.npz": (None, None),
    "tokens_nan.npz": (lambda p: _npz(p, tokens=Z * np.nan), "tokens"),
    "no_tokens.npz": (lambda p: _npz(p, x=Z), "tokens"),
    "neg_weights.npz": (lambda p: _npz(p, tokens=Z, weights=-np.ones((2, 3))), "weights"),
    "offsets.npz": (lambda p: _npz(p, tokens=np.zeros((4, 1)), offsets=np.array([0, 3])),
                    "offsets"),
    "dup_names.npz": (lambda p: _npz(p, tokens=Z, names=np.array(["a", "a"])), "names"),
    "garbage.npz": (lambda p: p.write_bytes(b"PK\x03\x04 nope"), None),
    "bad.toml": (lambda p: p.write_text("[[distribution]\n"), None),
    "kind.toml": (lambda p: p.write_text('[[distribution]]\nname = "a"\nkind = "x"\n'),
                  "distribution[0].kind"),
    "psd.json": (lambda p: p.write_text(json.dumps({"distribution": [
        {"name": "g", "kind": "gaussian_mixture", "weights": [1], "means": [[0, 0]],
         "covariances": [[[1, 2], [2, 1]]]}]})), "distribution[0].covariances[0]"),
    "data.csv": (lambda p: p.write_text("1,2\n"), None),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_one_line_error(tmp_path, name):
    """Every bad input: exit 2, one stderr line 'ntkcheck: error: <file>: field '<f>': ...', no
    traceback, nothing on stdout."""
    make, field = BAD[name]
    path = tmp_path / name
    if make is not None:
        make(path)
    with warnings.catch_warnings():
        # read_npz must close every file it opens, even a corrupt zip: a leaked handle
        # would raise a ResourceWarning at collection
        warnings.simplefilter("error", ResourceWarning)
        r = run(path)
        gc.collect()
    frags = [str(path)] + ([f"field '{field}'"] if field else [])
    assert_one_line_error(r, *frags)


@pytest.mark.parametrize("args,fragment", [(["--scales", "1,x"], "--scales"),
                                           (["--scales", "0,1"], "--scales")])
def test_bad_option_values(args, fragment):
    """Invalid option values are input errors naming the option."""
    r = run(SAMPLES / "mixed.toml", *args)
    assert_one_line_error(r, fragment)


def test_output_into_missing_directory(tmp_path):
    """--output into a missing directory: exit 2 naming the path, and no file is created."""
    target = tmp_path / "nodir" / "out.json"
    r = run(SAMPLES / "mixed.toml", "--output", target)
    assert_one_line_error(r, str(target))
    assert not target.parent.exists()
    assert list(tmp_path.iterdir()) == []


def test_existing_output_not_corrupted_on_failure(tmp_path):
    """A run that fails on bad input leaves an existing --output file byte-for-byte intact."""
    out = tmp_path / "keep.json"
    out.write_text('{"old": true}\n')
    bad = _npz(tmp_path / "bad.npz", tokens=Z * np.nan)
    r = run(bad, "--output", out, "--json")
    assert_one_line_error(r, str(bad), "tokens")
    assert out.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "keep.json"]


# ---- help and entry points ------------------------------------------------------------------------

def test_python_dash_m_help():
    """`python -m ntkcheck --help` works in a real subprocess and lists the analyze command."""
    p = subprocess.run([sys.executable, "-m", "ntkcheck", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "analyze" in p.stdout


def test_subprocess_end_to_end_json(tmp_path):
    """A real subprocess on a real file: exit 1, stdout is exactly one JSON document, stderr is
    empty (no progress or logs on stdout, and none on a non-terminal stderr)."""
    p = subprocess.run([sys.executable, "-m", "ntkcheck", "analyze",
                        str(SAMPLES / "mixed.toml"), "--json"], capture_output=True, text=True,
                       timeout=120, env={"NO_COLOR": "1", "PATH": ""})
    assert p.returncode == 1, p.stderr
    assert json.loads(p.stdout)["verdict"] == "not_injective"
    assert all(line.startswith("ntkcheck: analyze ") for line in p.stderr.splitlines())


def test_subprocess_bad_input_no_traceback(tmp_path):
    """The console entry point turns an input error into one line and exit 2 (no traceback)."""
    p = subprocess.run([sys.executable, "-m", "ntkcheck", "analyze", str(tmp_path / "x.npz")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.startswith("ntkcheck: error: ") and p.stderr.count("\n") == 1
    assert "Traceback" not in p.stderr and p.stdout == ""


def _command_names():
    return [c.name or c.callback.__name__ for c in app.registered_commands]


@pytest.mark.parametrize("command", _command_names())
def test_every_command_has_help(command):
    """Meta-test: every registered command answers --help with exit 0 and a usage line plus a
    non-empty description."""
    r = CliRunner().invoke(app, [command, "--help"])
    assert r.exit_code == 0, r.stdout
    assert "Usage" in r.stdout
    cmd = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == command)
    assert (cmd.help or cmd.callback.__doc__ or "").strip()


def test_root_help_and_version():
    """Top-level --help lists every command; --version prints the version."""
    r = CliRunner().invoke(app, ["--help"])
    assert r.exit_code == 0
    for name in _command_names():
        assert name in r.stdout
    v = CliRunner().invoke(app, ["--version"])
    assert v.exit_code == 0 and v.stdout.startswith("ntkcheck ")


@pytest.mark.parametrize("args,fragment", [
    (["analyze", str(Path(__file__).resolve().parents[1] / "samples" / "mixed.toml"),
      "--probes", "0"], "--probes"),
    (["analyze"], "Missing argument"),
    (["no-such-command"], "No such command"),
    (["analyze", "x.npz", "--no-such-option"], "--no-such-option"),
])
def test_usage_errors_are_one_line(args, fragment):
    """Usage errors from the console entry point (not only input errors) are one stderr line
    `ntkcheck: error: ...` naming the offending option, exit code 2, no traceback or box."""
    proc = subprocess.run([sys.executable, "-m", "ntkcheck", *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkcheck: error:"), proc.stderr
    assert fragment in lines[0]
    assert proc.stdout == ""
