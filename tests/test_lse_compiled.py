"""The compiled log-sum-exp of the discrete laws' score tiles (``ntkcheck._compiled.lse_scores``,
used by ``Dataset.lse`` from ``COMPILED_LSE_ENTRIES`` score entries on).

Truths are independent of the code under test: LSE values at 50 digits with mpmath from the
binary64 parameters and probes taken as exact (test_certify.py's helpers), the rigorous radii
of the features pass (its error model, which the compiled path must stay inside), and the
numpy evaluation of the same operations with the C library's exp.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_certify import DPS, _mp, mp_lse
from test_certify_reuse import assert_pass_enclosure_holds

import ntkcheck.dataset as dataset_module
from ntkcheck import Dataset
from ntkcheck.analysis import analyze
from ntkcheck.injectivity.features import centred_each
from ntkcheck.io.load import load_dataset

pytest.importorskip("numba")

U = 2.0**-53


@contextmanager
def lse_path(compiled: bool):
    """Every ``Dataset.lse`` call inside takes the compiled path (threshold 0) or numpy's
    (a threshold no input reaches)."""
    old = dataset_module.COMPILED_LSE_ENTRIES
    dataset_module.COMPILED_LSE_ENTRIES = 0 if compiled else 1 << 62
    try:
        yield
    finally:
        dataset_module.COMPILED_LSE_ENTRIES = old


def _mixed(seed: int, N: int = 40, d: int = 5, scale: float = 1.0):
    """Discrete laws of 6-11 atoms (padded within a pack), non-uniform weights."""
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(int(rng.integers(6, 12)), d)) * scale for _ in range(N)]
    W = [rng.random(len(x)) + 0.01 for x in X]
    return Dataset.from_tokens(X, weights=W)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), data_exp=st.sampled_from([-100, -3, 0, 2]),
       probe_exp=st.integers(-3, 3))
def test_compiled_values_are_inside_the_pass_radii(seed, data_exp, probe_exp):
    """The certificate reuses the features pass's values with the radii of the algorithm that
    computed them; the compiled path is that algorithm with another exp (< 6 u against the
    8 u the radii assume), so |LSE_i(z_m) - <z_m, c_i> - F~[m, i]| <= rad[m, i] must hold for
    its values too. Probe scales up to 1e3 / data scale make the scores span thousands, so
    terms below e^-708 (flushed to 0 by the compiled exp) occur."""
    rng = np.random.default_rng(seed)
    scale = 10.0**data_exp
    X = [rng.normal(size=(int(rng.integers(3, 6)), 2)) * scale + rng.normal(size=2) * 40 * scale
         for _ in range(3)]
    ds = Dataset.from_tokens(X, weights=[rng.random(len(x)) + 0.05 for x in X])
    centred, centres = centred_each(ds)
    z = rng.normal(size=(8, 2)) * 10.0**probe_exp / scale
    with lse_path(compiled=True):
        F = centred.lse(z)
    assert_pass_enclosure_holds(ds, centred, centres, z, F)


@pytest.mark.parametrize("probe_scale", [1e-3, 1.0, 30.0, 3000.0])
def test_compiled_and_numpy_paths_agree_within_the_error_model(probe_scale):
    """Both paths evaluate the same operations (the compiled one packs the GEMM and uses its own
    exp), each within the features' first-order error model e = u (d + n + 10)
    (sum_l |z_l| R_l + W + |F| + 1) of the true value (features.py), so they differ by at most
    2 e per entry. Mixed lengths exercise the -inf padding of a pack."""
    ds = _mixed(1)
    z = np.random.default_rng(2).normal(size=(300, ds.dim)) * probe_scale
    with lse_path(compiled=False):
        ref = ds.lse(z)
    with lse_path(compiled=True):
        got = ds.lse(z)
    R = np.array([np.abs(d.atoms).max(axis=0) for d in ds.distributions])  # (N, d)
    W = np.array([np.abs(np.log(d.weights)).max() for d in ds.distributions])
    n = np.array([len(d.weights) for d in ds.distributions])
    e = U * (ds.dim + n + 10) * (np.abs(z) @ R.T + W + np.abs(ref) + 1)
    assert np.all(np.abs(got - ref) <= 2 * e)


def test_compiled_values_equal_brute_force_sums():
    """Against the LSE summed term by term at 50 digits (no numpy, no compiled code): relative
    agreement to 64 u on values of order 1 to 1e3."""
    ds = _mixed(3, N=6, d=3)
    z = np.random.default_rng(4).normal(size=(5, 3)) * 20
    with lse_path(compiled=True):
        F = ds.lse(z)
    with mp.workdps(DPS):
        for m in range(z.shape[0]):
            for i, dist in enumerate(ds.distributions):
                exact = mp_lse(dist, z[m], np.zeros(3))
                assert abs(exact - _mp(F[m, i])) <= 64 * U * (abs(exact) + 1)


def test_overflowed_scores_give_nan_on_both_paths():
    """A score that overflows to inf makes its entry NaN on numpy's path (inf - inf), and so
    does a score that is itself NaN (a dot product summing +inf and -inf: the last atom
    against the last probe); the compiled path must not turn either into a finite number
    (its exp returns 0 for NaN, and a NaN score is never the maximum)."""
    X = [np.array([[1e300, 0.0], [0.0, 1.0]]), np.array([[1.0, 2.0], [3.0, -1.0]]),
         np.array([[-1e300, 0.0], [2.0, 2.0]]), np.array([[1.0, 0.5], [1e300, 1e300]])]
    ds = Dataset.from_tokens(X)
    z = np.array([[1e10, 1.0], [0.5, 0.25], [-1e10, 0.0], [1e10, -1e10]])
    with np.errstate(all="ignore"):
        with lse_path(compiled=False):
            ref = ds.lse(z)
        with lse_path(compiled=True):
            got = ds.lse(z)
    assert np.isnan(ref).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))


def test_a_nan_score_gives_nan_as_numpy_does():
    """The kernel's contract on a tile with NaN scores (a BLAS that sums +inf and -inf in
    separate lanes makes one from finite data; FMA kernels do not): the entry of a (law,
    probe) with a NaN score is NaN, whether or not the NaN is the first token, and the other
    entries equal numpy's evaluation to 4 u relative (another exp)."""
    from ntkcheck._compiled import lse_scores
    rng = np.random.default_rng(8)
    s = rng.normal(size=(5, 3, 4)) * 3
    s[2, 1, 3] = np.nan  # not the first token: never the maximum
    s[0, 2, 0] = np.nan  # the first token: the running maximum starts at NaN
    lw = np.log(rng.random((5, 3)) + 0.1)
    t = s + lw[:, :, None]
    with np.errstate(invalid="ignore"):
        mx = t.max(axis=0)
        ref = np.log(np.exp(t - mx).sum(axis=0)) + mx
    out = np.empty((3, 4))
    lse_scores(s.copy(), lw, out)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    assert np.isnan(out[1, 3]) and np.isnan(out[2, 0])
    ok = ~np.isnan(ref)
    assert np.all(np.abs(out[ok] - ref[ok]) <= 4 * U * (np.abs(ref[ok]) + np.log(5)))


