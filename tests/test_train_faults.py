"""Fault injection on ``train``: kills at random points (including in the middle of a checkpoint
write and between a write and its rename), SIGTERM, double Ctrl-C, torn history lines, corrupt
checkpoints, stale temporary files and a concurrent writer. After every fault, ``--resume`` must
finish with heads and a history bit-identical to an uninterrupted run (the flow is deterministic
given a checkpoint, README "Run directory guarantees").

Tiny model (1 layer x 2 heads, 4 sequences of 3 tokens in R^2, 30 steps, a checkpoint every
step) so that the whole file runs in a few seconds; the killed runs are subprocesses (a real
SIGKILL), the resumes run in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ntkcheck.errors import ConfigError, InputError
from ntkcheck.meanfield import load_checkpoint, load_train_config, train
from ntkcheck.meanfield.run import LOCK_NAME, list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
STEPS = 12

CONFIG = f"""\
[data]
path = "data.npz"
[model]
layers = 1
heads = 2
key_dim = 2
init_qk_std = 1.0
init_v_std = 1.0
seed = 4
[flow]
steps = {STEPS}
step_size = 0.2
[output]
dir = "run"
checkpoint_every = 1
"""

# One subprocess imports ntkcheck once, then forks one killed run per trial (argv: DIR FAULT
# pairs; OPENBLAS_NUM_THREADS=1, so the forking process has a single thread). FAULT "savez:K"
# SIGKILLs the run half-way through the bytes of its K-th .npz write, "replace:K" just before
# its K-th rename, "random:SECONDS" is a SIGKILL from the parent after that delay.
CHILD = r"""
import io, json, os, signal, sys, time
import numpy as np
from ntkcheck.meanfield import load_train_config, train
import ntkcheck.io.atomic as atomic

