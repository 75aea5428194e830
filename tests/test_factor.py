"""Streaming factorisation (TSQR / CholeskyQR2) against the in-memory LAPACK SVD and QR."""

from __future__ import annotations

import numpy as np
import pytest

from ntkcheck.errors import InputError
from ntkcheck.injectivity.factor import (Factor, fold_blocks, householder_fold, merge_r,
                                         tree_reduce)

U = 2.0**-53


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Small matrices gain nothing from BLAS threads, and spinning BLAS threads on a loaded
    machine slow these tests tenfold; the numerics checked do not depend on the count."""
    from ntkcheck._threads import blas_single_thread

    with blas_single_thread():
        yield


def matrix(M, N, cond, seed=0, rank=None):
    """A = U diag(s) V^T with singular values log-spaced from 1 to 1/cond (the last N - rank
    set to zero), so the exact singular values are known."""
    rng = np.random.default_rng(seed)
    Uq, _ = np.linalg.qr(rng.normal(size=(M, N)))
    V, _ = np.linalg.qr(rng.normal(size=(N, N)))
    s = np.logspace(0, -np.log10(cond), N)
    if rank is not None:
        s[rank:] = 0.0
    return (Uq * s) @ V.T, s


def split(A, sizes):
    out, i = [], 0
    for b in sizes:
        out.append(A[i:i + b])
        i += b
    out.append(A[i:])
    return out


def svd_tol(A):
    """Round-off of the reference SVD and of the factorisation, both backward stable:
    a few N u ||A||_2 (factor 10 for the constants)."""
    return 10 * A.shape[1] * U * np.linalg.norm(A, 2)


@pytest.mark.parametrize("method", ["householder", "cholqr2", "auto"])
@pytest.mark.parametrize("sizes", [[400], [1, 7, 0, 100, 3], [37] * 11])
def test_well_conditioned_matches_in_memory(method, sizes):
    """Same singular values as the in-memory SVD to round-off, R equal to the in-memory R
    (positive diagonal, unique for full rank) to kappa * round-off, and the returned
    intervals contain the reference singular values."""
    A, s = matrix(500, 60, 1e3, seed=len(sizes))
    f = fold_blocks(split(A, sizes), 60, method)
    assert f.method == ("householder" if method == "householder" else "cholqr2")
    assert f.rows == 500
    ref = np.linalg.svd(A, compute_uv=False)
    got = f.singular_values()
    assert np.abs(got - ref).max() <= svd_tol(A)
    R_ref = np.linalg.qr(A, mode="r")
    R_ref *= np.sign(np.diag(R_ref))[:, None]
    assert np.abs(f.R - R_ref).max() <= 1e3 * svd_tol(A)  # kappa = 1e3
    lo, hi = f.sigma_bounds(got)
    assert np.all(lo <= ref + svd_tol(A)) and np.all(ref - svd_tol(A) <= hi)
    # the bounds are meaningful: far below the smallest singular value
    assert f.backward_error_bound < 1e-4 * s.min()


@pytest.mark.parametrize("method", ["auto", "cholqr2"])
@pytest.mark.parametrize("cond, rank", [(1e12, None), (1e3, 45)])
def test_ill_conditioned_takes_the_householder_path(method, cond, rank):
    """kappa = 1e12, or rank 45 of 60: CholeskyQR2 is unsafe, the Householder path runs, the
    reason is recorded, and the singular values (zeros included) match to round-off."""
    A, s = matrix(400, 60, cond, seed=3, rank=rank)
    f = fold_blocks(split(A, [50] * 7), 60, method)
    assert f.method == "householder" and f.fallback
    got = f.singular_values()
    assert np.abs(got - np.sort(s)[::-1]).max() <= svd_tol(A)
    lo, hi = f.sigma_bounds(got)
    assert np.all(lo <= np.sort(s)[::-1] + svd_tol(A))


def test_tree_of_partial_factors_equals_one_fold():
    """merge_r of partial factors (a fixed tree) gives the same R as one sequential fold, and
    R^T R = A^T A to round-off."""
    A, _ = matrix(600, 40, 1e2, seed=5)
    parts = [householder_fold([A[i:i + 100]], 40) for i in range(0, 600, 100)]
    saved = [p.R.copy() for p in parts]
    f = tree_reduce(parts)
    assert all(np.array_equal(p.R, r) for p, r in zip(parts, saved))  # inputs kept
    R01 = merge_r(parts[0].R, parts[1].R)
    assert np.array_equal(merge_r(parts[0].R.copy(order="F"), parts[1].R.copy(order="F"),
                                  overwrite=True), R01)  # in place: the same bits
    g = householder_fold([A[i:i + 50] for i in range(0, 600, 50)], 40)
    tol = svd_tol(A) * np.linalg.norm(A, 2)
    assert np.abs(f.R - g.R).max() <= 1e2 * svd_tol(A)
    assert np.abs(f.R.T @ f.R - A.T @ A).max() <= tol
    assert np.abs(merge_r(parts[0].R, parts[1].R) - householder_fold([A[:200]], 40).R).max() \
        <= 1e2 * svd_tol(A)
    assert f.rows == 600 and f.backward_error_bound > sum(p.backward_error_bound for p in parts)


def test_one_shot_iterators_and_errors():
    """A generator is consumed once: auto folds it by Householder, cholqr2 refuses it;
    malformed blocks and unknown methods are InputErrors naming the fix."""
    A, _ = matrix(200, 20, 10.0)
    assert fold_blocks((A[i:i + 40] for i in range(0, 200, 40)), 20).method == "householder"
    with pytest.raises(InputError, match="re-iterable"):
        fold_blocks((A[i:i + 40] for i in range(0, 200, 40)), 20, "cholqr2")
    with pytest.raises(InputError, match=r"shape \(40, 19\)"):
        fold_blocks([A[:40, :19]], 20)
    with pytest.raises(InputError, match="choose one of auto, householder, cholqr2"):
        fold_blocks([A], 20, "lu")
    with pytest.raises(InputError, match="NaN"):
        fold_blocks([np.full((3, 20), np.nan)], 20)


def test_fewer_rows_than_columns():
    """M < N: R is the (zero-padded) R factor of the short matrix; its non-zero singular
    values are those of A, CholeskyQR2 falls back."""
    A, _ = matrix(30, 30, 10.0, seed=2)
    A = A[:12]
    f = fold_blocks([A[:5], A[5:]], 30)
    assert f.method == "householder" and "fewer rows" in f.fallback
    ref = np.linalg.svd(A, compute_uv=False)
    assert np.abs(f.singular_values()[:12] - ref).max() <= svd_tol(A)
    assert np.abs(f.singular_values()[12:]).max() <= svd_tol(A)


@pytest.mark.parametrize("M, N, b", [(50, 20, 7), (40, 20, 20), (20, 20, 6), (19, 20, 19),
                                     (13, 20, 4), (3, 20, 1), (60, 20, 60)])
def test_first_rows_by_dgeqrt_then_folds(M, N, b):
    """The Householder fold factors its first N rows in one dgeqrt (also when a block
    straddles row N, or when there are fewer rows than columns: the rows moved to the front
    of the array and back) and folds the rest: R is upper triangular with a non-negative
    diagonal, zero below row M, R^T R = A^T A to the factor's backward error (||A^T A -
    R^T R|| <= 2 ||E|| ||A|| + ||E||^2, E the reported bound), and R equals LAPACK's R of
    the whole matrix (signs normalised) to 1e-12 relative."""
    A, _ = matrix(max(M, N), N, 10.0, seed=M + N + b)
    A = A[:M]
    f = householder_fold([A[k:k + b] for k in range(0, M, b)], N)
    R = f.R
    assert f.rows == M and np.all(np.tril(R, -1) == 0) and np.all(np.diag(R) >= 0)
    assert np.all(R[min(M, N):] == 0)
    E = f.backward_error_bound
    nA = np.linalg.norm(A, 2)
    assert np.linalg.norm(A.T @ A - R.T @ R, 2) <= 2 * E * nA + E**2
    ref = np.linalg.qr(A, mode="r")
    ref *= np.where(np.diag(ref) < 0, -1.0, 1.0)[:, None]
    k = min(M, N)
    assert np.abs(R[:k] - ref[:k]).max() <= 1e-12 * nA


def test_factor_serialises():
    """to_dict carries the method, sizes and bounds as plain JSON types."""
    import json
    A, _ = matrix(100, 10, 10.0)
    d = fold_blocks([A], 10, "householder").to_dict()
    assert json.loads(json.dumps(d))["columns"] == 10 and d["method"] == "householder"
    assert isinstance(fold_blocks([A], 10), Factor)


# ---------------------------------------------------------------------------------------------
# time and memory estimate
# ---------------------------------------------------------------------------------------------

from ntkcheck.injectivity.estimate import (Rates, check_memory, estimate_streaming,  # noqa: E402
                                           measure_rates)


def test_rates_are_measured_once():
    """The rates are measured once per process and positive."""
    r = measure_rates()
    assert r is measure_rates() and min(r.gemm, r.tpqrt, r.exp) > 0


def test_estimate_follows_the_cost_model():
    """With fixed rates the model is exact: factorisation time (4/3 N^3 + 2 (M - N) N^2) /
    rate (dgeqrt of the first N rows, folds of the rest), each further row 2 N^2 flops;
    factor memory (w + 1) N^2 words for Householder."""
    r = Rates(gemm=1e10, tpqrt=5e9, exp=1e9)
    e = estimate_streaming(1000, 8, 4000, 32000, 256, rates=r)
    flops = 4 * 1000**3 / 3 + 2 * 3000 * 1000**2
    assert e.time["factorisation"] == pytest.approx(flops / 5e9, rel=1e-12, abs=0)
    assert e.memory["factors"] == 2 * 1000**2 * 8
    e2 = estimate_streaming(1000, 8, 8000, 32000, 256, rates=r)
    assert e2.time["factorisation"] - e.time["factorisation"] == pytest.approx(
        2 * 4000 * 1000**2 / 5e9, rel=1e-12, abs=0)
    assert e2.time["features"] == pytest.approx(2 * e.time["features"], rel=1e-12, abs=0)
    assert "estimated peak memory" in e.describe() and e.to_dict()["inputs"]["M"] == 4000
    with pytest.raises(InputError, match="positive integer"):
        estimate_streaming(0, 8, 10, 10, 10, rates=r)


def test_estimate_bounds_the_measured_memory_of_a_fold():
    """The factor + block part of the estimate bounds the tracemalloc peak of an actual
    Householder fold (numpy allocations are traced) and is within a factor 3 of it."""
    import tracemalloc
    N, b, M = 300, 200, 1000
    blocks = (np.random.default_rng(k).normal(size=(b, N)) for k in range(M // b))
    tracemalloc.start()
    householder_fold(blocks, N)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    e = estimate_streaming(N, 1, M, 1, b, scratch_bytes=0, rates=Rates(1e9, 1e9, 1e9))
    model = e.memory["factors"] + e.memory["blocks"]
    assert peak <= model <= 3 * peak


def test_refusal_names_numbers_and_options():
    """Above the limit: an InputError with the estimate, the limit and the options."""
    e = estimate_streaming(20000, 32, 40000, 1280000, 512, rates=Rates(1e10, 1e10, 1e9))
    # one N x N factor dominates: a partial spectrum (N > FULL_SPECTRUM_MAX_N) on one worker's
    # R needs no second N x N array
    assert 3.2e9 < e.peak_bytes < 6.4e9
    two = estimate_streaming(20000, 32, 40000, 1280000, 512, workers=2,
                             rates=Rates(1e10, 1e10, 1e9))
    assert two.peak_bytes - e.peak_bytes >= 8 * 20000**2  # a second worker adds its own R
    full = estimate_streaming(5000, 32, 10000, 320000, 512, rates=Rates(1e10, 1e10, 1e9),
                              partial=False)
    assert full.memory["factors"] == 2 * 8 * 5000**2  # R and the SVD's copy
    auto = estimate_streaming(5000, 32, 10000, 320000, 512, rates=Rates(1e10, 1e10, 1e9))
    assert auto.memory["factors"] == 8 * 5000**2  # N > FULL_SPECTRUM_MAX_N: partial, R only
    with pytest.raises(InputError, match=r"needs about \d\.\d+ GB .* limit is 1 GB; raise "
                                         r"--max-memory"):
        check_memory(e, 10**9)
    check_memory(e, 10**11)
