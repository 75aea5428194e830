"""The analysis turns numpy's huge-page advice off while it runs and restores it after
(:func:`ntkcheck.resources.without_hugepage_advice`); ``NTKCHECK_HUGEPAGES=1`` keeps it."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

import ntkcheck.injectivity.plan as plan
from ntkcheck.analysis import analyze
from ntkcheck.resources import without_hugepage_advice

_core = getattr(np, "_core", None) or getattr(np, "core", None)
SETTER = getattr(getattr(_core, "multiarray", None), "_set_madvise_hugepage", None)
pytestmark = pytest.mark.skipif(SETTER is None, reason="this numpy has no huge-page switch")


def _current() -> bool:
    value = SETTER(True)  # returns the value it replaces
    SETTER(value)
    return bool(value)


@pytest.mark.parametrize("start", [True, False])
def test_advice_off_inside_and_restored(monkeypatch, start):
    """Inside the block numpy gives no huge-page advice; after it, the advice is what it was,
    also when the block raises."""
    monkeypatch.delenv("NTKCHECK_HUGEPAGES", raising=False)
    before = SETTER(start)
    try:
        with without_hugepage_advice():
            assert _current() is False
        assert _current() is start
        with pytest.raises(RuntimeError):
            with without_hugepage_advice():
                raise RuntimeError("stop")
        assert _current() is start
    finally:
        SETTER(before)


def test_environment_keeps_numpys_advice(monkeypatch):
    monkeypatch.setenv("NTKCHECK_HUGEPAGES", "1")
    before = SETTER(True)
    try:
        with without_hugepage_advice():
            assert _current() is True
    finally:
        SETTER(before)


def test_analyze_runs_inside_the_block(monkeypatch):
    """analyze's dense test runs with the advice off (the block wraps its session), and the
    verdict is the same as with the advice on."""
    monkeypatch.delenv("NTKCHECK_HUGEPAGES", raising=False)
    seen = []
    real = plan.DenseOptions.session

    @contextlib.contextmanager
    def spy(self):
        with real(self) as dense:
            seen.append(_current())
            yield dense

    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 5, 2))
    monkeypatch.setattr(plan.DenseOptions, "session", spy)
    off = analyze(X, exact="never")
    monkeypatch.setenv("NTKCHECK_HUGEPAGES", "1")
    on = analyze(X, exact="never")
    assert seen[0] is False
    assert off.to_dict()["singular_values"] == on.to_dict()["singular_values"]
    assert off.verdict == on.verdict
