"""Progress of the structural screen, the geometry and the relation checks: done / total per
chunk (so the CLI can print % and ETA), never per item, and never on stdout."""

from __future__ import annotations

import json
import re

import numpy as np
from typer.testing import CliRunner

import ntkcheck as nk
from ntkcheck.cli import app
from ntkcheck.cli import analyze as cli_analyze
from ntkcheck.io import load_dataset
from ntkcheck.progress import tick, working

CONVOLUTION = "tests/golden/fixtures/convolution.npz"


def _fractions(messages, stage):
    return [(m.done, m.total) for m in messages
            if getattr(m, "stage", None) == stage and getattr(m, "total", None)]


def test_screen_and_geometry_report_chunked_fractions():
    """300 sequences of 32 tokens: the screen and the geometry report done / total that only
    grow and stay within the total, from a handful of messages (per chunk or row block, not
    one per sequence or token)."""
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(32, 4)) for _ in range(300)]
    X[7] = X[3] + 0.5  # a translate: the screen's check pass runs
    messages = []
    nk.analyze(X, exact="never", progress=messages.append)
    for stage in ("structural screen", "geometry"):
        steps = _fractions(messages, stage)
        assert steps, stage
        done = [d for d, _ in steps]
        assert done == sorted(done) and all(0 < d <= t for d, t in steps), steps
        assert len(steps) < 30, (stage, len(steps))
    assert _fractions(messages, "geometry")[-1][0] == _fractions(messages, "geometry")[-1][1]


def test_relation_checks_report_each_relation():
    """A convolution (found by the dense test only): the stage 'dependencies' ends at
    done == total == the number of candidate relations checked."""
    messages = []
    r = nk.analyze(load_dataset(CONVOLUTION), exact="never", progress=messages.append)
    assert r.verdict == "not_injective"
    steps = _fractions(messages, "dependencies")
    assert steps and steps[-1][0] == steps[-1][1] >= len(r.dependencies)


def test_tick_outside_a_stage_is_a_no_op_and_without_callback_nothing_is_sent():
    """tick() outside working() does nothing; working(None, ...) creates no Work."""
    tick(5)
    with working(None, "x", 10) as work:
        tick(3)
    assert work is None
    seen = []
    with working(seen.append, "x", 4) as work:
        tick(1)
        tick(3)
    assert [(m.done, m.total) for m in seen] == [(1, 4), (4, 4)] and work.done == 4


def test_progress_lines_on_stderr_with_percent_and_stdout_unchanged(monkeypatch):
    """Plain progress (stderr not a terminal) prints 'stage N% (ETA ...)' lines for the
    screen/geometry stages on stderr once they run (the 1 s threshold set to 0 here), and the
    JSON on stdout is the same as with -q (timings aside)."""
    monkeypatch.setattr(cli_analyze, "PLAIN_FIRST", 0.0)
    monkeypatch.setattr(cli_analyze, "PLAIN_EVERY", 0.0)
    args = ["analyze", CONVOLUTION, "--exact", "never", "--json"]
    loud = CliRunner().invoke(app, args)
    quiet = CliRunner().invoke(app, args + ["-q"])
    assert loud.exit_code == quiet.exit_code == 1
    lines = [x for x in loud.stderr.splitlines() if x.startswith("ntkcheck: analyze ")]
    assert any("geometry" in x and "%" in x and "ETA" in x for x in lines), lines
    assert quiet.stderr == ""

    def untimed(doc):  # wall-clock times and resident memory differ from run to run
        if isinstance(doc, dict):
            return {k: untimed(v) for k, v in doc.items()
                    if not re.match(r"^(seconds|time|.*_seconds|.*resident_bytes)$", k)}
        return [untimed(v) for v in doc] if isinstance(doc, list) else doc
    assert untimed(json.loads(loud.stdout)) == untimed(json.loads(quiet.stdout))
