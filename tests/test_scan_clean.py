"""Directory scans of token-ID files, skipped files in every machine format, and
``--write-clean`` for token-ID inputs (.npz, .jsonl, .parquet)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from ntkcheck.cli import app
from ntkcheck.io.inputs import holds_token_ids, not_an_input, scan_inputs
from ntkcheck.report.json import SCHEMA_VERSION, schema as json_schema

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def run(*args):
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def json_errors(doc) -> list[str]:
    import jsonschema

    return [e.message for e in jsonschema.Draft7Validator(json_schema()).iter_errors(doc)]


def sarif_errors(log) -> list[str]:
    import jsonschema

    path = Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json"
    return [e.message for e in jsonschema.Draft7Validator(json.loads(path.read_text()))
            .iter_errors(log)]


def id_corpus(seed=3, V=80, d=3, N=16):
    """Generic ID sequences with one exact duplicate (seq 4 = seq 1, token order reversed):
    not injective; dropping one copy leaves an injective set."""
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((V, d))
    seqs = [rng.integers(0, V, rng.integers(3, 8)) for _ in range(N)]
    seqs[4] = seqs[1][::-1].copy()
    return table, seqs


def write_jsonl(path, seqs, names=None, weights=None):
    with open(path, "w") as fh:
        for i, s in enumerate(seqs):
            obj = {"input_ids": [int(x) for x in s]}
            if names is not None:
                obj["name"] = names[i]
            if weights is not None:
                obj["weights"] = [float(x) for x in weights[i]]
            fh.write(json.dumps(obj) + "\n")


def write_parquet(path, seqs, weights=None):
    cols = {"input_ids": pa.array([[int(x) for x in s] for s in seqs], pa.list_(pa.int64()))}
    if weights is not None:
        cols["weights"] = pa.array([list(map(float, w)) for w in weights],
                                   pa.list_(pa.float64()))
    pq.write_table(pa.table(cols), path)


def write_id_npz(path, seqs, weights=None, **extra):
    ids = np.concatenate(seqs)
    arrays = {"input_ids": ids, "offsets": np.concatenate([[0], np.cumsum(list(map(len, seqs)))])}
    if weights is not None:
        arrays["weights"] = np.concatenate(weights)
    np.savez(path, **arrays, **extra)


# ----------------------------------------------------------------------------------------------
# 1. scans pick up token-ID files


def _id_tree(root: Path):
    """data/ with token IDs as .jsonl, .parquet and .npz, a coordinate .npz, a training run's
    history.jsonl, a parquet without input_ids, and the table (not scanned: .npy)."""
    table, seqs = id_corpus()
    data = root / "data"
    (data / "run").mkdir(parents=True)
    write_jsonl(data / "a.jsonl", seqs[5:])
    write_parquet(data / "b.parquet", seqs[6:])
    write_id_npz(data / "c.npz", seqs[7:])
    np.savez(data / "tokens.npz", tokens=np.random.default_rng(0).normal(size=(5, 3, 2)))
    (data / "run" / "history.jsonl").write_text('{"step": 0, "loss": 1.0}\n')
    pq.write_table(pa.table({"text": ["a", "b"]}), data / "meta.parquet")
    np.save(root / "table.npy", table)
    return data, root / "table.npy", table, seqs


def test_scan_picks_up_id_files_and_applies_the_table_to_them_only(tmp_path):
    """A scan with --embeddings analyses the .jsonl, .parquet and ID .npz (with the table)
    and the coordinate .npz (without it: no error), skips the run's history.jsonl and the
    parquet without input_ids with a note each, and the JSON envelope lists both."""
    data, table, _, _ = _id_tree(tmp_path)
    r = run(data, "--embeddings", table, "--exact", "never", "--json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert sorted(Path(f["file"]).name for f in doc["files"]) == [
        "a.jsonl", "b.parquet", "c.npz", "tokens.npz"]
    assert all("verdict" in f for f in doc["files"])
    assert sorted(Path(s["file"]).name for s in doc["skipped"]) == [
        "history.jsonl", "meta.parquet"]
    assert all(s["reason"] for s in doc["skipped"])
    notes = [n for n in r.stderr.splitlines() if n.startswith("ntkcheck: note: skipped")]
    assert len(notes) == 2
    assert doc["schema_version"] == SCHEMA_VERSION and json_errors(doc) == []


def test_scan_without_embeddings_reports_each_id_file_with_the_fix(tmp_path):
    """Without --embeddings the ID files of a scan are inputs all the same: each is an error
    naming --embeddings (exit 2, never a silent pass), the coordinate file is still analysed,
    and --exclude leaves the ID files out (exit 0)."""
    data, _, _, _ = _id_tree(tmp_path)
    r = run(data, "--exact", "never", "--json")
    assert r.exit_code == 2
    errors = [e for e in r.stderr.splitlines() if e.startswith("ntkcheck: error: ")]
    assert len(errors) == 3 and all("--embeddings" in e for e in errors), errors
    doc = json.loads(r.stdout)
    assert [Path(f["file"]).name for f in doc["files"] if "verdict" in f] == ["tokens.npz"]
    r = run(data, "--exact", "never", "-q", "--exclude", "*.jsonl", "--exclude", "*.parquet",
            "--exclude", "c.npz")
    assert r.exit_code == 0, r.stderr


@pytest.mark.parametrize("name,content,is_input", [
    ("ids.jsonl", '{"input_ids": [1, 2]}\n', True),
    ("blank_first.jsonl", '\n\n{"input_ids": [1]}\n', True),
    ("truncated.jsonl", '{"input_ids": [1, 2', True),
    ("history.jsonl", '{"step": 1, "loss": 0.5}\n', False),
    ("list.jsonl", "[1, 2, 3]\n", False),
    ("empty.jsonl", "", False),
])
def test_not_an_input_recognises_jsonl(tmp_path, name, content, is_input):
    """A .jsonl is token IDs when its first record has input_ids (a broken first line counts
    when it holds "input_ids": reported by the loader, never skipped); else it is skipped with
    a reason."""
    p = tmp_path / name
    p.write_text(content)
    why = not_an_input(p)
    assert (why is None) == is_input, why
    assert holds_token_ids(p)


def test_not_an_input_recognises_parquet(tmp_path):
    """A .parquet is token IDs when its footer names an input_ids column; one without it is
    skipped; a file that is not parquet is left to the loader."""
    write_parquet(tmp_path / "ids.parquet", [[1, 2], [3]])
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "text.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    assert not_an_input(tmp_path / "ids.parquet") is None
    assert "input_ids" in not_an_input(tmp_path / "text.parquet")
    assert not_an_input(tmp_path / "junk.parquet") is None
    assert [p.name for p in scan_inputs([tmp_path]).files] == ["ids.parquet", "junk.parquet"]


# ----------------------------------------------------------------------------------------------
# 2. skipped files in every machine format


def test_skipped_files_in_every_machine_format(tmp_path):
    """One run, four formats: JSON lists the skipped file in 'skipped'; SARIF has a note-level
    tool-execution notification (no result, execution still successful) and validates; JUnit
    has a test case with <skipped> counted in the suite; GitHub prints a notice for it. The
    exit code is the datasets' own."""
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "train.npz", tokens=np.random.default_rng(1).normal(size=(5, 3, 2)))
    (data / "dataset_info.json").write_text('{"features": {}}')
    out = tmp_path / "out"
    out.mkdir()
    r = run(data, "--exact", "never", "-f", "github", "--report", f"json={out}/r.json",
            "--report", f"sarif={out}/r.sarif", "--report", f"junit={out}/r.xml")
    assert r.exit_code == 0, r.stderr
    skipped_name = str(data / "dataset_info.json")
    notices = [line for line in r.stdout.splitlines() if "title=ntkcheck skipped" in line]
    assert len(notices) == 1 and notices[0].startswith("::notice file=")
    assert "dataset_info.json" in notices[0]
    doc = json.loads((out / "r.json").read_text())
    assert doc["skipped"] == [{"file": skipped_name, "reason": doc["skipped"][0]["reason"]}]
    assert "distribution" in doc["skipped"][0]["reason"] and json_errors(doc) == []
    log = json.loads((out / "r.sarif").read_text())
    assert sarif_errors(log) == []
    inv = log["runs"][0]["invocations"][0]
    assert inv["executionSuccessful"] is True and log["runs"][0]["results"] == []
    (note,) = inv["toolExecutionNotifications"]
    assert note["level"] == "note" and "dataset_info.json" in note["message"]["text"]
    assert note["descriptor"]["id"] == "skipped-input"
    suite = ET.fromstring((out / "r.xml").read_text()).find("testsuite")
    assert suite.get("skipped") == "1" and suite.get("tests") == "2"
    cases = {Path(c.get("name")).name: c for c in suite.findall("testcase")}
    assert cases["dataset_info.json"].find("skipped") is not None
    assert cases["train.npz"].find("skipped") is None


