"""Features at vocabulary cost: token IDs + embedding table against the same data expanded to
tokens (``ntkcheck.vocabulary``, SPEC §3 step 3 at scale).

Run ``python benchmarks/bench_vocab.py [--small] [--threads K] [--analyze]``.

Corpus: N sequences of lengths uniform in [16, 128] whose IDs are drawn from a Zipf law
(p_v ~ 1 / (v + 1)^1.1) over V rows of a float32 table (d columns, N(0, 0.02^2)), with 1%
permuted duplicates and 0.1% Diracs planted; default V = 50 000, d = 256, N = 20 000 (``--small``:
V = 5 000, d = 64, N = 2 000). The corpus is written as ``input_ids`` + ``offsets`` (.npz) and
the table as ``.npy`` in a temporary directory.

Stages, each timed (wall clock) with its tracemalloc peak:

* ``load``: ``load_dataset(ids.npz, embeddings=table.npy)`` (read, validate, compact);
* ``screen``: the structural screen (integer ranks; Diracs, duplicates, translates);
* ``geometry``: equilibration, affine hull, whitening of the screen's core;
* ``features``: the LSE feature blocks of all M = 2 (N + d + 1) probes of the dense test
  (computed block by block and dropped, as the streamed test does before its QR fold).

The expanded path (one (n_i, d) float64 array per sequence, the generic ``Discrete`` code) runs
the same stages on the first N / ``--expanded-fraction`` sequences (default 4) and its
features on the first ``--expanded-probes`` probes (default 512); its times and memory are
scaled linearly to N and M (its cost is M T d and T d memory, both linear in N and M), and the
table says so. ``--analyze`` also runs the whole ``ntkcheck.analyze`` on the ID data (exact
test off) and prints its verdict, time and peak RSS (at the default size that is the dense
test of a 40 514 x 20 257 matrix: a long run).

Threads: BLAS (OpenBLAS, MKL, OpenMP) is limited to ``--threads`` (default 2) through the
environment variables set below before numpy is imported; the script prints them.
"""

from __future__ import annotations

import argparse
import os
import sys

ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ARGS.add_argument("--small", action="store_true", help="V=5000, d=64, N=2000")
ARGS.add_argument("--threads", type=int, default=2)
ARGS.add_argument("--expanded-fraction", type=int, default=4)
ARGS.add_argument("--expanded-probes", type=int, default=512)
ARGS.add_argument("--analyze", action="store_true", help="also run the whole analyze")
ARGS.add_argument("--seed", type=int, default=0)
OPTS = ARGS.parse_args()
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
for var in THREAD_VARS:
    os.environ[var] = str(OPTS.threads)

import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import ntkcheck as nk  # noqa: E402
from ntkcheck.dataset import Dataset  # noqa: E402
from ntkcheck.injectivity.features import centred_each  # noqa: E402
from ntkcheck.injectivity.probes import (auto_scales, make_probes, make_whitening,  # noqa: E402
                                         probe_settings)
from ntkcheck.injectivity.screen import core_dataset, screen  # noqa: E402
from ntkcheck.io import load_dataset  # noqa: E402

BLOCK = 1024  # probes per feature block


