"""Time and peak memory of `analyze`, end to end and per stage, on synthetic token datasets.

    python benchmarks/bench_analyze.py [--sizes 100,1000,3000] [--n 32] [--d 8]

Each stage is timed on its own (wall clock, best of --repeat) and its peak traced memory is
measured in a separate pass with tracemalloc (numpy reports its allocations to tracemalloc),
so the timing is not slowed by tracing. Stages: pack (tokens -> Dataset), whiten, features
(probes + LSE matrix + projection), svd (QR + SVD of F_perp), end-to-end `analyze` (which adds
the pre-screen and, when needed, a confirmation draw).
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import measure

from ntkcheck import Dataset
from ntkcheck.analysis import analyze
from ntkcheck.injectivity.probes import default_probe_count, make_probes, make_whitening
from ntkcheck.injectivity.features import feature_matrix
from ntkcheck.injectivity.spectrum import svd_spectrum


def run(N: int, n: int, d: int, repeat: int) -> dict:
    rng = np.random.default_rng(N)
    tokens = rng.normal(size=(N, n, d))
    row: dict = {"N": N, "M": default_probe_count(N, d)}
    ds, row["pack_s"], row["pack_mb"] = measure(lambda: Dataset.from_tokens(tokens), repeat)
    white, row["whiten_s"], row["whiten_mb"] = measure(lambda: make_whitening(ds), repeat)
    probes = make_probes(white, row["M"])
    feats, row["features_s"], row["features_mb"] = measure(
        lambda: feature_matrix(ds, white, probes), repeat)
    _, row["svd_s"], row["svd_mb"] = measure(lambda: svd_spectrum(feats), repeat)
    res, row["total_s"], row["total_mb"] = measure(
        lambda: analyze(Dataset.from_tokens(tokens)), repeat)
    row["verdict"] = f"{res.verdict}/{res.evidence}"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,1000,3000")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    cols = ["N", "M", "pack_s", "whiten_s", "features_s", "features_mb", "svd_s", "svd_mb",
            "total_s", "total_mb", "verdict"]
    print(f"# analyze benchmark: n = {args.n} tokens, d = {args.d}; time in s, peak in MiB")
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for N in (int(x) for x in args.sizes.split(",")):
        row = run(N, args.n, args.d, args.repeat)
        cells = [f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        print("| " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
