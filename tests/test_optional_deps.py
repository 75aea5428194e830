"""The core works without the optional engines (a plain `pip install .` has no python-flint,
matplotlib, numba or dask): analyze still certifies, with the a-priori enclosures."""

from __future__ import annotations

import numpy as np
import pytest

from ntkcheck import Dataset, analyze
from ntkcheck.injectivity import certify


def test_certificate_without_python_flint(monkeypatch):
    """With python-flint absent, method 'auto' takes the a-priori enclosures and analyze still
    says certified; asking for 'arb' explicitly is a clear InputError."""
    monkeypatch.setattr(certify, "_have_flint", lambda: False)
    ds = Dataset.from_tokens(list(np.random.default_rng(0).normal(size=(10, 5, 2))))
    r = analyze(ds, exact="never")
    assert (r.verdict, r.evidence) == ("injective", "certified")
    assert r.verification["enclosure"] == "a-priori"
    with pytest.raises(Exception, match="python-flint"):
        certify.certify_independence(ds.distributions, np.ones((40, 2)), method="arb")


def test_too_few_probe_rows_are_never_certified():
    """M' < N + d + 1 rows cannot have full column rank: refused with the reason, whatever the
    enclosure method (a guard, not a numerical accident)."""
    ds = Dataset.from_tokens(list(np.random.default_rng(1).normal(size=(10, 5, 2))))
    z = np.random.default_rng(2).normal(size=(12, 2))  # 12 < 10 + 2 + 1
    for method in ("a-priori", "arb"):
        cert = certify.certify_independence(ds.distributions, z, method=method)
        assert not cert.certified and "add probes" in cert.reason