def test_no_skipped_key_change_without_a_scan(tmp_path):
    """Two named files (no scan): the envelope's 'skipped' is an empty list and the SARIF log
    has no notification."""
    np.savez(tmp_path / "a.npz", tokens=np.random.default_rng(1).normal(size=(5, 3, 2)))
    np.savez(tmp_path / "b.npz", tokens=np.random.default_rng(2).normal(size=(5, 3, 2)))
    doc = json.loads(run(tmp_path / "a.npz", tmp_path / "b.npz", "--exact", "never",
                         "--json").stdout)
    assert doc["skipped"] == []
    log = json.loads(run(tmp_path / "a.npz", tmp_path / "b.npz", "--exact", "never",
                         "-f", "sarif").stdout)
    assert "toolExecutionNotifications" not in log["runs"][0]["invocations"][0]


# ----------------------------------------------------------------------------------------------
# 3. --write-clean for token-ID inputs


def _write(kind: str, path: Path, seqs, weights):
    if kind == "jsonl":
        write_jsonl(path, seqs, weights=weights)
    elif kind == "parquet":
        write_parquet(path, seqs, weights=weights)
    elif kind == "npz_lengths":
        np.savez(path, input_ids=np.concatenate(seqs), lengths=np.array(list(map(len, seqs))),
                 weights=np.concatenate(weights))
    elif kind == "npz_padded":
        n = max(map(len, seqs))
        ids = np.zeros((len(seqs), n), np.int64)
        w = np.zeros((len(seqs), n))
        for i, s in enumerate(seqs):
            ids[i, :len(s)], w[i, :len(s)] = s, weights[i]
        np.savez(path, input_ids=ids, lengths=np.array(list(map(len, seqs))), weights=w)
    else:
        write_id_npz(path, seqs, weights=weights)


