"""Near-duplicate sets and their clean-up (SPEC §7; ``--suggest-drop``), and the cost of finding
every near pair.

Clean-up (default): ``python benchmarks/bench_neardup.py [BASES] [--fail-below M]`` (defaults
150 and 1e-4) builds an augmented corpus: BASES base sequences of 8 to 24 tokens drawn from a
Zipf vocabulary of 2000 embeddings in R^8, each with five augmented copies (``_swap`` a token
permutation: an exact duplicate; ``_del`` one token deleted; ``_rep`` one token replaced by
another vocabulary token, sometimes the same one: then a duplicate; ``_jit`` 1e-7 Gaussian
jitter: a near duplicate; ``_shift`` every token moved by one random vector: a translate),
writes it to a temporary ``.npz`` and runs the command line as a user would:

    ntkcheck analyze corpus.npz --fail-below M --write-clean clean.npz --json
    ntkcheck analyze clean.npz --json

printing for each the wall time, the verdict and evidence, the suggestion's rounds, how many
copies of each kind were dropped, and the near pairs and sets of the first report.

Pair search (``--pairs N1,N2,...``): :func:`ntkcheck.injectivity.pairs.near_pairs` on synthetic
N x N upper-triangular factors with unit columns, two shapes per N: ``generic`` (random
columns, 1 % of them planted 1e-6 near duplicates of an earlier column: the triangle prunes
almost every tile) and ``unpruned`` (every column 0.051 off the first axis: the triangle
skips no tile, yet columns are pairwise about 0.07 apart, so there are few pairs; the worst
case for time). Prints the wall and CPU time (the machine may be shared), the tracemalloc peak
of the search itself (R excluded) next to the 8 N^2 bytes of one N x N array, and the pairs
found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import numpy as np

KINDS = ("swap", "del", "rep", "jit", "shift")


def augmented_corpus(bases: int = 150, *, dim: int = 8, vocab: int = 2000, jitter: float = 1e-7,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """The arrays of a ragged ``.npz`` (tokens, offsets, names): ``bases`` base sequences
    ``sNNN`` and their copies ``sNNN_swap``, ``_del``, ``_rep``, ``_jit``, ``_shift`` (module
    docstring), in that order."""
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(vocab, dim))
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()
    seqs, names = [], []
    for b in range(bases):
        n = int(rng.integers(8, 25))
        ids = rng.choice(vocab, size=n, p=p)
        x = table[ids]
        rep = ids.copy()
        rep[int(rng.integers(n))] = int(rng.choice(vocab, p=p))
        copies = {"swap": x[rng.permutation(n)],
                  "del": np.delete(x, int(rng.integers(n)), axis=0),
                  "rep": table[rep],
                  "jit": x + jitter * rng.normal(size=x.shape),
                  "shift": x + rng.normal(size=dim)}
        seqs.append(x)
        names.append(f"s{b:03d}")
        for kind in KINDS:
            seqs.append(copies[kind])
            names.append(f"s{b:03d}_{kind}")
    lengths = np.array([len(s) for s in seqs])
    return {"tokens": np.concatenate(seqs), "offsets": np.concatenate([[0], np.cumsum(lengths)]),
            "names": np.array(names)}


def _cli(*args: str) -> tuple[dict, float, int]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "ntkcheck", "analyze", *args, "--json", "-q"],
                         capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    return json.loads(out.stdout), time.perf_counter() - t0, out.returncode


def cleanup(bases: int, margin: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        corpus, clean = Path(tmp) / "corpus.npz", Path(tmp) / "clean.npz"
        np.savez(corpus, **augmented_corpus(bases))
        print(f"augmented corpus: {bases} bases x 6 = {6 * bases} sequences in R^8")
        doc, seconds, code = _cli(str(corpus), "--fail-below", f"{margin:g}", "--write-clean",
                                  str(clean))
        near, s = doc["near_dependency"], doc["suggest_drop"]
        dropped = Counter(n.split("_")[1] if "_" in n else "base" for n in s["drop"])
        print(f"analyze --fail-below {margin:g} --write-clean: {seconds:.1f} s, exit {code}, "
              f"{doc['verdict']} ({doc['evidence']}); "
              f"{len(near['pairs']) + near['pairs_omitted']} near pairs "
              f"({len(near['pairs'])} listed), {len(near['sets'])} near sets")
        print(f"  suggestion: {s['rounds']} round(s) of at most {s['max_rounds']}, "
              f"success {s['success']}, dropped {len(s['drop'])}: "
              + ", ".join(f"{k} {dropped.get(k, 0)}" for k in ("base",) + KINDS)
              + f"; after: {s['after']['verdict']} ({s['after']['evidence']}) on "
              f"{s['after']['n_distributions']}")
        if not clean.exists():
            print("  clean file not written")
            return
        doc, seconds, code = _cli(str(clean))
        print(f"analyze clean.npz: {seconds:.1f} s, exit {code}, {doc['verdict']} "
              f"({doc['evidence']}), scaled smallest singular value "
              f"{doc['near_dependency']['scaled_smallest_singular_value']:.3g}")


def synthetic_factor(N: int, shape: str, seed: int = 0) -> np.ndarray:
    """An N x N upper-triangular factor with unit columns (module docstring), Fortran order."""
    rng = np.random.default_rng(seed)
    R = np.zeros((N, N), order="F")
    for j in range(N):
        v = rng.normal(size=j + 1)
        if shape == "unpruned":
            v[0] = 0.0
            v *= 0.051 / max(np.linalg.norm(v), 1e-300)
            v[0] = np.sqrt(1.0 - 0.051**2)
        else:
            v /= np.linalg.norm(v)
        R[: j + 1, j] = v
    if shape == "generic":
        for j in rng.choice(np.arange(1, N), size=N // 100, replace=False):
            i = int(rng.integers(j))
            v = R[:, i].copy()
            v[: j + 1] += 1e-6 * rng.normal(size=j + 1)
            R[:, j] = v / np.linalg.norm(v)
    return R


def pair_sweep(sizes: list[int]) -> None:
    from ntkcheck.injectivity.pairs import near_pairs

    print(f"{'N':>6} {'shape':>9} {'wall s':>8} {'cpu s':>8} {'peak MiB':>9} {'8 N^2 MiB':>10} "
          f"{'pairs':>7}")
    for N in sizes:
        for shape in ("generic", "unpruned"):
            R = synthetic_factor(N, shape)
            tracemalloc.start()
            t0, c0 = time.perf_counter(), time.process_time()
            found = near_pairs(R, limit=0.05)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            print(f"{N:>6} {shape:>9} {seconds:>8.2f} {cpu:>8.2f} {peak:>9.1f} "
                  f"{8 * N * N / 2**20:>10.0f} {found.total:>7}", flush=True)
            del R


def main(argv: list[str]) -> None:
    if "--pairs" in argv:
        k = argv.index("--pairs")
        pair_sweep([int(x) for x in argv[k + 1].split(",")])
        return
    margin = 1e-4
    if "--fail-below" in argv:
        k = argv.index("--fail-below")
        margin = float(argv[k + 1])
        del argv[k:k + 2]
    cleanup(int(argv[0]) if argv else 150, margin)


if __name__ == "__main__":
    main(sys.argv[1:])
