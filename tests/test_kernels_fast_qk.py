"""The query-key NTK of token data (whitened batched-GEMM path with a packed dsyrk update)
against a brute-force evaluation from the per-probe Hessians, its progress reports, and the
plain progress lines of ``ntkcheck spectrum``."""

from __future__ import annotations

import numpy as np
import pytest

from ntkcheck import Dataset, Discrete
from ntkcheck.cli.spectrum import _PlainProbeProgress
from ntkcheck.injectivity.probes import make_probes, make_whitening
from ntkcheck.kernels import _pack_outer, full_kernel, qk_kernel, value_kernel
from ntkcheck.kernel_spectrum import kernel_spectrum


def _tokens(seed: int, N: int = 9, d: int = 3, flat: bool = False) -> Dataset:
    """Discrete laws with 2..6 atoms (so the packed arrays are padded), random weights; with
    ``flat`` all atoms lie in the plane y_3 = 0.5 y_1 + 1 (affine hull of dimension 2)."""
    rng = np.random.default_rng(seed)
    laws = []
    for i in range(N):
        k = 2 + i % 5
        atoms = rng.normal(size=(k, d)) * rng.uniform(0.5, 2.0)
        if flat:
            atoms[:, 2] = 0.5 * atoms[:, 0] + 1.0
        w = rng.uniform(0.2, 1.0, k)
        laws.append(Discrete(atoms, w / w.sum()))
    return Dataset([f"law{i}" for i in range(N)], laws)


def _brute_force_qk(ds: Dataset, whiten: bool, M: int, seed: int) -> np.ndarray:
    """K_ij = (1/M) sum_m <T^T H_i(z_m) T, T^T H_j(z_m) T>_F from Dataset.tilted_moments (the
    generic per-family path) and full r x r Frobenius products, no packing."""
    white = make_whitening(ds, whiten)
    probes = make_probes(white, M, (1.0, 3.0), seed)
    _, hess = ds.tilted_moments(probes.z)
    T = white.transform
    hs = np.einsum("ka,mnkl,lb->mnab", T, hess, T)
    return np.einsum("miab,mjab->ij", hs, hs) / M, white, probes


@pytest.mark.parametrize("whiten, flat", [(True, False), (False, False), (True, True)])
def test_token_qk_kernel_equals_brute_force(whiten, flat):
    """Same kernel by two computations (whitened-atom covariances packed into dsyrk vs
    data-coordinate Hessians from the generic path, rotated by T and contracted in full):
    entries agree to 1e-11 relative to the largest one (the products sum M r^2 terms of size
    max K; each path has O(1e-15) relative rounding per term). Covers padding, non-uniform
    weights, whitening on/off and a 2-dimensional affine hull in R^3; probe chunks of 4
    (budget) exercise the chunk loop and the partial last chunk."""
    ds = _tokens(seed=3, flat=flat)
    ref, white, probes = _brute_force_qk(ds, whiten, M=30, seed=4)
    got = qk_kernel(ds, white, probes, budget=4 * len(ds) * 6 // 4)
    assert np.array_equal(got, got.T)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-11 * np.abs(ref).max())


def test_full_kernel_is_qk_plus_value_on_tokens():
    """The full kernel of token data is the sum of its qk part (fast path) and the value NTK
    (generic path), computed in one pass; equal to 1e-12 relative."""
    ds = _tokens(seed=5)
    white = make_whitening(ds, True)
    probes = make_probes(white, 25, (1.0, 3.0), 6)
    K = full_kernel(ds, white, probes)
    ref = qk_kernel(ds, white, probes) + value_kernel(ds, white, probes)
    np.testing.assert_allclose(K, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_packed_outer_products_preserve_frobenius_products():
    """pack(a a^T) . pack(b b^T) = <a a^T, b b^T>_F = (a . b)^2 for random vectors."""
    rng = np.random.default_rng(7)
    A = rng.normal(size=(40, 6))
    P = _pack_outer(A, np.empty((40, 21)))
    np.testing.assert_allclose(P @ P.T, (A @ A.T) ** 2, rtol=1e-13, atol=1e-13)


def test_progress_reports_every_chunk_up_to_the_total():
    """kernel_spectrum calls progress(done, total) with increasing counts ending at the total
    (one pass over the probes for qk; two for full: Hessians, then gradients)."""
    ds = _tokens(seed=8)
    for kernel, passes in (("qk", 1), ("full", 2)):
        seen = []
        kernel_spectrum(ds, kernel, probes=40, budget=60, progress=lambda d, t: seen.append((d, t)))
        done = [d for d, _ in seen]
        assert len(seen) > 2 and done == sorted(done)
        assert {t for _, t in seen} == {40 * passes} and done[-1] == 40 * passes


def test_plain_progress_lines_are_periodic(capsys):
    """Not a terminal: one line at most every 10 s with done/total, percentage and an ETA from
    the elapsed rate; none at the end of the run (the report follows)."""
    now = [0.0]
    report = _PlainProbeProgress("spectrum: qk kernel", clock=lambda: now[0])
    for t, done in ((2.0, 10), (11.0, 50), (12.0, 60), (25.0, 100), (40.0, 200)):
        now[0] = t
        report(done, 200)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["spectrum: qk kernel: 50/200 probes (25%), elapsed 11 s, ETA 33 s",
                     "spectrum: qk kernel: 100/200 probes (50%), elapsed 25 s, ETA 25 s"]


def test_outer_products_per_block_give_the_same_kernel(monkeypatch):
    """Beyond the memory cap the packed outer products are rebuilt per block of laws instead of
    kept: the arithmetic is the same, so the kernel is bit-identical."""
    import ntkcheck.kernels as kernels

    ds = _tokens(seed=9, N=12)
    white = make_whitening(ds, True)
    probes = make_probes(white, 20, (1.0, 3.0), 10)
    kept = qk_kernel(ds, white, probes, budget=200)
    monkeypatch.setattr(kernels, "_OUTER_CAP", 0)
    rebuilt = qk_kernel(ds, white, probes, budget=200)
    assert np.array_equal(kept, rebuilt)
