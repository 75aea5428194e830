"""``--backend dask`` / ``analyze(backend="dask")`` without a scheduler: a local Dask cluster
sized to the machine (one worker process per usable core, one thread each, BLAS on one thread
per worker), started for the run and closed afterwards, also when the run fails or is
interrupted. Each test starts real worker processes (a few seconds each)."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from ntkcheck import analyze  # noqa: E402
from ntkcheck.backends import fold  # noqa: E402
from ntkcheck.backends.dask import LocalDask  # noqa: E402
from ntkcheck.backends.local import usable_cores  # noqa: E402
from ntkcheck.errors import InputError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# the workers are new processes that cannot import this test module: ship its functions
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_block(k: int) -> np.ndarray:
    return np.random.default_rng(k).normal(size=(30, 12))


def no_cluster_left() -> bool:
    """No worker process of this process alive and no Dask client open."""
    from distributed.client import _global_clients

    return multiprocessing.active_children() == [] and not list(_global_clients.values())


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]


def test_local_cluster_is_sized_to_the_machine():
    """One worker per usable core, one thread each, BLAS limited to one thread in each
    worker; all processes gone once it is closed."""
    with LocalDask() as local:
        client = local.client()
        workers = client.scheduler_info()["workers"].values()
        assert len(workers) == usable_cores()
        assert all(w["nthreads"] == 1 for w in workers)
        env = client.run(lambda: os.environ.get("OPENBLAS_NUM_THREADS"))
        assert set(env.values()) == {"1"}
        assert all(set(t) <= {1} for t in client.run(_blas_threads).values())
    assert no_cluster_left()


def test_fold_without_address_uses_a_local_cluster():
    """fold(backend="dask") with neither a client nor a scheduler folds on a local cluster:
    the singular values of the stacked blocks to round-off, and the cluster closed after."""
    f = fold(make_block, 6, 12, backend="dask", leaves=2)
    A = np.vstack([make_block(k) for k in range(6)])
    ref = np.linalg.svd(A, compute_uv=False)
    assert np.abs(f.singular_values() - ref).max() <= 1e-12 * ref[0]
    assert no_cluster_left()


def test_analyze_dask_without_scheduler_matches_local():
    """analyze(backend="dask") without a scheduler: the local result (verdict, evidence and
    singular values to 1e-12 relative), computed on the Dask backend, the cluster closed."""
    X = np.random.default_rng(0).normal(size=(40, 6, 3))
    remote = analyze(X, exact="never", backend="dask")
    assert remote.settings["stream"]["backend"] == "dask"
    local = analyze(X, exact="never", stream=True)
    assert (remote.verdict, remote.evidence) == (local.verdict, local.evidence)
    np.testing.assert_allclose(remote.singular_values, local.singular_values, rtol=1e-12)
    assert no_cluster_left()


def test_interrupt_closes_the_cluster():
    """Ctrl-C (KeyboardInterrupt) after the cluster started: it propagates, and the cluster's
    processes and client are gone."""
    X = np.random.default_rng(1).normal(size=(30, 5, 3))

    def progress(msg):
        if str(msg) in ("SVD", "partial spectrum"):  # after the features ran on the cluster
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        analyze(X, exact="never", backend="dask", progress=progress)
    assert no_cluster_left()


def test_start_failure_is_one_input_error(monkeypatch):
    """A cluster that cannot start is an InputError saying what to do (nothing left behind)."""
    def broken(*args, **kwargs):
        raise RuntimeError("Nanny failed to start.")

    monkeypatch.setattr(distributed, "LocalCluster", broken)
    with pytest.raises(InputError, match="could not start a local Dask cluster.*--scheduler"):
        analyze(np.random.default_rng(2).normal(size=(10, 4, 2)), exact="never",
                backend="dask")
    assert no_cluster_left()


def test_cli_dask_without_scheduler(tmp_path):
    """`ntkcheck analyze --backend dask FILE` (no --scheduler) in a fresh process: exit 0 for
    an injective file, the JSON records the Dask backend, nothing left running."""
    data = tmp_path / "d.npz"
    np.savez(data, tokens=np.random.default_rng(3).normal(size=(20, 5, 3)))
    proc = subprocess.run([sys.executable, "-m", "ntkcheck", "analyze", "--backend", "dask",
                           "--json", "--exact", "never", "-q", str(data)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["verdict"] == "injective" and doc["settings"]["stream"]["backend"] == "dask"


def _children(pid: int) -> list[int]:
    """PIDs of the processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to list the workers")
def test_cli_ctrl_c_stops_the_workers(tmp_path):
    """SIGINT (Ctrl-C) to `ntkcheck analyze --backend dask` once its local workers run: exit
    130 with 'interrupted', and every worker process it started has ended."""
    import signal
    import time

    data = tmp_path / "d.npz"
    np.savez(data, tokens=np.random.default_rng(4).normal(size=(400, 8, 3)))
    proc = subprocess.Popen([sys.executable, "-m", "ntkcheck", "analyze", "--backend", "dask",
                             "--exact", "never", "-q", str(data)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        workers: list[int] = []
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and len(workers) < 1:
            time.sleep(0.2)
            workers = _children(proc.pid)
        if proc.poll() is not None:
            pytest.skip("the analysis ended before its workers could be seen")
        assert workers, "no worker process started"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    end = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < end:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
