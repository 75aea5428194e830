"""Safe writes and the CLI's exit-code contract: umask modes, full disks, refused targets,
closed stdout, internal errors, --debug, escaped names, the memory guard's estimates."""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ntkcheck import resources
from ntkcheck.cli import app, main
from ntkcheck.errors import EXIT_INTERNAL, InputError, ResourceError
from ntkcheck.io.atomic import atomic_write, atomic_write_text
from ntkcheck.io.paths import output_target, printable

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_new_file_gets_the_umask_mode(tmp_path, umask, mask):
    """A new file has mode 0o666 & ~umask (what open() would give), not mkstemp's 0o600."""
    umask(mask)
    atomic_write_text(tmp_path / "a.json", "{}")
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == 0o666 & ~mask


def test_replaced_file_keeps_its_mode(tmp_path, umask):
    """Replacing an existing file keeps that file's mode (the user chose it)."""
    p = tmp_path / "a.json"
    p.write_text("old")
    os.chmod(p, 0o640)
    atomic_write_text(p, "new")
    assert p.read_text() == "new" and stat.S_IMODE(os.stat(p).st_mode) == 0o640


def test_failed_write_leaves_previous_content(tmp_path):
    """An OSError in mid-write (ENOSPC simulated by the writer) is one InputError naming the
    file; the old content is intact and no temporary file is left."""
    p = tmp_path / "out.json"
    p.write_text("previous")

    def writer(fh):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(InputError, match="No space left on device.*previous content"):
        atomic_write(p, writer)
    assert p.read_text() == "previous"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["out.json"]


def test_file_size_limit_is_a_clean_error(tmp_path):
    """A real kernel write error (RLIMIT_FSIZE -> EFBIG, the same path as ENOSPC) through the
    CLI: exit 2, one line, the previous --output content intact, no temporary file."""
    out = tmp_path / "report.json"
    out.write_text("previous")
    code = ("import resource, signal, sys\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))\n"
            "from ntkcheck.cli import main\n"
            f"main(['analyze', '-q', '--exact', 'never', '--output', {str(out)!r}, "
            f"{str(SAMPLES / 'tokens_injective.npz')!r}])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkcheck: error: ")
    assert "File too large" in lines[0]
    assert out.read_text() == "previous"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink", "input", "missing_dir"])
def test_output_target_refused_before_work(tmp_path, kind):
    """output_target refuses each unsafe target with an InputError naming the option, and
    leaves it as it was (nothing opened, nothing replaced)."""
    inp = tmp_path / "in.npz"
    inp.write_bytes(b"x")
    target = {"directory": tmp_path / "d", "fifo": tmp_path / "f", "symlink": tmp_path / "l",
              "input": inp, "missing_dir": tmp_path / "no" / "x"}[kind]
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink":
        target.symlink_to(inp)
    with pytest.raises(InputError, match="--output"):
        output_target(target, "--output", inputs=[inp])
    assert inp.read_bytes() == b"x"


def test_printable_escapes_controls():
    """Control characters (C0, DEL, C1, bidi overrides) become visible escapes; ordinary text
    (accents, CJK, emoji) is unchanged."""
    assert printable("a\x1b[2Jb\n\x07\x7f\x9b\u202e") == "a\\x1b[2Jb\\x0a\\x07\\x7f\\x9b\\u202e"
    assert printable("Zoë 名前 🙂") == "Zoë 名前 🙂"


