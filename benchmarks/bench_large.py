"""Size sweep of ``analyze`` (SPEC §7): N sequences of n tokens in R^d, per stage time and peak
memory, against the exp + GEMM time of the same probe count.

Run ``python benchmarks/bench_large.py [N ...] [--n 64] [--d 32] [--stream auto|on|off]
[--planted] [--zipf] [--integer R] [--exact auto|never]`` (default N = 1000 3000 10000), or
``python benchmarks/bench_large.py --factor-only N n d [--planted]`` for the streamed features,
factorisation and SVD alone. Each N runs in its own subprocess (a clean peak
RSS). Printed per N: the stage times (from the ``progress`` callback's timestamps: screen,
geometry, features (+ factorisation when streamed), SVD / decision steps, certificate,
confirmation draw), the total, the process peak RSS, the estimate made before the dense test,
and the ratio of the features stage to the measured time of its exponentials and GEMMs
(the scores z @ atoms, 2 M T d flops, and exp of the M x T scores, in row chunks), for the
probe count M the analysis used.

Estimate against measurement: every stage the estimate names (features, QR, SVD or partial
spectrum, summary, rigorous certificate, exact test) is printed with its estimated and measured
seconds, and the process's peak memory (``peak_resident_bytes``, resident size at the plan plus
the largest stage) against its measured peak RSS, the certificate's memory against the growth
of the RSS during it, and the exact test's process memory against the child's peak RSS growth.
``--exact auto`` (the default) runs the exact test as ``analyze`` does; the default Gaussian
tokens (dyadic, 2^-10) make it refuse at once on its degree budget, ``--integer R`` (tokens
drawn from the integers -R..R) makes it run in full.

``--zipf`` replaces the Gaussian tokens by a text-like set (:func:`build_zipf`: token ids
drawn from a Zipf law over a vocabulary of 5000 embedded in d = 256, lengths 16-128).
``--planted`` plants 1% duplicates (token order shuffled), one translate, one Dirac and one
convolution triple (c = a * b on 8 + 8 atoms, 64 tokens: LSE_c = LSE_a + LSE_b, which only the
dense test can find), with dyadic token values so the relations are exact on the stored values.
State ``OPENBLAS_NUM_THREADS`` and the load when quoting the figures.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def build(N: int, n: int, d: int, planted: bool, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    X = [np.round(rng.normal(size=(n, d)) * 2.0**10) / 2.0**10 for _ in range(N)]
    if planted:
        half = n // 8  # a and b with n / 8 atoms each: a * b has n^2 / 64 = n atoms for n = 64
        a = np.round(rng.normal(size=(half, d)) * 2.0**10) / 2.0**10
        b = np.round(rng.normal(size=(n // half, d)) * 2.0**10) / 2.0**10
        X[0], X[1] = a, b
        X[2] = (a[:, None, :] + b[None, :, :]).reshape(-1, d)
        X[3] = np.zeros((1, d)) + 0.5  # a Dirac mass
        X[4] = X[5] + 0.25  # an exact dyadic translate
        for k in range(N // 100):  # duplicates with shuffled token order
            i, j = 6 + 2 * k, 7 + 2 * k
            X[j] = X[i][rng.permutation(len(X[i]))]
    return X


def build_zipf(N: int, vocab: int = 5000, d: int = 256, lengths: tuple[int, int] = (16, 128),
               exponent: float = 1.0, seed: int = 0) -> list[np.ndarray]:
    """A text-like set: a vocabulary of ``vocab`` token embeddings in R^d (dyadic Gaussian
    entries / sqrt(d)), N sequences of uniform length in ``lengths`` whose token ids follow a
    Zipf law P(rank r) ~ r^-exponent (so frequent tokens repeat within and across sequences)."""
    rng = np.random.default_rng(seed)
    emb = np.round(rng.normal(size=(vocab, d)) / np.sqrt(d) * 2.0**10) / 2.0**10
    p = 1.0 / np.arange(1, vocab + 1) ** exponent
    p /= p.sum()
    sizes = rng.integers(lengths[0], lengths[1] + 1, size=N)
    ids = rng.choice(vocab, size=int(sizes.sum()), p=p)
    cuts = np.cumsum(sizes)[:-1]
    return [emb[chunk] for chunk in np.split(ids, cuts)]


def exp_gemm_seconds(X: list[np.ndarray], M: int, d: int, seed: int = 1) -> float:
    """Wall time of the scores Z @ atoms^T and their exponentials for M probes, the arithmetic
    floor of the feature matrix, run as fast as this machine allows: tiles of 256 probes x
    16384 atoms (GEMMs, not GEMVs), one tile per core at a time with BLAS on one thread each
    (the exponentials are single-threaded in numpy, so the cores are shared that way)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    atoms = np.concatenate(X)
    T = atoms.shape[0]
    z = np.random.default_rng(seed).normal(size=(M, d))
    tiles = [(a, b) for a in range(0, M, 256) for b in range(0, T, 16384)]

    def tile(ab):
        a, b = ab
        s = z[a:a + 256] @ atoms[b:b + 16384].T
        np.exp(s, out=s)

    workers = len(os.sched_getaffinity(0))
    t0 = time.perf_counter()
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        list(pool.map(tile, tiles))
    return time.perf_counter() - t0


