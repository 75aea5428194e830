"""Data with many dependencies that only the dense test finds: the spectrum and the relation
re-check.

    python benchmarks/bench_relations.py [--N 300] [--K 40] [--n 8] [--d 4]
                                         [--spectrum full,partial]

N sequences of n Gaussian tokens in R^d (dyadic values), the first 3 K replaced by K
convolution triples (a, b, a * b) with a of 2 tokens and b of n / 2: LSE_(a*b) = LSE_a + LSE_b,
so K dependencies (no structural screen sees a convolution). ``ntkcheck.analyze(...,
exact="never", spectrum=...)`` for each spectrum mode, printing per mode: the wall time of
each stage (from the progress messages), the peak resident memory of the process so far
(``ru_maxrss``), the verdict and evidence, the relations reported against the K planted
ones, and the singular values computed. BLAS threads as set by the environment (printed).

The partial spectrum computes 32 triplets; with K > 32 it is widened to 128
(``ntkcheck.injectivity.spectrum.complete_tail``). Before that widening, K = 40 at N = 300 was
``inconclusive`` after 148 s (no candidate from a basis of part of the null space survived the
re-check), against ``not_injective`` with the 40 relations in 4 s with the full spectrum.
"""

from __future__ import annotations

import argparse
import resource

import numpy as np
from _common import StageClock
from threadpoolctl import threadpool_info


def build(N: int, K: int, n: int, d: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    grid = 2.0**10
    X = [np.round(rng.normal(size=(n, d)) * grid) / grid for _ in range(N)]
    for k in range(K):
        a = np.round(rng.normal(size=(2, d)) * grid) / grid
        b = np.round(rng.normal(size=(max(1, n // 2), d)) * grid) / grid
        X[3 * k], X[3 * k + 1], X[3 * k + 2] = a, b, (a[:, None] + b[None]).reshape(-1, d)
    return X


def run(X: list[np.ndarray], K: int, spectrum: str) -> dict:
    from ntkcheck.analysis import analyze

    clock = StageClock()
    r = analyze(X, exact="never", spectrum=spectrum, progress=clock)
    total, stages = clock.finish()
    planted = {frozenset({f"seq{3 * k}", f"seq{3 * k + 1}", f"seq{3 * k + 2}"})
               for k in range(K)}
    found = {frozenset(dep.coefficients) for dep in r.dependencies}
    return {"total": total, "stages": stages, "verdict": f"{r.verdict}/{r.evidence}",
            "relations": len(found), "planted_found": len(found & planted),
            "computed": int(r.singular_values.shape[0]),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--N", type=int, default=300)
    ap.add_argument("--K", type=int, default=40)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--d", type=int, default=4)
    ap.add_argument("--spectrum", default="full,partial")
    args = ap.parse_args()
    if 3 * args.K > args.N:
        ap.error("need N >= 3 K")
    blas = [f"{i.get('internal_api')} {i.get('num_threads')} threads" for i in threadpool_info()
            if i.get("user_api") == "blas"]
    print(f"N = {args.N}, K = {args.K} convolution triples, n = {args.n}, d = {args.d}; "
          f"BLAS: {', '.join(blas)}")
    X = build(args.N, args.K, args.n, args.d)
    print("| spectrum | total s | stages s | verdict | relations (planted found) | "
          "values computed | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for mode in args.spectrum.split(","):
        r = run(X, args.K, mode)
        stages = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items())
        print(f"| {mode} | {r['total']:.2f} | {stages} | {r['verdict']} | {r['relations']} "
              f"({r['planted_found']}/{args.K}) | {r['computed']} | {r['peak_rss_mib']:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
