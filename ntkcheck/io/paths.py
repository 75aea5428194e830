"""Checks shared by every reader: the path exists and is a regular file."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError

__all__ = ["existing_file"]


def existing_file(path: str | Path, expected: str) -> Path:
    """``Path(path)`` if it is an existing file, else an InputError naming it.

    ``expected`` completes "give ..." in the message, e.g. "an .npz file".
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file; check the path", source=str(path))
    if p.is_dir():
        raise InputError(f"is a directory; give {expected}", source=str(path))
    return p
