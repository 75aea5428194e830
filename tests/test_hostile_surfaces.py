"""Probe suite of issue 20, "nothing outside the named path": every surface a hostile user can
reach beyond a single input file, each case stating the contract it checks.

The contract (docs/safety.md): a refused input or target is exit 2 with one line on stderr
(no traceback, never exit 5), nothing outside the named path is written or deleted, no output
is torn, every machine format parses with a real parser for any name, no printed line can be
read as a CI runner command, and nothing hangs or grows without bound.

Surfaces: run directories whose files are symlinks, FIFOs or hard links (train, resume, the
lock, checkpoints/, stale temporaries), predict and plot targets, analyze output targets,
names and file names in every output format (parsed by xml.etree, jsonschema with the SARIF
2.1.0 schema, json, and a small workflow-command parser), malformed Dask addresses and silent
or garbage peers (local socket servers in threads), unreadable entries in directories (real
permissions when not root, simulated otherwise), oversized or corrupt run files, and a
read-only HOME for numba. Every case runs in tmp_path; the whole file takes well under a minute.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path
from types import SimpleNamespace
from xml.etree import ElementTree as ET

import numpy as np
import pytest

from ntkcheck.cli import main
from ntkcheck.errors import InputError
from ntkcheck.io.escape import guard_lines, json_text
from ntkcheck.io.paths import escape_surrogates, printable

ROOT = Path(__file__).resolve().parents[1]
SARIF_SCHEMA = ROOT / "tests" / "schemas" / "sarif-schema-2.1.0.json"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------------------------------
# running the CLI like a terminal would: strict UTF-8 byte streams (a surrogate is exit 5)

class Outcome:
    def __init__(self, code: int, out: bytes, err: bytes, seconds: float):
        self.code, self.out_bytes, self.err_bytes, self.seconds = code, out, err, seconds
        self.out, self.err = out.decode("utf-8"), err.decode("utf-8")

    def __repr__(self) -> str:
        return f"exit {self.code}\nstdout: {self.out[:2000]}\nstderr: {self.err[:2000]}"


def cli(*args: object) -> Outcome:
    """``ntkcheck ARGS`` in this process with stdout/stderr as strict UTF-8 byte streams."""
    out, err = io.BytesIO(), io.BytesIO()
    saved = sys.stdout, sys.stderr
    wo = io.TextIOWrapper(out, encoding="utf-8", errors="strict", newline="")
    we = io.TextIOWrapper(err, encoding="utf-8", errors="strict", newline="")
    sys.stdout, sys.stderr = wo, we
    start = time.monotonic()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for w in (wo, we):
            try:
                w.flush()
            except (ValueError, UnicodeError):
                pass
            w.detach()
        sys.stdout, sys.stderr = saved
    return Outcome(code, out.getvalue(), err.getvalue(), time.monotonic() - start)


def refused(res: Outcome, *words: str) -> None:
    """Exit 2 with exactly one line on stderr (no traceback) naming each of ``words``."""
    assert res.code == 2, res
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkcheck: error: "), res
    assert "Traceback" not in res.err
    for w in words:
        assert w in res.err, (w, res)


# ---------------------------------------------------------------------------------------------
# what a CI runner reads as a command (GitHub Actions): '::' starting a line, '##[' anywhere

_RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def log_safe(text: str, *, own_commands: bool = False) -> None:
    """No raw control character (but LF and tab), no '##[', no line starting with '::' (with
    ``own_commands``: only the annotations ntkcheck itself prints)."""
    assert not _RAW_CONTROL.search(text), repr(_RAW_CONTROL.search(text))
    assert "##[" not in text
    for line in text.splitlines():
        if line.lstrip().startswith("::"):
            assert own_commands and re.match(r"::(error|warning|notice) file=", line), line


def parse_workflow_command(line: str) -> tuple[str, dict[str, str], str]:
    """A small parser of GitHub's ``::command key=value,key=value::data`` lines, unescaping
    properties (%25 %0D %0A %3A %2C) and data (%25 %0D %0A) as the runner does."""
    assert line.startswith("::"), line
    end = line.index("::", 2)
    head, data = line[2:end], line[end + 2:]
    command, _, props_text = head.partition(" ")

    def unescape(s: str, props: bool) -> str:
        s = s.replace("%0D", "\r").replace("%0A", "\n")
        if props:
            s = s.replace("%3A", ":").replace("%2C", ",")
        return s.replace("%25", "%")

    props = {}
    for item in filter(None, props_text.split(",")):
        key, _, value = item.partition("=")
        props[key] = unescape(value, True)
    return command, props, unescape(data, False)


# ---------------------------------------------------------------------------------------------
# data sets with hostile names

def _tokens(N: int = 4) -> np.ndarray:
    X = np.random.default_rng(0).standard_normal((N, 3, 2))
    X[1] = X[0][::-1]  # sequences 0 and 1 are duplicates: a dependency names both
    return X


NAME_SETS = {
    "commands": ["::error::pwned", "##[add-mask]secret", "a%b\r\nc:d,e", "x\n::warning::y"],
    "xml": ["<&]]>\"'", "]]>", "tab\tq", "ok"],
    "controls": ["nul\x00mid", "bel\x07esc\x1b[2J", "c1\x9bcsi\x85nel", "del\x7f\u202e\u2028"],
    "surrogates": ["lone\ud800", "low\udcff", "ok", "ok2"],
}


def _dataset(path: Path, names) -> Path:
    np.savez(path, tokens=_tokens(len(names)), names=np.array(names))
    return path


@pytest.fixture(scope="module")
def name_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("names")
    files = {key: _dataset(folder / f"{key}.npz", names) for key, names in NAME_SETS.items()}
    files["bytes"] = _dataset(folder / "bytes.npz", [b"\xff\xfe", b"caf\xc3\xa9", b"x", b"y"])
    # file names: '::' and '##[', a newline, a carriage return, ESC, a byte that is not UTF-8
    hostile = [":: error::f ##[x] %,", "nl\n::error::name", "cr\rname", "esc\x1b[31m",
               os.fsdecode(b"byte\xff")]
    files["file names"] = folder / "hostile"
    files["file names"].mkdir()
    for j, stem in enumerate(hostile):
        _dataset(files["file names"] / f"{stem}{j}.npz", ["a", "b", "c", "d"])
    return files


def _expected_names(key: str) -> list[str]:
    if key == "bytes":
        return ["\\xff\\xfe", "café", "x", "y"]
    return [escape_surrogates(n) for n in NAME_SETS.get(key, [])]


FORMATS = ("text", "json", "github", "sarif", "junit")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("key", [*NAME_SETS, "bytes", "file names"])
def test_names_in_every_format(name_files, key, fmt):
    """Any sequence name or file name (controls, NUL, ESC, 0x9B, '%', ':', ',', '<&]]>', lone
    surrogates, non-UTF-8 bytes, '::' and '##[') gives the verdict's exit code (1: the data
    hold duplicates), output that encodes as UTF-8, parses with a real parser (json,
    jsonschema + SARIF 2.1.0, xml.etree, the workflow-command parser) and holds nothing a CI
    runner reads as a command; stderr neither."""
    path = name_files[key]
    res = cli("analyze", "--exact", "never", "--fail-below", "0.5", "-f", fmt, path)
    assert res.code in (1, 6), res
    log_safe(res.err)
    log_safe(res.out, own_commands=fmt == "github")
    expected = _expected_names(key)
    if fmt == "json":
        doc = json.loads(res.out)
        assert res.out_bytes.isascii()
        docs = doc["files"] if "files" in doc else [doc]
        if key != "file names":
            assert docs[0]["names"] == expected
        else:
            assert len(docs) == 5 and all("error" not in d for d in docs)
    elif fmt == "sarif":
        jsonschema = pytest.importorskip("jsonschema")
        log = json.loads(res.out)
        jsonschema.validate(log, json.loads(SARIF_SCHEMA.read_text()))
        for art in log["runs"][0]["artifacts"]:
            assert re.fullmatch(r"[A-Za-z0-9\-._~/%!$&'()*+,;=:@]+", art["location"]["uri"])
    elif fmt == "junit":
        root = ET.fromstring(res.out_bytes)
        cases = root.findall(".//testcase")
        assert len(cases) == (5 if key == "file names" else 1)
        if key == "xml":  # the parsed text holds the names themselves
            assert "<&]]>\"'" in "".join(root.itertext())
    elif fmt == "github":
        lines = res.out.splitlines()
        assert lines
        for line in lines:
            command, props, data = parse_workflow_command(line)
            assert command in ("error", "warning", "notice")
            assert set(props) == {"file", "title"}
            decoded = props["file"] + props["title"] + data  # CR, LF: the runner's own escapes
            assert not _RAW_CONTROL.search(decoded.replace("\r", "").replace("\n", ""))
        if key == "file names":
            files = {parse_workflow_command(x)[1]["file"] for x in lines}
            assert len(files) == 5
    else:  # text: the duplicates are named, visibly escaped
        for name in expected[:2]:
            shown = printable(name)
            assert shown in res.out or shown.replace(":", "\\x3a", 1) in res.out, shown


def test_github_escapes_every_control_and_separator():
    """A workflow command property escapes %, CR, LF, ':' and ','; data escape %, CR, LF; every
    other control (C0, DEL, C1 with 0x9B) and '##[' is shown as a visible escape."""
    from ntkcheck.report.github import annotation

    nasty = "".join(chr(c) for c in range(0x20)) + "\x7f\x9b\x85%:,##[x]\ud800"
    line = annotation("error", nasty, nasty, nasty)
    assert "\n" not in line and "\r" not in line
    log_safe(line, own_commands=True)
    command, props, data = parse_workflow_command(line)
    assert command == "error" and set(props) == {"file", "title"}
    assert props["file"].endswith("\\x7f\\x9b\\x85%:,#\\x23[x]\\ud800")
    assert data.startswith("\\x00\\x01") and "\\x9b" in data


def test_junit_is_well_formed_for_any_character():
    """Every code point class (C0, DEL, C1, surrogates, U+FFFE/FFFF, ']]>', '&', quotes) in a
    file name gives JUnit XML that xml.etree parses, with no raw control in the text."""
    from ntkcheck.report import FileReport
    from ntkcheck.report.junit import render

    nasty = "".join(chr(c) for c in range(0x20)) + "\x7f\x9b]]>&\"'<\ud800\ufffe\uffff::x"
    text = render([FileReport(nasty, error=f"{nasty}\n::error::boom ##[add-mask]")])
    root = ET.fromstring(text.encode("utf-8"))
    assert root.find(".//testcase").get("name").endswith("]]>&\"'<\\ud800\\ufffe\\uffff::x")
    log_safe(text)


def test_json_text_keeps_values():
    """json_text writes ASCII JSON whose parsed value equals the input, lone surrogates
    excepted (shown as visible escapes), and never holds '##['."""
    value = {"##[k": ["##[add-mask]x", "a\u2028b", "é", "\udcff"]}
    text = json_text(value)
    assert text.isascii() and "##[" not in text
    assert json.loads(text) == {"##[k": ["##[add-mask]x", "a\u2028b", "é", "\\xff"]}


def test_text_lines_never_start_with_workflow_commands():
    """guard_lines breaks a line-leading '::' (after blanks, at any line break) and keeps
    every other line as it is."""
    text = "a\n  ::error::x\r::warning::y\u2028::notice::z\nb::c\n"
    out = guard_lines(text)
    assert all(not x.lstrip().startswith("::") for x in out.splitlines())
    assert out.endswith("b::c\n") and out.startswith("a\n  \\x3a:error::x")


def test_error_lines_escape_runner_commands(tmp_path):
    """An unreadable file whose name holds '##[' and a newline gives one error line on stderr
    with both escaped."""
    res = cli("analyze", tmp_path / "##[add-mask]x\n::error::y.npz")
    refused(res, "no such file")
    log_safe(res.err)


# ---------------------------------------------------------------------------------------------
# analyze output targets

@pytest.fixture
def dependent(tmp_path) -> Path:
    return _dataset(tmp_path / "data.npz", ["a", "b", "c", "d"])


def test_write_clean_and_output_on_one_path(dependent, tmp_path):
    """--write-clean P --output P is refused before any work: exit 2, P never created."""
    target = tmp_path / "same.npz"
    res = cli("analyze", "--write-clean", target, "--output", target, dependent)
    refused(res, "--write-clean", "--output")
    assert not target.exists() and res.out == ""


def test_write_clean_suffix_checked_before_work(dependent, tmp_path):
    """--write-clean out.txt is refused before the analysis (no report on stdout)."""
    res = cli("analyze", "--write-clean", tmp_path / "out.txt", dependent)
    refused(res, ".npz")
    assert res.out == "" and not (tmp_path / "out.txt").exists()


@pytest.mark.parametrize("option", ["--output", "--write-clean"])
def test_output_onto_the_input_refused(dependent, option):
    """An output target that is the input file is refused; the input is unchanged."""
    before = dependent.read_bytes()
    res = cli("analyze", option, dependent, dependent)
    refused(res, option)
    assert dependent.read_bytes() == before


@pytest.mark.parametrize("option", ["--output", "--write-clean"])
def test_output_in_missing_directory_refused(dependent, tmp_path, option):
    """An output whose directory does not exist is refused before the work."""
    res = cli("analyze", option, tmp_path / "nope" / "x.npz", dependent)
    refused(res, "directory does not exist")
    assert res.out == ""


@pytest.mark.parametrize("option", ["--output", "--write-clean"])
def test_output_symlink_refused(dependent, tmp_path, option):
    """An output that is a symlink is refused; the file it points to is unchanged."""
    victim = tmp_path / "victim.npz"
    victim.write_text("keep")
    link = tmp_path / "link.npz"
    link.symlink_to(victim)
    res = cli("analyze", option, link, dependent)
    refused(res, "symbolic link")
    assert victim.read_text() == "keep" and link.is_symlink()


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_killed_write_temporaries_removed_at_next_write(dependent, tmp_path):
    """A temporary left by a killed write (ntkcheck's name, its writer gone) is removed when
    the next output is written into that directory; a user's look-alike file and a
    temporary of a live writer are kept."""
    dead = _dead_pid()
    stale = tmp_path / f".ntkcheck-tmp-{dead}-0123456789ab.tmp"
    stale.write_bytes(b"half of a 220 MB file")
    live = tmp_path / f".ntkcheck-tmp-{os.getppid()}-0123456789ab.tmp"
    live.write_bytes(b"another process is writing")
    draft = tmp_path / ".draft.txt.a1b2c3.tmp"
    draft.write_text("user draft")
    res = cli("analyze", "-q", "--exact", "never", "-f", "json", "--output", tmp_path / "r.json",
              dependent)
    assert res.code == 1, res
    assert not stale.exists() and live.exists() and draft.read_text() == "user draft"
    assert json.loads((tmp_path / "r.json").read_text())["verdict"] == "not_injective"


def test_killed_write_clean_leaves_no_torn_output(tmp_path):
    """SIGKILL in the middle of --write-clean's write: the target is either absent or the
    previous complete file (never torn); the temporary is removed by the next write."""
    data = _dataset(tmp_path / "data.npz", ["a", "b", "c", "d"])
    target = tmp_path / "clean.npz"
    target.write_bytes(b"previous complete content")
    code = ("import os, signal, numpy as np\n"
            "import ntkcheck.io.atomic as atomic\n"
            "real = np.savez\n"
            "def savez(fh, **a):\n"
            "    fh.write(b'PK half'); fh.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
            "atomic.np = type('np', (), {'savez': staticmethod(savez)})\n"
            "from ntkcheck.cli import main\n"
            f"main(['analyze', '-q', '--exact', 'never', '--write-clean', {str(target)!r}, "
            f"{str(data)!r}])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -9, proc.stderr
    assert target.read_bytes() == b"previous complete content"
    temps = list(tmp_path.glob(".ntkcheck-tmp-*.tmp"))
    assert len(temps) == 1
    res = cli("analyze", "-q", "--exact", "never", "--write-clean", target, data)
    assert res.code == 1, res
    assert not list(tmp_path.glob(".ntkcheck-tmp-*.tmp"))
    assert len(np.load(target)["names"]) == 3  # one of the duplicates dropped


# ---------------------------------------------------------------------------------------------
# unreadable entries: reported per path, the good files still analysed

def _deny(monkeypatch, denied: Path) -> None:
    """Simulate permission denied on ``denied`` (root ignores mode 000): listing it and
    opening it (or anything under it) raise EACCES."""
    import errno as _errno

    real_scandir, real_open = os.scandir, os.open
    prefix = os.fsencode(denied)

    def hit(path) -> bool:
        try:
            p = os.fsencode(os.path.abspath(os.fspath(path)))
        except TypeError:
            return False
        return p == prefix or p.startswith(prefix + b"/")

    def scandir(path="."):
        if hit(path):
            raise PermissionError(_errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    def fake_open(path, flags, *args, **kw):
        if hit(path):
            raise PermissionError(_errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "open", fake_open)


def _unreadable(monkeypatch, path: Path) -> None:
    if IS_ROOT:
        _deny(monkeypatch, path)
    else:
        os.chmod(path, 0)


def test_unreadable_subdirectory_is_reported(tmp_path, monkeypatch):
    """A subdirectory that cannot be listed is reported (exit 2, its path named), never
    skipped silently; the readable files are still analysed and reported."""
    top = tmp_path / "top"
    (top / "locked").mkdir(parents=True)
    _dataset(top / "locked" / "dep.npz", ["a", "b", "c", "d"])
    _dataset(top / "good.npz", ["a", "b", "c", "d"])
    _unreadable(monkeypatch, top / "locked")
    try:
        res = cli("analyze", "--exact", "never", "--json", top)
    finally:
        os.chmod(top / "locked", 0o755)
    assert res.code == 2, res
    doc = json.loads(res.out)
    files = {Path(d["file"]).name: d for d in doc["files"]}
    assert files["good.npz"]["verdict"] == "not_injective"
    assert "permission denied" in files["locked"]["error"]
    assert "locked" in res.err


@pytest.mark.parametrize("suffix", [".npz", ".toml"])
def test_unreadable_file_among_several(tmp_path, monkeypatch, suffix):
    """Several files, one unreadable (a dataset or a spec): each is reported, the good ones
    fully; exit 2; the unreadable one says 'permission denied', not 'is not an .npz file'."""
    good = _dataset(tmp_path / "good.npz", ["a", "b", "c", "d"])
    bad = tmp_path / f"bad{suffix}"
    if suffix == ".npz":
        _dataset(bad, ["a", "b", "c", "d"])
    else:
        bad.write_text('[[distribution]]\nname = "a"\natoms = [[0.0], [1.0]]\n')
    _unreadable(monkeypatch, bad)
    try:
        res = cli("analyze", "--exact", "never", "--json", good, bad)
    finally:
        os.chmod(bad, 0o644)
    assert res.code == 2, res
    docs = json.loads(res.out)["files"]
    assert docs[0]["verdict"] == "not_injective"
    assert "permission denied" in docs[1]["error"] and "not an .npz" not in docs[1]["error"]


@pytest.mark.skipif(IS_ROOT, reason="root reads mode-000 files; simulated in the cases above")
def test_mode_000_directory_real_permissions(tmp_path):
    """With real permissions (not root): a mode-000 directory given directly is reported
    as unreadable, exit 2."""
    locked = tmp_path / "locked"
    locked.mkdir()
    _dataset(locked / "dep.npz", ["a", "b", "c", "d"])
    os.chmod(locked, 0)
    try:
        res = cli("analyze", "--exact", "never", locked)
    finally:
        os.chmod(locked, 0o755)
    refused(res, "permission denied")


def test_symlinked_directory_is_searched_once(tmp_path):
    """A symlink to a directory inside a scanned directory is followed (not skipped
    silently), and a link back to a directory already searched does not loop."""
    top = tmp_path / "top"
    (top / "real").mkdir(parents=True)
    _dataset(top / "real" / "a.npz", ["a", "b", "c", "d"])
    (top / "alias").symlink_to(top / "real")
    (top / "real" / "loop").symlink_to(top)
    res = cli("analyze", "--exact", "never", "--json", top)
    assert res.code == 1, res
    assert len(json.loads(res.out)["files"]) == 1


# ---------------------------------------------------------------------------------------------
# training runs: the run directory's own files

TRAIN = """\
[data]
path = "data.npz"
[model]
layers = 1
heads = 2
key_dim = 2
seed = 4
[flow]
steps = 6
step_size = 0.2
[output]
dir = "run"
checkpoint_every = 3
"""


def _train_data(path: Path) -> None:
    rng = np.random.default_rng(11)
    np.savez(path, tokens=rng.standard_normal((4, 3, 2)),
             targets=rng.standard_normal((4, 3, 2)))


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("base")
    _train_data(folder / "data.npz")
    (folder / "train.toml").write_text(TRAIN)
    os.environ.setdefault("NTKCHECK_BACKEND", "numpy")
    res = cli("train", "-q", folder / "train.toml")
    assert res.code == 0, res
    return folder


@pytest.fixture
def run_copy(base_run, tmp_path, monkeypatch) -> Path:
    """A copy of the trained run in tmp_path (config, data, run directory)."""
    monkeypatch.setenv("NTKCHECK_BACKEND", "numpy")
    for name in ("data.npz", "train.toml"):
        shutil.copy2(base_run / name, tmp_path / name)
    shutil.copytree(base_run / "run", tmp_path / "run", symlinks=True)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    cfg["data"]["path"] = str(tmp_path / "data.npz")
    cfg["output"]["dir"] = str(tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text(json.dumps(cfg))
    return tmp_path


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir(exist_ok=True)
    victim.write_text("precious")
    return victim


@pytest.mark.parametrize("name", [".ntkcheck.lock", "history.jsonl", "summary.json",
                                  "config.json"])
@pytest.mark.parametrize("resume", [True, False])
def test_run_file_symlink_refused(run_copy, name, resume):
    """A run file that is a symlink to a file elsewhere: train (new, --overwrite or --resume)
    is refused with exit 2 naming the file, and the file elsewhere is unchanged."""
    victim = _victim(run_copy)
    link = run_copy / "run" / name
    link.unlink(missing_ok=True)
    link.symlink_to(victim)
    res = cli("train", "-q", "--resume" if resume else "--overwrite", run_copy / "train.toml")
    refused(res, name, "symbolic link")
    assert victim.read_text() == "precious" and link.is_symlink()


def test_checkpoints_symlink_refused(run_copy):
    """checkpoints/ as a symlink to another directory: resume is refused and nothing in that
    directory is deleted or renamed."""
    other = run_copy / "elsewhere"
    shutil.move(str(run_copy / "run" / "checkpoints"), str(other))
    (other / "step_000099.npz").write_bytes(b"corrupt, but not ours to rename")
    before = sorted(p.name for p in other.iterdir())
    (run_copy / "run" / "checkpoints").symlink_to(other)
    res = cli("train", "-q", "--resume", run_copy / "train.toml")
    refused(res, "checkpoints", "symbolic link")
    assert sorted(p.name for p in other.iterdir()) == before


def test_checkpoint_file_symlink_refused(run_copy):
    """A checkpoint that is a symlink to a file elsewhere: train --overwrite is refused
    (it would delete or rename through the link); the file elsewhere is unchanged."""
    victim = _victim(run_copy)
    link = run_copy / "run" / "checkpoints" / "step_000099.npz"
    link.symlink_to(victim)
    res = cli("train", "-q", "--overwrite", run_copy / "train.toml")
    refused(res, "step_000099.npz")
    assert victim.read_text() == "precious"


def test_lock_hard_link_refused(run_copy):
    """A lock file that is a hard link to a file elsewhere is never truncated."""
    victim = _victim(run_copy)
    lock = run_copy / "run" / ".ntkcheck.lock"
    lock.unlink(missing_ok=True)
    os.link(victim, lock)
    res = cli("train", "-q", "--resume", run_copy / "train.toml")
    refused(res, ".ntkcheck.lock")
    assert victim.read_text() == "precious"


def test_history_fifo_refused_without_hanging(run_copy):
    """history.jsonl as a FIFO: train --resume, plot and load_run end at once with exit 2
    (or an InputError), never blocking on the pipe."""
    from ntkcheck.meanfield.trained import load_run

    hist = run_copy / "run" / "history.jsonl"
    hist.unlink()
    os.mkfifo(hist)
    res = cli("train", "-q", "--resume", run_copy / "train.toml")
    refused(res, "history.jsonl")
    assert res.seconds < 30
    with pytest.raises(InputError, match="FIFO"):
        load_run(run_copy / "run")


@pytest.mark.parametrize("what", ["config", "data.path", "checkpoint"])
def test_fifos_refused_where_runs_read(run_copy, what):
    """A FIFO as the training configuration, as data.path, or as the checkpoint predict
    reads: exit 2 naming it, at once (never blocked on the pipe)."""
    if what == "config":
        fifo = run_copy / "train.fifo"
        os.mkfifo(fifo)
        res = cli("train", "-q", fifo)
    elif what == "data.path":
        (run_copy / "data.npz").unlink()
        os.mkfifo(run_copy / "data.npz")
        res = cli("train", "-q", "--overwrite", run_copy / "train.toml")
    else:
        ckpt = run_copy / "run" / "checkpoints" / "step_000006.npz"
        ckpt.unlink()
        os.mkfifo(ckpt)
        res = cli("predict", run_copy / "run", run_copy / "data.npz", "--out",
                  run_copy / "p.npz")
    refused(res, "FIFO" if what != "data.path" else "data.path")
    assert res.seconds < 30


def test_config_inside_the_run_refused(run_copy):
    """A configuration stored as one of the run's own files (run/config.json) is refused:
    train would overwrite its own input."""
    cfg = run_copy / "run" / "config.json"
    cfg.write_text(TRAIN.replace('"data.npz"', '"../data.npz"').replace('"run"', '"."'))
    res = cli("train", "-q", "--overwrite", cfg)
    refused(res, "config.json")


def test_user_temp_lookalike_kept_when_refused(run_copy):
    """train into a used directory is refused (exit 2) and deletes nothing: a user's
    .draft.txt.a1b2c3.tmp and a dead writer's temporary are both still there."""
    draft = run_copy / "run" / ".draft.txt.a1b2c3.tmp"
    draft.write_text("user draft")
    stale = run_copy / "run" / f".ntkcheck-tmp-{_dead_pid()}-0123456789ab.tmp"
    stale.write_bytes(b"x")
    res = cli("train", "-q", run_copy / "train.toml")
    refused(res, "already holds a run")
    assert draft.read_text() == "user draft" and stale.exists()
    res = cli("train", "-q", "--resume", run_copy / "train.toml")
    assert res.code == 0, res
    assert draft.read_text() == "user draft" and not stale.exists()


def test_corrupt_history_record_reported_and_repaired(run_copy):
    """A history record with "loss": "abc": plot and load_run report it (no exit 5, no
    ValueError), and --resume removes it from the file with a note."""
    from ntkcheck.meanfield.trained import load_run

    hist = run_copy / "run" / "history.jsonl"
    lines = hist.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "loss": "abc"})
    hist.write_text("\n".join(lines) + "\n")
    run = load_run(run_copy / "run")
    assert run.skipped_lines == (2,) and run.history["step"].size == len(lines) - 1
    pytest.importorskip("matplotlib")
    res = cli("plot", run_copy / "run", "--out", run_copy / "c.png")
    assert res.code == 0, res
    assert "line 2" in res.err and "--resume" in res.err
    res = cli("train", "--resume", run_copy / "train.toml")
    assert res.code == 0, res
    assert "skipped 1 torn or corrupt" in res.err
    assert all(json.loads(x)["loss"] != "abc" for x in hist.read_text().splitlines())


