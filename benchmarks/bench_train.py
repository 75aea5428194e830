"""Time, memory and arithmetic rate of one training step (loss + exact gradient).

Sizes (N, n, d, L, H, key_dim) = (N, 16, 8, 16, 32, 4), N in --sizes (default 64 and 256), float64,
two padded tokens per sequence. Implementations, each in a fresh subprocess (so that peak memory
is its own), all with the same thread count:

* ``numpy``  the reference discrete adjoint (``backend="numpy"``);
* ``numba``  the fused kernels of :mod:`ntkcheck.meanfield.fast` (``backend="numba"``);
* ``torch``  a straightforward PyTorch autograd implementation of the same model (when torch is
  installed; skipped otherwise), which keeps every layer's attention for its backward pass;
* ``train``  ``ntkcheck train`` itself (subprocess, default backend): the median of the
  per-step times recorded in its history.jsonl.

Printed per row: median and min wall time per step over --repeats, the median process CPU time
per step (all threads; less sensitive than wall time to other load on the machine), peak RSS
growth over the RSS before the first full-size step (MiB; libraries are warmed up on one sample
before), the loss (a cross-check: the rows must agree), and the achieved GFLOP/s (the fast
path's flop count, below) next to the machine's measured dgemm rate with the same threads. The
ratio line is numba / torch. A closing summary gives, per (N, threads), the median step time of
ntkcheck (the fused step) and of PyTorch, their median per-round ratio (the issue's target:
<= 0.33), the step's flop time at the dgemm rate measured in the same run, and ntkcheck's time as
a multiple of it (target: <= 4).

Flop count of one step (each multiply-add = 2 flops), with m_i real tokens of sample i,
C = 2 key_dim + d, s RK stages, per sample, layer and stage: forward m d C H + m^2 key_dim H +
m^2 d H, plus the VJP 2 m^2 d H + 2 m^2 key_dim H + 2 m d C H. At these sizes the fused kernels
keep the forward pass's attention for the backward pass (``fast.KEEP_BYTES``), so nothing is
recomputed and this is also the minimal count of the step (PyTorch's autograd does the same
products). Exponentials (m^2 H per stage evaluation) are not counted.

    python benchmarks/bench_train.py [--repeats 5] [--sizes 64,256] [--threads 1,2] [--no-torch]
                                     [--impls numpy,numba,torch] [--train-steps 6] [--rounds 3]
    python benchmarks/bench_train.py --profile     # the fused kernels on one sample and layer

Each size is measured in ``--rounds`` interleaved rounds (every implementation once per round,
in the same order), and the ratios to PyTorch are reported per round and as their median: on a
machine whose speed drifts, a ratio is only meaningful between measurements made close in
time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHAPE = dict(n=16, d=8, L=16, H=32, k=4)
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _rss_now_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _data(N: int, n: int, d: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n, d))
    w = rng.uniform(0.5, 1.0, (N, n))
    w[:, n - 2:] = 0.0  # some padding, as in real data
    w /= w.sum(axis=1, keepdims=True)
    X[w == 0] = 0.0
    T = rng.standard_normal((N, n, d)) * (w > 0)[..., None]
    return X, w, T


def step_flops(weights, d: int, L: int, H: int, k: int, stages: int = 1) -> float:
    """Flops of one fused step (module docstring): what the kernels compute, no more."""
    m = (weights > 0).sum(axis=1).astype(float)
    C = 2 * k + d
    field = m * d * C * H + m * m * k * H + m * m * d * H
    vjp = 2 * m * m * d * H + 2 * m * m * k * H + 2 * m * d * C * H
    per_layer = stages * (field + vjp)  # forward and VJP; the attention is kept, not recomputed
    return float(2.0 * L * per_layer.sum())


def gemm_rate(size: int = 1000, repeats: int = 5) -> float:
    """Measured dgemm GFLOP/s (numpy matmul, size^3, best of ``repeats``)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((size, size))
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2.0 * size**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _torch_step(model, X, w, loss, threads):
    import torch

    torch.set_num_threads(threads)
    L, H = model.layers, model.heads
    N = X.shape[0]
    Q = torch.tensor(model.Q, requires_grad=True)
    K = torch.tensor(model.K, requires_grad=True)
    V = torch.tensor(model.V, requires_grad=True)
    x0 = torch.tensor(X)
    wt = torch.tensor(w)
    Tt = torch.tensor(loss.targets)
    logw = torch.log(wt.clamp_min(1e-300)).masked_fill(wt == 0, -torch.inf)[:, None, None, :]
    mask = (wt > 0).to(torch.float64)[..., None]

    def step():
        Q.grad = K.grad = V.grad = None
        x = x0
        for layer in range(L):
            q = torch.einsum("hkd,nad->nhak", Q[layer], x)
            kk = torch.einsum("hkd,nbd->nhbk", K[layer], x)
            A = torch.softmax(q @ kk.transpose(-1, -2) + logw, dim=-1)
            Y = A @ x[:, None]
            v = torch.einsum("hde,nhae->nad", V[layer], Y) / H
            x = x + mask * v / L
        R = (wt[..., None] * (x - Tt) ** 2).sum() / (2 * N)
        R.backward()
        return float(R)

    return step


