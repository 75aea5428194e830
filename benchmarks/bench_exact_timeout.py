"""Wall time of the exact test against its time limit, and the cost of the worker process.

    python benchmarks/bench_exact_timeout.py [--timeouts 1,5] [--repeat 3]

Two cases whose single factorisation takes far longer than the limits (so every run must be
stopped by the limit, SPEC §4 "never hang"):

* sympy: one bivariate law whose exp(LSE) is the product of two dense random polynomials of
  total degree 30 (degree 60, 1891 terms); sympy's multivariate factorisation needs minutes.
* python-flint: one 1-D law whose exp(LSE) is the Swinnerton-Dyer polynomial of
  2, 3, 5, ..., 23 shifted to positive coefficients (degree 512, irreducible, but split into
  factors of degree <= 2 modulo every prime): flint needs minutes.

For each engine and limit T it prints the median wall time of ``decide(..., timeout=T)`` (it
must stay below T + 2 s) and the stage reported. Then the per-call cost of the worker process
on a two-law case: ``decide(timeout=30)`` (child process) against ``decide()`` (in process).
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from fractions import Fraction

import numpy as np

from ntkcheck import Dataset, Discrete
from ntkcheck.exact import ExactRefused, decide


def product_case(k: int = 30, seed: int = 0) -> Dataset:
    """exp(LSE) proportional to F(t1, t2) G(t1, t2), F and G dense with coefficients 1..9."""
    rng = np.random.default_rng(seed)
    F = np.zeros((k + 1, k + 1), dtype=np.int64)
    G = np.zeros_like(F)
    for i, j in itertools.product(range(k + 1), repeat=2):
        if i + j <= k:
            F[i, j], G[i, j] = rng.integers(1, 10), rng.integers(1, 10)
    P = np.zeros((2 * k + 1, 2 * k + 1), dtype=np.int64)
    for i, j in zip(*np.nonzero(F)):
        P[i:i + k + 1, j:j + k + 1] += F[i, j] * G
    idx = np.argwhere(P > 0)
    law = Discrete(idx.astype(float), P[P > 0].astype(float))
    return Dataset(("product", "coin"), (law, Discrete([[0.0, 0.0], [1.0, 0.0]])))


def swinnerton_dyer(primes, shift: int) -> list[int]:
    """Coefficients (low to high) of prod over signs (x + shift - sum +-sqrt(p))."""
    P = [0, 1]
    for p in primes:
        A, B = [0] * len(P), [0] * len(P)  # P(x + s) = A + s B with s^2 = p
        for k, c in enumerate(P):
            for j in range(k + 1):
                term = c * math.comb(k, j) * p ** (j // 2)
                (A if j % 2 == 0 else B)[k - j] += term
        A2 = np.convolve(np.array(A, dtype=object), np.array(A, dtype=object)).tolist()
        B2 = np.convolve(np.array(B, dtype=object), np.array(B, dtype=object)).tolist()
        B2 += [0] * (len(A2) - len(B2))
        P = [a - p * b for a, b in zip(A2, B2)]
        while P[-1] == 0:
            P.pop()
    out = [0] * len(P)
    for k, c in enumerate(P):
        for j in range(k + 1):
            out[j] += c * math.comb(k, j) * shift ** (k - j)
    return out


def sd_case(n_primes: int = 9, shift: int = 60) -> Dataset:
    coeffs = swinnerton_dyer([2, 3, 5, 7, 11, 13, 17, 19, 23][:n_primes], shift)
    assert all(c > 0 for c in coeffs)
    total = sum(coeffs)
    exact_w = np.array([Fraction(c, total) for c in coeffs], dtype=object)
    atoms = np.arange(len(coeffs), dtype=float).reshape(-1, 1)
    law = Discrete(atoms, [float(w) for w in exact_w],
                   rational={"atoms": atoms.astype(object), "weights": exact_w})
    return Dataset(("sd", "coin"), (law, Discrete([[0.0], [1.0]])))


def timed(ds: Dataset, engine: str, timeout: float) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        decide(ds, engine=engine, timeout=timeout)
        outcome = "decided (the case was not slow enough)"
    except ExactRefused as err:
        outcome = f"{err.kind}: {err.reason}"
    return time.perf_counter() - t0, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeouts", default="1,5")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    limits = [float(x) for x in args.timeouts.split(",")]
    with open("/proc/loadavg") as fh:
        print(f"load average: {fh.read().split()[0]}")
    cases = {"sympy": product_case(), "flint": sd_case()}
    for engine, ds in cases.items():
        for T in limits:
            runs = [timed(ds, engine, T) for _ in range(args.repeat)]
            walls = [w for w, _ in runs]
            print(f"{engine:6s} T = {T:g} s: median wall {statistics.median(walls):.3f} s "
                  f"(max {max(walls):.3f} s, bound T + 2 = {T + 2:g} s)")
            print(f"       {runs[-1][1][:150]}")
    small = Dataset(("binom", "coin"), (Discrete([[0.0], [1.0], [2.0]], [1.0, 2.0, 1.0]),
                                        Discrete([[0.0], [1.0]])))
    for engine in cases:
        decide(small, engine=engine, timeout=30)
        inproc, child = [], []
        for _ in range(30):
            t0 = time.perf_counter()
            decide(small, engine=engine)
            inproc.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            decide(small, engine=engine, timeout=30)
            child.append(time.perf_counter() - t0)
        print(f"{engine:6s} two-law case: in process {1e3 * statistics.median(inproc):.1f} ms, "
              f"in a worker process {1e3 * statistics.median(child):.1f} ms (medians of 30)")


if __name__ == "__main__":
    main()