def test_long_history_line_read_in_bounded_memory(run_copy):
    """A 16 MiB line in history.jsonl is skipped as corrupt while load_run's traced memory
    stays far below the line's size (lines are read at most 64 KiB at a time)."""
    from ntkcheck.meanfield.trained import load_run

    hist = run_copy / "run" / "history.jsonl"
    with open(hist, "ab") as fh:
        fh.write(b'{"step": 99, "x": "' + b"a" * (16 * 2**20) + b'"}\n')
    tracemalloc.start()
    try:
        run = load_run(run_copy / "run")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert run.skipped_lines and peak < 2 * 2**20, peak


@pytest.mark.parametrize("content", ["[1, 2]", "{not json", '{"data": 1}', "\xff"])
def test_load_run_raises_the_project_error(run_copy, content):
    """A malformed config.json makes load_run raise InputError (the project's own error),
    never a bare ValueError, TypeError or AttributeError."""
    from ntkcheck.meanfield.trained import load_run

    (run_copy / "run" / "config.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(InputError):
        load_run(run_copy / "run")


# ---------------------------------------------------------------------------------------------
# predict and plot targets

def test_predict_onto_its_input_refused(run_copy):
    """predict RUN D.npz --out D.npz is refused before the work; D.npz is unchanged."""
    data = run_copy / "data2.npz"
    shutil.copy2(run_copy / "data.npz", data)
    before = data.read_bytes()
    res = cli("predict", run_copy / "run", data, "--out", data)
    refused(res, "--out", "input")
    assert data.read_bytes() == before


@pytest.mark.parametrize("target", ["checkpoints/step_000003.npz", "checkpoints/new.npz",
                                    "data.npz"])
def test_predict_onto_run_files_refused(run_copy, target):
    """predict --out onto a checkpoint, a new file inside checkpoints/ or the run's data file
    is refused; the file is unchanged."""
    path = run_copy / "run" / target if target.startswith("checkpoints") else run_copy / target
    before = path.read_bytes() if path.exists() else None
    res = cli("predict", run_copy / "run", run_copy / "data.npz", "--out", path)
    refused(res, "--out")
    assert (path.read_bytes() if path.exists() else None) == before


def test_predict_out_symlink_refused(run_copy):
    """predict --out that is a symlink is refused; its target is unchanged."""
    victim = _victim(run_copy)
    link = run_copy / "preds.npz"
    link.symlink_to(victim)
    res = cli("predict", run_copy / "run", run_copy / "data.npz", "--out", link)
    refused(res, "symbolic link")
    assert victim.read_text() == "precious"


def test_predict_writes_inside_the_run_directory(run_copy):
    """A new file at the top of the run directory is a fine target (it is not the run's)."""
    res = cli("predict", "-q", run_copy / "run", run_copy / "data.npz", "--out",
              run_copy / "run" / "preds.npz")
    assert res.code == 0, res
    assert np.load(run_copy / "run" / "preds.npz")["predictions"].shape == (4, 3, 2)


def test_plot_into_checkpoints_refused(run_copy):
    """plot --out inside checkpoints/ is refused."""
    pytest.importorskip("matplotlib")
    res = cli("plot", run_copy / "run", "--out", run_copy / "run" / "checkpoints" / "c.png")
    refused(res, "--out")
    assert not (run_copy / "run" / "checkpoints" / "c.png").exists()


def _point_data_at(run_copy: Path, target: Path) -> None:
    cfg_path = run_copy / "run" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["data"]["path"] = str(target)
    cfg_path.write_text(json.dumps(cfg))


def test_predict_with_fifo_data_path_does_not_hang(run_copy):
    """config.json's data.path pointing at a FIFO: predict ends at once with exit 2."""
    fifo = run_copy / "data.fifo"
    os.mkfifo(fifo)
    _point_data_at(run_copy, fifo)
    res = cli("predict", run_copy / "run", run_copy / "data.npz", "--out", run_copy / "p.npz")
    refused(res, "data.path", "FIFO")
    assert res.seconds < 30


def _zip_bomb(path: Path, shape: tuple[int, ...]) -> None:
    """An .npz whose 'targets' member declares ``shape`` float64 zeros, compressed."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                   "shape": shape})
    nbytes = int(np.prod(shape)) * 8
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("targets.npy", "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            chunk = bytes(1 << 20)
            for _ in range(nbytes // len(chunk)):
                fh.write(chunk)
            fh.write(bytes(nbytes % len(chunk)))


def test_zip_bomb_data_path_read_from_headers(run_copy):
    """data.path pointing at a 64 MiB zip bomb: predict reads only its header for the target
    dimension (traced memory far below the bomb's size) and the prediction runs."""
    bomb = run_copy / "bomb.npz"
    _zip_bomb(bomb, (4, 3, 2, 2**20 // 3))
    assert bomb.stat().st_size < 2**20
    _point_data_at(run_copy, bomb)
    from ntkcheck.meanfield.trained import load_run

    run = load_run(run_copy / "run")
    tracemalloc.start()
    try:
        dim = run._target_dim()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert dim == 2**20 // 3 and peak < 4 * 2**20, peak


def test_zip_bomb_refused_by_the_memory_limit(tmp_path):
    """analyze on a zip bomb (1 MiB file, 64 MiB declared) with --max-memory 16M: exit 2
    before anything is decompressed."""
    bomb = tmp_path / "bomb.npz"
    _zip_bomb(bomb, (2**20, 8))
    tracemalloc.start()
    try:
        res = cli("analyze", "--max-memory", "16M", bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    refused(res, "bomb.npz")
    assert peak < 8 * 2**20, peak


# ---------------------------------------------------------------------------------------------
# Dask: bad addresses and peers that are not schedulers

@pytest.mark.parametrize("address", ["notaurl", "tcp://", "tcp://[::1", "tcp://host:99999",
                                     "http://host:8786", "tcp://h:1/x y", "tcp://\x1b[2J:1"])
def test_malformed_scheduler_address(dependent, address):
    """A malformed --scheduler address is exit 2 with one line, before any work."""
    pytest.importorskip("distributed")
    res = cli("analyze", "--backend", "dask", "--scheduler", address, dependent)
    refused(res, "--scheduler")
    assert res.out == ""
    log_safe(res.err)


def test_bad_dask_timeout_setting(dependent, monkeypatch):
    """NTKCHECK_DASK_TIMEOUT that is not a positive number is exit 2 naming the variable."""
    pytest.importorskip("distributed")
    monkeypatch.setenv("NTKCHECK_DASK_TIMEOUT", "soon")
    res = cli("analyze", "-q", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:1",
              dependent)
    refused(res, "NTKCHECK_DASK_TIMEOUT")


def _peer(mode: str):
    """A local TCP server that is not a Dask scheduler: silent, garbage bytes, an HTTP
    reply, or closing every connection at once."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conns.append(conn)
            try:
                if mode == "garbage":
                    conn.sendall(np.random.default_rng(1).bytes(4096))
                elif mode == "small garbage":
                    conn.sendall(b"\x10" + bytes(7) + b"\xc1" * 16)
                elif mode == "http":
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                elif mode == "close":
                    conn.close()
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    return srv, f"tcp://127.0.0.1:{srv.getsockname()[1]}"


@pytest.mark.parametrize("mode", ["silent", "garbage", "small garbage", "http", "close"])
def test_peer_that_is_not_a_scheduler(dependent, monkeypatch, mode):
    """--backend dask against a port that stays silent, sends garbage, answers HTTP or
    closes: exit 2 with one line within the documented timeout (NTKCHECK_DASK_TIMEOUT, here
    2 s), never a hang and never exit 5."""
    pytest.importorskip("distributed")
    monkeypatch.setenv("NTKCHECK_DASK_TIMEOUT", "2")
    srv, address = _peer(mode)
    try:
        res = cli("analyze", "-q", "--exact", "never", "--stream", "--backend", "dask",
                  "--scheduler", address, dependent)
    finally:
        srv.close()
    refused(res, "scheduler")
    assert res.seconds < 15, res.seconds


def test_scheduler_without_workers_times_out(dependent, monkeypatch):
    """A real scheduler with no worker: the wait for results ends with exit 2 naming the
    missing workers (a liveness check every timeout), not a hang."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as c:
        # the short timeout is ntkcheck's only (set once the cluster is up: a loaded machine
        # may take seconds to start the scheduler itself)
        monkeypatch.setenv("NTKCHECK_DASK_TIMEOUT", "2")
        res = cli("analyze", "-q", "--exact", "never", "--stream", "--backend", "dask",
                  "--scheduler", c.scheduler_address, dependent)
    refused(res, "scheduler")
    assert res.seconds < 30, res.seconds


class _FakeScheduler:
    address = "tcp://fake:8786"

    def __init__(self, answers: bool):
        self.answers = answers

    async def identity(self):
        return {"type": "Scheduler", "workers": {"w": {}}}


class _FakeFuture:
    def __init__(self, fault):
        self.fault = fault

    def result(self, timeout=None):
        raise self.fault

    def done(self):
        return False


class _FakeClient:
    """Just enough of distributed.Client for fold_dask: every result fails with ``fault``."""

    def __init__(self, fault, answers: bool = True):
        self.fault, self.scheduler = fault, _FakeScheduler(answers)

    def nthreads(self, **kw):
        return {"w": 2}

    def scatter(self, value, **kw):
        return value

    def submit(self, *args, **kw):
        return _FakeFuture(self.fault)

    def sync(self, fn, callback_timeout=None):
        if not self.scheduler.answers:
            raise TimeoutError("no reply")
        import asyncio

        return asyncio.run(fn())


def _cluster_faults():
    from distributed.comm.core import CommClosedError
    from distributed.scheduler import KilledWorker

    try:  # distributed >= 2022.11 takes the worker's state, older ones any arguments
        killed = KilledWorker("fold", SimpleNamespace(address="tcp://w:1"), 3)
        str(killed)
    except (TypeError, AttributeError):
        killed = KilledWorker("fold", "tcp://w:1")
    return {"scheduler lost": CommClosedError("in <TCP>: Stream is closed"),
            "worker killed": killed,
            "connection reset": ConnectionResetError(104, "Connection reset by peer")}


@pytest.mark.parametrize("fault", ["scheduler lost", "worker killed", "connection reset"])
def test_cluster_fault_mid_run_is_an_input_error(fault):
    """A scheduler or worker lost while results are awaited is an InputError naming the
    scheduler (exit 2 in the CLI), not an internal error."""
    pytest.importorskip("distributed")
    from ntkcheck.backends.dask import fold_dask

    client = _FakeClient(_cluster_faults()[fault])
    with pytest.raises(InputError, match="scheduler.*failed in mid-run"):
        fold_dask(lambda k: np.ones((3, 2)), 2, 2, client=client, timeout=0.5)


def test_silent_scheduler_mid_run_is_an_input_error():
    """Results that never come while the scheduler stops answering its status request:
    an InputError after one timeout, not a hang."""
    pytest.importorskip("distributed")
    from ntkcheck.backends.dask import fold_dask

    client = _FakeClient(TimeoutError("no result yet"), answers=False)
    start = time.monotonic()
    with pytest.raises(InputError, match="stopped answering"):
        fold_dask(lambda k: np.ones((3, 2)), 2, 2, client=client, timeout=0.5)
    assert time.monotonic() - start < 5


# ---------------------------------------------------------------------------------------------
# no writable HOME or package directory

def test_import_without_writable_cache_directory(tmp_path):
    """HOME read-only, NUMBA_CACHE_DIR unset and no writable cache directory anywhere (numba's
    check simulated, since root can write everywhere): importing the CLI and compiling a
    kernel work (the kernels compile without a disk cache)."""
    pytest.importorskip("numba")
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, stat.S_IRUSR | stat.S_IXUSR)
    code = ("import numba.core.caching as c\n"
            "def refuse(self):\n"
            "    raise PermissionError(13, 'read-only file system')\n"
            "c._CacheLocator.ensure_cache_path = refuse\n"
            "from ntkcheck.cli import main\n"
            "from ntkcheck.meanfield import fast\n"
            "assert fast.AVAILABLE and not fast._DISK_CACHE['on']\n"
            "main(['--version'])\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, env=env, cwd=tmp_path)
    finally:
        os.chmod(home, 0o755)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("ntkcheck ")


def test_a_client_handshake_that_never_ends_is_bounded(dependent, monkeypatch):
    """A peer that answers the probe and then stays silent during the client's own handshake
    (simulated: Client() blocks): exit 2 with one line within the timeout, never a hang."""
    distributed = pytest.importorskip("distributed")
    import threading

    from ntkcheck.backends import dask as dask_backend

    monkeypatch.setenv("NTKCHECK_DASK_TIMEOUT", "1")
    monkeypatch.setattr(dask_backend, "probe", lambda address, timeout: None)
    release = threading.Event()
    monkeypatch.setattr(distributed, "Client", lambda *a, **k: release.wait(60))
    try:
        res = cli("analyze", "-q", "--exact", "never", "--stream", "--backend", "dask",
                  "--scheduler", "tcp://127.0.0.1:9", dependent)
    finally:
        release.set()
    refused(res, "scheduler", "handshake")
    assert res.seconds < 10, res.seconds
