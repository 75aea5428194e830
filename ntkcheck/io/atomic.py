"""Atomic file writes: write a temporary file in the target directory, fsync, then rename.

A reader (or a crash) never sees a half-written file, and an existing file is replaced only once
the new content is complete: a full disk (ENOSPC), a file-size limit or a permission error is an
:class:`~ntkcheck.errors.InputError` and leaves the previous content intact. Only regular files
are written: a target that exists as a directory, FIFO, device or symlink is refused (it is never
replaced). A new file gets the mode the umask gives (``0o666 & ~umask``); a replaced file keeps
its mode. Temporary files are named ``.NAME.XXXXXXXX.tmp`` (see :data:`TEMP_PATTERN`).
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import threading
from pathlib import Path
from typing import Callable, IO

import numpy as np

from ..errors import InputError
from .paths import output_target

__all__ = ["atomic_write", "atomic_write_text", "atomic_savez", "TEMP_PATTERN",
           "remove_stale_temps"]

#: Names of the temporary files :func:`atomic_write` creates (and removes on failure).
TEMP_PATTERN = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")

_umask_lock = threading.Lock()


def _umask_mode() -> int:
    """0o666 & ~umask, read from /proc (Linux) so that no other thread ever sees a changed
    umask; elsewhere set and restored under a lock."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _write_error(err: OSError, path: Path) -> InputError:
    reason = err.strerror or str(err)
    return InputError(f"cannot be written ({reason}); the previous content, if any, is "
                      "unchanged; free space or check the permissions", source=str(path))


def atomic_write(path: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Call ``writer(fileobj)`` on a temporary file next to ``path``, then rename it to ``path``.

    Raises
    ------
    InputError
        The target is not a regular file (or a missing directory), or the write failed
        (ENOSPC, EFBIG, EACCES, ...); nothing at ``path`` changed.
    """
    path = output_target(path, "output")
    parent = path.parent
    try:
        old = os.stat(path)
        mode = stat.S_IMODE(old.st_mode)
    except FileNotFoundError:
        mode = _umask_mode()
    except OSError as err:
        raise _write_error(err, path) from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise _write_error(err, path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            writer(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise _write_error(err, path) from None
        raise
    _fsync_dir(parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: not every file system supports it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> None:
    """Atomically write an uncompressed ``.npz`` file."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files of interrupted :func:`atomic_write` calls in ``folder``.

    Only call this while holding the folder's lock (no other writer is running).
    Returns the removed paths.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if TEMP_PATTERN.match(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed
