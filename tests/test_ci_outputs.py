"""CI outputs of ``ntkcheck analyze``: several formats from one run (``--report FORMAT=PATH``,
``--output PATH``), their targets refused before any work, directory scans that skip what is
not an ntkcheck input (with a note) and leave out ``--exclude`` globs, SARIF rule help, JUnit
times, and the quiet pre-commit mode (``--only-failures``). Outputs are parsed with real
parsers (json, jsonschema, xml.etree)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from ntkcheck.cli import app
from ntkcheck.io.inputs import not_an_input, scan_inputs
from ntkcheck.report.json import schema as json_schema
from ntkcheck.report.sarif import HELP_MARKDOWN, RULES

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SARIF_SCHEMA = json.loads((ROOT / "tests" / "schemas" / "sarif-schema-2.1.0.json").read_text())


def run(*args):
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def sarif_errors(log) -> list[str]:
    v = jsonschema.Draft4Validator(SARIF_SCHEMA, format_checker=jsonschema.FormatChecker())
    return [f"{list(e.path)}: {e.message}" for e in v.iter_errors(log)]


def json_errors(doc) -> list[str]:
    return [e.message for e in jsonschema.Draft7Validator(json_schema()).iter_errors(doc)]


def untimed(xml: str) -> str:
    return re.sub(r' time="[0-9.]+"', "", xml)


@pytest.fixture
def data(tmp_path) -> dict[str, Path]:
    """An injective file, a dependent one (a translated copy) and an output directory."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6, 4, 2))
    good = tmp_path / "good.npz"
    np.savez(good, tokens=X)
    Y = X.copy()
    Y[5] = Y[1] + 0.5
    bad = tmp_path / "bad.npz"
    np.savez(bad, tokens=Y)
    out = tmp_path / "out"
    out.mkdir()
    return {"good": good, "bad": bad, "out": out}


# ----------------------------------------------------------------------------------------------
# several formats from one run


def test_one_run_writes_every_report_format(data):
    """-f github --report sarif=.. --report junit=.. --report json=.. --report text=..: the
    annotations on stdout, and each file holds exactly what `-f FORMAT` prints (JUnit times
    and JSON timings aside); SARIF and JSON validate against their schemas, JUnit parses."""
    out = data["out"]
    files = [data["good"], data["bad"]]
    r = run(*files, "--exact", "never", "-f", "github", "--report", f"sarif={out / 'r.sarif'}",
            "--report", f"junit={out / 'r.xml'}", "--report", f"JSON={out / 'r.json'}",
            "--report", f"text={out / 'r.txt'}")
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert r.stdout.startswith("::") and "ntkcheck dependency" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["r.json", "r.sarif", "r.txt", "r.xml"]
    sarif = json.loads((out / "r.sarif").read_text())
    assert sarif_errors(sarif) == []
    assert (out / "r.sarif").read_text() == run(*files, "--exact", "never", "-f", "sarif").stdout
    doc = json.loads((out / "r.json").read_text())
    assert json_errors(doc) == [] and [f["file"] for f in doc["files"]] == list(map(str, files))
    root = ET.fromstring((out / "r.xml").read_text())
    assert root.tag == "testsuites" and root.get("failures") == "1"
    junit = run(*files, "--exact", "never", "-f", "junit").stdout
    assert untimed((out / "r.xml").read_text()) == untimed(junit)
    assert (out / "r.txt").read_text() == run(*files, "--exact", "never").stdout


