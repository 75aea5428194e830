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
A column's distance to the span of the others (``score``, ``scores``) and the coefficients of
its closest combination (``closest[k].coefficient``) solve a least squares problem whose
condition is 1 / sigma_min (as is ``condition_number``, lambda_max / lambda_min): a perturbation of F_perp of norm ``noise`` (the result's own
round-off level) turns that span by up to noise / sigma_min, so they are compared to
max(1e-7, noise / smallest_singular_value) (e.g. 1.5e-2 next to a near duplicate at 1e-9, where
coefficients of 2.5e8 hold 4-5 significant digits; 1e-7 elsewhere). The vector of a
multiple smallest eigenvalue is compared as it is because it is canonical (the space's unit
vector closest to a coordinate axis), not whatever basis the eigensolver returned.
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


#: A number printed as the bound of a norm, "||...|| <= x" or "||...||_F <= x": in the
#: certificate's reasons these bound rounding residuals (||C^T C - I||, ||Rad||_F), whose value
#: is round-off itself, u times the condition: on an ill-conditioned case only its order of
#: magnitude carries from one CPU's BLAS to another's (6.1e-6 against 4.9e-6 at condition
#: 5e10), so it is compared to within a factor RESIDUAL_FACTOR.
NORM_BOUND = re.compile(r"\|\|(?:_\w+)? <= $")
RESIDUAL_FACTOR = 4.0


def _same_text(a: str, b: str, path: str) -> None:
    assert NUMBER.split(a) == NUMBER.split(b), f"{path}: text differs\n{a!r}\n{b!r}"
    for x, y, m in zip(NUMBER.findall(a), NUMBER.findall(b), NUMBER.finditer(a)):
        u, v = float(x), float(y)
        if NORM_BOUND.search(a[:m.start()]):
            ok = _close(u, v, 0.0) or (u * v > 0 and abs(math.log(u / v)) <= math.log(RESIDUAL_FACTOR))
        else:
            ok = _close(u, v, 2e-3)
        assert ok, f"{path}: {x} != {y} in {a!r}"


RTOL = 1e-7
CONDITIONED = re.compile(r"\.closest\[\d+\]\.coefficient$|\.score$|\.scores\.[^.]+$"
                         r"|\.condition_number$")


def _conditioned_rtol(doc: dict, inherited: float) -> float:
    """max(RTOL, noise / sigma_min) of an analyze result (module notes), else ``inherited``."""
    noise, sigma = doc.get("noise"), doc.get("smallest_singular_value")
    if isinstance(noise, (int, float)) and isinstance(sigma, (int, float)) and sigma > 0:
        return max(RTOL, float(noise) / float(sigma))
    return inherited


def _same(a, b, path: str = "", conditioned_rtol: float = RTOL) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{path}: keys {sorted(a)} != {sorted(b)}"
        rtol = _conditioned_rtol(a, conditioned_rtol)
        for k in a:
            _same(a[k], b[k], f"{path}.{k}", rtol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{path}[{i}]", conditioned_rtol)
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(b, (int, float)) and not isinstance(b, bool), f"{path}: {a!r} != {b!r}"
        rtol = conditioned_rtol if CONDITIONED.search(path) else RTOL
        assert _close(float(a), float(b), rtol), f"{path}: {a!r} != {b!r}"
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


def test_coefficient_tolerance_follows_the_conditioning():
    """A score or closest-combination coefficient may move by noise / sigma_min relative, and
    no more; every other number keeps 1e-7."""
    def doc(c, score, sigma=1e-11, top=2.0):
        return {"noise": 1e-13, "smallest_singular_value": sigma, "score": score,
                "max_eigenvalue": top, "lowest": [{"closest": [{"name": "a", "coefficient": c}]}]}
    _same(doc(2.5e8, 0.07), doc(2.5e8 * (1 + 5e-3), 0.07))  # within 1e-13 / 1e-11
    _same(doc(2.5e8, 0.07), doc(2.5e8, 0.07 * (1 + 5e-3)))
    with pytest.raises(AssertionError):
        _same(doc(2.5e8, 0.07), doc(2.5e8 * (1 + 2e-2), 0.07))
    with pytest.raises(AssertionError):  # not a conditioned quantity: 1e-7
        _same(doc(2.5e8, 0.07, top=2.0 * (1 + 1e-6)), doc(2.5e8, 0.07))
    with pytest.raises(AssertionError):  # well conditioned: 1e-7
        _same(doc(1.5, 0.07, sigma=0.05), doc(1.5 * (1 + 1e-6), 0.07, sigma=0.05))


def test_norm_bounds_in_text_compare_by_order_of_magnitude():
    """A printed bound of a rounding residual may change by a factor below 4; every other
    printed number keeps 2e-3, and a bound still fails at a factor 10."""
    text = "||C^T C - I|| <= {}, ||C - C~||_F <= 0.00047, so sigma_min(A) >= {}"
    _same_text(text.format("6.1e-06", "0.0528929"), text.format("4.9e-06", "0.0528929"), "t")
    for bad in (text.format("6.1e-05", "0.0528929"), text.format("6.1e-06", "0.0531")):
        with pytest.raises(AssertionError):
            _same_text(text.format("6.1e-06", "0.0528929"), bad, "t")
