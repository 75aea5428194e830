"""Hostile inputs, outputs and options: every case meets the CLI contract.

Contract (README "Exit codes" and "Limits"): a user error exits 2 with exactly one stderr line
``ntkcheck: error: ...``, no traceback, no Python exception class name, no RuntimeWarning line,
no raw control character; a valid but unusual input exits with a verdict (0/1/3) and a clean
stderr; nothing hangs; nothing outside the named output is touched; memory stays bounded.

The table is run in ONE subprocess (tests/fuzz_driver.py) under an address-space limit
(RLIMIT_AS = ``CAP``), so that a missing memory guard fails a case instead of swapping, with a
20 s alarm per case, so that a hang fails instead of blocking CI. Every file lives in tmp_path;
special files are a FIFO made with os.mkfifo and symlinks to /dev/zero and /dev/urandom, which
are only ever read (and the contract says they are refused before being opened).
"""

from __future__ import annotations

import json
import os
import re
import resource
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntkcheck.errors import InputError
from ntkcheck.io.tokens import TokenArrays

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("fuzz_driver.py")
CAP = 3 * 2**30          # RLIMIT_AS of the driver: numpy + scipy + sympy map ~1 GiB of it
SPEC_XFAIL = "spec parsing hardening in io/spec.py by another branch"
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b|Traceback")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# --------------------------------------------------------------------------- file builders
def npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def npy_header(shape, descr="<f8") -> bytes:
    """A version 1.0 .npy header (magic, length, dict padded to 64 bytes)."""
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    pad = 64 - (10 + len(d) + 1) % 64
    d = d + " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode("latin1")


def zip_bomb(path: Path, shape, name="tokens.npy") -> Path:
    """A real deflate bomb: a member that decompresses to a .npy of ``shape`` zeros (float64).

    The deflate stream is built from one compressed 16 MiB block of zeros repeated (a full
    flush makes each block independent), so a 2 GiB member costs ~2 MB and no 2 GiB buffer;
    the member's CRC is left 0 (a reader must refuse the member from its header long before
    the CRC is checked at the end).
    """
    header = npy_header(shape)
    total = int(np.prod(shape)) * 8
    block = 1 << 24
    assert total % block == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    seg = z.compress(bytes(block)) + z.flush(zlib.Z_FULL_FLUSH)
    tail = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    data_len = len(head) + len(seg) * (total // block) + len(tail)
    size = len(header) + total
    fname = name.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0, 0, data_len,
                        size, len(fname), 0) + fname
    with open(path, "wb") as fh:
        fh.write(local)
        fh.write(head)
        for _ in range(total // block):
            fh.write(seg)
        fh.write(tail)
        cd_off = fh.tell()
        central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0, 0,
                              data_len, size, len(fname), 0, 0, 0, 0, 0, 0) + fname
        fh.write(central)
        fh.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), cd_off, 0))
    return path


def lying_zip(path: Path, member: bytes, name="tokens.npy") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(name, member)
    return path


def flipped(src: Path, dst: Path, positions, rng) -> Path:
    data = bytearray(src.read_bytes())
    for p in positions:
        data[p % len(data)] ^= 1 << int(rng.integers(8))
    dst.write_bytes(bytes(data))
    return dst