@pytest.mark.parametrize("kind", ["npz", "npz_lengths", "npz_padded", "jsonl", "parquet"])
def test_write_clean_id_inputs_round_trip(tmp_path, kind):
    """--write-clean on a token-ID file with a duplicate writes a file of the same kind with
    the dropped sequence removed (IDs, offsets/lengths and weights of the kept ones, values
    unchanged, names traceable), and re-analysing it with the same table is injective; the
    input is untouched."""
    table, seqs = id_corpus()
    rng = np.random.default_rng(9)
    weights = [rng.integers(1, 4, len(s)).astype(float) for s in seqs]
    weights[4] = weights[1][::-1].copy()  # the duplicate keeps its weights
    suffix = "." + kind.split("_")[0]
    src = tmp_path / f"corpus{suffix}"
    _write(kind, src, seqs, weights)
    before = src.read_bytes()
    np.save(tmp_path / "table.npy", table)
    out = tmp_path / f"clean{suffix}"
    r = run(src, "--embeddings", tmp_path / "table.npy", "--exact", "never",
            "--write-clean", out, "--json")
    assert r.exit_code == 1, (r.stdout, r.stderr)
    sug = json.loads(r.stdout)["suggest_drop"]
    assert sug["success"] and len(sug["drop"]) == 1 and sug["drop"][0] in ("seq1", "seq4")
    assert src.read_bytes() == before and out.is_file()
    again = run(out, "--embeddings", tmp_path / "table.npy", "--exact", "never", "--json")
    assert again.exit_code == 0, again.stderr
    doc = json.loads(again.stdout)
    dropped = int(sug["drop"][0][3:])
    kept = [i for i in range(len(seqs)) if i != dropped]
    assert doc["verdict"] == "injective" and doc["names"] == [f"seq{i}" for i in kept]
    # the kept sequences' IDs and weights, bit for bit
    from ntkcheck.io.ids import load_token_ids

    cleaned = load_token_ids(out, table)
    for j, i in enumerate(kept):
        lo, hi = cleaned.offsets[j], cleaned.offsets[j + 1]
        assert np.array_equal(cleaned.vocab[cleaned.ids[lo:hi]], seqs[i])
        assert np.array_equal(cleaned.weights[lo:hi], weights[i])


@pytest.mark.parametrize("case", ["kind", "symlink", "directory", "input"])
def test_write_clean_refusals_before_any_work(tmp_path, case):
    """--write-clean refuses, with exit 2 and one line naming it, before any analysis: an
    output of another kind than the input, a symlink, a directory, the input itself; the
    file a symlink points to keeps its content."""
    table, seqs = id_corpus()
    src = tmp_path / "corpus.jsonl"
    write_jsonl(src, seqs)
    np.save(tmp_path / "table.npy", table)
    keep = tmp_path / "precious.jsonl"
    keep.write_text("precious\n")
    target = {"kind": tmp_path / "clean.npz", "symlink": tmp_path / "link.jsonl",
              "directory": tmp_path / "dir.jsonl", "input": src}[case]
    if case == "symlink":
        os.symlink(keep, target)
    if case == "directory":
        target.mkdir()
    r = run(src, "--embeddings", tmp_path / "table.npy", "--write-clean", target)
    assert r.exit_code == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "--write-clean" in lines[0], lines
    assert "analyze" not in r.stderr and keep.read_text() == "precious\n"
    assert src.read_text().count("\n") == len(seqs)
