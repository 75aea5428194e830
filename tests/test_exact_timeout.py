"""The time limit of the exact test holds (SPEC §4: refuse cleanly, never hang).

The exact test runs in a child process killed at the deadline (ntkcheck.exact.worker): a
single factorisation that takes minutes is stopped, the call returns within T + 2 s, and the
reason says where it stopped. The worker's other outcomes (result, refusal, failed re-check,
internal error, a child that dies) each come back as what they are.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import ntkcheck.exact.procedure as procedure
from ntkcheck import Dataset, Discrete
from ntkcheck.analysis import analyze
from ntkcheck.cli import app
from ntkcheck.exact import ExactCheckFailed, ExactRefused, decide
from ntkcheck.errors import InputError
from ntkcheck.exact.worker import run_with_deadline
from ntkcheck.io.spec import parse_spec

runner = CliRunner()

#: Slack allowed beyond the time limit: killing and reaping the child takes milliseconds; the
#: rest absorbs the one-time import of sympy in a cold process and a loaded machine.
SLACK = 2.0


def product_entries(k: int = 30, seed: int = 0) -> list[dict]:
    """A 2-D law whose exp(LSE) is F(t1, t2) G(t1, t2), F and G dense of total degree k with
    random coefficients 1..9 (the product computed here by direct convolution), next to a coin.
    sympy's multivariate factorisation of this degree-2k product takes minutes (about 6 s at
    k = 20 already); python-flint needs milliseconds."""
    rng = np.random.default_rng(seed)
    F = np.zeros((k + 1, k + 1), dtype=np.int64)
    G = np.zeros_like(F)
    for i, j in itertools.product(range(k + 1), repeat=2):
        if i + j <= k:
            F[i, j], G[i, j] = rng.integers(1, 10), rng.integers(1, 10)
    P = np.zeros((2 * k + 1, 2 * k + 1), dtype=np.int64)
    for i, j in zip(*np.nonzero(F)):
        P[i:i + k + 1, j:j + k + 1] += F[i, j] * G
    idx = np.argwhere(P > 0)
    return [{"name": "product", "kind": "discrete", "atoms": idx.tolist(),
             "weights": [int(w) for w in P[P > 0]]},
            {"name": "coin", "kind": "discrete", "atoms": [[0, 0], [1, 0]]}]


@pytest.fixture(scope="module")
def slow_case() -> Dataset:
    return parse_spec({"distribution": product_entries()})


def test_sympy_factorisation_is_stopped_at_the_limit(slow_case):
    """With sympy, one factorisation of minutes: decide(timeout=1) returns within 1 + 2 s with
    kind timeout, naming the stage and the faster engine."""
    t0 = time.perf_counter()
    with pytest.raises(ExactRefused) as err:
        decide(slow_case, engine="sympy", timeout=1.0)
    wall = time.perf_counter() - t0
    assert wall <= 1.0 + SLACK, f"returned after {wall:.2f} s"
    assert err.value.kind == "timeout"
    assert "time limit of 1 s" in err.value.reason and "factoring" in err.value.reason
    assert "python-flint" in err.value.reason


def test_analyze_keeps_the_numerical_verdict_and_says_why(slow_case):
    """Inside analyze (exact="always", so that the test starts): the exact field is
    skipped/timeout with the reason, the verdict is the numerical one, and the exact part
    costs at most T + 2 s beyond the estimate's sample (SAMPLE_SECONDS)."""
    from ntkcheck.exact.cost import SAMPLE_SECONDS

    t0 = time.perf_counter()
    base = analyze(slow_case, exact="never")
    numerical = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = analyze(slow_case, exact="always", exact_engine="sympy", exact_timeout=1.0)
    total = time.perf_counter() - t0
    assert res.verdict == base.verdict and res.evidence == base.evidence
    assert res.exact["status"] == "skipped" and res.exact["kind"] == "timeout"
    assert total <= 2 * numerical + SAMPLE_SECONDS + 1.0 + SLACK


def test_auto_skips_a_test_that_cannot_finish_when_certified(slow_case):
    """exact="auto" on certified numerical evidence and a test estimated beyond its time limit
    (its sample does not finish): not started, kind "estimate", the reason naming the estimate
    and the limit, the estimate recorded; the verdict is the numerical one."""
    base = analyze(slow_case, exact="never")
    assert base.evidence == "certified"
    res = analyze(slow_case, exact_engine="sympy", exact_timeout=1.0)
    assert (res.verdict, res.evidence) == (base.verdict, base.evidence)
    assert res.exact["status"] == "skipped" and res.exact["kind"] == "estimate"
    assert "time limit of 1 s" in res.exact["reason"] and "--exact always" in res.exact["reason"]
    assert res.exact["estimate"]["seconds"] > 1.0 and res.exact["estimate"]["lower_bound"]


def test_cli_reports_the_timeout(tmp_path, slow_case, monkeypatch):
    """`analyze --exact always --exact-timeout 1 --json` with the sympy engine: exit code of
    the numerical verdict, JSON exact field {status: skipped, kind: timeout, reason}."""
    monkeypatch.setenv("NTKCHECK_EXACT_ENGINE", "sympy")
    path = tmp_path / "slow.json"
    path.write_text(json.dumps({"distribution": product_entries()}))
    t0 = time.perf_counter()
    res = runner.invoke(app, ["analyze", str(path), "--exact", "always", "--exact-timeout", "1",
                              "--json"])
    wall = time.perf_counter() - t0
    doc = json.loads(res.stdout)
    assert res.exit_code in (0, 1, 3) and doc["exact"]["kind"] == "timeout"
    assert doc["exact"]["status"] == "skipped" and "time limit of 1 s" in doc["exact"]["reason"]
    assert wall < 30


