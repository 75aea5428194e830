"""A slice of benchmarks/fuzz_claims.py in the suite: random datasets whose truth is known by
construction (units 1e-8..1e8 per coordinate, overall scales 1e-200..1e200, clusters, near-Diracs,
planted duplicates, exact translates, Diracs, a dense convolution relation, near-translates);
no verdict may contradict the truth and every printed relation must hold at fresh points in
50-digit arithmetic (the oracle is that script's own mpmath code). Warnings are errors here."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fuzz_claims  # noqa: E402

from ntkcheck import analyze  # noqa: E402


@pytest.mark.parametrize("seed", [11, 12])
def test_no_false_claim(seed):
    rng = np.random.default_rng(seed)
    for _ in range(15):
        ds, planted = fuzz_claims.make_case(rng)
        r = analyze(ds, exact="never", seed=int(rng.integers(0, 100)))
        if r.verdict == "not_injective":
            assert planted, r.reason
        if r.verdict == "injective":
            assert not planted, (planted, r.reason)
        spread = max(float(np.ptp(d.atoms, axis=0).max()) for d in ds.distributions) or 1.0
        for dep in r.dependencies:
            assert fuzz_claims.oracle_misfit(ds, dep, rng, 1.0 / spread) < 1e-10, dep.describe()
