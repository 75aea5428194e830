"""Exception and warning hierarchy of ntkcheck.

Every error a user can cause is an :class:`NtkcheckError`; the CLI turns it into a one-line
message on stderr and exit code 2. Messages name the file, the field and the fix.
"""

from __future__ import annotations

__all__ = ["NtkcheckError", "InputError", "ConfigError", "NumericalError", "NtkcheckWarning",
           "ResourceError", "Terminated", "EXIT_INTERNAL", "install_hint"]


def install_hint(extra: str, packages: str) -> str:
    """How to add an optional extra: ntkcheck is installed from a clone of its repository (it
    is not on a package index), so ``pip install -e '.[extra]'`` run in that clone, or the
    extra's ``packages`` by name (which works from anywhere)."""
    return f"pip install -e '.[{extra}]' in the ntkcheck clone (or pip install {packages})"


class NtkcheckError(Exception):
    """Base class of every error ntkcheck raises on purpose."""


class InputError(NtkcheckError, ValueError):
    """A malformed input: file, array, distribution parameter or option.

    Parameters
    ----------
    message : str
        What is wrong and how to fix it.
    source : str, optional
        The file (or object) the input came from; prefixed to the message.
    field : str, optional
        The field, key or argument at fault; prefixed to the message.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        self.reason = message
        where = ": ".join(p for p in (source, f"field '{field}'" if field else None) if p)
        super().__init__(f"{where}: {message}" if where else message)

    def located(self, source: str | None = None, prefix: str | None = None) -> "InputError":
        """Return a copy with a file name and/or a field prefix added."""
        field = self.field
        if prefix:
            field = f"{prefix}.{field}" if field else prefix
        err = type(self)(self.reason, source=source or self.source, field=field)
        return err


class ConfigError(InputError):
    """A malformed training configuration (unknown key, wrong type, out of range)."""


class NumericalError(NtkcheckError, ArithmeticError):
    """A computation produced non-finite values (e.g. a diverging training flow)."""


class NtkcheckWarning(UserWarning):
    """A result is usable but weaker than asked; the message says what to change."""


class ResourceError(InputError):
    """A stage would need more memory (or other resources) than allowed; the message names the
    estimate, the limit and the options that reduce the work."""


#: Exit code of an unexpected internal error (a bug): never 0, 1 or 3, which are verdicts.
EXIT_INTERNAL = 5


class Terminated(KeyboardInterrupt):
    """SIGTERM received; raised like Ctrl-C so that a run stops at a clean point (exit 143)."""
