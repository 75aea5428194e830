"""Command-line interface: a thin layer over the Python API (one module per command)."""

from __future__ import annotations

from .app import app

# Importing the command modules registers their commands on ``app``.
from . import analyze  # noqa: F401,E402
from . import train, generate  # noqa: F401,E402
from . import spectrum  # noqa: F401,E402
from . import runs  # noqa: F401,E402

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``ntkcheck`` console script.

    Usage errors (unknown option, invalid value, missing argument) are printed as one line
    ``ntkcheck: error: ...`` with exit code 2, like every other input error. ``--debug``
    anywhere before a ``--`` turns on tracebacks of internal errors (exit 5). SIGTERM stops
    the command like Ctrl-C (exit 143); the previous SIGTERM handler is restored on return.
    """
    import signal

    previous = _terminate_like_interrupt()
    try:
        _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> None:
    import os
    import sys

    import typer

    from ..io.paths import printable
    from ..errors import Terminated
    from .app import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED, _silence_stdout,
                      internal_error)

    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)
    if "--debug" in args[:cut]:
        os.environ["NTKCHECK_DEBUG"] = "1"
        args = [a for a in args[:cut] if a != "--debug"] + args[cut:]
    try:
        code = app(args=args, prog_name="ntkcheck", standalone_mode=False)
    except typer.Abort:
        print("ntkcheck: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt as err:
        term = isinstance(err, Terminated)
        print(f"ntkcheck: {'terminated' if term else 'interrupted'}", file=sys.stderr)
        sys.exit(EXIT_TERMINATED if term else EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_INTERNAL)
    except Exception as err:
        # click's exceptions (vendored by recent typer releases, a dependency of older ones)
        if not (hasattr(err, "format_message") and hasattr(err, "exit_code")):
            sys.exit(internal_error(err).exit_code)
        if type(err).__name__ == "NoArgsIsHelpError":
            err.show()
            sys.exit(err.exit_code)
        ctx = getattr(err, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"ntkcheck: error: {printable(err.format_message())}{hint}", file=sys.stderr)
        sys.exit(err.exit_code)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    sys.exit(code if isinstance(code, int) else 0)


def _terminate_like_interrupt():
    """SIGTERM raises :class:`~ntkcheck.errors.Terminated` (a KeyboardInterrupt): every command
    then stops like on Ctrl-C, with one line and exit 143 (``train`` checkpoints first).
    Returns the previous handler (None outside the main thread, where nothing is changed)."""
    import signal
    import threading

    from ..errors import Terminated

    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise Terminated()

    return signal.signal(signal.SIGTERM, handler)
