"""Run the exact test in a child process that is stopped at its deadline (SPEC §4: never hang).

A single factorisation (sympy's ``factor_list``, python-flint's ``factor``), an exact elimination
or an integer factorisation cannot be interrupted from inside, so a time limit checked between
steps does not hold. :func:`run_with_deadline` runs the whole computation in a child process,
receives plain picklable messages over a pipe (stage names, then the result or the refusal) and
kills the child (SIGKILL) when the deadline passes: the call returns within the time limit plus
the time to kill and reap a process (milliseconds), whatever the child is doing.

On Linux the child is forked (about 10 ms of CPU per call; the data are inherited without
pickling); elsewhere it is started with ``forkserver`` or ``spawn`` (slower to start, data
pickled). The child ignores SIGINT (Ctrl-C interrupts the parent, which then kills the child),
dies with its parent (Linux) or a second after the limit (an alarm), and leaves with
``os._exit`` (no atexit handlers, no flush of inherited buffers).
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
import time
import warnings
from typing import Any, Callable

from .errors import ExactCheckFailed, ExactRefused

__all__ = ["run_with_deadline"]

#: Longest single wait on the pipe (seconds), so that huge time limits never overflow poll().
_POLL = 60.0


def _context():
    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _outlive_no_one(parent: int, timeout: float) -> None:
    """Make sure the child never outlives its purpose, even if the parent is killed (SIGKILL
    leaves it no chance to kill the child): on Linux the kernel sends SIGKILL when the parent
    dies, and everywhere an alarm (default action: terminate) fires a second after the limit."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    if hasattr(signal, "setitimer"):
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, timeout + 1.0)


def _child(conn, func: Callable[..., Any], args: tuple, parent: int,
           timeout: float) -> None:  # pragma: no cover - runs in the child process
    """Body of the child process: every outcome is sent as a (tag, plain data) message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _outlive_no_one(parent, timeout)
    try:
        result = func(*args, progress=lambda msg: conn.send(("stage", msg)))
        message: tuple = ("ok", result)
    except ExactRefused as err:
        message = ("refused", (err.reason, err.kind))
    except ExactCheckFailed as err:
        message = ("failed", str(err))
    except MemoryError:
        message = ("refused", ("the exact test ran out of memory; the case is too large for "
                               "it", "budget"))
    except BaseException as err:  # a bug: reported as such, never a hang or a silent result
        message = ("error", str(err) or type(err).__name__)
    try:
        conn.send(message)
    except BaseException as err:
        conn.send(("error", f"the result could not be sent back ({err})"))
    finally:
        conn.close()
        os._exit(0)


def run_with_deadline(func: Callable[..., Any], args: tuple, *, timeout: float,
                      progress: Callable[[str], None] | None = None,
                      timeout_hint: str = "") -> Any:
    """``func(*args, progress=...)`` in a child process, stopped after ``timeout`` seconds.

    Parameters
    ----------
    func : callable
        A module-level function taking ``progress`` (a callable receiving stage messages) as a
        keyword; returns a picklable result or raises :class:`ExactRefused` /
        :class:`ExactCheckFailed`.
    args : tuple
        Its positional arguments (inherited by the forked child; pickled otherwise).
    timeout : float
        Seconds (> 0). Past them the child is killed.
    progress : callable(str), optional
        Receives the child's stage messages as they arrive.
    timeout_hint : str
        Appended to the timeout reason (e.g. how to make the test faster).

    Returns
    -------
    The child's result.

    Raises
    ------
    ExactRefused
        ``timeout`` (with the stage reached), the child's own refusal, or ``internal`` when the
        child failed or died.
    ExactCheckFailed
        Raised in the child, passed on.
    """
    ctx = _context()
    reader, writer = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(writer, func, args, os.getpid(), timeout),
                       daemon=True)
    start = time.monotonic()
    deadline = start + timeout
    stage = "starting"
    for stream in (sys.stdout, sys.stderr):  # the forked child must not inherit pending output
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    with warnings.catch_warnings():
        # Python >= 3.12 warns that fork() in a multi-threaded process may deadlock the child;
        # the child only runs this module's pure computation, and a deadlocked child would be
        # killed at the deadline like a slow one.
        warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks",
                                category=DeprecationWarning)
        gc.freeze()  # the child's collections then skip (and do not copy) the parent's objects
        try:
            proc.start()
        finally:
            gc.unfreeze()
    writer.close()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ExactRefused(
                    f"the exact test reached its time limit of {timeout:g} s at the stage "
                    f"'{stage}' and was stopped; the numerical verdict stands (raise "
                    f"--exact-timeout{timeout_hint})", kind="timeout")
            if not reader.poll(min(remaining, _POLL)):
                continue
            try:
                tag, payload = reader.recv()
            except (EOFError, OSError):
                proc.join(1.0)
                raise ExactRefused(f"the exact test's worker process stopped unexpectedly "
                                   f"(exit code {proc.exitcode}) at the stage '{stage}'; this "
                                   "is a bug or the machine ran out of memory",
                                   kind="internal") from None
            if tag == "stage":
                stage = str(payload)
                if progress is not None:
                    progress(payload)  # a ProgressUpdate keeps its fields through the pipe
                continue
            if tag == "ok":
                return payload
            if tag == "refused":
                raise ExactRefused(payload[0], kind=payload[1])
            if tag == "failed":
                raise ExactCheckFailed(payload)
            raise ExactRefused(f"the exact test failed with an internal error ({payload}); "
                               "this is a bug in ntkcheck, please report it", kind="internal")
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        reader.close()
