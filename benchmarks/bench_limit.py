"""Certified ``analyze`` against this machine's limit for the work its answer needs (issue 22).

    python benchmarks/bench_limit.py [--N 4000] [--n 32] [--d 16] [--repeat 3]
    python benchmarks/bench_limit.py --sweep [--repeat 1]      # N = 1000, 3000, 10000, n = 64, d = 32
    python benchmarks/bench_limit.py ... --stream off --max-memory 16G   # in memory (--no-stream)

The limit, timed in this process next to the analysis: M T exponentials (on every core, chunks
of 2^20 values on one thread per core; the faster of numpy's ``exp`` and the compiled exp of
``ntkcheck._compiled`` when numba is installed, the ratio to numpy's alone printed beside)
plus the flops 2 M d T (the scores) + 2 M N^2 (a Gram matrix of the M x N features and one
triangular product of the same size, or one Householder QR) at the GEMM rate measured here (a
2048^3 ``dgemm``, every BLAS thread).
M is the probe count the analysis used, T = N n the tokens. Then ``ntkcheck.analyze(...,
exact="never")`` on N sequences of n Gaussian tokens in R^d (dyadic values, as
``bench_large.py``), its stages timed from the progress messages. Printed: the medians over
``--repeat`` runs of the limit and of the analysis, their ratio, the median stage times, the
verdict with the dense test's mode (in memory or streamed), the BLAS threads
(``threadpoolctl``) and the 1-minute load before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from _common import StageClock
from bench_large import build


def exp_seconds(count: int, compiled: bool = False) -> float:
    """Wall time of ``count`` float64 exponentials on every core (one thread per core, each on
    chunks of 2^20 values, in place): numpy's ``exp``, or with ``compiled`` the vectorised exp
    of ntkcheck's compiled kernels (``ntkcheck._compiled``, numba; the one the features of
    large inputs use), after one untimed call that loads its machine code."""
    if compiled:
        from ntkcheck._compiled import _exp_array
        _exp_array(-np.ones(4), np.empty(4))  # loads (or compiles) its machine code
    cores = len(os.sched_getaffinity(0))
    chunk = 1 << 20
    bufs = [-np.abs(np.random.default_rng(k).normal(size=chunk)) for k in range(cores)]
    outs = [np.empty(chunk) for _ in range(cores)]  # the compiled exp vectorises out of place
    per = -(-count // cores)

    def work(k: int) -> None:
        buf, out, done = bufs[k], outs[k], 0
        while done < per:
            m = min(chunk, per - done)
            if compiled:
                _exp_array(buf[:m], out[:m])
            else:
                np.exp(buf[:m], out=out[:m])
            # in (-1e-3, 0) for the next pass: the compiled exp's domain
            np.multiply(out[:m], -1e-3, out=buf[:m])
            done += m

    t0 = time.perf_counter()
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(cores) as pool:
        list(pool.map(work, range(cores)))
    return time.perf_counter() - t0


def gemm_rate(size: int = 2048) -> float:
    """Flop/s of one size^3 dgemm with every BLAS thread (after one untimed call)."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(size, size)), rng.normal(size=(size, size))
    a @ b
    t0 = time.perf_counter()
    a @ b
    return 2.0 * size**3 / (time.perf_counter() - t0)


def limit(M: int, N: int, T: int, d: int) -> dict:
    """The limit with the faster of numpy's exp and the compiled one (when numba is installed:
    on a CPU without AVX-512 numpy's float64 exp has no SIMD path and the compiled one is
    about 4x faster), and with numpy's alone (``numpy_limit_s``, the first measure of issue 22)."""
    from ntkcheck._compiled import AVAILABLE
    rate = gemm_rate()
    e_np = exp_seconds(M * T)
    e = min(e_np, exp_seconds(M * T, compiled=True)) if AVAILABLE else e_np
    flops = 2.0 * M * d * T + 2.0 * M * N * N
    return {"exp_s": e, "gemm_rate": rate, "gemm_s": flops / rate, "limit_s": e + flops / rate,
            "numpy_limit_s": e_np + flops / rate}


