"""Dask backend: blocks computed on the workers of a Dask cluster, R reduced there by TSQR.

Each task folds a contiguous range of blocks (``make_block`` runs on the worker), partial R
factors (or Gram matrices for CholeskyQR2) are combined by a fixed binary tree of tasks on the
cluster, and only the final N x N result travels to the client. The tree depends only on the
number of leaves, so the result does not depend on worker timing (given the workers' BLAS
thread count: process workers started by a nanny, the default, run BLAS on one thread, which
also suits the narrow-panel QR folds). Needs the optional extra
``ntkcheck[dask]`` (``dask`` and ``distributed``).

Memory: a merge holds its two input factors and their working copies, about 4 N^2 doubles
(32 N^2 bytes) on one worker: N up to about 22000 on a 16 GB worker, 31000 on 32 GB,
44000 on 64 GB. The client receives R (8 N^2 bytes).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InputError, install_hint
from ..injectivity.factor import Factor
from .tree import BlockRange, drive, split_ranges

__all__ = ["fold_dask"]


def _distributed():
    try:
        import distributed
    except ImportError:
        raise InputError("the dask backend needs dask and distributed; install them with "
                         + install_hint("dask", "dask distributed"), field="backend") from None
    return distributed


def _on_range(fn, make_block, start: int, stop: int, *rest):
    return fn(BlockRange(make_block, start, stop), *rest)


class _Cluster:
    """Tasks on a Dask client; ``make_block`` (which may carry a whole dataset) is sent to the
    workers once and passed to every task by reference."""

    def __init__(self, client, make_block):
        self.client = client
        self.make_block = client.scatter(make_block, broadcast=True, hash=False)

    def map(self, fn, args):
        return [self.client.submit(_on_range, fn, self.make_block, a[0].start, a[0].stop,
                                   *a[1:], pure=False) for a in args]

    def combine(self, fn, a, b):
        return self.client.submit(fn, a, b, pure=False)

    def get(self, future):
        return future.result()

    def share(self, value):
        return self.client.scatter(value, broadcast=True)


def fold_dask(make_block: Callable[[int], np.ndarray], n_blocks: int, n_cols: int, *,
              method: str = "auto", client=None, scheduler: str | None = None,
              leaves: int | None = None) -> Factor:
    """Factor of [make_block(0); ...; make_block(n_blocks - 1)] on a Dask cluster.

    Parameters
    ----------
    make_block : picklable callable k -> array (b_k, N)
        Runs on the workers (a module-level function or a picklable object).
    n_blocks, n_cols : int
        B and N.
    method : {"auto", "householder", "cholqr2"}
        See :func:`ntkcheck.injectivity.factor.fold_blocks`.
    client : distributed.Client, optional
        An existing client; else one is opened on ``scheduler`` (an address such as
        ``tcp://host:8786``) and closed afterwards.
    leaves : int, optional
        Number of block ranges (tasks) reduced by the tree; default: the cluster's total
        thread count when the job starts. Fix it to get bit-identical results on clusters of
        different sizes.
    """
    distributed = _distributed()
    own = None
    if client is None:
        if not scheduler:
            raise InputError("give a scheduler address (e.g. tcp://host:8786) or a client",
                             field="scheduler")
        try:
            own = client = distributed.Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as err:
            raise InputError(f"cannot connect to the Dask scheduler at {scheduler}: {err}; "
                             "check the address and that the scheduler runs",
                             field="scheduler") from None
    try:
        if leaves is None:
            leaves = max(1, sum(client.nthreads().values()))
        ranges = split_ranges(n_blocks, int(leaves))
        return drive(_Cluster(client, make_block), make_block, ranges, n_cols, method)
    finally:
        if own is not None:
            own.close()