def build_cases(tmp: Path) -> tuple[list[dict], dict]:
    """(cases, xfail) for the driver: each case is a command line on files made here."""
    rng = np.random.default_rng(7)
    cases: list[dict] = []
    xfail: dict[str, str] = {}
    expect: dict[str, str] = {}

    def add(name, argv, want="error", env=None, xf=None, frag=None):
        cases.append({"name": name, "argv": [str(a) for a in argv], "env": env or {},
                      "timeout": 4 if xf else 20})  # keep CI fast on cases owned elsewhere
        expect[name] = (want, frag)
        if xf:
            xfail[name] = xf

    good_tokens = rng.standard_normal((4, 3, 2))
    good = npz(tmp / "good.npz", tokens=good_tokens)
    fast = ["--exact", "never", "--probes", "64"]
    an = ["analyze", *fast]
    add("baseline", [*an, good], "verdict")

    # ---- npz containers
    raw = good.read_bytes()
    (tmp / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    add("truncated npz", [*an, tmp / "trunc.npz"])
    (tmp / "trunc_tail.npz").write_bytes(raw[:-10])
    add("truncated end of central directory", [*an, tmp / "trunc_tail.npz"])
    for k in range(8):
        pos = rng.integers(0, len(raw), size=3)
        add(f"bit-flipped npz {k}", [*an, flipped(good, tmp / f"flip{k}.npz", pos, rng)],
            "any")
    (tmp / "random.npz").write_bytes(rng.bytes(4000))
    add("random bytes", [*an, tmp / "random.npz"])
    (tmp / "empty.npz").write_bytes(b"")
    add("empty file", [*an, tmp / "empty.npz"])
    add("zip bomb 2 GiB", [*an, zip_bomb(tmp / "bomb.npz", (256, 1024, 1024))],
        frag="memory limit")
    add("header declares 7 TiB", [*an, lying_zip(tmp / "huge.npz", npy_header((10**6, 10**6, 1))
                                                  + bytes(64))])
    add("header negative shape", [*an, lying_zip(tmp / "neg.npz", npy_header((-5, 3, 2))
                                                 + bytes(64))])
    add("header garbage dict", [*an, lying_zip(tmp / "garb.npz", b"\x93NUMPY\x01\x00\x10\x00"
                                               + b"{'descr': 1}   \n" + bytes(32))])
    add("header truncated", [*an, lying_zip(tmp / "htrunc.npz", npy_header((4, 3, 2))[:20])])
    add("header object dtype", [*an, lying_zip(tmp / "obj.npz", npy_header((2,), "|O")
                                               + bytes(16))])
    add("member not npy", [*an, lying_zip(tmp / "txt.npz", b"hello world" * 10)])
    with zipfile.ZipFile(tmp / "many.npz", "w") as zf:
        for i in range(5000):
            zf.writestr(f"a{i}.npy", b"")
    add("5000 members", [*an, tmp / "many.npz"])
    add("pickled names", [*an, npz(tmp / "pickle.npz", tokens=good_tokens,
                                   names=np.array([{"a": 1}] * 4, dtype=object))])

    # ---- arrays: wrong types and shapes at every key
    T = good_tokens
    bad_arrays = {
        "tokens str": dict(tokens=np.array([["a"]])),
        "tokens complex": dict(tokens=T.astype(complex)),
        "tokens 0-d": dict(tokens=np.float64(1.0)),
        "tokens 1-d": dict(tokens=np.ones(5)),
        "tokens 4-d": dict(tokens=np.ones((2, 2, 2, 2))),
        "tokens N=0": dict(tokens=np.ones((0, 3, 2))),
        "tokens n=0": dict(tokens=np.ones((4, 0, 2))),
        "tokens d=0": dict(tokens=np.ones((4, 3, 0))),
        "tokens NaN": dict(tokens=np.where(np.arange(24).reshape(4, 3, 2) == 5, np.nan, T)),
        "tokens Inf": dict(tokens=np.full((4, 3, 2), np.inf)),
        "tokens 1e308": dict(tokens=np.sign(T) * 1e308),
        "no tokens": dict(weights=np.ones((4, 3))),
        "weights shape": dict(tokens=T, weights=np.ones((3, 3))),
        "weights negative": dict(tokens=T, weights=-np.ones((4, 3))),
        "weights NaN": dict(tokens=T, weights=np.full((4, 3), np.nan)),
        "weights all zero": dict(tokens=T, weights=np.zeros((4, 3))),
        "weights str": dict(tokens=T, weights=np.full((4, 3), "x")),
        "mask shape": dict(tokens=T, mask=np.ones((4, 2), bool)),
        "mask values": dict(tokens=T, mask=np.full((4, 3), 7)),
        "mask and lengths": dict(tokens=T, mask=np.ones((4, 3), bool), lengths=np.ones(4, int)),
        "lengths negative": dict(tokens=T, lengths=-np.ones(4, int)),
        "lengths too big": dict(tokens=T, lengths=np.full(4, 10**12)),
        "lengths fractional": dict(tokens=T, lengths=np.full(4, 1.5)),
        "lengths NaN": dict(tokens=T, lengths=np.full(4, np.nan)),
        "offsets decreasing": dict(tokens=T.reshape(12, 2), offsets=np.array([0, 5, 3, 12])),
        "offsets wrong end": dict(tokens=T.reshape(12, 2), offsets=np.array([0, 5, 13])),
        "offsets 2-D": dict(tokens=T.reshape(12, 2), offsets=np.zeros((2, 2), int)),
        "offsets empty": dict(tokens=T.reshape(12, 2), offsets=np.zeros(0, int)),
        "offsets huge": dict(tokens=T.reshape(12, 2), offsets=np.array([0, 2**62, 12])),
        "offsets with 3-D": dict(tokens=T, offsets=np.array([0, 1])),
        "tokens structured": dict(tokens=np.zeros((4, 3), dtype=[("a", "<f8"), ("b", "<i4")])),
        "tokens datetime": dict(tokens=np.zeros((4, 3, 2), dtype="datetime64[s]")),
        "names empty string": dict(tokens=T, names=np.array(["", "a", "b", "c"])),
        "names int": dict(tokens=T, names=np.arange(4)),
        "names duplicate": dict(tokens=T, names=np.array(["a", "a", "b", "c"])),
        "names wrong length": dict(tokens=T, names=np.array(["a"])),
    }
    for name, arrays in bad_arrays.items():
        add(name, [*an, npz(tmp / f"{name.replace(' ', '_')}.npz", **arrays)])

    # ---- valid but unusual
    esc = np.array(["\x1b]0;pwned\x07title", "\x1b[2Jclear", "new\nline", "\u202eevil"])
    add("names with escape sequences", [*an, npz(tmp / "esc.npz", tokens=T, names=esc)],
        "verdict")
    add("names escapes in --json", [*an, "--json", tmp / "esc.npz"], "verdict")
    add("tokens 1e90 (supported)", [*an, npz(tmp / "big_ok.npz", tokens=T * 1e90)], "verdict")
    add("spectrum gram at 1e90", ["spectrum", "-k", "gram", tmp / "big_ok.npz"], "verdict")
    add("spectrum value kernel at 1e90", ["spectrum", "-k", "value", tmp / "big_ok.npz"],
        frag="supports token coordinates up to")
    # analyze is scale-invariant (exact power-of-two equilibration): any representable scale
    # gets a verdict; spectrum and train compute in the data's units and refuse it
    for tag, factor in (("1e154", 1e154), ("1e200", 1e200), ("spread 1e-200", 1e-200)):
        path = npz(tmp / f"scaled_{tag.replace(' ', '_')}.npz", tokens=T * factor)
        add(f"tokens {tag}", [*an, path], "verdict")
        add(f"spectrum tokens {tag}", ["spectrum", path], frag="computes in the data's units")
    add("tokens spread 1e-310 (subnormal)", [*an, npz(tmp / "tiny.npz", tokens=T * 1e-310)],
        frag="smallest supported spread")
    add("tokens float16 big-endian Fortran", [*an, npz(tmp / "f16.npz", tokens=np.asfortranarray(
        T.astype(">f2")))], "verdict")
    add("tokens uint64 near 2**64", [*an, npz(tmp / "u64.npz", tokens=rng.integers(
        2**63, 2**64 - 1, size=(4, 3, 2), dtype=np.uint64))], "verdict")
    add("names 1 MB each", [*an, npz(tmp / "longnames.npz", tokens=T, names=np.array(
        [c * 2**18 for c in "abcd"]))], "verdict")
    add("tokens all equal (spread 0)", [*an, npz(tmp / "same.npz", tokens=np.ones((4, 3, 2)))],
        "verdict")
    add("weights 1e300 (sum overflows)", [*an, npz(tmp / "wbig.npz", tokens=T,
                                                   weights=np.full((4, 3), 1e300))], "verdict")
    esc_dir = tmp / "dir\x1b[31m"
    esc_dir.mkdir()
    add("escape in file name", [*an, esc_dir / "missing\x1b[2J.npz"])

    # ---- resource guards (small files asking for a lot)
    N = 20000
    lengths = np.ones(N, int)
    lengths[0] = N
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    ragged = npz(tmp / "ragged.npz", tokens=np.zeros((int(offsets[-1]), 1)), offsets=offsets)
    add("ragged padding 3 GiB", [*an, ragged], frag="memory limit")
    wide = npz(tmp / "wide.npz", tokens=rng.standard_normal((N, 1, 1)))
    # two tokens each: no Dirac masses, so the structural screen leaves a core of N = 20000
    wide2 = npz(tmp / "wide2.npz", tokens=rng.standard_normal((N, 2, 1)))
    add("M x N features 20000", ["analyze", "--exact", "never", wide2], frag="memory limit")
    add("spectrum M x N features", ["spectrum", wide], frag="memory limit")
    add("--probes 10**12", ["analyze", "--probes", 10**12, good], frag="memory limit")
    add("--max-memory 1K", [*an, "--max-memory", "1K", good], frag="memory limit")
    add("--max-memory garbage", [*an, "--max-memory", "lots", good])
    add("NTKCHECK_MAX_MEMORY garbage", [*an, good], env={"NTKCHECK_MAX_MEMORY": "-3"})

    # ---- special files (read only) and paths
    fifo = tmp / "fifo.npz"
    os.mkfifo(fifo)
    add("FIFO npz", [*an, fifo])
    os.mkfifo(tmp / "fifo.toml")
    add("FIFO toml", [*an, tmp / "fifo.toml"])
    (tmp / "zero.npz").symlink_to("/dev/zero")
    add("symlink to /dev/zero", [*an, tmp / "zero.npz"])
    (tmp / "urandom.json").symlink_to("/dev/urandom")
    add("symlink to /dev/urandom", [*an, tmp / "urandom.json"])
    (tmp / "adir.npz").mkdir()
    add("directory", [*an, tmp / "adir.npz"])
    (tmp / "loop.npz").symlink_to(tmp / "loop.npz")
    add("symlink loop", [*an, tmp / "loop.npz"])
    add("missing file", [*an, tmp / "nope.npz"])
    add("name over 255 bytes", [*an, tmp / ("x" * 300 + ".npz")])
    add("unknown extension", [*an, good.with_suffix(".txt")])

    # ---- specs (number and nesting bounds belong to io/spec.py)
    def spec(name, text):
        p = tmp / name
        p.write_text(text, encoding="utf-8")
        return p

    add("json nested 2000 deep", [*an, spec("deep.json", "[" * 2000 + "]" * 2000)])
    add("toml nested 2000 deep", [*an, spec("deep.toml", "a = " + "[" * 2000 + "]" * 2000)])
    d1 = '[[distribution]]\nname = "a"\nkind = "discrete"\natoms = %s\n'
    two = '[[distribution]]\nname = "b"\nkind = "discrete"\natoms = [[0], [1]]\n'
    add("spec 1e400", [*an, spec("e400.toml", d1 % '[["1e400"]]' + two)], xf=SPEC_XFAIL)
    add("spec 400-digit integer", [*an, spec("int400.toml", d1 % f'[["{"9" * 400}"]]' + two)],
        xf=SPEC_XFAIL)
    add("spec kind table", [*an, spec("kind.toml", '[[distribution]]\nname = "a"\nkind = {}\n'
                                      'atoms = [[0]]\n' + two)], xf=SPEC_XFAIL)
    add("spec 1e-99999999", [*an, spec("tinyexp.toml", d1 % '[["1e-99999999"]]' + two)],
        xf=SPEC_XFAIL)
    add("spec rational 1e-9999", [*an, "--exact", "auto", spec("r9999.toml",
                                  d1 % '[["1e-9999"], ["1"]]' + two)], "any", xf=SPEC_XFAIL)
    add("spec atoms 1e200", [*an, spec("a200.toml", d1 % "[[1e200], [0]]" + two)],
        frag="largest supported magnitude")
    add("spec spread 1e-160", [*an, spec("s160.toml", d1 % "[[1e-160], [0]]" + two.replace(
        "[[0], [1]]", "[[0], [2e-160]]"))], "verdict")
    add("spec invalid utf-8", [*an, tmp / "bad.toml"], xf=SPEC_XFAIL)
    (tmp / "bad.toml").write_bytes(b"\xff\xfe[[distribution]]\n")
    add("spec empty", [*an, spec("empty.json", "")])
    add("spec wrong top type", [*an, spec("list.json", "[1, 2]")])
    big = tmp / "sparse.json"
    with open(big, "wb") as fh:
        fh.truncate(17 * 2**20)
    add("spec over 16 MiB", [*an, big])
    add("spec name with escapes", [*an, spec("escname.toml", d1.replace('"a"', '"\\u001b[2J"')
                                              % "[[0], [2]]" + two)], "verdict")

    # ---- options
    add("--seed -1", ["analyze", "--seed", "-1", good])
    add("--scales 1e308", [*an, "--scales", "1e308", good])
    add("--scales nan", [*an, "--scales", "nan", good])
    add("--scales empty", [*an, "--scales", ",", good])
    add("--probes 0", ["analyze", "--probes", "0", good])
    add("--probes text", ["analyze", "--probes", "many", good])
    add("--exact-timeout 1e308", [*an, "--exact-timeout", "1e308", good])
    add("--kernel bogus", ["spectrum", "--kernel", "bogus", good])
    add("spectrum --seed -1", ["spectrum", "--seed", "-1", good])
    add("unknown option", ["analyze", "--frobnicate", good])

    # ---- output targets (checked before the work)
    (tmp / "outdir").mkdir()
    add("--output directory", [*an, "--output", tmp / "outdir", good])
    os.mkfifo(tmp / "out.fifo")
    add("--output FIFO", [*an, "--output", tmp / "out.fifo", good])
    (tmp / "target.json").write_text("keep me")
    (tmp / "link.json").symlink_to(tmp / "target.json")
    add("--output symlink", [*an, "--output", tmp / "link.json", good])
    add("--output is the input", [*an, "--output", good, good])
    add("--output missing dir", [*an, "--output", tmp / "no" / "x.json", good])
    add("--output name over 255", [*an, "--output", tmp / ("o" * 300 + ".json"), good])
    add("spectrum --save directory", ["spectrum", "--save", tmp / "outdir.npz", good])
    (tmp / "outdir.npz").mkdir()
    add("spectrum --save is input", ["spectrum", "--save", good, good])
    add("spectrum --plot directory", ["spectrum", "--plot", tmp / "outdir", good])
    add("generate --out directory", ["generate", "teacher", "--out", tmp / "outdir.npz"])
    add("generate --out FIFO", ["generate", "teacher", "--out", fifo])
    add("generate --scale inf", ["generate", "teacher", "--out", tmp / "t.npz", "--scale", "inf"])
    add("generate --scale nan", ["generate", "teacher", "--out", tmp / "t.npz", "--scale", "nan"])
    add("generate --scale 1e300", ["generate", "teacher", "--out", tmp / "t.npz", "--scale",
                                   "1e300", "--samples", "2", "--heads", "2"])
    add("generate --samples 10**9", ["generate", "teacher", "--out", tmp / "t.npz", "--samples",
                                     10**9], frag="memory limit")
    add("generate --seed -1", ["generate", "teacher", "--out", tmp / "t.npz", "--seed", "-1"])

    # ---- train configs
    teacher = ROOT / "samples" / "teacher.npz"

    def cfg(name, body):
        return spec(name, body)

    base = (f'[data]\npath = "{teacher}"\n[model]\nlayers = 1\nheads = 2\nkey_dim = 2\n'
            '[flow]\nsteps = 2\nstep_size = 0.1\n')
    add("train heads 10**30", ["train", "-q", cfg("h30.toml", base.replace("heads = 2",
                                                                        f"heads = {10**30}"))])
    add("train data FIFO", ["train", "-q", cfg("fifo_train.toml", base.replace(
        str(teacher), str(fifo)))])
    add("train data /dev/zero", ["train", "-q", cfg("zero_train.toml", base.replace(
        str(teacher), str(tmp / "zero.npz")))])
    add("train --out is a file", ["train", "-q", "--out", good, cfg("t.toml", base)])
    add("train step_size inf", ["train", "-q", cfg("inf.toml", base.replace("0.1", "inf"))])
    add("train deep toml", ["train", "-q", tmp / "deep.toml"])
    return cases, {"xfail": xfail, "expect": expect}


def _limit_memory():  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))


