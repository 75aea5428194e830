"""The typer application and what every command shares: error handling, consoles, exit codes.

Exit codes (stable, documented in the README):

==  =========================================================
0   success; for ``analyze``: the condition holds (injective)
1   ``analyze``: a dependency was found (not injective)
2   usage or input error (one line on stderr, no traceback), including the memory guard
3   ``analyze``: inconclusive
4   numerical failure during a run (e.g. ``train`` diverged)
5   internal error (a bug): one line asking to report it; the traceback with ``--debug`` or
    ``NTKCHECK_DEBUG=1``
130 interrupted by SIGINT (Ctrl-C); 143 terminated by SIGTERM (``train`` checkpoints first)
==  =========================================================

A closed stdout (``ntkcheck analyze ... | head -1``) ends quietly with the verdict's own code.
Every name and path printed (reports and error lines) has its control characters escaped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from typing import Callable, Iterator, TypeVar

import typer
from rich.console import Console

from ..errors import EXIT_INTERNAL, NtkcheckError, NumericalError, Terminated
from ..io.paths import printable

__all__ = ["app", "EXIT_OK", "EXIT_FOUND", "EXIT_INPUT", "EXIT_INCONCLUSIVE", "EXIT_NUMERICAL",
           "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "stdout_console",
           "stderr_console", "cli_errors", "fail", "debug_enabled", "closed_stdout_exits",
           "max_memory_option"]

EXIT_OK, EXIT_FOUND, EXIT_INPUT, EXIT_INCONCLUSIVE, EXIT_NUMERICAL = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
ISSUES_HINT = "please report it with the output of --debug"

def _hide_flag_types() -> None:
    """Show no ``<bool>`` type after a flag in ``--help`` (a flag takes no value).

    typer prints the parameter type of every option, flags included; an option's
    ``display_type_rich`` is what the help table shows, so flags get None there.
    """
    try:
        from typer.core import TyperOption
    except ImportError:  # pragma: no cover - older typer: it printed no type for flags
        return
    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "_ntkcheck_flags", False):
        return

    def display_type_rich(self, ctx):  # type: ignore[no-untyped-def]
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._ntkcheck_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()

app = typer.Typer(
    name="ntkcheck",
    help="Check the attention-NTK injectivity condition (Barboni et al. 2026) and run the "
    "mean-field transformer's gradient flow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class SafeConsole(Console):
    """A rich Console whose printed strings have their control characters escaped first.

    Markup is never made of control characters, so escaping them keeps the markup and only
    neutralises data (sequence names, paths) that could move the cursor or retitle a terminal.
    """

    def print(self, *objects, **kwargs) -> None:  # type: ignore[override]
        super().print(*(printable(o) if isinstance(o, str) else o for o in objects), **kwargs)

    def on_broken_pipe(self) -> None:
        """rich exits 1 on a closed stdout, which would read as a verdict: let the command's
        :func:`closed_stdout_exits` choose the exit code instead."""
        self.quiet = True
        raise BrokenPipeError(32, "Broken pipe")


def stdout_console() -> Console:
    """Console for results (stdout); colour off when NO_COLOR is set or not a terminal."""
    return SafeConsole(file=sys.stdout, no_color="NO_COLOR" in os.environ, soft_wrap=True,
                       highlight=False)


def stderr_console() -> Console:
    """Console for progress, warnings and errors (stderr)."""
    return SafeConsole(file=sys.stderr, no_color="NO_COLOR" in os.environ, soft_wrap=True,
                       highlight=False)


def debug_enabled() -> bool:
    """``--debug`` was given or NTKCHECK_DEBUG is set to a non-empty value other than 0."""
    return os.environ.get("NTKCHECK_DEBUG", "") not in ("", "0")


def fail(message: str, code: int = EXIT_INPUT) -> "typer.Exit":
    """Print ``ntkcheck: error: message`` (one line, control characters escaped) on stderr and
    return the Exit to raise."""
    print(f"ntkcheck: error: {printable(message)}", file=sys.stderr)
    return typer.Exit(code)


def internal_error(err: BaseException) -> "typer.Exit":
    """One line for an unexpected exception (a bug), the traceback only in debug mode."""
    if debug_enabled():
        traceback.print_exception(type(err), err, err.__traceback__, file=sys.stderr)
    what = printable(str(err).strip().splitlines()[0] if str(err).strip() else "no details")
    print(f"ntkcheck: internal error: {what[:300]}; this is a bug, {ISSUES_HINT} (or "
          f"NTKCHECK_DEBUG=1)", file=sys.stderr)
    return typer.Exit(EXIT_INTERNAL)


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


@contextlib.contextmanager
def closed_stdout_exits(code: int) -> Iterator[None]:
    """Write the results inside this block: if stdout is closed (``| head``), exit quietly with
    ``code`` (the verdict's own exit code), not with a false 1 or a traceback."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(code) from None


def max_memory_option():
    """The ``--max-memory`` option shared by the data commands."""
    return typer.Option(None, "--max-memory", metavar="SIZE",
                        show_default="half of the machine's memory, or NTKCHECK_MAX_MEMORY",
                        help="Refuse work estimated to need more memory than SIZE (e.g. 4G, "
                             "512M).")


F = TypeVar("F", bound=Callable)


def cli_errors(func: F) -> F:
    """Turn library errors into one-line messages and exit codes (2 input, 4 numerical,
    5 internal error, 130 interrupted); a closed stdout exits quietly."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except NumericalError as err:
            raise fail(str(err), EXIT_NUMERICAL) from None
        except NtkcheckError as err:
            raise fail(str(err), EXIT_INPUT) from None
        except KeyboardInterrupt as err:
            term = isinstance(err, Terminated)
            print(f"ntkcheck: {'terminated' if term else 'interrupted'}", file=sys.stderr)
            raise typer.Exit(EXIT_TERMINATED if term else EXIT_INTERRUPTED) from None
        except MemoryError:
            raise fail("ran out of memory; lower --max-memory so that the estimate refuses "
                       "the work early, or reduce the data or --probes", EXIT_INPUT) from None
        except BrokenPipeError:
            # stdout closed before a verdict was known: nothing was decided
            _silence_stdout()
            raise typer.Exit(EXIT_INTERNAL) from None
        except RecursionError:
            raise fail("the input is nested too deeply; flatten it", EXIT_INPUT) from None
        except Exception as err:  # a bug: say so in one line, never exit 0/1/3
            raise internal_error(err) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"ntkcheck {__version__}")
        raise typer.Exit(0)


def _debug(value: bool) -> None:
    if value:
        os.environ["NTKCHECK_DEBUG"] = "1"


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", callback=_debug, is_eager=True,
                               help="Print the traceback of an internal error (also "
                                    "NTKCHECK_DEBUG=1)."),
) -> None:
    """Check the attention-NTK injectivity condition (Barboni et al. 2026) and run the
    mean-field transformer's gradient flow. Exit codes: 0 ok/injective, 1 not injective,
    2 usage or input error, 3 inconclusive, 4 numerical failure, 5 internal error,
    130 interrupted, 143 terminated."""
