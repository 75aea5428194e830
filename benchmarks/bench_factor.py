"""Streaming factorisation against the in-memory QR: time, rate and peak memory.

Run ``python benchmarks/bench_factor.py [N ...]`` (default N = 500 1000 2000, M = 4 N rows in
blocks of 512). For each N: in-memory LAPACK QR (``numpy.linalg.qr``, matrix held whole), the
Householder fold (``dtpqrt``), CholeskyQR2 and the local backend with 2 workers; the rate
counts the 2 M N^2 flops of a Householder QR of the whole matrix, so it compares algorithms
on the same work. Blocks are slices of one random matrix (their memory is not counted in the
fold's peak, which is R and the block copies).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import tracemalloc

import numpy as np

from ntkcheck.backends.local import fold_local
from ntkcheck.injectivity.factor import fold_blocks
from ntkcheck.injectivity.estimate import measure_rates


def timed(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, statistics.median(times), peak


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [500, 1000, 2000]
    print(f"load {open('/proc/loadavg').read().split()[:3]}, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    r = measure_rates()
    print(f"measured: GEMM {r.gemm / 1e9:.1f} GFLOP/s, dtpqrt (1 thread) {r.tpqrt / 1e9:.1f} "
          f"GFLOP/s, exp {r.exp / 1e6:.0f} M/s")
    print(f"{'N':>6} {'method':>22} {'seconds':>8} {'GFLOP/s':>8} {'peak MiB':>9} "
          f"{'max|ds|/s1':>11}")
    for N in sizes:
        M, b = 4 * N, 512
        A = np.random.default_rng(N).normal(size=(M, N))
        blocks = [A[i:i + b] for i in range(0, M, b)]
        flops = 2.0 * M * N**2
        ref = np.linalg.svd(np.linalg.qr(A, mode="r"), compute_uv=False)
        runs = {
            "in-memory numpy qr": lambda: np.linalg.qr(A, mode="r"),
            "householder fold": lambda: fold_blocks(blocks, N, "householder").R,
            "cholqr2": lambda: fold_blocks(blocks, N, "cholqr2").R,
            "local, 2 workers": lambda: fold_local(lambda k: blocks[k], len(blocks), N,
                                                   method="householder", workers=2).R,
        }
        for name, fn in runs.items():
            R, t, peak = timed(fn)
            err = np.abs(np.linalg.svd(R, compute_uv=False) - ref).max() / ref[0]
            print(f"{N:>6} {name:>22} {t:>8.3f} {flops / t / 1e9:>8.2f} {peak:>9.1f} {err:>11.1e}")


if __name__ == "__main__":
    main()