def check_case(res: dict, want: str, frag: str | None) -> str | None:
    """None if the result meets the contract, else what is wrong."""
    if res["escaped"]:
        return f"escaped main: {res['escaped'][-300:]}"
    err, out, code = res["stderr"], res["stdout"], res["code"]
    if CLASS_NAME.search(err):
        return f"class name or traceback on stderr: {err[:300]}"
    if CONTROL.search(err) or CONTROL.search(out.replace("\n", "")):
        return "raw control character in the output"
    if code in (0, 1, 3):
        if want == "error":
            return f"exit {code}, expected an error"
        return None if not err.strip() else f"verdict with stderr: {err[:300]}"
    if code != 2:
        return f"exit {code}: {err[:300]}"
    if want == "verdict":
        return f"error, expected a verdict: {err[:300]}"
    # one error line, last; before it only progress lines ("ntkcheck: FILE: stage (1.2 s)"),
    # which a stage longer than a second prints on stderr (more often on a loaded machine)
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("ntkcheck: error: ")]
    if (len(errors) != 1 or lines[-1] != errors[0]
            or not all(line.startswith("ntkcheck: ") for line in lines)):
        return f"not one error line: {err[:300]}"
    if frag and frag not in errors[0]:
        return f"missing {frag!r}: {errors[0][:300]}"
    return None


