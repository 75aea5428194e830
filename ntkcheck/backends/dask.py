"""Dask backend: blocks computed on the workers of a Dask cluster, R reduced there by TSQR.

Each task folds a contiguous range of blocks (``make_block`` runs on the worker), partial R
factors (or Gram matrices for CholeskyQR2) are combined by a fixed binary tree of tasks on the
cluster, and only the final N x N result travels to the client. The tree depends only on the
number of leaves, so the result does not depend on worker timing (given the workers' BLAS
thread count: process workers started by a nanny, the default, run BLAS on one thread, which
also suits the narrow-panel QR folds). Needs the optional extra
``ntkcheck[dask]`` (``dask`` and ``distributed``).

Memory: a merge holds its two input factors and their working copies, about 4 N^2 doubles
(32 N^2 bytes) on one worker: N up to about 22000 on a 16 GB worker, 31000 on 32 GB,
44000 on 64 GB. The client receives R (8 N^2 bytes).

Time: every network step is bounded by one timeout, :data:`DEFAULT_TIMEOUT` seconds (the
``timeout`` argument, or the environment variable ``NTKCHECK_DASK_TIMEOUT``): the connection,
the protocol handshake and a first round trip are checked on a probe connection before the
client is opened (a silent port, an HTTP server or a peer sending garbage is refused there);
opening the client, sending the data, asking for the thread count and closing are each bounded;
and while a result is awaited, the scheduler must answer a status request every ``timeout``
seconds and still have a worker. A malformed address (``notaurl``, ``tcp://``, ``tcp://[::1``),
a timeout and a scheduler or worker lost in mid-run are each an
:class:`~ntkcheck.errors.InputError` (exit 2, one line).

Without a scheduler address or a client, a local cluster is started (:class:`LocalDask`,
``distributed.LocalCluster``): one worker process per usable core with one thread each and BLAS
on one thread per worker, so workers x threads never oversubscribe the cores; it listens on
127.0.0.1 only, has no dashboard, and is closed when the work ends, also on an error or
Ctrl-C. Starting it and opening its client are bounded by the same timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from typing import Any, Callable
from urllib.parse import urlsplit

import numpy as np

from ..errors import InputError, install_hint
from ..injectivity.factor import Factor
from .tree import BlockRange, drive, split_ranges

__all__ = ["fold_dask", "check_address", "dask_timeout", "LocalDask", "DEFAULT_TIMEOUT",
           "SCHEMES"]

#: Seconds allowed to each network step (connect, handshake, one request, a silent wait).
DEFAULT_TIMEOUT = 30.0
#: Address schemes of distributed's comms; ``host:port`` alone means ``tcp://host:port``.
SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")
_EXAMPLE = "give an address such as tcp://host:8786"


def dask_timeout(timeout: float | None = None) -> float:
    """``timeout``, else ``NTKCHECK_DASK_TIMEOUT``, else :data:`DEFAULT_TIMEOUT` (seconds)."""
    if timeout is None:
        raw = os.environ.get("NTKCHECK_DASK_TIMEOUT", "")
        if not raw.strip():
            return DEFAULT_TIMEOUT
        try:
            timeout = float(raw)
        except ValueError:
            raise InputError(f"'{raw}' is not a number of seconds, e.g. 30",
                             field="NTKCHECK_DASK_TIMEOUT") from None
    if not 0 < timeout < 1e6:
        raise InputError(f"must be a positive number of seconds below 1e6, got {timeout}",
                         field="NTKCHECK_DASK_TIMEOUT")
    return float(timeout)


def check_address(address: str) -> str:
    """``address`` if it is a well-formed scheduler address, else an InputError naming
    ``--scheduler``: ``SCHEME://HOST:PORT`` with a scheme of :data:`SCHEMES` (``inproc://``
    takes any name), or ``HOST:PORT``; IPv6 hosts in brackets; port 1..65535."""
    field = "--scheduler"
    text = str(address).strip()
    if not text or any(ord(c) < 0x21 or ord(c) == 0x7F for c in text):
        raise InputError(f"'{address}' is not a scheduler address; {_EXAMPLE}", field=field)
    if "://" not in text:
        text = "tcp://" + text
    scheme = text.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise InputError(f"'{address}' has unknown scheme '{scheme}'; use one of "
                         f"{', '.join(s + '://' for s in SCHEMES)}", field=field)
    if scheme == "inproc":
        if not text.split("://", 1)[1]:
            raise InputError(f"'{address}' names no process; {_EXAMPLE}", field=field)
        return str(address)
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError as err:  # an unclosed '[', a port out of range or not a number
        raise InputError(f"'{address}' is not a scheduler address ({err}); {_EXAMPLE}",
                         field=field) from None
    if not host or port is None or parts.path not in ("", "/") or parts.query:
        raise InputError(f"'{address}' needs a host and a port; {_EXAMPLE}", field=field)
    if not 0 < port < 65536 or not re.fullmatch(r"[A-Za-z0-9._:%-]+", host):
        raise InputError(f"'{address}' has an invalid host or port; {_EXAMPLE}", field=field)
    return str(address)


def _first_line(err: BaseException) -> str:
    try:
        text = str(err).strip().splitlines()
    except Exception:  # an exception whose message cannot be built
        text = []
    return text[0][:150] if text else type(err).__name__


def _network_error(address: str, what: str) -> InputError:
    return InputError(f"{what}; check the address and that the Dask scheduler runs there "
                      "(timeout: NTKCHECK_DASK_TIMEOUT)", source=str(address), field="scheduler")


def _run_coroutine(make):
    """``asyncio.run(make())``, in a helper thread when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _open_client(distributed, address: str, timeout: float, faults):
    """``distributed.Client(address)`` within ``timeout`` seconds in all: the client's own
    connection timeout does not cover its handshake, so a peer that passed :func:`probe` and
    then stays silent would block it. The client is opened on a daemon thread; when it is not
    ready in time, InputError (the thread, blocked on the network, ends with the process)."""
    import threading

    box: dict = {}

    def opening() -> None:
        try:
            box["client"] = distributed.Client(address, timeout=timeout)
        except BaseException as err:  # handed to the caller below
            box["error"] = err

    worker = threading.Thread(target=opening, name="ntkcheck-dask-client", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise _network_error(address, f"no client handshake within {timeout:g} s (the peer "
                             "answered the probe, then stayed silent)")
    err = box.get("error")
    if err is not None:
        if isinstance(err, faults):
            raise _network_error(address, f"cannot open a client ({_first_line(err)})") from None
        raise err
    return box["client"]


def probe(address: str, timeout: float) -> None:
    """Connect to ``address`` on a fresh connection, complete distributed's handshake and one
    ``identity`` round trip, each within ``timeout`` seconds; InputError otherwise."""
    from distributed.comm import connect

    async def run() -> dict:
        comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout)
        try:
            await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), timeout)
            return await asyncio.wait_for(comm.read(), timeout)
        finally:
            comm.abort()

    try:
        reply = _run_coroutine(run)
    except (asyncio.TimeoutError, TimeoutError):
        raise _network_error(address, f"no answer within {timeout:g} s (the peer accepts the "
                             "connection but does not speak the Dask protocol, or is "
                             "overloaded)") from None
    except MemoryError:
        raise _network_error(address, "the peer sent data that is not the Dask protocol (it "
                             "announced an impossible message size)") from None
    except OSError as err:  # CommClosedError and connection refused are OSErrors
        raise _network_error(address, f"cannot connect ({_first_line(err)})") from None
    except Exception as err:  # a decoding error: garbage from the peer
        kind = type(err).__qualname__
        if type(err).__module__ not in ("builtins", None):
            kind = f"{type(err).__module__}.{kind}"
        raise _network_error(address, f"the peer does not speak the Dask protocol ({kind})") \
            from None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        says = reply.get("type") if isinstance(reply, dict) else type(reply).__name__
        raise _network_error(address, f"the peer is not a Dask scheduler (it says {says!r})")


