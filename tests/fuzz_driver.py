"""Run many ntkcheck command lines in one process and report what each did (for the fuzz tests).

Usage: ``python fuzz_driver.py CASES.json RESULTS.json``. CASES.json is a list of
``{"name": ..., "argv": [...], "env": {...}}``; for each case the driver calls
``ntkcheck.cli.main(argv)`` with stdout and stderr captured, a time limit of ``TIME_LIMIT``
seconds or the case's ``timeout`` (SIGALRM) and the given environment variables, and records
the exit code, both streams, the wall time and any exception that escaped ``main`` (a contract
violation). The caller runs this script under an address-space limit (RLIMIT_AS), so that a
missing memory guard shows up as a failed case instead of swapping. The peak resident size of
the process (ru_maxrss) is reported after every case.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import signal
import sys
import time
import traceback

TIME_LIMIT = 20


class Hang(BaseException):  # not an Exception: the CLI must not catch it
    pass


def _alarm(signum, frame):
    raise Hang()


def run_case(case: dict) -> dict:
    from ntkcheck.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env = {k: os.environ.get(k) for k in case.get("env", {})}
    os.environ.update(case.get("env", {}))
    code, escaped = None, None
    t0 = time.perf_counter()
    signal.alarm(int(case.get("timeout", TIME_LIMIT)))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(case["argv"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Hang:
        escaped = "hang"
    except BaseException:  # noqa: BLE001 - anything escaping main is a violation
        escaped = traceback.format_exc()
    finally:
        signal.alarm(0)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"name": case["name"], "code": code, "stdout": out.getvalue()[:20000],
            "stderr": err.getvalue()[:20000], "escaped": escaped,
            "time": time.perf_counter() - t0,
            "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def main() -> None:
    import warnings

    warnings.simplefilter("default")  # a RuntimeWarning line on stderr is a violation
    signal.signal(signal.SIGALRM, _alarm)
    cases = json.load(open(sys.argv[1], encoding="utf-8"))
    results = [run_case(c) for c in cases]
    with open(sys.argv[2], "w", encoding="utf-8") as fh:
        json.dump(results, fh)


if __name__ == "__main__":
    main()
