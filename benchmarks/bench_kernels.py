"""Time and peak memory of the kernels of SPEC §5 on synthetic token datasets.

    python benchmarks/bench_kernels.py [--sizes 1000] [--n 32] [--d 8] [--probe-factors 1,4]
                                       [--kernels qk,value,full,gram] [--no-memory]

The reference size of the query-key kernel is ``--sizes 1000 --n 64 --d 32 --probe-factors 1
--kernels qk`` (README, "Cost of a spectrum"); ``--no-memory`` skips the traced pass.

For each N (sequences of n Gaussian tokens in R^d) and each kernel (qk, value, full, gram) the
script times ``kernel_spectrum`` (wall clock, best of --repeat) and measures its peak traced
memory in a separate pass with tracemalloc (numpy reports its allocations). ``--probe-factors``
multiplies the default probe count M = max(2 (N + d + 1), 256): with chunking the peak memory of
qk / value / full must not grow with M (the unchunked (M, N, d, d) Hessian array is printed for
comparison), while gram holds the (M, N) feature matrix by design.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from _common import measure

from ntkcheck import Dataset
from ntkcheck.injectivity.probes import default_probe_count
from ntkcheck.kernels import Kernel
from ntkcheck.kernel_spectrum import kernel_spectrum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000", help="comma-separated N values")
    parser.add_argument("--n", type=int, default=32, help="tokens per sequence")
    parser.add_argument("--d", type=int, default=8, help="token dimension")
    parser.add_argument("--probe-factors", default="1,4",
                        help="multiples of the default probe count")
    parser.add_argument("--kernels", default="qk,value,full,gram", help="kernels to time")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the tracemalloc pass (it repeats the computation)")
    args = parser.parse_args()
    header = (f"{'N':>6} {'kernel':>6} {'M':>6} {'time_s':>8} {'peak_MiB':>9} "
              f"{'unchunked_MiB':>14} {'lambda_min':>11} {'cond':>9}")
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    print(f"threads: NTKCHECK_NUM_THREADS={os.environ.get('NTKCHECK_NUM_THREADS', '-')} "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', '-')}, cpus "
          f"{os.cpu_count()}, load {load}")
    print(header)
    for N in (int(x) for x in args.sizes.split(",")):
        rng = np.random.default_rng(N)
        ds = Dataset.from_tokens(list(rng.normal(size=(N, args.n, args.d))))
        ds.pooled_moments  # cached once; not part of the kernel cost
        for factor in (float(x) for x in args.probe_factors.split(",")):
            M = int(factor * default_probe_count(N, args.d))
            unchunked = M * N * args.d * args.d * 8 / 2**20
            for kernel in (Kernel(k) for k in args.kernels.split(",")):
                spec, seconds, peak = measure(
                    lambda: kernel_spectrum(ds, kernel, probes=M), args.repeat,
                    trace=not args.no_memory)
                print(f"{N:>6} {kernel.value:>6} {M:>6} {seconds:>8.2f} {peak:>9.1f} "
                      f"{unchunked:>14.0f} {spec.min_eigenvalue:>11.3g} "
                      f"{spec.condition_number:>9.3g}", flush=True)


if __name__ == "__main__":
    main()
