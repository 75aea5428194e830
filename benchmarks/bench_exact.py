"""Time and peak memory of the exact test (SPEC §4) on digit-image-like data, flint vs sympy.

    python benchmarks/bench_exact.py [--sizes 250,2000] [--grid 8] [--sympy-sizes 250,2000]

Each distribution is a discrete law on the points of a grid x grid integer grid (d = 2) with
small integer weights (0..16, about half the pixels lit, like the 8 x 8 digit images), so D = 1
and each exp(LSE) is a bivariate polynomial of degree <= grid - 1 in each variable. Stages, as
timed inside :func:`ntkcheck.exact.decide`: rationals (exact parameters, polynomials, budget
check), factor (one factorisation per distinct polynomial), rank (peeling + exact elimination
of the core of E), verify (50-digit re-check of the dependencies). Peak memory is measured by
tracemalloc (python-flint's C allocations are not traced; the figure is the
Python-side peak) in a second, traced run; the times come from the untraced run.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from fractions import Fraction

import numpy as np

from ntkcheck import Dataset, Discrete
from ntkcheck.exact import ExactBudget, decide


def digit_like(N: int, grid: int, seed: int = 0, duplicates: int = 2) -> Dataset:
    """N discrete laws on a grid x grid image, integer pixel weights; the last ``duplicates``
    copy earlier images with their atoms translated by (1, 0), so the answer is known:
    ``duplicates`` exact dependencies (translates, SPEC §2)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:grid, 0:grid]
    pts = np.column_stack([xs.ravel(), ys.ravel()]).astype(float)
    dists = []
    for i in range(N - duplicates):
        w = rng.integers(0, 17, size=grid * grid) * (rng.random(grid * grid) < 0.5)
        if w.sum() == 0:
            w[0] = 1
        # integer weights are normalised in float; keep the exact ones through .rational
        keep = w > 0
        rational = {"atoms": np.array([[Fraction(int(a)) for a in p] for p in pts[keep]],
                                      dtype=object),
                    "weights": np.array([Fraction(int(x)) for x in w[keep]], dtype=object)}
        dists.append(Discrete(pts[keep], w[keep].astype(float), rational=rational))
    for j in range(duplicates):
        src = dists[j]
        shifted = {"atoms": src.rational["atoms"] + np.array([1, 0], dtype=object),
                   "weights": src.rational["weights"]}
        dists.append(Discrete(src.atoms + [1.0, 0.0], src.weights, rational=shifted))
    return Dataset(tuple(f"img{i}" for i in range(N)), tuple(dists))


def run(N: int, grid: int, engine: str, memory: bool = True) -> dict:
    ds = digit_like(N, grid)
    t0 = time.perf_counter()
    res = decide(ds, engine=engine, budget=ExactBudget())
    wall = time.perf_counter() - t0
    peak = float("nan")
    if memory:  # a second, traced pass: tracemalloc slows pure-Python stages several-fold
        tracemalloc.start()
        decide(ds, engine=engine, budget=ExactBudget())
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return {"engine": engine, "N": N, "grid": grid, "wall_s": wall, "peak_mb": peak,
            **{f"{k}_s": v for k, v in res.timings.items() if k != "total"},
            "K": res.shape[1], "rank": res.rank, "deps": len(res.dependencies),
            "peeled": len(res.pivots), "core": len(res.core_rows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="250,2000", help="N for python-flint")
    ap.add_argument("--sympy-sizes", default="250,2000", help="N for sympy")
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--no-memory", action="store_true", help="skip the traced memory pass")
    args = ap.parse_args()
    cols = ["engine", "N", "grid", "rationals_s", "factor_s", "rank_s", "verify_s", "wall_s",
            "peak_mb", "K", "rank", "deps", "peeled", "core"]
    print(" ".join(f"{c:>11}" for c in cols))
    plan = []
    try:
        import flint  # noqa: F401
        plan += [("flint", int(n)) for n in args.sizes.split(",") if n]
    except ImportError:
        print("python-flint not installed: flint rows skipped")
    plan += [("sympy", int(n)) for n in args.sympy_sizes.split(",") if n]
    for engine, N in plan:
        row = run(N, args.grid, engine, memory=not args.no_memory)
        print(" ".join(f"{row[c]:>11.3f}" if isinstance(row[c], float) else f"{row[c]:>11}"
                       for c in cols), flush=True)


if __name__ == "__main__":
    main()
