"""Atomic file writes: write a temporary file in the target directory, fsync, then rename.

A reader (or a crash) never sees a half-written file, and an existing file is replaced only once
the new content is complete.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, IO

import numpy as np

from ..errors import InputError

__all__ = ["atomic_write", "atomic_write_text", "atomic_savez"]


def atomic_write(path: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Call ``writer(fileobj)`` on a temporary file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError("its directory does not exist; create it first", source=str(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise InputError(f"cannot be written ({err.strerror})", source=str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> None:
    """Atomically write an uncompressed ``.npz`` file."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays))
