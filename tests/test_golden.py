"""Behaviour unchanged across refactors: every golden case (tests/golden/cases.py: analyze --json
and text on the samples and a dozen fixtures covering dependent, injective, screened, grey-zone,
partial-spectrum, streamed and spec inputs; every machine format; spectrum --json; a short train)
gives the exit code and output recorded before the move.

Comparison: exit codes, keys, names, verdicts and every non-numeric piece of text exactly. Numbers
are compared to a tolerance because BLAS kernels differ between CPUs (AVX2 / AVX-512 paths sum in
another order), which moves results by a few ulps times the condition of the step: floats in JSON
to relative 1e-7, numbers printed in text (3 significant digits or more) to relative 2e-3 (one unit
in the third digit), and values below 1e-10 in magnitude (round-off-level quantities such as the
singular values of dependent data, whose digits are noise by construction) only as being tiny.
``NTKCHECK_GOLDEN_STRICT=1`` demands byte-identical output (used on one machine during a move).
The outputs belong to the numpy / scipy they were recorded with (tests/golden/stack.json): with
another major.minor the probe directions differ (SVD signs), so the cases are skipped with that
reason (CI's lowest-versions step) instead of compared."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from cases import CASES, EXPECTED, run_case, same_stack  # noqa: E402

NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
TINY = 1e-10


def _close(a: float, b: float, rtol: float) -> bool:
    if abs(a) < TINY and abs(b) < TINY:
        return True
    return math.isclose(a, b, rel_tol=rtol, abs_tol=0.0) or (math.isnan(a) and math.isnan(b))


def _same_text(a: str, b: str, path: str) -> None:
    assert NUMBER.split(a) == NUMBER.split(b), f"{path}: text differs\n{a!r}\n{b!r}"
    for x, y in zip(NUMBER.findall(a), NUMBER.findall(b)):
        assert _close(float(x), float(y), 2e-3), f"{path}: {x} != {y} in {a!r}"


def _same(a, b, path: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(b, (int, float)) and not isinstance(b, bool), f"{path}: {a!r} != {b!r}"
        assert _close(float(a), float(b), 1e-7), f"{path}: {a!r} != {b!r}"
    elif isinstance(a, str):
        assert isinstance(b, str), f"{path}: {a!r} != {b!r}"
        _same_text(a, b, path)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    same, why = same_stack()
    if not same:  # e.g. CI's lowest-versions step: the other tests check behaviour there
        pytest.skip(why)
    expected = (EXPECTED / f"{name}.out").read_text()
    code, out = run_case(name)
    got = f"exit {code}\n{out}"
    if os.environ.get("NTKCHECK_GOLDEN_STRICT") == "1":
        assert got == expected
        return
    head, body = expected.split("\n", 1)
    assert head == f"exit {code}", f"exit code {code}, recorded {head}"
    try:
        want = json.loads(body)
    except ValueError:
        _same_text(body, out, name)
        return
    _same(want, json.loads(out), name)


def test_comparison_is_not_vacuous():
    """The comparison fails on a changed verdict, a changed number and a changed key."""
    doc = {"verdict": "injective", "smallest": 0.0346, "names": ["a"], "noise": 1e-17}
    _same(doc, dict(doc, noise=3e-16))
    for bad in (dict(doc, verdict="inconclusive"), dict(doc, smallest=0.0347),
                {k: v for k, v in doc.items() if k != "names"}):
        with pytest.raises(AssertionError):
            _same(doc, bad)
    with pytest.raises(AssertionError):
        _same_text("rank 28/28; smallest 0.0346", "rank 27/28; smallest 0.0346", "t")