def _distributed():
    try:
        import distributed
    except ImportError:
        raise InputError("the dask backend needs dask and distributed; install them with "
                         + install_hint("dask", "dask distributed"), field="backend") from None
    return distributed


class LocalDask:
    """A ``distributed.LocalCluster`` on this machine, started on first use and closed by
    :meth:`close` (or on leaving a ``with`` block, whatever ends it: an error, Ctrl-C).

    Sized so that workers x threads never oversubscribe the cores: ``workers`` processes (default:
    the usable cores) with one thread each, and BLAS limited to one thread in every worker
    (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` = 1). Each worker gets
    an equal share of the memory (distributed's ``memory_limit="auto"``). It binds 127.0.0.1
    only and starts no dashboard. Starting it and opening the client are each bounded by
    ``timeout`` (default :func:`dask_timeout`); a failure is an InputError.
    """

    #: BLAS and OpenMP limited to one thread in each worker process.
    WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def __init__(self, workers: int | None = None, timeout: float | None = None):
        from .local import usable_cores

        self.workers = max(1, int(workers or usable_cores()))
        self.timeout = dask_timeout(timeout)
        self.cluster: Any = None
        self._client: Any = None

    def client(self):
        """The client of the cluster, starting both on the first call."""
        if self._client is None:
            distributed = _distributed()
            import dask

            try:
                with dask.config.set({"distributed.comm.timeouts.connect": f"{self.timeout}s"}):
                    self.cluster = distributed.LocalCluster(
                        n_workers=self.workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR,
                        env=dict(self.WORKER_ENV), death_timeout=self.timeout)
                    self._client = distributed.Client(self.cluster, timeout=self.timeout)
            except BaseException as err:
                self.close()
                if isinstance(err, (KeyboardInterrupt, SystemExit)):
                    raise
                raise InputError(f"could not start a local Dask cluster of {self.workers} "
                                 f"workers ({type(err).__name__}: {_first_line(err)}); in a "
                                 "Python script, call analyze under if __name__ == "
                                 "'__main__': (the workers are new processes that import the "
                                 "script), or give --scheduler ADDRESS of a running cluster, "
                                 "or use --backend local", field="backend") from None
        return self._client

    def close(self) -> None:
        """Close the client and the cluster (its worker processes end); safe to call twice."""
        client, cluster = self._client, self.cluster
        self._client = self.cluster = None
        for thing in (client, cluster):
            if thing is None:
                continue
            try:
                thing.close(timeout=self.timeout)
            except TypeError:  # a close() without a timeout (older distributed)
                thing.close()
            except Exception:  # closing must not hide the error that ended the work
                pass

    def __enter__(self) -> "LocalDask":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(client: Any) -> Any:
    """A real client from ``client`` (a :class:`LocalDask` is started if needed)."""
    return client.client() if isinstance(client, LocalDask) else client