@pytest.mark.parametrize("fmt", ["sarif", "junit", "json", "github", "text"])
def test_output_writes_the_chosen_format_instead_of_stdout(data, fmt):
    """--output PATH with -f FORMAT: PATH holds that format (not JSON whatever the format, as
    before), parsed by its parser; stdout stays empty."""
    target = data["out"] / f"report.{fmt}"
    r = run(data["bad"], "--exact", "never", "-f", fmt, "--output", target)
    assert r.exit_code == 1 and r.stdout == "", (r.stdout, r.stderr)
    text = target.read_text()
    if fmt == "sarif":
        log = json.loads(text)
        assert log["version"] == "2.1.0" and sarif_errors(log) == []
    elif fmt == "junit":
        assert ET.fromstring(text).find("testsuite/testcase/failure") is not None
    elif fmt == "json":
        doc = json.loads(text)
        assert doc["verdict"] == "not_injective" and json_errors(doc) == []
    elif fmt == "github":
        assert all(line.startswith("::error ") for line in text.splitlines())
    else:
        assert text.startswith("not_injective")


@pytest.mark.parametrize("case", ["two reports", "report and output", "report and write-clean",
                                  "report onto input", "missing directory", "symlink"])
def test_report_targets_refused_before_any_work(data, case):
    """Every target is checked before the analysis: two outputs on one path, an output onto an
    input, a missing directory, a symbolic link: exit 2, one error line naming the option,
    nothing on stdout, no file created, the input unchanged."""
    out, bad = data["out"], data["bad"]
    p = out / "x.json"
    args = {"two reports": ["--report", f"json={p}", "--report", f"sarif={p}"],
            "report and output": ["--output", p, "--report", f"sarif={p}"],
            "report and write-clean": ["--write-clean", out / "c.npz",
                                       "--report", f"json={out / 'c.npz'}"],
            "report onto input": ["--report", f"json={bad}"],
            "missing directory": ["--report", f"json={out / 'no' / 'x.json'}"],
            "symlink": ["--report", f"json={out / 'link.json'}"]}[case]
    if case == "symlink":
        (out / "victim").write_text("keep")
        (out / "link.json").symlink_to(out / "victim")
    before = bad.read_bytes()
    r = run(bad, "--exact", "never", *args)
    assert r.exit_code == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkcheck: error: ") and "--" in lines[0]
    assert not p.exists() and not (out / "c.npz").exists() and bad.read_bytes() == before
    if case == "symlink":
        assert (out / "victim").read_text() == "keep"


@pytest.mark.parametrize("value,fragment", [("bogus=r.x", "unknown format 'bogus'"),
                                            ("r.json", "FORMAT=PATH"), ("json=", "FORMAT=PATH")])
def test_report_option_syntax(data, value, fragment):
    """A malformed --report is one error line naming --report and the valid formats."""
    r = run(data["bad"], "--report", value)
    assert r.exit_code == 2 and r.stdout == ""
    assert "--report" in r.stderr and fragment in r.stderr and len(r.stderr.splitlines()) == 1


def test_failed_input_keeps_previous_report(data, tmp_path):
    """JSON of one unreadable file prints nothing: the --report file keeps its previous content
    (as --output always did); the SARIF of the same run records the error."""
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    old = data["out"] / "r.json"
    old.write_text('{"old": true}\n')
    r = run(broken, "--report", f"json={old}", "--report", f"sarif={data['out'] / 'r.sarif'}")
    assert r.exit_code == 2 and old.read_text() == '{"old": true}\n'
    log = json.loads((data["out"] / "r.sarif").read_text())
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False


# ----------------------------------------------------------------------------------------------
# directory scans: skipped non-inputs and --exclude


def _tree(root: Path) -> Path:
    """data/ with a dataset, a Hugging Face dataset_info.json, an embeddings .npz, a training
    configuration, a spec in a subdirectory and a cache directory holding a dependent set."""
    data = root / "data"
    (data / "sub").mkdir(parents=True)
    (data / "cache").mkdir()
    rng = np.random.default_rng(1)
    np.savez(data / "train.npz", tokens=rng.normal(size=(5, 3, 2)))
    (data / "dataset_info.json").write_text(json.dumps(
        {"description": "", "features": {"input_ids": {"dtype": "int32"}}, "splits": {}}))
    np.savez(data / "embeddings.npz", embeddings=rng.normal(size=(10, 2)))
    (data / "model.toml").write_text("[model]\nlayers = 2\n")
    (data / "sub" / "spec.toml").write_text(
        '[[distribution]]\nname = "a"\nkind = "discrete"\natoms = [0, 1]\n\n'
        '[[distribution]]\nname = "b"\nkind = "discrete"\natoms = [0, 1, 3]\n')
    X = rng.normal(size=(4, 3, 2))
    X[3] = X[0] + 1.0
    np.savez(data / "cache" / "copy.npz", tokens=X)
    return data