@pytest.fixture(scope="module")
def fuzz_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    cases, meta = build_cases(tmp)
    (tmp / "cases.json").write_text(json.dumps(cases), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NO_COLOR": "1"}
    env.pop("NTKCHECK_MAX_MEMORY", None)
    env.pop("NTKCHECK_DEBUG", None)
    proc = subprocess.run([sys.executable, str(DRIVER), str(tmp / "cases.json"),
                           str(tmp / "results.json")], env=env, cwd=tmp,
                          preexec_fn=_limit_memory, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {r["name"]: r for r in json.loads((tmp / "results.json").read_text())}
    return tmp, cases, meta, results


def test_fuzz_table_meets_the_contract(fuzz_results):
    """Every hand-made hostile case meets the contract (cases owned by another branch are
    reported, not failed); the driver's peak RSS stays under the address-space cap, which it
    could only exceed by a missing guard (the 2 GiB bomb, the 3 GiB padding, the 6 GiB
    feature matrices)."""
    tmp, cases, meta, results = fuzz_results
    bad, xfailed = {}, {}
    for case in cases:
        want, frag = meta["expect"][case["name"]]
        problem = check_case(results[case["name"]], want, frag)
        if problem:
            (xfailed if case["name"] in meta["xfail"] else bad)[case["name"]] = problem
    peak = max(r["maxrss_kib"] for r in results.values()) * 1024
    slowest = max(results.values(), key=lambda r: r["time"])
    summary = (f"{len(cases)} cases, {len(cases) - len(bad) - len(xfailed)} meet the contract, "
               f"{len(xfailed)} left to io/spec.py, peak RSS {peak / 2**20:.0f} MiB, slowest "
               f"{slowest['name']} {slowest['time']:.1f} s")
    print(summary)
    (tmp / "summary.txt").write_text(summary + "\n" + json.dumps(xfailed, indent=1))
    assert not bad, json.dumps(bad, indent=1)
    assert peak < CAP / 2
    if xfailed:
        pytest.xfail(f"{SPEC_XFAIL}: {sorted(xfailed)}")


def test_outputs_left_untouched(fuzz_results):
    """Refused output targets are exactly as before: the symlink is still a symlink to the
    unchanged file, the FIFO is still a FIFO, the input still holds its tokens, and no stray
    file appeared next to them."""
    tmp, _, _, _ = fuzz_results
    assert (tmp / "link.json").is_symlink()
    assert (tmp / "target.json").read_text() == "keep me"
    assert os.path.exists(tmp / "out.fifo") and not (tmp / "out.fifo").is_file()
    assert np.load(tmp / "good.npz")["tokens"].shape == (4, 3, 2)
    assert not (tmp / "t.npz").exists()
    assert not list(tmp.glob(".*.tmp")) and not list(tmp.glob("**/.*.tmp"))


def test_escapes_are_escaped_in_report(fuzz_results):
    """Sequence names with terminal escapes are printed escaped: no ESC, BEL or newline from a
    name reaches the terminal, and the escaped text is visible."""
    _, _, _, results = fuzz_results
    out = results["names with escape sequences"]["stdout"]
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b" in out
    doc = json.loads(results["names escapes in --json"]["stdout"])
    assert "\x1b[2Jclear" in _strings(doc)  # JSON keeps the data faithful (and escaped)


def _strings(obj) -> set:
    """Every string (key or value) in a JSON document."""
    if isinstance(obj, dict):
        return set(obj) | set().union(*map(_strings, obj.values()))
    if isinstance(obj, list):
        return set().union(*map(_strings, obj)) if obj else set()
    return {obj} if isinstance(obj, str) else set()


# --------------------------------------------------------------------------- property tests
_dims = st.integers(0, 4)
_arrays = st.one_of(
    st.builds(lambda s, v: np.full(s, v), st.tuples(_dims, _dims, _dims),
              st.sampled_from([0.0, 1.0, -1e300, np.nan, np.inf, 1e-310, 3])),
    st.builds(lambda s: np.ones(s, int), st.tuples(_dims)),
    st.builds(lambda s: np.zeros(s, bool), st.tuples(_dims, _dims)),
    st.just(np.array(["x", "y"])),
    st.just(np.float64(2.0)),
)


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["tokens", "weights", "mask", "lengths", "offsets",
                                        "names", "targets"]), _arrays, max_size=5))
def test_token_validation_never_crashes(arrays):
    """Any mapping of arrays either validates into finite tokens with weight rows summing to 1
    or raises InputError (the CLI's one-line exit 2): never another exception, never NaN."""
    try:
        ta = TokenArrays.from_arrays(arrays, "<fuzz>")
    except InputError as err:
        assert "\n" not in str(err)
        return
    assert np.all(np.isfinite(ta.tokens)) and np.all(np.isfinite(ta.weights))
    np.testing.assert_allclose(ta.weights.sum(axis=1), 1.0, rtol=1e-12)