def worker(impl: str, N: int, repeats: int, threads: int) -> dict:
    n, d, L, H, k = (SHAPE[x] for x in ("n", "d", "L", "H", "k"))
    X, w, T = _data(N, n, d)
    from ntkcheck.meanfield import LossKind, MeanFieldTransformer, RegressionLoss, \
        loss_and_gradient

    model = MeanFieldTransformer.init(layers=L, heads=H, key_dim=k, dim=d, init_qk_std=0.5,
                                      init_v_std=0.5, seed=1)

    def make_step(X, w, T):
        loss = RegressionLoss(LossKind.TOKEN, T)
        if impl == "torch":
            return _torch_step(model, X, w, loss, threads)
        return lambda: loss_and_gradient(model, X, w, loss, backend=impl)[0]

    # warm-up on one sample (compiled-kernel cache load, BLAS/torch thread pools), so that the
    # RSS growth below is that of the step at this size, not of library start-up
    make_step(X[:1], w[:1], T[:1])()
    step = make_step(X, w, T)
    rss0 = _rss_now_kib()
    step()
    times, cpu, R = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        R = step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    return {"impl": impl, "N": N, "median_s": sorted(times)[len(times) // 2], "min_s": min(times),
            "cpu_s": sorted(cpu)[len(cpu) // 2],
            "peak_rss_mib": max(peak_rss, 0) / 1024, "loss": float(R),
            "flops": step_flops(w, d, L, H, k)}


def train_run(N: int, steps: int, env: dict) -> dict:
    """``ntkcheck train`` on the benchmark data: median per-step time from history.jsonl."""
    import numpy as np

    n, d, L, H, k = (SHAPE[x] for x in ("n", "d", "L", "H", "k"))
    X, w, T = _data(N, n, d)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.savez(tmp / "data.npz", tokens=X, weights=w, targets=T)
        (tmp / "train.toml").write_text(
            f'[data]\npath = "data.npz"\n[model]\nlayers = {L}\nheads = {H}\nkey_dim = {k}\n'
            'init_qk_std = 0.5\ninit_v_std = 0.5\nseed = 1\n[flow]\n'
            f'steps = {steps}\nstep_size = 0.01\n[output]\ndir = "run"\ncheckpoint_every = 0\n')
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "ntkcheck", "train", str(tmp / "train.toml"),
                              "-q"], capture_output=True, text=True, env=env, cwd=tmp)
        wall = time.perf_counter() - t0
        if out.returncode != 0:
            sys.exit(f"ntkcheck train failed:\n{out.stderr}")
        hist = [json.loads(x) for x in (tmp / "run" / "history.jsonl").read_text().splitlines()]
    t = np.array([h["time"] for h in hist])
    dt = np.diff(t)  # the first record's time includes the first step only
    return {"impl": "train", "N": N, "median_s": float(np.median(dt)), "min_s": float(dt.min()),
            "loss": hist[0]["loss"], "wall_s": wall, "steps": len(hist)}


def _median(xs):
    return float(np.median(xs))


def _env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("NTKCHECK_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in
                                                       [env.get("PYTHONPATH", "")] if p])
    return env