def feature_blocks_seconds(X: list[np.ndarray], settings: dict) -> float:
    """Wall time of the streamed feature blocks alone ([omega [1, s] | omega F] and their
    error-model sums, ``ntkcheck.injectivity.features.FeatureBlocks``) for the analysis' probes, without
    folding them (the streamed stage times both together)."""
    from ntkcheck import Dataset
    from ntkcheck.injectivity.features import FeatureBlocks, centred_each
    from ntkcheck.injectivity.probes import make_probes, make_whitening
    from ntkcheck.injectivity.screen import core_dataset, screen

    full = Dataset.from_tokens(X)
    ds = core_dataset(full, screen(full))
    geom = make_whitening(ds)
    probes = make_probes(geom, settings["probes"], settings["scales"], settings["seed"])
    blocks = FeatureBlocks(centred_each(ds)[0], probes, settings["stream"]["block_rows"], None)
    t0 = time.perf_counter()
    for k in range(blocks.n_blocks):
        blocks.evaluate(k)
    return time.perf_counter() - t0


def plain_qr_seconds(M: int, N: int, repeats: int = 3) -> dict:
    """A control for the ``QR`` stage: wall times of ``scipy.linalg.qr(A, mode="r")`` of a
    random M x N matrix (the stage's shape), ``repeats`` times on the process's BLAS threads
    and ``repeats`` times on one thread, each with the 1-minute load average before it. When
    the multi-threaded control is as slow as the stage while the one-thread one is fast, the
    stage was slowed by the machine (threads waiting on each other), not mis-estimated."""
    import scipy.linalg
    from threadpoolctl import threadpool_info, threadpool_limits

    A = np.random.default_rng(1).normal(size=(M, N))
    threads = max((i.get("num_threads", 1) for i in threadpool_info()
                   if i.get("user_api") == "blas"), default=1)
    out: dict = {"shape": [M, N], "threads": threads}
    for label, limit in (("process", None), ("one_thread", 1)):
        runs = []
        for _ in range(repeats):
            load = os.getloadavg()[0]
            with threadpool_limits(limit, user_api="blas"):
                t0 = time.perf_counter()
                scipy.linalg.qr(A, mode="r", check_finite=False)
                runs.append((time.perf_counter() - t0, load))
        out[label] = runs
    return out


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _child_growth(rss_at_start: int | None) -> int | None:
    """Peak RSS of the exact test's child process beyond what it inherited: the children's
    peak RSS minus this process's RSS when the exact test started (the child's inherited
    pages count in its RSS; an earlier child, the estimate's sample, is smaller)."""
    if rss_at_start is None:
        return None
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return max(child - rss_at_start, 0)


