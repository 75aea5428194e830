"""Where row blocks of a tall matrix are computed and folded into its R factor (SPEC §7).

A backend takes a picklable ``make_block(k) -> ndarray (b_k, N)`` for k = 0..B-1 and returns
the :class:`~ntkcheck.injectivity.factor.Factor` of the stacked matrix [B_0; ...; B_{B-1}].
The blocks are split into contiguous ranges, each range is folded on its own, and the partial
results are combined by a fixed tree (TSQR merges of R factors, or sums of Gram matrices in
range order), so the result is the same whatever the timing of the workers.

* :func:`ntkcheck.backends.local.fold_local`: threads on this machine;
* :func:`ntkcheck.backends.dask.fold_dask`: a Dask cluster (optional extra ``ntkcheck[dask]``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import InputError
from .tree import BlockRange, split_ranges

__all__ = ["BlockRange", "split_ranges", "fold", "BACKENDS"]

BACKENDS = ("local", "dask")






def fold(make_block: Callable[[int], np.ndarray], n_blocks: int, n_cols: int, *,
         backend: str = "local", method: str = "auto", **options):
    """Dispatch to :func:`.local.fold_local` or :func:`.dask.fold_dask` by name."""
    if backend == "local":
        from .local import fold_local
        return fold_local(make_block, n_blocks, n_cols, method=method, **options)
    if backend == "dask":
        from .dask import fold_dask
        return fold_dask(make_block, n_blocks, n_cols, method=method, **options)
    raise InputError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}",
                     field="backend")