def run_analyze(X, n: int, d: int, stream: bool | None = None,
                max_memory: str | None = None) -> dict:
    from ntkcheck.analysis import analyze
    from ntkcheck.resources import parse_memory

    clock = StageClock()
    r = analyze(X, exact="never", progress=clock, stream=stream,
                max_memory=None if max_memory is None else parse_memory(max_memory))
    total, stages = clock.finish()
    return {"total_s": total, "stages": stages, "M": int(r.settings.get("probes", 0)),
            "mode": r.settings.get("estimate", {}).get("mode", "?"),
            "verdict": f"{r.verdict}/{r.evidence}",
            "lower_bound": (r.verification or {}).get("lower_bound")}


def one_size(N: int, n: int, d: int, repeat: int, stream: bool | None = None,
             max_memory: str | None = None) -> dict:
    X = build(N, n, d, False)
    load0 = os.getloadavg()[0]
    runs, limits = [], []
    for _ in range(repeat):
        runs.append(run_analyze(X, n, d, stream, max_memory))
        limits.append(limit(runs[-1]["M"], N, N * n, d))
    names = list(dict.fromkeys(k for r in runs for k in r["stages"]))
    stages = {k: statistics.median(r["stages"].get(k, 0.0) for r in runs) for k in names}
    lim = statistics.median(x["limit_s"] for x in limits)
    lim_np = statistics.median(x["numpy_limit_s"] for x in limits)
    tot = statistics.median(r["total_s"] for r in runs)
    return {"N": N, "n": n, "d": d, "M": runs[0]["M"], "limit_s": lim,
            "numpy_limit_s": lim_np, "numpy_ratio": tot / lim_np,
            "exp_s": statistics.median(x["exp_s"] for x in limits),
            "gemm_gflops": statistics.median(x["gemm_rate"] for x in limits) / 1e9,
            "analyze_s": tot, "ratio": tot / lim, "stages": stages,
            "verdicts": sorted({f"{r['verdict']} ({r['mode']})" for r in runs}),
            "load": (load0, os.getloadavg()[0]), "runs": [r["total_s"] for r in runs]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=4000)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--sweep", action="store_true",
                    help="N = 1000, 3000, 10000 at n = 64, d = 32")
    ap.add_argument("--stream", choices=["auto", "on", "off"], default="auto",
                    help="the dense test streamed, in memory, or as analyze decides (default)")
    ap.add_argument("--max-memory", default=None, help="analyze's memory limit (e.g. 16G)")
    args = ap.parse_args()
    stream = {"auto": None, "on": True, "off": False}[args.stream]
    blas = [f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info()
            if i.get("user_api") == "blas"]
    print(f"BLAS: {', '.join(blas) or 'unknown'}; OPENBLAS_NUM_THREADS="
          f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}; cores "
          f"{len(os.sched_getaffinity(0))}; medians of {args.repeat} run(s)", flush=True)
    sizes = [(N, 64, 32) for N in (1000, 3000, 10000)] if args.sweep else [
        (args.N, args.n, args.d)]
    print("| N | n | d | M | limit s (exp + GEMM) | analyze s | ratio | ratio, numpy's exp | "
          "stages s | verdict | load before/after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for N, n, d in sizes:
        r = one_size(N, n, d, args.repeat, stream, args.max_memory)
        st = ", ".join(f"{k} {v:.2f}" for k, v in r["stages"].items() if v >= 0.05)
        print(f"| {N} | {n} | {d} | {r['M']} | {r['limit_s']:.2f} ({r['exp_s']:.2f} + "
              f"{r['limit_s'] - r['exp_s']:.2f} at {r['gemm_gflops']:.0f} GFLOP/s) | "
              f"{r['analyze_s']:.2f} | {r['ratio']:.1f} | {r['numpy_ratio']:.1f} | {st} | "
              f"{', '.join(r['verdicts'])} | "
              f"{r['load'][0]:.1f} / {r['load'][1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