def run(folder, fault):
    kind, _, arg = fault.partition(":")
    count = {"n": 0}
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    if kind == "savez":
        real = np.savez
        def savez(fh, **arrays):
            count["n"] += 1
            if count["n"] == int(arg):
                buf = io.BytesIO(); real(buf, **arrays); data = buf.getvalue()
                fh.write(data[: len(data) // 2]); fh.flush(); os.fsync(fh.fileno()); die()
            real(fh, **arrays)
        atomic.np = type("np", (), {"savez": staticmethod(savez)})
    elif kind == "replace":
        real_replace = os.replace
        def replace(a, b):
            count["n"] += 1
            if count["n"] == int(arg):
                die()
            real_replace(a, b)
        os.replace = replace
    os.chdir(folder)
    train(load_train_config("train.toml"))

status = {}
pairs = sys.argv[1:]
for folder, fault in zip(pairs[::2], pairs[1::2]):
    pid = os.fork()
    if pid == 0:
        try:
            run(folder, fault)
        finally:
            os._exit(0)
    if fault.startswith("random:"):
        time.sleep(float(fault.split(":")[1]))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, st = os.waitpid(pid, 0)
    status[fault] = os.WTERMSIG(st) if os.WIFSIGNALED(st) else -os.WEXITSTATUS(st)
print(json.dumps(status))
"""


def _data(path: Path) -> None:
    rng = np.random.default_rng(11)
    np.savez(path, tokens=rng.standard_normal((4, 3, 2)), targets=rng.standard_normal((4, 3, 2)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run: final heads and the history's (step, loss, grad_norm_sq)."""
    folder = tmp_path_factory.mktemp("ref")
    _data(folder / "data.npz")
    (folder / "train.toml").write_text(CONFIG)
    res = train(load_train_config(folder / "train.toml"))
    assert res.status == "completed" and res.step == STEPS
    return _state(folder / "run")


def _state(run: Path):
    ck = load_checkpoint(list_checkpoints(run)[-1][1])
    hist = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    return ck.step, ck.model.Q, ck.model.K, ck.model.V, [
        (r["step"], r["loss"], r["grad_norm_sq"]) for r in hist]


def _setup(tmp_path: Path) -> Path:
    _data(tmp_path / "data.npz")
    cfg = tmp_path / "train.toml"
    cfg.write_text(CONFIG)
    return cfg


def _finish(cfg: Path):
    """Resume (or start, when the kill came before any checkpoint) until done."""
    config = load_train_config(cfg)
    try:
        res = train(config, resume=True)
    except InputError as err:
        assert "no checkpoint" in str(err)
        res = train(config)
    assert res.status == "completed"
    return res


def _assert_identical(run: Path, reference) -> None:
    step, Q, K, V, hist = _state(run)
    assert step == reference[0]
    for a, b in zip((Q, K, V), reference[1:4]):
        np.testing.assert_array_equal(a, b)  # bit-identical: the flow is deterministic
    assert hist == reference[4]                # every record, none dropped or duplicated
    leftovers = [p for p in run.rglob(".ntkcheck-tmp-*")]
    assert not leftovers, leftovers


_RNG = np.random.default_rng(2026)
#: Deterministic points (the first writes are the step-0 checkpoint, the empty history and
#: config.json; then one checkpoint and, at the end, the summary) and seeded random delays.
FAULTS = (["savez:1", "savez:2", "savez:6", "savez:13", "replace:1", "replace:2", "replace:3",
           "replace:4", "replace:9", "replace:15"]
          + [f"random:{x:.3f}" for x in _RNG.uniform(0.0, 0.25, size=8)])


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory):
    """Run every fault in one subprocess (forking one run per fault); return the folders."""
    base = tmp_path_factory.mktemp("killed")
    folders = {}
    for i, fault in enumerate(FAULTS):
        folders[fault] = base / f"t{i}"
        folders[fault].mkdir()
        _setup(folders[fault])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    args = [str(x) for f in FAULTS for x in (folders[f], f)]
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = json.loads(proc.stdout.strip().splitlines()[-1])
    return folders, status


@pytest.mark.parametrize("fault", FAULTS)
def test_kill_then_resume_is_bit_identical(killed_runs, reference, fault):
    """SIGKILL at a chosen point (half-way through the bytes of the K-th write, just before the
    K-th rename, or after a random delay), then resume (or start, when nothing was written):
    bit-identical heads and history, no temporary file left."""
    folders, status = killed_runs
    if not fault.startswith("random"):
        assert status[fault] == signal.SIGKILL  # the fault point was reached
    _finish(folders[fault] / "train.toml")
    _assert_identical(folders[fault] / "run", reference)


def test_sigterm_checkpoints_exits_143_and_resumes(tmp_path, reference):
    """SIGTERM during training: exit 143, status interrupted with signal SIGTERM in
    summary.json, a checkpoint at the step reached; the resume is bit-identical."""
    cfg = _setup(tmp_path)
    cfg.write_text(CONFIG.replace(f"steps = {STEPS}", "steps = 100000"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ntkcheck", "train", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    assert proc.stderr.readline().startswith("step 0/")  # training has started
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated at step" in err and "Traceback" not in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == "SIGTERM"
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1]).step == summary["step"]
    cfg.write_text(CONFIG)
    _finish(cfg)
    _assert_identical(tmp_path / "run", reference)


def test_double_ctrl_c_exits_130_with_checkpoint(tmp_path, reference):
    """Two SIGINTs in a row: exit 130 (not -2), one 'interrupted' line, a loadable checkpoint
    at the step reached and a summary; the resume is bit-identical."""
    cfg = _setup(tmp_path)
    cfg.write_text(CONFIG.replace(f"steps = {STEPS}", "steps = 100000"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ntkcheck", "train", str(cfg)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    assert proc.stderr.readline().startswith("step 0/")
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert load_checkpoint(list_checkpoints(tmp_path / "run")[-1][1]).step == summary["step"]
    cfg.write_text(CONFIG)
    _finish(cfg)
    _assert_identical(tmp_path / "run", reference)


def _interrupted_at(cfg: Path, step: int):
    def stop(record):
        if record.step == step:
            raise KeyboardInterrupt
    res = train(load_train_config(cfg), progress=stop)
    assert res.status == "interrupted" and res.step == step
    return res


def test_torn_history_line_keeps_later_records(tmp_path, reference):
    """A torn line in the middle of history.jsonl (a crash while another process appended) is
    skipped with a note naming the line, and every later good record is kept: the resumed
    history equals the reference except the one record whose line was torn."""
    cfg = _setup(tmp_path)
    _interrupted_at(cfg, 9)
    hist = tmp_path / "run" / "history.jsonl"
    lines = hist.read_text().splitlines(keepends=True)
    lines[4] = lines[4][: len(lines[4]) // 2]  # torn, no newline: glued to the next line
    lines[6] = '{"step": "six"}\n'             # well-formed JSON, not a record
    hist.write_text("".join(lines))
    res = train(load_train_config(cfg), resume=True)
    assert any("history.jsonl: skipped 2" in n and "line 5" in n for n in res.notes), res.notes
    steps = [r[0] for r in _state(tmp_path / "run")[4]]
    assert steps == [s for s in range(STEPS + 1) if s not in (4, 5, 6)]
    assert _state(tmp_path / "run")[0] == STEPS
    np.testing.assert_array_equal(_state(tmp_path / "run")[1], reference[1])


def test_corrupt_last_checkpoint_falls_back(tmp_path, reference):
    """A truncated last checkpoint and a bit-flipped one before it are skipped (renamed
    *.corrupt, each reported) for the previous good one; the run then finishes bit-identically
    and a plain rerun is still refused (the directory holds a run)."""
    cfg = _setup(tmp_path)
    _interrupted_at(cfg, 9)
    ckpts = dict(list_checkpoints(tmp_path / "run"))
    data = ckpts[9].read_bytes()
    ckpts[9].write_bytes(data[: len(data) // 3])
    flipped = bytearray(ckpts[8].read_bytes())
    flipped[len(flipped) // 2] ^= 0x10
    ckpts[8].write_bytes(bytes(flipped))
    res = train(load_train_config(cfg), resume=True)
    assert res.start_step == 7
    assert sum("unreadable" in n for n in res.notes) == 2, res.notes
    assert (tmp_path / "run" / "checkpoints" / "step_000009.npz.corrupt").exists()
    _assert_identical(tmp_path / "run", reference)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(load_train_config(cfg))


def _dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


def test_stale_temp_files_are_removed(tmp_path, reference):
    """Temporary files of writes killed before their rename (ntkcheck's own names, a writer
    that is gone) are deleted on the next start, with a note; other hidden files, including
    a user's file that merely looks like a temporary, are left alone."""
    cfg = _setup(tmp_path)
    _interrupted_at(cfg, 7)
    ck = tmp_path / "run" / "checkpoints"
    dead = _dead_pid()
    (ck / f".ntkcheck-tmp-{dead}-0123456789ab.tmp").write_bytes(b"half")
    (tmp_path / "run" / f".ntkcheck-tmp-{dead}-ba9876543210.tmp").write_bytes(b"x")
    (tmp_path / "run" / ".keep").write_text("user file")
    (tmp_path / "run" / ".draft.txt.a1b2c3.tmp").write_text("user draft")
    res = train(load_train_config(cfg), resume=True)
    assert any("removed 2 temporary" in n for n in res.notes), res.notes
    assert (tmp_path / "run" / ".keep").read_text() == "user file"
    assert (tmp_path / "run" / ".draft.txt.a1b2c3.tmp").read_text() == "user draft"
    _assert_identical(tmp_path / "run", reference)


def test_lock_refuses_a_second_writer_and_stale_lock_is_taken(tmp_path):
    """While another process holds the run directory's lock, train (even with --overwrite)
    is refused with the holder's pid; once the holder dies, its leftover lock file is stale
    and the next run proceeds."""
    cfg = _setup(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(run / LOCK_NAME)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid())\n"
        "print('locked', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=f"another ntkcheck train \\(pid {holder.pid}\\)"):
            train(load_train_config(cfg), overwrite=True)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert (run / LOCK_NAME).exists()  # left behind by the killed holder: stale
    assert train(load_train_config(cfg)).status == "completed"
