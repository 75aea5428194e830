"""Output formats of ``ntkcheck analyze`` (ntkcheck.report) and several files per call.

Every machine format is checked against its schema: the shipped JSON Schema of the document, a
official OASIS SARIF 2.1.0 schema (tests/schemas/sarif-schema-2.1.0.json, vendored unmodified),
and the JUnit XML layout that CI reporters read. Exit codes of a multi-file call: the worst of 2, 1, 3, 0.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from ntkcheck.cli import app
from ntkcheck.report import EXIT_ORDER, FORMATS, worst_exit_code
from ntkcheck.report import json as json_report
from ntkcheck.report.github import annotation
from ntkcheck.report.sarif import RULES

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
# The official OASIS SARIF 2.1.0 schema, vendored unmodified (provenance: tests/schemas/README.md).
SARIF_SHA256 = "d9ae9a4394e29ad68cea57a3f7ec4ec0f283887edba0c8f8f2999c8903407636"
SARIF_SCHEMA = json.loads((ROOT / "tests" / "schemas" / "sarif-schema-2.1.0.json").read_text())
ANNOTATION = re.compile(r"^::(error|warning|notice) file=[^,:]+,title=[^,:]+::.+$")


def run(*args):
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def validate(doc, schema):
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def validate_sarif(log):
    """Validate a SARIF log against the official schema (draft-04, as the schema declares),
    with its ``uri``/``date-time`` formats checked too."""
    v = jsonschema.Draft4Validator(SARIF_SCHEMA, format_checker=jsonschema.FormatChecker())
    errors = sorted(v.iter_errors(log), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def make_data(tmp_path: Path) -> dict[str, Path]:
    """Small files: injective (random sequences), dependent (a translated copy), unreadable."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6, 4, 2))
    good = tmp_path / "good.npz"
    np.savez(good, tokens=X)
    Y = X.copy()
    Y[5] = Y[0] + np.array([0.5, -1.0])
    bad = tmp_path / "sub" / "dependent.npz"
    bad.parent.mkdir()
    np.savez(bad, tokens=Y, names=np.array([f"s{i}" for i in range(6)]))
    broken = tmp_path / "sub" / "broken.npz"
    broken.write_bytes(b"not an npz")
    return {"good": good, "dependent": bad, "broken": broken}


@pytest.mark.parametrize("sample", ["tokens_dependent.npz", "tokens_injective.npz",
                                    "mixed.toml"])
def test_json_document_validates_and_is_versioned(sample):
    """The single-file document has schema_version and validates against the shipped schema."""
    r = run(SAMPLES / sample, "--output-format", "json")
    doc = json.loads(r.stdout)
    assert doc["schema_version"] == json_report.SCHEMA_VERSION
    validate(doc, json_report.schema())


def test_json_run_to_run_identical_except_timings():
    """Two runs give the same document once the documented timing fields are removed."""
    docs = []
    for _ in range(2):
        doc = json.loads(run(SAMPLES / "mixed.toml", "--json").stdout)
        for dotted in json_report.TIMING_FIELDS:
            head, _, last = dotted.rpartition(".")
            parent = doc
            for key in filter(None, head.split(".")):
                parent = parent[key]
            assert last in parent  # the documented timing field exists
            del parent[last]
        docs.append(doc)
    assert docs[0] == docs[1]


def test_schema_is_strict_on_required_keys_and_open_inside():
    """Dropping a required top-level key fails validation; extra keys inside settings,
    dependencies and findings (e.g. a per-claim 'verification') still validate."""
    doc = json.loads(run(SAMPLES / "tokens_dependent.npz", "--json").stdout)
    schema = json_report.schema()
    extended = json.loads(json.dumps(doc))
    extended["settings"]["new_setting"] = 1
    extended["dependencies"][0]["verification"]["extra"] = "allowed"
    extended["structure"]["classes"][0]["distance"] = 0.0
    validate(extended, schema)
    for key in ("schema_version", "verdict", "dependencies", "settings"):
        broken = {k: v for k, v in doc.items() if k != key}
        assert list(jsonschema.Draft7Validator(schema).iter_errors(broken)), key
    wrong = dict(doc, verdict="maybe")
    assert list(jsonschema.Draft7Validator(schema).iter_errors(wrong))


