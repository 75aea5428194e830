"""Structural screen at scale (SPEC §7): N sequences of n tokens in R^d with planted relations.

Run ``python benchmarks/bench_screen.py [N] [n] [d] [repeat] [--analyze]`` (defaults 100000 16 16
3). ``--analyze`` also runs the whole ``analyze`` (exact test off) first, in the same process,
and prints its verdict, evidence, dependency count, time and the process peak RSS after it:
the screen's relations decide ``not_injective``; the core's dense test (92k columns here)
does not fit the memory limit and is reported as not run.
Planted: permuted duplicates (some with repeated atoms merged against explicit weights), a
class of 40 duplicates, exact translates by dyadic shifts, float-computed translates
(numerical), near-translates perturbed by 1e-6 (must not match), exact Diracs. Prints the time
of :func:`screen` (median of ``repeat`` runs), its tracemalloc peak, the process peak RSS, and
checks that every planted relation is found with the right evidence.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
import tracemalloc

import numpy as np

from ntkcheck.dataset import Dataset
from ntkcheck.distributions import Discrete
from ntkcheck.injectivity.screen import screen


def build(N: int, n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    # dyadic atoms (multiples of 2^-20 below 2^4) so that dyadic shifts are exact
    tokens = [np.round(rng.normal(size=(n, d)) * 2.0**20) / 2.0**20 for _ in range(N)]
    weights: list = [None] * N
    k = N // 50
    slots = rng.permutation(np.arange(1, N))
    take = iter(slots)
    expect = {"exact": 0, "numerical": 0}
    for _ in range(k):  # permuted duplicates
        i, j = next(take), next(take)
        tokens[j] = tokens[i][rng.permutation(n)]
        expect["exact"] += 1
    for _ in range(k // 4):  # repeated atoms (uniform) against explicit weights 2, 1
        i, j = next(take), next(take)
        half = tokens[i][: n // 2]
        tokens[i] = np.concatenate([half, half[: n // 4]])
        order = rng.permutation(n // 2)
        tokens[j] = half[order]
        weights[j] = np.where(order < n // 4, 2.0, 1.0)
        expect["exact"] += 1
    for _ in range(k):  # exact dyadic translates
        i, j = next(take), next(take)
        tokens[j] = tokens[i] + rng.integers(-8, 8, size=d) / 4.0
        expect["exact"] += 1
    for _ in range(k):  # float-computed translates
        i, j = next(take), next(take)
        tokens[j] = tokens[i] + rng.normal(size=d) * np.pi
        expect["numerical"] += 1
    for _ in range(k):  # near-translates: no relation
        i, j = next(take), next(take)
        tokens[j] = tokens[i] + 0.5
        tokens[j][0, 0] += 1e-6
    for _ in range(k // 2):  # Diracs
        i = next(take)
        tokens[i] = np.repeat(tokens[i][:1], n, axis=0)
        expect["exact"] += 1
    for j in range(39):  # one class of 40 duplicates of sequence 0
        tokens[next(take)] = tokens[0][rng.permutation(n)]
        expect["exact"] += 1
    return Dataset.from_tokens(tokens, weights), expect


def main() -> None:
    argv = [a for a in sys.argv[1:] if a != "--analyze"]
    N, n, d, repeat = (int(a) for a in (argv + ["100000", "16", "16", "3"][len(argv):]))
    t0 = time.perf_counter()
    dataset, expect = build(N, n, d)
    t_build = time.perf_counter() - t0
    analyzed = True
    if "--analyze" in sys.argv:
        from ntkcheck import analyze

        t0 = time.perf_counter()
        r = analyze(dataset, exact="never")
        t_an = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
        print(f"analyze: {r.verdict} ({r.evidence}), {len(r.dependencies)} dependencies, "
              f"core {r.settings.get('core_size')} ({r.settings.get('core_verdict', 'run')}), "
              f"{t_an:.1f} s, process peak RSS {rss:.0f} MiB")
        print(f"  {r.reason[:300]}")
        analyzed = (r.verdict, r.evidence) == ("not_injective", "exact") and len(
            r.dependencies) == sum(expect.values())
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = screen(dataset)
        times.append(time.perf_counter() - t0)
    tracemalloc.start()
    screen(dataset)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    ev: dict[str, int] = {"exact": 0, "numerical": 0}
    for f in result.diracs:
        ev[f.evidence] += 1
    for c in result.classes:
        for e in c.evidence[1:]:
            ev[e] += 1
    print(f"N={N} n={n} d={d} T={N * n} tokens; dataset built in {t_build:.1f} s")
    print(f"screen: median {statistics.median(times):.2f} s over {repeat} runs "
          f"({', '.join(f'{t:.2f}' for t in times)}); tracemalloc peak {peak:.0f} MiB; "
          f"process peak RSS {rss:.0f} MiB")
    print(f"found {len(result.diracs)} Diracs, {len(result.classes)} classes "
          f"(largest {max((c.size for c in result.classes), default=0)}), "
          f"{result.reductions} reductions: {ev}; planted {expect}; core {len(result.core)}")
    ok = ev == expect and analyzed
    print("all planted relations found with the planted evidence" if ok else "MISMATCH")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