def test_scan_skips_non_inputs_with_a_note(tmp_path):
    """A directory holding a dataset_info.json, an embeddings .npz and a training .toml beside
    the datasets: those are skipped with one note each on stderr and the run's exit code is
    the datasets' own (not 2); the JSON envelope lists the datasets only."""
    data = _tree(tmp_path)
    r = run(data, "--exact", "never", "--json", "--exclude", "cache")
    notes = [line for line in r.stderr.splitlines() if line.startswith("ntkcheck: note: ")]
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert sorted(Path(n.split("skipped ")[1].split(":")[0]).name for n in notes) == [
        "dataset_info.json", "embeddings.npz", "model.toml"]
    doc = json.loads(r.stdout)
    assert [Path(f["file"]).name for f in doc["files"]] == ["spec.toml", "train.npz"]
    assert json_errors(doc) == []


def test_named_non_input_still_errors(tmp_path):
    """A file named on the command line is always an input: dataset_info.json named
    explicitly is exit 2 with one error line (it is not skipped)."""
    data = _tree(tmp_path)
    r = run(data / "dataset_info.json")
    assert r.exit_code == 2 and r.stderr.startswith("ntkcheck: error: ")
    assert "note" not in r.stderr


def test_exclude_matches_relative_path_and_name(tmp_path):
    """--exclude GLOB matches the path relative to the scanned directory ('cache/*', 'sub') or
    the base name ('copy.npz'); an excluded directory is not searched. Without it the dependent
    copy in cache/ makes the run exit 1."""
    data = _tree(tmp_path)
    assert run(data, "--exact", "never", "-q").exit_code == 1
    for glob in ("cache/*", "cache", "copy.npz", "*/copy.*"):
        r = run(data, "--exact", "never", "-q", "--exclude", glob)
        assert r.exit_code == 0, (glob, r.stderr)
    scan = scan_inputs([data], exclude=["sub", "cache"])
    assert [p.name for p in scan.files] == ["train.npz"]
    assert sorted(p.name for p in scan.excluded) == ["cache", "sub"]
    named = scan_inputs([data / "cache" / "copy.npz"], exclude=["copy.npz"])
    assert [p.name for p in named.files] == ["copy.npz"]  # named files are never excluded


def test_scan_of_only_non_inputs_is_an_error(tmp_path):
    """A directory whose every file is skipped or excluded has no input: exit 2 saying so (an
    empty scan never passes CI silently), after the notes."""
    d = tmp_path / "meta"
    d.mkdir()
    (d / "dataset_info.json").write_text("{}")
    r = run(d)
    assert r.exit_code == 2 and "contains no ntkcheck input" in r.stderr
    assert "note: skipped" in r.stderr


@pytest.mark.parametrize("name,content,is_input", [
    ("spec.json", '{"distribution": [{"name": "a", "kind": "discrete", "atoms": [0, 1]}]}', True),
    ("bad_spec.json", '{"distribution": [{"name": "a", "kind": "nope"}]}', True),
    ("truncated.json", '{"distribution": [{"name": "a", "ki', True),
    ("dataset_info.json", '{"features": {}, "splits": {"train": {}}}', False),
    ("list.json", "[1, 2, 3]", False),
    ("commented.json", "{// a comment\n}", False),
    ("binary.json", b"\xff\xfe\x00garbage", False),
    ("spec.toml", '[[distribution]]\nname = "a"\natoms = [0, 1]\n', True),
    ("broken_spec.toml", "[[distribution]]\nname = \n", True),
    ("pyproject.toml", '[project]\nname = "x"\n', False),
    ("broken.toml", "[project\n", False),
])
def test_not_an_input_recognises_specs(tmp_path, name, content, is_input):
    """A .json/.toml is a spec when its top level has the key 'distribution'; a document that
    does not parse counts as a spec when its text holds that key (a broken spec is reported by
    the loader, never skipped), else it is not an input and the reason says why."""
    p = tmp_path / name
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    why = not_an_input(p)
    assert (why is None) == is_input, why
    if why is not None:
        assert "spec" in why