def test_several_files_and_directories(tmp_path):
    """A directory is searched recursively; every file is reported (the unreadable one as an
    error entry), the exit code is 2 because one file is unreadable, and the envelope validates."""
    files = make_data(tmp_path)
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.npz").write_bytes(b"ignored")
    r = run(tmp_path, "--json")
    assert r.exit_code == 2
    env = json.loads(r.stdout)
    validate(env, json_report.schema())
    assert env["exit_code"] == 2
    by_file = {Path(d["file"]).name: d for d in env["files"]}
    assert sorted(by_file) == ["broken.npz", "dependent.npz", "good.npz"]
    assert by_file["good.npz"]["verdict"] == "injective"
    assert by_file["dependent.npz"]["verdict"] == "not_injective"
    assert "error" in by_file["broken.npz"]
    assert r.stderr.count("ntkcheck: error:") == 1 and "broken.npz" in r.stderr
    # without the broken file: worst code is 1 (a dependency); the good file alone: 0
    assert run(files["good"], files["dependent"], "-q").exit_code == 1
    assert run(files["good"], "-q").exit_code == 0


def test_worst_exit_code_order():
    """2 (unreadable) beats 1 (dependency) beats 3 (inconclusive) beats 6 (injective below
    --fail-below) beats 0 (injective)."""
    def reports(*codes):
        return [SimpleNamespace(exit_code=c) for c in codes]
    assert EXIT_ORDER == (2, 1, 3, 6, 0)
    assert worst_exit_code(reports(0, 3, 1, 2)) == 2
    assert worst_exit_code(reports(0, 3, 1)) == 1
    assert worst_exit_code(reports(0, 6, 3)) == 3
    assert worst_exit_code(reports(0, 6)) == 6
    assert worst_exit_code(reports(0, 3)) == 3
    assert worst_exit_code(reports(0, 0)) == 0
    assert worst_exit_code([]) == 0


def test_github_annotations_name_file_and_sequences():
    """One ::error per dependency, naming the file and the sequences involved."""
    r = run(SAMPLES / "tokens_dependent.npz", "--output-format", "github")
    assert r.exit_code == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and all(ANNOTATION.match(line) for line in lines), lines
    assert all("file=" + str(SAMPLES / "tokens_dependent.npz").replace(":", "%3A") in line
               for line in lines)
    assert "base, translated" in lines[0] and "other, permuted" in lines[1]


def test_github_escaping():
    """Data escape %, CR, LF; properties also ':' and ',' (the runner's rules)."""
    line = annotation("error", "a,b:c.npz", "t:1", "50% x\ny")
    assert line == "::error file=a%2Cb%3Ac.npz,title=t%3A1::50%25 x%0Ay"


def test_sarif_validates_one_result_per_dependency(tmp_path):
    """SARIF: valid against the official SARIF 2.1.0 schema; one NTK001 result per dependency whose
    logical locations are the sequences involved; an unreadable file is NTK003 and makes the
    invocation unsuccessful."""
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"x")
    r = run(SAMPLES / "tokens_dependent.npz", SAMPLES / "tokens_injective.npz", broken,
            "-f", "sarif")
    assert r.exit_code == 2
    log = json.loads(r.stdout)
    validate_sarif(log)
    assert log["version"] == "2.1.0"
    run0 = log["runs"][0]
    assert [rule["id"] for rule in run0["tool"]["driver"]["rules"]] == [x[0] for x in RULES]
    results = run0["results"]
    deps = [res for res in results if res["ruleId"] == "NTK001"]
    assert len(deps) == 2
    assert [[loc["name"] for loc in res["locations"][0]["logicalLocations"]] for res in deps] == \
        [["base", "translated"], ["other", "permuted"]]
    assert [res["ruleId"] for res in results if res["ruleId"] != "NTK001"] == ["NTK003"]
    assert run0["invocations"][0]["executionSuccessful"] is False
    assert len(run0["artifacts"]) == 3


