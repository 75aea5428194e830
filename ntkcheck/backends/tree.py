"""The one factorisation algorithm every backend runs: contiguous ranges of row blocks, each
folded on its own (Householder TSQR or Gram sums for CholeskyQR2), then combined by a fixed
tree, so the result does not depend on the timing of the workers."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Callable, Iterator

import numpy as np

from ..errors import InputError
from ..injectivity.factor import (Method, _method, first_cholesky, finish_cholqr2, gram_pass,
                                  householder_fold, merge_factors, sum_grams)

__all__ = ["BlockRange", "split_ranges", "drive"]


@dataclass(frozen=True)
class BlockRange:
    """The blocks ``make_block(k)`` for k in [start, stop): a re-iterable sequence (each
    iteration recomputes the blocks, so a two-pass factorisation can use it)."""

    make_block: Callable[[int], np.ndarray]
    start: int
    stop: int

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.make_block(k) for k in range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def split_ranges(n_blocks: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal, non-empty ranges covering 0..n_blocks-1."""
    if n_blocks < 1:
        raise InputError(f"got {n_blocks} blocks; give at least one", field="n_blocks")
    parts = max(1, min(int(parts), n_blocks))
    edges = np.linspace(0, n_blocks, parts + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _tree(combine: Callable, items: list):
    """Combine items pairwise, (0, 1), (2, 3), ... level by level (a fixed tree)."""
    level = list(items)
    while len(level) > 1:
        nxt = [combine(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def drive(executor, make_block: Callable[[int], np.ndarray], ranges: list[tuple[int, int]],
          n_cols: int, method: str):
    """Run a factorisation over ``ranges`` of blocks with an executor providing
    ``map(fn, argument_tuples) -> handles``, ``combine(fn, a, b) -> handle``,
    ``get(handle) -> value`` and ``share(value) -> handle`` (the same algorithm for every
    backend: partial folds or Gram sums per range, a fixed combination tree)."""
    m = _method(method)
    parts = [BlockRange(make_block, a, b) for a, b in ranges]

    # executors that own the partial results (local threads) merge them in place
    merge = functools.partial(merge_factors, overwrite=getattr(executor, "owns_results", False))

    def householder():
        leaves = executor.map(householder_fold, [(p, n_cols) for p in parts])
        return executor.get(_tree(lambda a, b: executor.combine(merge, a, b), leaves))

    if m is Method.HOUSEHOLDER:
        return householder()

    def gram(R1=None):
        args = [(p, n_cols) if R1 is None else (p, n_cols, R1) for p in parts]
        leaves = executor.map(gram_pass, args)
        return executor.get(_tree(lambda a, b: executor.combine(_add, a, b), leaves))

    first = gram()
    R1, kappa, reason = first_cholesky(first)
    timings = {"blocks": first.block_seconds, "gram": first.seconds}
    if R1 is None:
        f = householder()
        t = {k: f.timings.get(k, 0.0) + timings.get(k, 0.0) for k in set(f.timings) | set(timings)}
        return replace(f, condition_estimate=kappa, fallback=reason, timings=t)
    second = gram(executor.share(R1))
    timings["blocks"] += second.block_seconds
    timings["gram"] += second.seconds
    return finish_cholqr2(R1, second, kappa, float(np.sqrt(first.sumsq)), timings)


def _add(a, b):
    return sum_grams([a, b])
