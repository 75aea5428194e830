"""Atomic file writes: write a temporary file in the target directory, fsync, then rename.

A reader (or a crash) never sees a half-written file, and an existing file is replaced only once
the new content is complete: a full disk (ENOSPC), a file-size limit or a permission error is an
:class:`~ntkcheck.errors.InputError` and leaves the previous content intact. Only regular files
are written: a target that exists as a directory, FIFO, device or symlink is refused (it is never
replaced). A new file gets the mode the umask gives (``0o666 & ~umask``); a replaced file keeps
its mode.

Temporary files carry a name only ntkcheck makes, ``.ntkcheck-tmp-PID-XXXXXXXXXXXX.tmp`` (the
writer's process id and 12 random hex digits, :data:`TEMP_PATTERN`). A kill (SIGKILL, power
loss) between the write and the rename leaves such a file and never a torn output; the next
process that writes into the same directory (and the next ``train`` of a run directory) removes
the ones whose writer is no longer running (:func:`remove_stale_temps`). No other file is ever
deleted.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import threading
from pathlib import Path
from typing import Callable, IO

import numpy as np

from ..errors import InputError
from .paths import output_target

__all__ = ["atomic_write", "atomic_write_text", "atomic_savez", "TEMP_PATTERN",
           "remove_stale_temps"]

#: Names of the temporary files :func:`atomic_write` creates (and removes on failure): the
#: marker ``.ntkcheck-tmp-``, the writer's pid, 12 random hex digits, ``.tmp``.
TEMP_PATTERN = re.compile(r"^\.ntkcheck-tmp-(\d{1,10})-[0-9a-f]{12}\.tmp$")
_TEMP_PREFIX = ".ntkcheck-tmp-"

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
    _clean_once(parent)
    try:
        fd, tmp = _create_temp(parent)
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


def _create_temp(folder: Path) -> tuple[int, str]:
    """A new file ``folder/.ntkcheck-tmp-PID-XXXXXXXXXXXX.tmp`` opened for writing (created
    exclusively, never through a symlink, mode 0o600 until the final mode is set)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(
        os, "O_CLOEXEC", 0)
    for _ in range(100):
        name = f"{_TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}.tmp"
        tmp = os.path.join(folder, name)
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")  # pragma: no cover


_cleaned: set[str] = set()


def _clean_once(folder: Path) -> None:
    """:func:`remove_stale_temps` on the first write into ``folder`` of this process (a run
    writing thousands of checkpoints lists its folder once, not once per checkpoint)."""
    try:
        key = os.path.realpath(folder)
    except (OSError, ValueError):
        return
    if key in _cleaned:
        return
    remove_stale_temps(folder)
    with _umask_lock:
        _cleaned.add(key)


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists (a zombie or another user's process counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


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
    """Delete the temporary files of killed :func:`atomic_write` calls in ``folder``.

    Only regular files named by :data:`TEMP_PATTERN` whose writer (the pid in the name) is no
    longer running are removed: another process's write in progress, this process's own, and
    every other file (a user's ``.draft.txt.a1b2c3.tmp``) are left alone; a symlink is never
    followed. Returns the removed paths.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    me = os.getpid()
    for entry in entries:
        m = TEMP_PATTERN.match(entry.name)
        if m is None:
            continue
        pid = int(m.group(1))
        try:
            if pid == me or _running(pid) or not entry.is_file(follow_symlinks=False):
                continue
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed
