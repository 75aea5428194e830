"""Command-line interface: a thin layer over the Python API (one module per command)."""

from __future__ import annotations

from .app import app

# Importing the command modules registers their commands on ``app``.
from . import analyze  # noqa: F401,E402
from . import train, generate  # noqa: F401,E402
from . import spectrum  # noqa: F401,E402

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the ``ntkcheck`` console script."""
    app()