def build_integer(N: int, n: int, d: int, R: int, seed: int = 0) -> list[np.ndarray]:
    """Tokens drawn uniformly from the integers -R..R: the exact test runs in full (D = 1)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(-R, R + 1, size=(n, d)).astype(float) for _ in range(N)]


def one(N: int, n: int, d: int, stream: str, planted: bool, zipf: bool = False,
        exact: str = "never", integer: int = 0) -> dict:
    import threading

    from ntkcheck.analysis import analyze

    X = (build_zipf(N, d=d) if zipf else build_integer(N, n, d, integer) if integer
         else build(N, n, d, planted))
    marks: list[tuple[float, str]] = []
    samples: list[tuple[float, int]] = []
    estimate: dict = {}
    stop = threading.Event()
    t0 = time.perf_counter()

    def sampler():
        while not stop.wait(0.05):
            samples.append((time.perf_counter() - t0, _rss()))

    def say(msg):
        if getattr(msg, "kind", "") == "estimate":
            estimate.update(msg.data, at=time.perf_counter() - t0)
            return
        stage = getattr(msg, "stage", str(msg))
        if stage.startswith("exact"):
            stage = "exact test"
        if not marks or marks[-1][1] != stage:
            marks.append((time.perf_counter() - t0, stage))
            if stage == "exact test":
                estimate["rss_at_exact"] = _rss()

    threading.Thread(target=sampler, daemon=True).start()
    s = {"auto": None, "on": True, "off": False}[stream]
    r = analyze(X, exact=exact, stream=s, progress=say)
    total = time.perf_counter() - t0
    analysis_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stop.set()
    stages: dict[str, float] = {}
    peaks: dict[str, int] = {}
    for (t, name), nxt in zip(marks, marks[1:] + [(total, "")]):
        key = name.split(" (")[0]
        stages[key] = stages.get(key, 0.0) + nxt[0] - t
        peak = max([v for (ts, v) in samples if t <= ts <= nxt[0]] or [0])
        peaks[key] = max(peaks.get(key, 0), peak)
    M = r.settings.get("probes", 0)
    floor = exp_gemm_seconds(X, M, d) if M else float("nan")
    feat = sum(v for k, v in stages.items() if k.startswith("features"))
    if "features and factorisation" in stages and M:
        # streamed: that stage also folds the blocks; time the feature blocks alone
        feat = feature_blocks_seconds(X, r.settings)
    est_time = dict(estimate.get("time") or {})
    compare = {k: {"estimated_s": est_time.get(k), "measured_s": stages.get(k)}
               for k in dict.fromkeys([*est_time, *stages]) if k in est_time or k in (
                   "features", "QR", "SVD", "partial spectrum", "summary",
                   "rigorous certificate", "exact test")}
    resident = estimate.get("resident_bytes", 0)
    mem = {"process_peak": {"estimated": estimate.get("peak_resident_bytes"),
                            "measured": analysis_peak},
           "rigorous certificate": {
               "estimated": (estimate.get("stage_bytes") or {}).get("rigorous certificate"),
               "measured": max(peaks.get("rigorous certificate", 0) - resident, 0)},
           "exact test": {"estimated": (estimate.get("exact") or {}).get("peak_bytes"),
                          "measured": _child_growth(estimate.get("rss_at_exact"))}}
    qr_control = plain_qr_seconds(M, r.settings.get("core_size", N)) if "QR" in stages else None
    return {"N": N, "n": n, "d": d, "M": M, "verdict": r.verdict, "evidence": r.evidence,
            "qr_control": qr_control,
            "dependencies": len(r.dependencies), "core_size": r.settings.get("core_size"),
            "total_s": total, "stages_s": stages,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "load": os.getloadavg(), "exact": (r.exact or {}).get("status"),
            "exact_kind": (r.exact or {}).get("kind"),
            "compare_time": compare, "compare_memory": mem,
            "estimated_total_s": estimate.get("seconds"),
            "measured_after_estimate_s": total - estimate.get("at", 0.0),
            "estimate": {k: r.settings.get("estimate", {}).get(k) for k in
                         ("mode", "seconds", "peak_bytes", "workers", "block_rows")},
            "exp_gemm_s": floor, "features_over_exp_gemm": feat / floor if floor else None,
            "relation_sizes": sorted({len(dp.coefficients) for dp in r.dependencies})}


def factor_only(N: int, n: int, d: int, planted: bool) -> dict:
    """The streamed features and factorisation of one probe draw and the singular values of
    R22 / nu, without the decision steps after them (for sizes whose certificate and
    decision take too long to run here)."""
    from ntkcheck.injectivity.probes import auto_scales, make_probes, make_whitening, probe_settings
    from ntkcheck.injectivity.stream import streamed_feature_matrix
    from ntkcheck.injectivity.spectrum import svd_spectrum

    ds_t0 = time.perf_counter()
    from ntkcheck import Dataset
    ds = Dataset.from_tokens(build(N, n, d, planted))
    geom = make_whitening(ds)
    scales, M = probe_settings(auto_scales(geom), None, N, d)
    probes = make_probes(geom, M, scales, 0)
    t0 = time.perf_counter()
    feats = streamed_feature_matrix(ds, geom, probes)
    t1 = time.perf_counter()
    spec = svd_spectrum(feats)
    t2 = time.perf_counter()
    floor = exp_gemm_seconds(build(N, n, d, planted), M, d)
    return {"N": N, "n": n, "d": d, "M": M, "setup_s": t0 - ds_t0,
            "features_and_factorisation_s": t1 - t0, "svd_s": t2 - t1,
            "smallest_singular_value": spec.smallest, "stream": {
                k: v for k, v in feats.stream.items() if k in ("block_rows", "blocks", "method")},
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "exp_gemm_s": floor}


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--one":
        N, n, d = (int(x) for x in argv[1:4])
        print(json.dumps(one(N, n, d, argv[4], argv[5] == "1", argv[6] == "zipf", argv[7],
                             int(argv[8]))))
        return
    if argv and argv[0] == "--factor-only":
        N, n, d = (int(x) for x in argv[1:4])
        print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
              f"load {open('/proc/loadavg').read().split()[:3]}", flush=True)
        print(json.dumps(factor_only(N, n, d, "--planted" in argv)))
        return
    n, d, stream, planted, zipf, sizes = 64, 32, "auto", False, False, []
    exact, integer = "auto", 0
    it = iter(argv)
    for a in it:
        if a == "--exact":
            exact = next(it)
            continue
        if a == "--integer":
            integer = int(next(it))
            continue
        if a == "--n":
            n = int(next(it))
        elif a == "--d":
            d = int(next(it))
        elif a == "--stream":
            stream = next(it)
        elif a == "--planted":
            planted = True
        elif a == "--zipf":
            zipf, d = True, 256
        else:
            sizes.append(int(a))
    sizes = sizes or [1000, 3000, 10000]
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}, "
          f"load {open('/proc/loadavg').read().split()[:3]}, "
          + ("Zipf text-like set (vocabulary 5000, lengths 16-128)" if zipf else f"n = {n}")
          + f", d = {d}, stream {stream}")
    for N in sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(N), str(n), str(d), stream,
                              "1" if planted else "0", "zipf" if zipf else "-", exact,
                              str(integer)], capture_output=True, text=True)
        if out.returncode:
            print(f"N = {N}: failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        st = ", ".join(f"{k} {v:.1f}" for k, v in res["stages_s"].items() if v >= 0.05)
        print(f"N = {N}: M = {res['M']}, {res['verdict']} ({res['evidence']}, "
              f"{res['dependencies']} deps, core {res['core_size']}), total {res['total_s']:.1f} s,"
              f" peak RSS {res['peak_rss_mib']:.0f} MiB; stages [s]: {st}; estimate "
              f"{res['estimate']}; exp+GEMM {res['exp_gemm_s']:.2f} s, features / exp+GEMM "
              f"{res['features_over_exp_gemm']:.2f}")
        print_comparison(res)
        print(json.dumps(res), flush=True)


def _fmt(x, unit):
    if x is None:
        return "-"
    return f"{x:.3g} s" if unit == "s" else f"{x / 2**20:.0f} MiB"


def print_comparison(res: dict) -> None:
    """The estimate against the measurement, stage by stage (ratio = estimated / measured)."""
    la = ", ".join(f"{v:.1f}" for v in res["load"])
    print(f"  N = {res['N']}, M = {res['M']} (load {la}; exact test: {res['exact']}"
          f"{' (' + res['exact_kind'] + ')' if res['exact_kind'] else ''})")
    print(f"  {'stage':<22} {'estimated':>11} {'measured':>11} {'ratio':>7}")
    rows = [(k, v["estimated_s"], v["measured_s"], "s") for k, v in res["compare_time"].items()]
    rows.append(("total (after estimate)", res["estimated_total_s"],
                 res["measured_after_estimate_s"], "s"))
    rows += [(f"memory: {k}", v["estimated"], v["measured"], "b")
             for k, v in res["compare_memory"].items()]
    for name, est, meas, unit in rows:
        ratio = f"{est / meas:.2f}" if est and meas else "-"
        print(f"  {name:<22} {_fmt(est, unit):>11} {_fmt(meas, unit):>11} {ratio:>7}")
    qc = res.get("qr_control")
    if qc:
        for label in ("process", "one_thread"):
            runs = ", ".join(f"{t:.2f} s (load {ld:.1f})" for t, ld in qc[label])
            print(f"  plain QR {qc['shape'][0]} x {qc['shape'][1]}, "
                  f"{qc['threads'] if label == 'process' else 1} thread(s): {runs}")


if __name__ == "__main__":
    main(sys.argv[1:])
