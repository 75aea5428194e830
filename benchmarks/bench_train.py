"""Time and peak memory of one training step (loss + exact gradient) of the mean-field transformer.

Sizes (N, n, d, L, H, key_dim): (64, 16, 8, 16, 32, 4) and a 4x larger batch (N = 256).
Our discrete adjoint (numpy) is compared with PyTorch autograd on the same model (float64, same
CPU, same thread count) when torch is installed; otherwise the comparison is skipped.

Each measurement runs in a fresh subprocess so that peak memory is not polluted by earlier
cases: ``peak_rss`` is the growth of the process's max RSS over its RSS before the first step
(both implementations, including BLAS/allocator buffers),
``peak_traced`` the tracemalloc peak of one step (allocations through Python/numpy only, so
it is reported for numpy alone).

    python benchmarks/bench_train.py [--repeats 5] [--sizes 64,256] [--no-torch] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import tracemalloc

SHAPE = dict(n=16, d=8, L=16, H=32, k=4)


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
    T = rng.standard_normal((N, n, d))
    return X, w, T


def worker(impl: str, N: int, repeats: int) -> dict:
    import numpy as np

    n, d, L, H, k = (SHAPE[x] for x in ("n", "d", "L", "H", "k"))
    X, w, T = _data(N, n, d)
    from ntkcheck.meanfield import LossKind, MeanFieldTransformer, RegressionLoss, \
        loss_and_gradient

    model = MeanFieldTransformer.init(layers=L, heads=H, key_dim=k, dim=d, init_qk_std=0.5,
                                      init_v_std=0.5, seed=1)
    loss = RegressionLoss(LossKind.TOKEN, T * (w > 0)[..., None])
    if impl == "numpy":
        def step():
            return loss_and_gradient(model, X, w, loss)
    else:
        import torch

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
            return float(R), (Q.grad, K.grad, V.grad)

    rss0 = _rss_now_kib()
    step()  # warm-up (BLAS threads, allocator)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = step()
        times.append(time.perf_counter() - t0)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0
    tracemalloc.start()  # separate pass: tracing slows allocations down
    step()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    R = out[0]
    gV = out[1].V if impl == "numpy" else out[1][2].numpy()
    return {"impl": impl, "N": N, "median_s": sorted(times)[len(times) // 2],
            "min_s": min(times), "peak_rss_mib": max(peak_rss, 0) / 1024,
            "peak_traced_mib": traced / 2**20, "loss": float(R),
            "gV_checksum": float(np.abs(gV).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default="64,256", help="comma-separated batch sizes N")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/torch threads (default: library default)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, N = args.worker[0], int(args.worker[1])
        if args.threads and impl == "torch":
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(worker(impl, N, args.repeats)))
        return
    impls = ["numpy"]
    if not args.no_torch:
        try:
            import torch  # noqa: F401

            impls.append("torch")
        except ImportError:
            print("torch not installed: skipping the autograd comparison "
                  "(pip install torch to enable it)", file=sys.stderr)
    env = dict(os.environ)
    if args.threads:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
    print(f"shape n={SHAPE['n']} d={SHAPE['d']} L={SHAPE['L']} H={SHAPE['H']} "
          f"key_dim={SHAPE['k']}, float64, {args.repeats} repeats, cpus={os.cpu_count()}")
    print(f"{'N':>5} {'impl':>6} {'median s':>10} {'min s':>8} {'peak RSS MiB':>13} "
          f"{'traced MiB':>11} {'loss':>12} {'|gV| sum':>12}")
    for N in (int(x) for x in args.sizes.split(",")):
        rows = []
        for impl in impls:
            cmd = [sys.executable, __file__, "--worker", impl, str(N), "--repeats",
                   str(args.repeats)] + (["--threads", str(args.threads)] if args.threads else [])
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if out.returncode != 0:
                sys.exit(f"{impl} worker failed:\n{out.stderr}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            traced = f"{row['peak_traced_mib']:.1f}" if impl == "numpy" else "-"
            print(f"{N:>5} {impl:>6} {row['median_s']:>10.4f} {row['min_s']:>8.4f} "
                  f"{row['peak_rss_mib']:>13.1f} {traced:>11} {row['loss']:>12.6e} "
                  f"{row['gV_checksum']:>12.6e}")
        if len(rows) == 2:
            print(f"{'':>5} ratio torch/numpy time: {rows[1]['median_s'] / rows[0]['median_s']:.2f}")


if __name__ == "__main__":
    main()