def test_sarif_schema_rejects_broken_logs():
    """The vendored official schema has teeth: a wrong version, a bad level, a result without
    a message or with an unknown property are rejected (so a passing validation means
    something)."""
    log = json.loads(run(SAMPLES / "tokens_dependent.npz", "-f", "sarif").stdout)
    assert SARIF_SCHEMA["title"].startswith("Static Analysis Results Format (SARIF) Version 2.1.0")
    v = jsonschema.Draft4Validator(SARIF_SCHEMA)
    jsonschema.Draft4Validator.check_schema(SARIF_SCHEMA)
    digest = hashlib.sha256((ROOT / "tests" / "schemas" / "sarif-schema-2.1.0.json").read_bytes())
    assert digest.hexdigest() == SARIF_SHA256
    assert not list(v.iter_errors(log))
    for mutate in (lambda d: d.update(version="2.0.0"),
                   lambda d: d["runs"][0]["results"][0].update(level="fatal"),
                   lambda d: d["runs"][0]["results"][0].pop("message"),
                   lambda d: d["runs"][0]["results"][0].update(unknown=1)):
        bad = json.loads(json.dumps(log))
        mutate(bad)
        assert list(v.iter_errors(bad))


def test_junit_one_case_per_file(tmp_path):
    """JUnit: one testcase per file, a failure for the dependency, an error for the unreadable
    file, counts that match."""
    files = make_data(tmp_path)
    r = run(files["good"], files["dependent"], files["broken"], "-f", "junit")
    assert r.exit_code == 2
    root = ET.fromstring(r.stdout)
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [str(files[k]) for k in ("good", "dependent",
                                                                       "broken")]
    assert cases[0].find("failure") is None and cases[0].find("error") is None
    assert cases[1].find("failure").get("type") == "not_injective"
    assert "s0, s5" in cases[1].find("failure").text
    assert cases[2].find("error").get("type") == "input_error"
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")


@pytest.mark.parametrize("fmt", FORMATS[1:])
def test_quiet_never_silences_a_machine_format(fmt):
    """-q with a machine format: the same output as without -q (but the JUnit times)."""
    import re

    loud = run(SAMPLES / "tokens_dependent.npz", "-f", fmt)
    quiet = run(SAMPLES / "tokens_dependent.npz", "-f", fmt, "-q")
    assert quiet.exit_code == loud.exit_code == 1

    def untimed(text: str) -> str:
        return re.sub(r' time="[0-9.]+"', "", text)

    assert quiet.stdout and (fmt == "json" or untimed(quiet.stdout) == untimed(loud.stdout))


def test_json_flag_conflicts_with_other_format():
    """--json is short for --output-format json: combined with another format it is an error."""
    r = run(SAMPLES / "tokens_dependent.npz", "--json", "-f", "sarif")
    assert r.exit_code == 2 and "--json" in r.stderr and r.stdout == ""


def _command(*names):
    import typer

    cmd = typer.main.get_command(app)
    for name in names:
        cmd = cmd.commands[name]
    return cmd


@pytest.mark.parametrize("command", [("analyze",), ("spectrum",), ("train",),
                                     ("generate", "teacher"), ("plot",), ("predict",)])
def test_help_shows_every_default(command):
    """Every option that takes a value shows a default in --help (a value or the formula or
    source it comes from), unless it is required; flags show no '<bool>'; no '[default' text is
    swallowed by the markup (it used to vanish from the help text)."""
    r = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.stdout
    text = r.stdout
    assert "<bool>" not in text
    valued = [p for p in _command(*command).params
              if p.param_type_name == "option" and not p.is_flag and not p.required]
    assert all(p.show_default not in (False, None) or p.default is not None for p in valued)
    assert text.count("[default:") == len(valued), text


def test_quiet_keeps_json_of_spectrum_and_train(tmp_path):
    """`spectrum -q --json` and `train -q --json` still print their JSON document."""
    r = CliRunner().invoke(app, ["spectrum", str(SAMPLES / "mixed.toml"), "-q", "--json"])
    assert r.exit_code == 3 and json.loads(r.stdout)["kernel"] == "qk"
    r = CliRunner().invoke(app, ["train", str(SAMPLES / "train.toml"), "--out",
                                 str(tmp_path / "run"), "--steps", "2", "-q", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["step"] == 2
