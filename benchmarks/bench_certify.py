"""Time and peak memory of the rigorous certificate (ntkcheck.injectivity.certify).

    python benchmarks/bench_certify.py [--sizes 100,1000,3000] [--n 32] [--d 8] [--repeat 1]
                                       [--arb-max-work 4e7]

Synthetic tokens (N sequences of n Gaussian tokens in R^d), probes as in `analyze`: whitened by
the pooled mean and covariance, M = max(2 (N + d + 1), 256) Gaussian probes over the scales
1, 3, 10, 30, rows weighted by 1/scale. Stages (wall clock, best of --repeat; peak traced memory
in a separate tracemalloc pass):

* ``float+qr``: the float feature matrix (Dataset.lse) plus a QR of [1, Z, F], the reference
  cost of the everyday numerical test;
* ``apriori``: the certificate with the a-priori enclosure on all M rows;
* ``apriori_sub`` / ``arb_sub``: the certificate on the first M' = N + d + 1 + 32 rows, Arb
  only when M' * N * n <= --arb-max-work (about 1.5 us per unit).
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc

import numpy as np
import scipy.linalg
from _common import measure

from ntkcheck import Dataset
from ntkcheck.injectivity.certify import certify_independence

SCALES = np.array([1.0, 3.0, 10.0, 30.0])


def probes(tokens: np.ndarray, M: int, seed: int = 0):
    pooled = tokens.reshape(-1, tokens.shape[-1])
    centre = pooled.mean(axis=0)
    lam, U = np.linalg.eigh(np.cov(pooled, rowvar=False))
    scale = SCALES[np.arange(M) % len(SCALES)]
    s = np.random.default_rng(seed).standard_normal((M, len(lam))) * scale[:, None]
    return s @ (U / np.sqrt(lam)).T, centre, 1.0 / scale


def run(N: int, n: int, d: int, repeat: int, arb_max: float) -> dict:
    rng = np.random.default_rng(N)
    tokens = rng.normal(size=(N, n, d))
    ds = Dataset.from_tokens(tokens)
    dists = list(ds.distributions)
    M = max(2 * (N + d + 1), 256)
    z, centre, weights = probes(tokens, M)
    sub = np.arange(N + d + 1 + 32)
    row = {"N": N, "M": M, "M_sub": sub.size}

    def float_qr():
        F = ds.lse(z) - (z @ centre)[:, None]
        A = np.column_stack([np.ones(M), z, F]) * weights[:, None]
        return scipy.linalg.qr(A, mode="r", check_finite=False)

    _, row["float+qr_s"], row["float+qr_mb"] = measure(float_qr, repeat)
    kw = {"centre": centre, "row_weights": weights}
    cert, row["apriori_s"], row["apriori_mb"] = measure(
        lambda: certify_independence(dists, z, method="a-priori", **kw), repeat)
    row["apriori_lb"] = cert.lower_bound
    cert, row["apriori_sub_s"], row["apriori_sub_mb"] = measure(
        lambda: certify_independence(dists, z, rows=sub, method="a-priori", **kw), repeat)
    row["apriori_sub_lb"] = cert.lower_bound
    if sub.size * N * n <= arb_max:
        # one timed run; tracing Arb's many small Python objects would take several times longer,
        # so its memory is traced only for small cases
        t0 = time.perf_counter()
        cert = certify_independence(dists, z, rows=sub, method="arb", **kw)
        row["arb_sub_s"] = time.perf_counter() - t0
        row["arb_sub_lb"] = cert.lower_bound
        row["arb_sub_mb"] = "-"
        if sub.size * N * n <= 5e6:
            tracemalloc.start()
            certify_independence(dists, z, rows=sub, method="arb", **kw)
            row["arb_sub_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    else:
        row["arb_sub_s"] = row["arb_sub_mb"] = row["arb_sub_lb"] = "skipped"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,3000")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--arb-max-work", type=float, default=4e7)
    args = ap.parse_args()
    cols = ["N", "M", "M_sub", "float+qr_s", "float+qr_mb", "apriori_s", "apriori_mb",
            "apriori_lb", "apriori_sub_s", "apriori_sub_mb", "apriori_sub_lb", "arb_sub_s",
            "arb_sub_mb", "arb_sub_lb"]
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else open(os.devnull) as fh:
        load = fh.read().split()[:3]
    print(f"# certify benchmark: n = {args.n} tokens, d = {args.d}; time in s, peak in MiB, "
          f"lb = certified lower bound on sigma_min; OPENBLAS_NUM_THREADS={threads}, "
          f"load {' '.join(load)}")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for N in (int(x) for x in args.sizes.split(",")):
        row = run(N, args.n, args.d, args.repeat, args.arb_max_work)
        cells = [f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
