"""Fuzz the decision for false claims: random datasets whose truth is known by construction.

    python benchmarks/fuzz_claims.py [--cases 300] [--seed 0]

Each case draws generic token sequences (random N, n, d; random per-coordinate units from
1e-8 to 1e8, a random overall scale from 1e-200 to 1e200, optionally tight clusters far apart
and a near-Dirac sequence), then plants zero or more of: a permuted duplicate, an exact
translate (dyadic data and shift), a Dirac mass, a dense convolution relation
(Binomial(2, 1/2) = Bernoulli(1/2) * Bernoulli(1/2) along a random axis), and near-translates
(one atom moved by 1e-8 relative: independent). The truth is "dependent" iff something exact
was planted. A *false claim* is: `not_injective` on independent data, `injective` on dependent
data, or a printed relation whose misfit at fresh points (evaluated independently in 50-digit
mpmath, affine part solved for) exceeds 1e-10 relative. `inconclusive` is never false.
Prints the counts per verdict and every false claim; exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import sys
import time

import mpmath
import numpy as np

from ntkcheck import Dataset, Discrete, analyze


def oracle_misfit(dataset: Dataset, dep, rng: np.random.Generator, scale: float) -> float:
    """Relative misfit of sum c_i LSE_i - (a + <b, z>) at 6 fresh points after solving (a, b)
    at d + 1 others, in 50-digit arithmetic on the stored doubles."""
    index = {n: i for i, n in enumerate(dataset.names)}
    d = dataset.dim
    with mpmath.workdps(50):
        def lse(dist, z):
            s = [mpmath.fsum(mpmath.mpf(float(a)) * b for a, b in zip(y, z))
                 + mpmath.log(mpmath.mpf(float(w))) for y, w in zip(dist.atoms, dist.weights)]
            top = max(s)
            return top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in s))
        pts = [[mpmath.mpf(float(x)) for x in rng.normal(size=d) * scale] for _ in range(d + 7)]
        vals, sizes = [], []
        for z in pts:
            terms = [(mpmath.mpf(c), lse(dataset.distributions[index[n]], z))
                     for n, c in dep.coefficients.items()]
            vals.append(mpmath.fsum(c * v for c, v in terms))
            sizes.append(mpmath.fsum(abs(c * v) for c, v in terms) + 1)
        # columns scaled to O(1) (mpmath's LU judges singularity in absolute terms)
        A = mpmath.matrix([[1] + [x / scale for x in z] for z in pts[: d + 1]])
        ab = mpmath.lu_solve(A, mpmath.matrix(vals[: d + 1]))
        worst = 0.0
        for z, v, s in zip(pts[d + 1:], vals[d + 1:], sizes[d + 1:]):
            fit = ab[0] + mpmath.fsum(ab[l + 1] * z[l] / scale for l in range(d))
            worst = max(worst, float(abs(v - fit) / s))
    return worst


def make_case(rng: np.random.Generator):
    N = int(rng.integers(6, 25))
    n = int(rng.integers(3, 8))
    d = int(rng.integers(1, 5))
    dyadic = rng.random() < 0.5
    if dyadic:
        X = rng.integers(-64, 64, size=(N, n, d)) / 16.0
    else:
        X = rng.normal(size=(N, n, d))
    seqs = [x for x in X]
    planted = []
    if rng.random() < 0.3:  # tight clusters far apart
        for i in range(N):
            seqs[i] = seqs[i] * 1e-3 + rng.normal(size=d) * 10.0 ** rng.integers(0, 4)
        if dyadic:
            seqs = [np.round(s * 2**20) / 2**20 for s in seqs]
    if rng.random() < 0.2:  # a resolved near-Dirac (independent)
        seqs[0] = seqs[0][:1] + 1e-7 * rng.normal(size=(n, d))
    if rng.random() < 0.3:
        j = int(rng.integers(len(seqs)))
        seqs.append(seqs[j][rng.permutation(len(seqs[j]))])
        planted.append("duplicate")
    if dyadic and rng.random() < 0.3:
        j = int(rng.integers(len(seqs)))
        seqs.append(seqs[j] + rng.integers(-8, 8, size=d) / 4.0)  # exact in binary64
        planted.append("translate")
    if rng.random() < 0.2:
        seqs.append(np.repeat(rng.normal(size=(1, d)) * 3, n, axis=0))
        planted.append("dirac")
    if rng.random() < 0.3:  # near-translate: independent
        j = int(rng.integers(len(seqs)))
        moved = seqs[j] + 0.5
        moved[0, 0] += 1e-8 * (1 + abs(moved[0, 0]))
        seqs.append(moved)
    dists = [Discrete(s) for s in seqs]
    if rng.random() < 0.25:  # dense relation along a random axis
        axis = rng.integers(-4, 5, size=d) / 4.0  # dyadic: the relation is exact in binary64
        axis[0] = 1.0
        base = rng.integers(-8, 8, size=d) / 4.0
        dists.append(Discrete(np.array([base, base + axis, base + 2 * axis]),
                              [0.25, 0.5, 0.25]))
        dists.append(Discrete(np.array([base, base + axis])))
        planted.append("convolution")
    # units per coordinate and an overall scale (exact powers of ten are not exact in binary64:
    # applied to every distribution alike, so duplicates stay duplicates; translates and the
    # dense relation then hold only up to rounding, so rescaling is skipped when they exist)
    if not ({"translate", "convolution"} & set(planted)):
        units = 10.0 ** rng.integers(-8, 9, size=d) * 10.0 ** float(rng.integers(-200, 201))
        dists = [Discrete(dd.atoms * units, dd.weights) for dd in dists]
    names = [f"s{i}" for i in range(len(dists))]
    return Dataset(tuple(names), tuple(dists)), planted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="print every inconclusive reason")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    counts: dict[str, int] = {}
    false = []
    start = time.perf_counter()
    for case in range(args.cases):
        ds, planted = make_case(rng)
        try:
            r = analyze(ds, exact="never", seed=int(rng.integers(0, 100)))
        except Exception as err:  # noqa: BLE001 - a crash is reported, not hidden
            false.append((case, f"crash: {type(err).__name__}: {err}"))
            continue
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
        if args.verbose and r.verdict == "inconclusive":  # never false, but worth reading
            print(f"  case {case} inconclusive ({planted}): {r.reason[:300]}")
        dependent = bool(planted)
        if r.verdict == "not_injective" and not dependent:
            false.append((case, f"not_injective on independent data: {r.reason[:200]}"))
        if r.verdict == "injective" and dependent:
            false.append((case, f"injective on dependent data ({planted}): {r.reason[:200]}"))
        spread = max(float(np.abs(dd.atoms - dd.atoms.mean(axis=0)).max())
                     for dd in ds.distributions) or 1.0
        for dep in r.dependencies:
            misfit = oracle_misfit(ds, dep, rng, 1.0 / spread)
            if misfit > 1e-10:
                false.append((case, f"relation {dep.describe(4)} misfit {misfit:.2g}"))
    secs = time.perf_counter() - start
    print(f"{args.cases} cases in {secs:.0f} s: " + ", ".join(f"{k} {v}" for k, v in
                                                          sorted(counts.items())))
    print(f"false claims: {len(false)}")
    for case, what in false:
        print(f"  case {case}: {what}")
    return 1 if false else 0


if __name__ == "__main__":
    sys.exit(main())