def _pipe_closed(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI with a stdout pipe whose read end is already closed (like `| head -0`)."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "ntkcheck", *args], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    finally:
        os.close(w)


def test_closed_stdout_exits_with_the_verdict():
    """`analyze ... | head` with the reader gone, on injective data: exit 0, the verdict's own
    code (rich alone would exit 1, which CI reads as "dependency found"), nothing on stderr."""
    proc = _pipe_closed("analyze", "--exact", "never", str(SAMPLES / "tokens_injective.npz"))
    assert proc.returncode == 0, proc.stderr
    assert all(line.startswith("ntkcheck: analyze ") for line in proc.stderr.splitlines())


def test_internal_error_is_one_line_exit_5(monkeypatch):
    """An unexpected exception (a bug) exits 5 (never 0/1/3) with one line asking to report it
    and no traceback; with NTKCHECK_DEBUG=1 the traceback is printed too."""
    import ntkcheck.cli.analyze as mod

    def boom(*a, **k):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(mod, "analyze", boom)
    monkeypatch.delenv("NTKCHECK_DEBUG", raising=False)
    res = CliRunner().invoke(app, ["analyze", str(SAMPLES / "tokens_injective.npz")])
    assert res.exit_code == EXIT_INTERNAL == 5
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkcheck: internal error: ")
    assert "report" in lines[0] and "Traceback" not in res.stderr
    monkeypatch.setenv("NTKCHECK_DEBUG", "1")
    res = CliRunner().invoke(app, ["analyze", str(SAMPLES / "tokens_injective.npz")])
    assert res.exit_code == 5 and "Traceback" in res.stderr and "ZeroDivisionError" in res.stderr


def test_debug_flag_anywhere(monkeypatch, capsys):
    """`--debug` after the subcommand is accepted by main() and turns on tracebacks."""
    import ntkcheck.cli.analyze as mod

    monkeypatch.setattr(mod, "analyze", lambda *a, **k: 1 / 0)
    monkeypatch.delenv("NTKCHECK_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["analyze", str(SAMPLES / "tokens_injective.npz"), "--debug"])
    assert exc.value.code == 5
    assert "Traceback" in capsys.readouterr().err


def test_memory_estimates_against_direct_counts():
    """The estimates are the byte counts of the arrays they describe: an npz's declared sizes
    add up, an M x N float64 matrix is 8 M N bytes, padding N sequences of max length n in d
    dimensions counts the (N, n, d) tokens; parse_memory uses binary units."""
    a, b = np.zeros((7, 3)), np.zeros(5, np.int32)
    assert resources.npz_read_bytes([a.nbytes, b.nbytes]) == 7 * 3 * 8 + 5 * 4
    assert resources.feature_matrix_bytes(40, 30) == np.zeros((40, 30)).nbytes
    assert resources.ragged_padding_bytes(10, 4, 3) >= np.zeros((4, 10, 3)).nbytes
    assert resources.parse_memory("1.5G") == 3 * 2**29
    assert resources.parse_memory("512m") == 512 * 2**20
    with pytest.raises(InputError, match="--max-memory"):
        resources.parse_memory("-1G")
    with pytest.raises(ResourceError, match="would need about 1.0 GiB.*--max-memory"):
        resources.check_memory(2**30, 2**20, "this", "do less")


def test_default_limit_respects_rlimit_as():
    """The default limit is DEFAULT_FRACTION of min(RAM, cgroup, RLIMIT_AS): under an
    address-space limit of 1 GiB it is 512 MiB (checked in a child process)."""
    code = ("import resource; resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30));"
            "from ntkcheck.resources import default_max_memory as f; print(f())")
    env = {k: v for k, v in os.environ.items() if k != "NTKCHECK_MAX_MEMORY"}
    env.update(PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == 2**29


def test_max_memory_option_refuses_with_estimate(tmp_path):
    """--max-memory below the estimate: exit 2, one line with the estimate and the limit, and
    the --output file is not created."""
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["analyze", "--max-memory", "100K", "--output", str(out),
                                   str(SAMPLES / "tokens_injective.npz")])
    assert res.exit_code == 2
    assert "over the memory limit of 100.0 KiB" in res.stderr and len(res.stderr.splitlines()) == 1
    assert not out.exists()


def test_generate_refuses_non_finite_scale(tmp_path):
    """generate teacher --scale inf/nan exits 2 and writes nothing (no NaN targets)."""
    for value in ("inf", "nan"):
        res = CliRunner().invoke(app, ["generate", "teacher", "--out", str(tmp_path / "t.npz"),
                                       "--scale", value])
        assert res.exit_code == 2 and "--scale" in res.stderr, res.stderr
    assert not (tmp_path / "t.npz").exists()


def test_estimates_bound_measured_peaks(tmp_path):
    """Each stage's estimate bounds the peak of the memory it allocates, as traced by
    tracemalloc (numpy reports its buffers to it): loading 4 MiB of padded tokens, the qk
    spectrum (the heaviest kernel) and the analysis of N = 300 distributions in R^2."""
    import tracemalloc

    from ntkcheck import Dataset, Discrete
    from ntkcheck.analysis import analyze
    from ntkcheck.io import load_dataset
    from ntkcheck.kernel_spectrum import kernel_spectrum

    rng = np.random.default_rng(0)
    N, n, d = 16, 512, 64
    np.savez(tmp_path / "t.npz", tokens=rng.standard_normal((N, n, d)))
    N2, d2 = 300, 2
    ds = Dataset([f"s{i}" for i in range(N2)],
                 [Discrete(rng.standard_normal((3, d2))) for _ in range(N2)])
    M = resources.probe_count(None, N2, d2)
    stages = [("load", lambda: load_dataset(tmp_path / "t.npz"),
               N * n * d * 8 + resources.padded_tokens_bytes(N, n, d)),
              ("spectrum", lambda: kernel_spectrum(ds, "qk"), resources.spectrum_bytes(M, N2, d2)),
              ("analyze", lambda: analyze(ds, exact="never"), resources.analysis_bytes(M, N2, d2))]
    tracemalloc.start()
    try:
        for stage, run, estimate in stages:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            run()
            grown = tracemalloc.get_traced_memory()[1] - before
            assert 0 < grown <= estimate, (stage, grown, estimate)
    finally:
        tracemalloc.stop()
