"""The typer application and what every command shares: error handling, consoles, exit codes.

Exit codes (stable, documented in the README):

==  =========================================================
0   success; for ``analyze``: the condition holds (injective)
1   ``analyze``: a dependency was found (not injective)
2   usage or input error (one line on stderr, no traceback)
3   ``analyze``: inconclusive
4   numerical failure during a run (e.g. ``train`` diverged)
==  =========================================================
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, TypeVar

import typer
from rich.console import Console

from ..errors import NtkcheckError, NumericalError

__all__ = ["app", "EXIT_OK", "EXIT_FOUND", "EXIT_INPUT", "EXIT_INCONCLUSIVE", "EXIT_NUMERICAL",
           "stdout_console", "stderr_console", "cli_errors", "fail"]

EXIT_OK, EXIT_FOUND, EXIT_INPUT, EXIT_INCONCLUSIVE, EXIT_NUMERICAL = 0, 1, 2, 3, 4

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


def stdout_console() -> Console:
    """Console for results (stdout); colour off when NO_COLOR is set or not a terminal."""
    return Console(file=sys.stdout, no_color="NO_COLOR" in os.environ, soft_wrap=True,
                   highlight=False)


def stderr_console() -> Console:
    """Console for progress, warnings and errors (stderr)."""
    return Console(file=sys.stderr, no_color="NO_COLOR" in os.environ, soft_wrap=True,
                   highlight=False)


def fail(message: str, code: int = EXIT_INPUT) -> "typer.Exit":
    """Print ``ntkcheck: error: message`` on stderr and return the Exit to raise."""
    print(f"ntkcheck: error: {message}", file=sys.stderr)
    return typer.Exit(code)


F = TypeVar("F", bound=Callable)


def cli_errors(func: F) -> F:
    """Turn library errors into one-line messages and exit codes (2 input, 4 numerical)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except NumericalError as err:
            raise fail(str(err), EXIT_NUMERICAL) from None
        except NtkcheckError as err:
            raise fail(str(err), EXIT_INPUT) from None
        except KeyboardInterrupt:
            print("ntkcheck: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        print(f"ntkcheck {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Check the attention-NTK injectivity condition (Barboni et al. 2026) and run the
    mean-field transformer's gradient flow. Exit codes: 0 ok/injective, 1 not injective,
    2 usage or input error, 3 inconclusive, 4 numerical failure."""