def test_not_an_input_npz(tmp_path):
    """An .npz is an input when it holds tokens (or input_ids); an embeddings table is not; a
    file that is not a zip archive is left to the loader (which reports it)."""
    np.savez(tmp_path / "t.npz", tokens=np.zeros((2, 2, 1)))
    np.savez(tmp_path / "ids.npz", input_ids=np.zeros(4, int), offsets=np.array([0, 2, 4]))
    np.savez(tmp_path / "emb.npz", embeddings=np.zeros((3, 2)))
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    assert not_an_input(tmp_path / "t.npz") is None
    assert not_an_input(tmp_path / "ids.npz") is None
    assert "embeddings" in not_an_input(tmp_path / "emb.npz")
    assert not_an_input(tmp_path / "bad.npz") is None


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_not_an_input_never_opens_a_fifo(tmp_path):
    """A FIFO named like a spec is left to the loader (which refuses it): recognising it
    never blocks on the pipe."""
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    assert not_an_input(fifo) is None


# ----------------------------------------------------------------------------------------------
# SARIF help, JUnit times, the pre-commit mode


def test_sarif_rules_carry_help_and_full_description(data):
    """Every SARIF rule has a fullDescription and a help with text and Markdown (shown by code
    scanning beside the alert), and the log validates against the official schema."""
    log = json.loads(run(data["bad"], "--exact", "never", "-f", "sarif").stdout)
    assert sarif_errors(log) == []
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r[0] for r in RULES]
    for rule in rules:
        assert rule["fullDescription"]["text"] and rule["help"]["text"]
        assert rule["help"]["markdown"] == HELP_MARKDOWN[rule["id"]]
        assert "**" in rule["help"]["markdown"]


def test_junit_times(data, tmp_path):
    """Each JUnit test case has a time (seconds of its file's analysis, >= 0) and the suite's
    time is their sum (to the printed millisecond)."""
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"junk")
    r = run(data["good"], data["bad"], broken, "--exact", "never", "-f", "junit")
    assert r.exit_code == 2
    suite = ET.fromstring(r.stdout).find("testsuite")
    times = [float(case.get("time")) for case in suite.findall("testcase")]
    assert len(times) == 3 and all(t >= 0 for t in times)
    assert times[0] > 0  # an analysis takes some time; an unreadable file almost none
    assert float(suite.get("time")) == pytest.approx(sum(times), abs=0.002)


def test_only_failures_is_silent_when_every_file_passes(data):
    """--only-failures (the pre-commit hook): no output at all, stdout or stderr, when every
    file is injective; exit 0."""
    r = run(data["good"], "--exact", "never", "--only-failures")
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == ""


def test_only_failures_reports_the_failing_files_only(data):
    """--only-failures with an injective and a dependent file: the text report of the
    dependent file only (its dependency listed), exit 1."""
    r = run(data["good"], data["bad"], "--exact", "never", "--only-failures")
    assert r.exit_code == 1
    assert r.stdout.startswith("not_injective") and str(data["bad"]) in r.stdout
    assert str(data["good"]) not in r.stdout and "dependencies (1)" in r.stdout


def test_precommit_hook_entry_is_quiet_on_success():
    """The hook's entry runs analyze with --only-failures (silent when every file passes)."""
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    entry = re.search(r"^\s*entry:\s*(.+)$", text, re.M).group(1).split()
    assert entry[:2] == ["ntkcheck", "analyze"] and "--only-failures" in entry