def _on_range(fn, make_block, start: int, stop: int, *rest):
    return fn(BlockRange(make_block, start, stop), *rest)


class _Cluster:
    """Tasks on a Dask client; ``make_block`` (which may carry a whole dataset) is sent to the
    workers once and passed to every task by reference. Every call that waits on the network
    is bounded by ``timeout`` seconds (a result by a liveness check every ``timeout``)."""

    def __init__(self, client, make_block, timeout: float):
        self.client = client
        self.timeout = timeout
        self.make_block = client.scatter(make_block, broadcast=True, hash=False,
                                         timeout=timeout)

    def map(self, fn, args):
        return [self.client.submit(_on_range, fn, self.make_block, a[0].start, a[0].stop,
                                   *a[1:], pure=False) for a in args]

    def combine(self, fn, a, b):
        return self.client.submit(fn, a, b, pure=False)

    def get(self, future):
        while True:
            try:
                return future.result(timeout=self.timeout)
            except (asyncio.TimeoutError, TimeoutError):
                if future.done():
                    continue
                self.alive()

    def alive(self) -> None:
        """The scheduler answers within the timeout and has at least one worker."""
        try:
            info = self.client.sync(self.client.scheduler.identity,
                                    callback_timeout=self.timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise _network_error(self.client.scheduler.address, "the Dask scheduler stopped "
                                 f"answering (no reply within {self.timeout:g} s)") from None
        if not (info or {}).get("workers"):
            raise _network_error(self.client.scheduler.address, "the Dask cluster has no "
                                 "worker left to run the blocks; start workers")

    def share(self, value):
        return self.client.scatter(value, broadcast=True, timeout=self.timeout)


def _cluster_faults(distributed) -> tuple[type[BaseException], ...]:
    """Exceptions that mean the cluster, not ntkcheck, failed (lost scheduler or worker)."""
    from concurrent.futures import CancelledError

    faults: list[type[BaseException]] = [OSError, asyncio.TimeoutError, TimeoutError,
                                         CancelledError, asyncio.CancelledError]
    for module, name in (("distributed.scheduler", "KilledWorker"),
                         ("distributed.client", "FutureCancelledError"),
                         ("distributed.comm.core", "CommClosedError")):
        try:
            faults.append(getattr(__import__(module, fromlist=[name]), name))
        except (ImportError, AttributeError):  # pragma: no cover - other distributed versions
            pass
    return tuple(faults)


def fold_dask(make_block: Callable[[int], np.ndarray], n_blocks: int, n_cols: int, *,
              method: str = "auto", client=None, scheduler: str | None = None,
              leaves: int | None = None, timeout: float | None = None) -> Factor:
    """Factor of [make_block(0); ...; make_block(n_blocks - 1)] on a Dask cluster.

    Parameters
    ----------
    make_block : picklable callable k -> array (b_k, N)
        Runs on the workers (a module-level function or a picklable object).
    n_blocks, n_cols : int
        B and N.
    method : {"auto", "householder", "cholqr2"}
        See :func:`ntkcheck.injectivity.factor.fold_blocks`.
    client : distributed.Client or LocalDask, optional
        An existing client; else one is opened on ``scheduler`` (an address such as
        ``tcp://host:8786``, checked by :func:`check_address` and :func:`probe`) and closed
        afterwards; with neither, a :class:`LocalDask` cluster is started for this fold and
        closed afterwards.
    leaves : int, optional
        Number of block ranges (tasks) reduced by the tree; default: the cluster's total
        thread count when the job starts. Fix it to get bit-identical results on clusters of
        different sizes.
    timeout : float, optional
        Seconds allowed to each network step (default :func:`dask_timeout`).

    Raises
    ------
    InputError
        A malformed address, a peer that is silent or not a Dask scheduler, a timeout, or a
        scheduler or worker lost in mid-run (one line, naming the address).
    """
    distributed = _distributed()
    limit = dask_timeout(timeout)
    faults = _cluster_faults(distributed)
    if client is None and not scheduler:
        with LocalDask(timeout=limit) as local:
            return fold_dask(make_block, n_blocks, n_cols, method=method, client=local,
                             leaves=leaves, timeout=limit)
    client = connect(client)
    own = None
    if client is None:
        check_address(scheduler)
        probe(scheduler, limit)
        own = client = _open_client(distributed, scheduler, limit, faults)
    address = str(scheduler or getattr(getattr(client, "scheduler", None), "address", "client"))
    try:
        threads = sum(client.nthreads(callback_timeout=limit).values())
        if threads == 0:
            raise _network_error(address, "the Dask cluster has no worker to run the blocks; "
                                 "start workers (dask worker ADDRESS)")
        if leaves is None:
            leaves = threads
        ranges = split_ranges(n_blocks, int(leaves))
        return drive(_Cluster(client, make_block, limit), make_block, ranges, n_cols, method)
    except faults as err:
        raise _network_error(address, "the Dask cluster failed in mid-run "
                             f"({type(err).__name__}: {_first_line(err)})") from None
    finally:
        if own is not None:
            try:
                own.close(timeout=limit)
            except Exception:  # closing a lost cluster must not hide the first error
                pass