def corpus(V: int, d: int, N: int, seed: int):
    rng = np.random.default_rng(seed)
    table = (rng.standard_normal((V, d)) * 0.02).astype(np.float32)
    p = 1.0 / np.arange(1, V + 1) ** 1.1
    cdf = np.cumsum(p / p.sum())
    lengths = rng.integers(16, 129, N)
    ids = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), V - 1)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    seqs = [ids[offsets[i]:offsets[i + 1]] for i in range(N)]
    for _ in range(N // 100):  # permuted duplicates
        i, j = rng.integers(0, N, 2)
        seqs[j] = rng.permutation(seqs[i])
    for _ in range(max(1, N // 1000)):  # Diracs: one repeated ID
        i = rng.integers(0, N)
        seqs[i] = np.full(len(seqs[i]), seqs[i][0])
    lengths = np.array([len(s) for s in seqs])
    return table, np.concatenate(seqs), np.concatenate([[0], np.cumsum(lengths)])


def stage(fn):
    """(result, seconds, tracemalloc peak in bytes) of one call."""
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, tracemalloc.get_traced_memory()[1] - base


def features(dataset, probes, count: int) -> None:
    """The feature blocks of the first ``count`` probes (centred columns), dropped."""
    centred, _ = centred_each(dataset)
    for a in range(0, count, BLOCK):
        centred.lse(probes.z[a:min(count, a + BLOCK)])


def run_path(dataset_fn, n_probes: int | None):
    out = {}
    tracemalloc.start()
    ds, out["load"], mem = stage(dataset_fn)
    out["load_mem"] = mem
    scr, out["screen"], out["screen_mem"] = stage(lambda: screen(ds))
    core = core_dataset(ds, scr)
    geom, out["geometry"], out["geometry_mem"] = stage(lambda: make_whitening(core))
    scales, M = probe_settings(auto_scales(geom), None, len(core), core.dim)
    probes = make_probes(geom, M, scales, 0)
    count = M if n_probes is None else min(M, n_probes)
    _, out["features"], out["features_mem"] = stage(lambda: features(core, probes, count))
    tracemalloc.stop()
    out.update(M=M, probes_run=count, N=len(ds), core=len(core), reductions=scr.reductions,
               T=int(sum(len(d.weights) for d in ds.distributions)) if n_probes else None)
    return ds, out


def fmt_s(x: float) -> str:
    return f"{x:.3g} s" if x < 100 else f"{x:.0f} s"


def fmt_b(x: float) -> str:
    return f"{x / 2**20:.0f} MiB" if x < 2**30 else f"{x / 2**30:.2f} GiB"


def main() -> None:
    V, d, N = (5000, 64, 2000) if OPTS.small else (50000, 256, 20000)
    print(f"threads: {', '.join(f'{v}={os.environ[v]}' for v in THREAD_VARS)}; "
          f"cores usable: {len(os.sched_getaffinity(0))}")
    table, ids, offsets = corpus(V, d, N, OPTS.seed)
    T = len(ids)
    print(f"corpus: Zipf(1.1) IDs, V = {V}, d = {d}, N = {N}, lengths 16-128, T = {T} tokens, "
          f"{len(np.unique(ids))} rows used")
    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "ids.npz", input_ids=ids, offsets=offsets)
        np.save(Path(tmp) / "table.npy", table)
        ds, vocab = run_path(lambda: load_dataset(Path(tmp) / "ids.npz",
                                                  embeddings=str(Path(tmp) / "table.npy")), None)
    print(f"token IDs: N = {vocab['N']}, core {vocab['core']} ({vocab['reductions']} "
          f"reductions), M = {vocab['M']} probes")
    frac = OPTS.expanded_fraction
    sub = np.arange(0, N // frac)
    table64 = table.astype(np.float64)

    def expanded():
        return Dataset.from_tokens([table64[ids[offsets[i]:offsets[i + 1]]] for i in sub])

    _, exp = run_path(expanded, OPTS.expanded_probes)
    scale_n = N / len(sub)
    scale_m = vocab["M"] / exp["probes_run"] * (vocab["core"] / exp["core"])
    rows = []
    for key in ("load", "screen", "geometry", "features"):
        f = scale_n if key != "features" else scale_m
        e_t, e_m = exp[key] * f, exp[key + "_mem"] * (scale_n if key != "features" else 1)
        rows.append((key, vocab[key], vocab[key + "_mem"], e_t, e_m, e_t / vocab[key]))
    print()
    print(f"| stage | token IDs: time | token IDs: peak | expanded tokens: time | "
          f"expanded tokens: peak | time ratio |")
    print("|---|---|---|---|---|---|")
    for key, t1, m1, t2, m2, ratio in rows:
        print(f"| {key} | {fmt_s(t1)} | {fmt_b(m1)} | {fmt_s(t2)} | {fmt_b(m2)} | {ratio:.1f}x |")
    tot1 = sum(r[1] for r in rows)
    tot2 = sum(r[3] for r in rows)
    print(f"| total | {fmt_s(tot1)} | | {fmt_s(tot2)} | | {tot2 / tot1:.1f}x |")
    print()
    print(f"expanded tokens measured on {len(sub)} of {N} sequences ({exp['T']} tokens) and "
          f"{exp['probes_run']} of {exp['M']} probes; times scaled linearly to N = {N} and "
          f"M = {vocab['M']}, memory (load, screen, geometry) to N = {N}; the features' peak "
          "is per block. Peak = tracemalloc peak of the stage above what was held before it.")
    print(f"process peak RSS so far: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    if OPTS.analyze:
        t0 = time.perf_counter()
        r = nk.analyze(ds, exact="never")
        print(f"analyze (token IDs, exact test off): {r.verdict} [{r.evidence}], "
              f"{len(r.dependencies)} relations, {fmt_s(time.perf_counter() - t0)}, peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