def test_the_threshold_chooses_the_path(monkeypatch):
    """From COMPILED_LSE_ENTRIES score entries (probes x atoms, padding included) on, one lse
    call reduces with the compiled kernel, below it with numpy; the boundary is inclusive."""
    ds = _mixed(5, N=10)
    atoms = sum(p.atoms.shape[0] * p.atoms.shape[1] for p in ds._packs)
    z = np.random.default_rng(6).normal(size=(7, ds.dim))
    import ntkcheck._compiled as compiled
    calls = []
    real = compiled.lse_scores

    def spy(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(compiled, "lse_scores", spy)
    monkeypatch.setattr(dataset_module, "COMPILED_LSE_ENTRIES", 7 * atoms + 1)
    ds.lse(z)
    assert not calls
    monkeypatch.setattr(dataset_module, "COMPILED_LSE_ENTRIES", 7 * atoms)
    ds.lse(z)
    assert calls


def test_large_inputs_take_the_compiled_path():
    """The default threshold is what the large-data figures rely on: 2^29 entries and up
    (4000 x 32 tokens at 8034 probes: 1.0e9; 20000 x 64 tokens at 39662 probes: 5e10) take
    the compiled path, a small analysis (1000 x 64 tokens, 2066 probes: 1.3e8) does not pay
    numba's start-up."""
    assert dataset_module.COMPILED_LSE_ENTRIES == 1 << 29
    assert 8034 * 4000 * 32 >= 1 << 29 > 2066 * 1000 * 64
    ds = _mixed(7, N=4)
    atoms = sum(p.atoms.shape[0] * p.atoms.shape[1] for p in ds._packs)
    assert ds._compiled_lse(-(-(1 << 29) // atoms))
    assert not ds._compiled_lse((1 << 29) // atoms - 1)


@pytest.mark.parametrize("sample", ["tokens_injective.npz", "tokens_dependent.npz"])
def test_analysis_is_the_same_on_either_path(sample):
    """The verdict, its evidence and the relations (names and coefficients to 1e-9) do not
    depend on which path evaluated the features: the bundled samples, certified injective and
    not_injective."""
    data = load_dataset(Path(__file__).resolve().parents[1] / "samples" / sample)
    with lse_path(compiled=False):
        ref = analyze(data, exact="never")
    with lse_path(compiled=True):
        got = analyze(data, exact="never")
    assert (got.verdict, got.evidence) == (ref.verdict, ref.evidence)
    assert len(got.dependencies) == len(ref.dependencies)
    for a, b in zip(got.dependencies, ref.dependencies):
        assert a.coefficients.keys() == b.coefficients.keys()
        for k, v in a.coefficients.items():
            assert abs(v - b.coefficients[k]) <= 1e-9 * max(1.0, abs(v))
