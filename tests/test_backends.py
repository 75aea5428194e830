"""Backends (local threads, Dask): the same factorisation as the in-memory SVD to round-off,
and bit-identical results across runs (a fixed reduction tree, whatever the timing)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ntkcheck.backends import fold, split_ranges
from ntkcheck.backends import local as local_backend
from ntkcheck.backends.local import fold_local
from ntkcheck.errors import InputError

N, B, ROWS = 48, 10, 30
U = 2.0**-53


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Small matrices gain nothing from BLAS threads, and spinning BLAS threads on a loaded
    machine slow these tests tenfold; the numerics checked do not depend on the count."""
    from ntkcheck._threads import blas_single_thread

    with blas_single_thread():
        yield


def make_block(k: int) -> np.ndarray:
    """Block k of a fixed well-conditioned matrix (module level: picklable)."""
    return np.random.default_rng(k).normal(size=(ROWS, N))


def make_singular_block(k: int) -> np.ndarray:
    """Block k of a matrix of rank N - 3 (the last three columns repeat the first three)."""
    b = make_block(k)
    b[:, -3:] = b[:, :3]
    return b


def reference(fn) -> tuple[np.ndarray, float]:
    A = np.vstack([fn(k) for k in range(B)])
    return np.linalg.svd(A, compute_uv=False), 10 * N * U * np.linalg.norm(A, 2)


def test_split_ranges():
    """Contiguous, non-empty, covering ranges; at most one per block."""
    assert split_ranges(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert split_ranges(2, 8) == [(0, 1), (1, 2)]
    with pytest.raises(InputError, match="at least one"):
        split_ranges(0, 2)


@pytest.mark.parametrize("method", ["householder", "cholqr2", "auto"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_local_matches_in_memory_and_is_deterministic(method, workers):
    """Singular values of the local fold equal the in-memory SVD to round-off; two runs give
    bit-identical R (the tree depends on the number of workers only)."""
    ref, tol = reference(make_block)
    f = fold_local(make_block, B, N, method=method, workers=workers)
    assert f.rows == B * ROWS
    assert np.abs(f.singular_values() - ref).max() <= tol
    assert np.array_equal(f.R, fold_local(make_block, B, N, method=method, workers=workers).R)


def test_local_without_threadpoolctl_is_sequential(monkeypatch):
    """Without threadpoolctl the fold is sequential whatever ``workers`` asks: the same bits
    as workers=1."""
    one = fold_local(make_block, B, N, method="householder", workers=1)
    monkeypatch.setattr(local_backend, "have_threadpoolctl", lambda: False)
    assert np.array_equal(fold_local(make_block, B, N, method="householder", workers=2).R, one.R)


def test_local_singular_matrix_falls_back():
    """Rank N - 3: auto falls back to Householder and shows three zero singular values."""
    ref, tol = reference(make_singular_block)
    f = fold_local(make_singular_block, B, N, workers=2)
    assert f.method == "householder" and f.fallback
    s = f.singular_values()
    assert np.abs(s - ref).max() <= tol and np.sum(s <= tol) == 3


def test_dispatch_errors():
    """Unknown backend and bad worker counts are InputErrors listing the choices."""
    with pytest.raises(InputError, match="choose one of local, dask"):
        fold(make_block, B, N, backend="mpi")
    with pytest.raises(InputError, match="at least 1 worker"):
        fold_local(make_block, B, N, workers=0)


def test_dask_missing_is_a_clear_error(monkeypatch):
    """Without distributed installed, the dask backend says which extra to install, in a form
    that works from a clone (ntkcheck is not on a package index)."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(InputError, match=r"pip install -e '\.\[dask\]' in the ntkcheck clone"):
        fold(make_block, B, N, backend="dask", scheduler="tcp://127.0.0.1:1")


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.mark.parametrize("method", ["householder", "auto"])
def test_dask_matches_local(client, method):
    """The Dask R has the same singular values as the local one to round-off, and repeated
    runs give the same bits (fixed tree of 4 leaves)."""
    ref, tol = reference(make_block)
    f = fold(make_block, B, N, backend="dask", method=method, client=client, leaves=4)
    g = fold(make_block, B, N, backend="dask", method=method, client=client, leaves=4)
    loc = fold_local(make_block, B, N, method=method)
    assert f.method == loc.method
    assert np.abs(f.singular_values() - loc.singular_values()).max() <= tol
    assert np.abs(f.singular_values() - ref).max() <= tol
    assert np.array_equal(f.R, g.R) and f.rows == B * ROWS


def test_dask_singular_matrix_falls_back(client):
    """The CholeskyQR2 safety test and the Householder fallback also run on the cluster."""
    ref, tol = reference(make_singular_block)
    f = fold(make_singular_block, B, N, backend="dask", client=client)
    assert f.method == "householder" and f.fallback
    assert np.abs(f.singular_values() - ref).max() <= tol


def test_dask_by_scheduler_address(client):
    """Given only the scheduler address, the backend opens its own client, gives the same
    bits as through an existing client, and closes it."""
    address = client.scheduler.address
    f = fold(make_block, B, N, backend="dask", scheduler=address, leaves=3)
    g = fold(make_block, B, N, backend="dask", client=client, leaves=3)
    assert np.array_equal(f.R, g.R)