def test_small_cases_in_the_worker_equal_the_in_process_result():
    """The worker returns exactly what the in-process run computes (certificates, E, D)."""
    ds = parse_spec({"distribution": [
        {"name": "binom", "kind": "discrete", "atoms": [0, 1, 2], "weights": [1, 2, 1]},
        {"name": "coin", "kind": "discrete", "atoms": [0, 1]},
        {"name": "box", "kind": "uniform", "low": [0], "high": ["1/2"]}]})
    a, b = decide(ds), decide(ds, timeout=30)
    assert (a.verdict, a.factors, a.exponents, a.denominator) == \
        (b.verdict, b.factors, b.exponents, b.denominator)
    assert [d.certificate(a.names) for d in a.dependencies] == \
        [d.certificate(b.names) for d in b.dependencies]
    assert "wall" in b.timings and "wall" not in a.timings


def test_progress_messages_cross_the_process_boundary():
    """Stage messages of the child reach the caller's progress callback, in order."""
    seen: list[str] = []
    ds = Dataset(("a", "b"), (Discrete([[0.0], [1.0]]), Discrete([[0.0], [2.0]])))
    decide(ds, timeout=30, progress=seen.append)
    assert seen[0] == "exact: rational parameters"
    assert any(s.startswith("exact: factoring") for s in seen)
    assert seen.index("exact: rank of the exponent matrix") > 1


def _refuse(*args, progress):
    raise ExactRefused("over budget for a test", kind="budget")


def _fail(*args, progress):
    raise ExactCheckFailed("forged re-check failure")


def _crash(*args, progress):
    raise RuntimeError("forged bug")


def _die(*args, progress):
    os._exit(7)


def _echo(value, *, progress):
    progress("echo")
    return value


def test_worker_passes_each_outcome_back():
    """A refusal keeps its kind, a failed re-check stays ExactCheckFailed, a bug or a child
    that dies becomes kind 'internal' with the reason (never a hang or a traceback), a
    result comes back intact."""
    with pytest.raises(ExactRefused) as err:
        run_with_deadline(_refuse, (), timeout=30)
    assert err.value.kind == "budget" and err.value.reason == "over budget for a test"
    with pytest.raises(ExactCheckFailed, match="forged re-check failure"):
        run_with_deadline(_fail, (), timeout=30)
    with pytest.raises(ExactRefused) as err:
        run_with_deadline(_crash, (), timeout=30)
    assert err.value.kind == "internal" and "forged bug" in err.value.reason
    with pytest.raises(ExactRefused) as err:
        run_with_deadline(_die, (), timeout=30)
    assert err.value.kind == "internal" and "exit code 7" in err.value.reason
    seen: list[str] = []
    assert run_with_deadline(_echo, ({"x": [1, 2]},), timeout=30,
                             progress=seen.append) == {"x": [1, 2]}
    assert seen == ["echo"]


def test_analysis_maps_a_forged_child_bug_to_a_skipped_exact_field(monkeypatch):
    """A bug in the child (forged: _decide raises) leaves the numerical verdict, with the
    exact field skipped, kind internal, saying it is a bug."""
    monkeypatch.setattr(procedure, "_decide", _crash)
    ds = Dataset(("a", "b"), (Discrete([[0.0], [1.0]]), Discrete([[0.0], [3.0]])))
    res = analyze(ds)
    assert res.exact["kind"] == "internal" and "bug" in res.exact["reason"]
    assert res.evidence in ("certified", "numerical")


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_timeout_must_be_positive(bad):
    """decide(timeout=0 / negative / NaN): InputError naming the field."""
    ds = Dataset(("a",), (Discrete([[0.0], [1.0]]),))
    with pytest.raises(InputError, match="positive number of seconds"):
        decide(ds, timeout=bad)


def test_infinite_timeout_means_no_limit():
    """timeout=inf runs in process, like None."""
    ds = Dataset(("a",), (Discrete([[0.0], [1.0]]),))
    assert "wall" not in decide(ds, timeout=float("inf")).timings


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux death signal, /proc")
def test_orphaned_child_dies_with_its_parent(tmp_path):
    """A parent killed with SIGKILL (no chance to clean up) does not leave its exact child
    running (here with a 60 s limit): the kernel's death signal stops it within seconds."""
    import signal
    import subprocess

    script = tmp_path / "parent.py"
    script.write_text(
        "import os, sys, time\n"
        "from ntkcheck.exact import worker\n"
        "sys.path.insert(0, os.path.dirname(__file__))\n"
        "import tests_helper\n"
        "worker.run_with_deadline(tests_helper.spin, (), timeout=60,\n"
        "                         progress=lambda m: print(os.getpid(), m, flush=True))\n")
    (tmp_path / "tests_helper.py").write_text(
        "import os, time\n"
        "def spin(*a, progress):\n"
        "    progress(str(os.getpid()))\n"
        "    while True:\n"
        "        time.sleep(0.05)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env=env)
    line = proc.stdout.readline().split()
    child = int(line[1])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        # a zombie (reaped by init soon) is dead too
        with open(f"/proc/{child}/stat") as fh:
            if fh.read().split(")")[-1].split()[0] == "Z":
                return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the exact child outlived its killed parent")