def _load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def measure(N: int, threads: int, impls: list[str], args, gemm: float) -> dict:
    """Interleaved rounds at one (N, threads); prints every row, returns the medians."""
    env = _env(threads)
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    flops = 0.0
    for _ in range(args.rounds):  # interleaved rounds: machine drift hits every impl alike
        rows = {}
        for impl in impls:
            cmd = [sys.executable, __file__, "--worker", impl, str(N), "--repeats",
                   str(args.repeats), "--threads", str(threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(f"{impl} worker failed:\n{out.stderr}")
            rows[impl] = row = json.loads(out.stdout.strip().splitlines()[-1])
            flops = row["flops"]
            times.setdefault(impl, []).append(row["median_s"])
            cpu.setdefault(impl, []).append(row["cpu_s"])
            rate = row["flops"] / row["median_s"] / 1e9
            print(f"{N:>5} {threads:>3} {impl:>6} {row['median_s']:>10.4f} {row['min_s']:>8.4f} "
                  f"{row['cpu_s']:>8.4f} {row['peak_rss_mib']:>13.1f} {row['loss']:>14.8e} "
                  f"{rate:>8.2f} {100 * rate / gemm:>7.1f}%", flush=True)
        if args.train_steps > 0:
            row = rows["train"] = train_run(N, args.train_steps, env)
            times.setdefault("train", []).append(row["median_s"])
            print(f"{N:>5} {threads:>3} {'train':>6} {row['median_s']:>10.4f} "
                  f"{row['min_s']:>8.4f} {'-':>8} {'-':>13} {row['loss']:>14.8e}   "
                  f"(`ntkcheck train`, {row['steps']} steps, "
                  f"{row['wall_s']:.1f} s wall incl. start-up)", flush=True)
        if "torch" in rows:
            for impl in ("numba", "train", "numpy"):
                if impl in rows:
                    ratios.setdefault(impl, []).append(
                        rows[impl]["median_s"] / rows["torch"]["median_s"])
            print("           ratio " + ", ".join(f"{k}/torch {v[-1]:.2f}"
                                                  for k, v in ratios.items()), flush=True)
    if ratios and args.rounds > 1:
        print(f"N = {N}, {threads} thread(s): median over {args.rounds} rounds: "
              + ", ".join(f"{k}/torch {_median(v):.2f} ({', '.join(f'{x:.2f}' for x in v)})"
                          for k, v in ratios.items()), flush=True)
    return {"N": N, "threads": threads, "gemm": gemm, "flops": flops, "load": _load(),
            "times": {k: _median(v) for k, v in times.items()},
            "cpu": {k: _median(v) for k, v in cpu.items()},
            "ratios": {k: _median(v) for k, v in ratios.items()}}


def profile(repeats: int = 100, batches: int = 100) -> None:
    """Where a step's time goes: the fused kernels on one sample and one layer (wall time per
    call, best of ``batches`` batches of ``repeats`` calls, so that a quiet moment of a shared
    machine is caught; one thread). A step is N L times (field + VJP): the forward pass and the
    VJP, on the kept attention. Each call here also pays numba's dispatch from Python (about
    0.2 microseconds), which the step's compiled loop over samples does not."""
    from ntkcheck import _compiled as fast
    from ntkcheck.resources import KERNEL_ROW_PAD

    n, d, H, k = (SHAPE[x] for x in ("n", "d", "H", "k"))
    m, e, C = n - 2, k, 2 * k + d  # two padded tokens, as in _data
    rng = np.random.default_rng(0)
    W = 0.5 * rng.standard_normal((d, C, H))
    Z = rng.standard_normal((n, d))
    lw = np.log(np.full(n, 1.0 / m))
    r = KERNEL_ROW_PAD  # the kernels' scratch shapes, as _chunk allocates them
    P, A, v = np.empty((n, C + r, H)), np.empty((n, n + r, H)), np.empty((n, d))
    Ut, mx, dot, row = np.empty((d, n + r, H)), np.empty((2, H)), np.empty(H), np.empty((n, H))
    kappa, gZ, gW = rng.standard_normal((n, d)), np.zeros((n, d)), np.zeros((d, C, H))
    dP, D, U = np.empty((n, C + r, H)), np.empty((n, n + r, H)), np.empty((d, n + r, H))
    x, xo = -5.0 * rng.random(m * m * H), np.empty(m * m * H)
    proj, scores, vapply = m * d * C * H, m * m * k * H, m * m * d * H
    parts = [("field (forward)", lambda: fast._field(W, Z, lw, m, P, A, v, Ut, mx, e, True),
              2 * (proj + scores + vapply)),
             ("VJP", lambda: fast._field_vjp(W, Z, m, P, A, kappa, gZ, gW, dP, D, U, row, dot,
                                                   e),
              2 * (2 * vapply + 2 * scores + 2 * proj)),
             ("m^2 H exponentials (in the field)", lambda: fast._exp_array(x, xo), 0)]
    total = 0.0
    print(f"one sample (m = {m} real tokens), one layer, n={n} d={d} H={H} key_dim={k}; "
          f"wall time per call; load {_load()}")
    for name, fn, flops in parts:
        fn()
        best = np.inf
        for _ in range(batches):
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            best = min(best, (time.perf_counter() - t0) / repeats)
        if flops:
            total += best
        print(f"  {name:<34} {1e6 * best:8.1f} us"
              + (f"  {flops / best / 1e9:6.1f} GFLOP/s" if flops else ""))
    print(f"  {'total per sample and layer':<34} {1e6 * total:8.1f} us; a step at N = 64, "
          f"L = {SHAPE['L']}: {1e3 * total * 64 * SHAPE['L']:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="64,256", help="comma-separated batch sizes N")
    parser.add_argument("--threads", default=str(os.cpu_count() or 1),
                        help="comma-separated thread counts, each used by every implementation "
                             "(BLAS, torch, numba, ntkcheck's workers)")
    parser.add_argument("--impls", default="numpy,numba,torch",
                        help="comma-separated subset of numpy, numba, torch")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds per size (ratios: median over rounds)")
    parser.add_argument("--train-steps", type=int, default=6,
                        help="steps of the `ntkcheck train` run (0: skip it)")
    parser.add_argument("--profile", action="store_true",
                        help="only time the fused kernels on one sample and one layer")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile:
        profile()
        return
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.repeats,
                                int(args.threads))))
        return
    impls = [x for x in args.impls.split(",") if x]
    if "torch" in impls and args.no_torch:
        impls.remove("torch")
    if "torch" in impls:
        try:
            import torch  # noqa: F401
        except ImportError:
            impls.remove("torch")
            print("torch not installed: skipping the autograd comparison "
                  "(install torch in a separate environment to enable it)", file=sys.stderr)
    summary = []
    for threads in (int(x) for x in args.threads.split(",")):
        gemm = json.loads(subprocess.run(
            [sys.executable, "-c", "import json, sys; sys.path.insert(0, %r); import bench_train; "
             "print(json.dumps(bench_train.gemm_rate()))" % str(HERE)],
            capture_output=True, text=True, env=_env(threads), check=True).stdout)
        print(f"shape n={SHAPE['n']} d={SHAPE['d']} L={SHAPE['L']} H={SHAPE['H']} "
              f"key_dim={SHAPE['k']}, float64, median of {args.repeats}; threads {threads} "
              f"(NTKCHECK/OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS, torch.set_num_threads); cpus "
              f"{os.cpu_count()}; load {_load()}; dgemm {gemm:.1f} GFLOP/s")
        print(f"{'N':>5} {'thr':>3} {'impl':>6} {'median s':>10} {'min s':>8} {'cpu s':>8} "
              f"{'peak RSS MiB':>13} {'loss':>14} {'GFLOP/s':>8} {'% dgemm':>8}")
        for N in (int(x) for x in args.sizes.split(",")):
            summary.append(measure(N, threads, impls, args, gemm))
    # the two ratios: ntkcheck (numba step) / torch, and ntkcheck / flop time at dgemm.
    # CPU time (all threads of the process) is printed beside wall time: on a shared machine it
    # is the less disturbed of the two (with one thread, wall = CPU time on an idle machine).
    print("\nsummary (medians over rounds; flop time = step flops / dgemm rate of the same run; "
          "cpu = process CPU time, all threads)")
    print(f"{'N':>5} {'thr':>3} {'ntkcheck ms':>12} {'torch ms':>9} {'ratio':>6} "
          f"{'flop ms':>8} {'x flop':>7} {'cpu ntk':>8} {'cpu torch':>9} {'cpu ratio':>9} "
          f"{'dgemm GF/s':>11}  load")
    for row in summary:
        ours = row["times"].get("numba", row["times"].get("numpy", float("nan")))
        ours_cpu = row["cpu"].get("numba", row["cpu"].get("numpy", float("nan")))
        torch_s = row["times"].get("torch", float("nan"))
        torch_cpu = row["cpu"].get("torch", float("nan"))
        ratio = row["ratios"].get("numba", ours / torch_s)
        flop_s = row["flops"] / (row["gemm"] * 1e9)
        print(f"{row['N']:>5} {row['threads']:>3} {1e3 * ours:>12.1f} {1e3 * torch_s:>9.1f} "
              f"{ratio:>6.2f} {1e3 * flop_s:>8.1f} {ours / flop_s:>7.1f} {1e3 * ours_cpu:>8.1f} "
              f"{1e3 * torch_cpu:>9.1f} {ours_cpu / torch_cpu:>9.2f} {row['gemm']:>11.1f}  "
              f"{row['load']}")


if __name__ == "__main__":
    main()
