"""The files of a training run's directory, checked before they are written or read.

Layout of ``output.dir`` (written by :func:`ntkcheck.meanfield.train`)::

    .ntkcheck.lock                  held with flock while a process writes the directory
    config.json                     resolved configuration (absolute paths)
    history.jsonl                   one JSON object per recorded step
    checkpoints/step_NNNNNN.npz     heads and what a resume needs
    summary.json                    status, losses, time, ...

Nothing outside the run directory is written or deleted (docs/safety.md): a run file that is a
symbolic link, a FIFO, a device, a hard link (the lock) or another non-regular file, and a
``checkpoints`` that is a link or not a directory, are refused before anything is touched
(:func:`check_run_files`); no other output may land on a run's own file
(:func:`run_owned`); history.jsonl is read line by line, at most :data:`MAX_HISTORY_LINE`
bytes a line, and a record whose fields have the wrong types is skipped as corrupt
(:func:`read_history`).
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Optional

from ..errors import ConfigError, InputError
from .paths import existing_file, same_file

__all__ = ["LOCK_NAME", "RUN_FILES", "MAX_HISTORY_LINE", "CHECKPOINT_NAME", "RunLock",
           "check_run_files", "run_owned", "list_checkpoints", "read_history"]

#: Name of a checkpoint file (the step in the group).
CHECKPOINT_NAME = re.compile(r"^step_(\d{6,})\.npz$")
_CKPT = CHECKPOINT_NAME
#: Lock file of a run directory (held with flock while a process writes the directory).
LOCK_NAME = ".ntkcheck.lock"
#: The files a run directory's writer owns at its top level (and everything in checkpoints/).
RUN_FILES = (LOCK_NAME, "config.json", "history.jsonl", "summary.json")
#: Longest line of history.jsonl read (a record is about 200 bytes); longer lines are corrupt.
MAX_HISTORY_LINE = 64 * 1024
#: Numeric fields of a history record (a number or null when present).
_NUMERIC_FIELDS = ("time", "loss", "grad_norm_sq", "ntk_min_eig", "pl_ratio")


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint, ascending."""
    folder = Path(run_dir) / "checkpoints"
    try:
        names = os.listdir(folder) if folder.is_dir() else []
    except OSError as err:
        raise InputError(f"cannot be listed ({err.strerror or err}); check its permissions",
                         source=str(folder)) from None
    found = [(int(m.group(1)), folder / name) for name in names if (m := _CKPT.match(name))]
    return sorted(found)


def _run_file_error(path: Path, what: str) -> ConfigError:
    return ConfigError(f"{path} is {what}; train writes only regular files of its own inside "
                       "the run directory, never through a link: remove it or choose another "
                       "--out", field="output.dir")


def check_run_files(run_dir: Path) -> None:
    """Refuse (ConfigError, before anything is written) a run directory whose own files are not
    what ``train`` writes: a symbolic link, FIFO, device or directory in place of
    ``.ntkcheck.lock``, ``config.json``, ``history.jsonl``, ``summary.json`` or a checkpoint,
    and a ``checkpoints`` that is a link or not a directory."""
    run_dir = Path(run_dir)
    try:
        st = os.stat(run_dir)
    except FileNotFoundError:
        return
    except OSError as err:
        raise ConfigError(f"{run_dir} cannot be accessed ({err.strerror or err}); check the "
                          "path", field="output.dir") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{run_dir} exists and is not a directory; choose another --out",
                          field="output.dir")

    def kind(path: Path):
        try:
            return os.lstat(path).st_mode
        except FileNotFoundError:
            return None
        except OSError as err:
            raise ConfigError(f"{path} cannot be accessed ({err.strerror or err}); check its "
                              "permissions", field="output.dir") from None

    for name in RUN_FILES:
        mode = kind(run_dir / name)
        if mode is None or stat.S_ISREG(mode):
            continue
        raise _run_file_error(run_dir / name, "a symbolic link" if stat.S_ISLNK(mode) else
                             "not a regular file")
    folder = run_dir / "checkpoints"
    mode = kind(folder)
    if mode is None:
        return
    if stat.S_ISLNK(mode):
        raise _run_file_error(folder, "a symbolic link")
    if not stat.S_ISDIR(mode):
        raise _run_file_error(folder, "not a directory")
    try:
        names = os.listdir(folder)
    except OSError as err:
        raise ConfigError(f"{folder} cannot be listed ({err.strerror or err}); check its "
                          "permissions", field="output.dir") from None
    for name in names:
        if _CKPT.match(name) or (name.startswith("step_") and name.endswith(".corrupt")):
            mode = kind(folder / name)
            if mode is not None and not stat.S_ISREG(mode):
                raise _run_file_error(folder / name, "a symbolic link" if stat.S_ISLNK(mode)
                                     else "not a regular file")


def run_owned(run_dir: Path, path: str | Path) -> bool:
    """Whether ``path`` is one of the files a run in ``run_dir`` owns (:data:`RUN_FILES`, or
    anything inside its ``checkpoints/``), so that no other output may be written there."""
    run_dir = Path(run_dir)
    if any(same_file(path, run_dir / name) for name in RUN_FILES):
        return True
    folder = run_dir / "checkpoints"
    try:
        parent = os.path.realpath(os.path.dirname(os.path.abspath(path)))
        inside = os.path.realpath(folder)
    except (OSError, ValueError):
        return False
    return parent == inside or parent.startswith(inside + os.sep)


def _number(value: object) -> bool:
    """A JSON number that converts to a float (not a bool, not an int beyond float range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _good_record(rec: object) -> bool:
    """A JSON object with an integer ``step`` in [0, 2^53) whose numeric fields are numbers
    or null."""
    if not isinstance(rec, dict) or type(rec.get("step")) is not int:
        return False
    if not 0 <= rec["step"] < 2**53:
        return False
    return all(rec.get(k) is None or _number(rec[k]) for k in _NUMERIC_FIELDS)


def read_history(path: str | Path) -> tuple[list[dict], list[int]]:
    """Good records of history.jsonl and the (1-based) numbers of the lines skipped.

    A record is good when it is a JSON object with an integer ``step`` and numbers (or null)
    in its numeric fields; a torn line (a crash in mid-write), a corrupt one (``"loss":
    "abc"``) or one longer than :data:`MAX_HISTORY_LINE` bytes (never held whole in memory)
    is skipped, and the good records after it are kept. A missing file has no records; a
    history.jsonl that is not a regular file (a FIFO, a directory) is an InputError.
    """
    if not os.path.lexists(path):
        return [], []
    existing_file(path, "the history.jsonl written by train")
    out, bad = [], []
    with open(path, "rb") as fh:
        number = 0
        while True:
            raw = fh.readline(MAX_HISTORY_LINE + 1)
            if not raw:
                break
            number += 1
            if len(raw) > MAX_HISTORY_LINE and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the long line
                    raw = fh.readline(MAX_HISTORY_LINE)
                bad.append(number)
                continue
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError):
                bad.append(number)
                continue
            if _good_record(rec):
                out.append(rec)
            else:
                bad.append(number)
    return out, bad


class RunLock:
    """Exclusive ``flock`` on ``run_dir/.ntkcheck.lock`` (pid written inside, for messages).

    The kernel drops the lock when the holding process exits or is killed, so a leftover lock
    file is never an obstacle (stale-lock detection without timeouts). Where ``fcntl`` is
    missing (Windows) the lock is a no-op.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.fd: Optional[int] = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        flags = (os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            fd = os.open(self.path, flags, 0o666)
        except OSError as err:
            if err.errno == errno.ELOOP or os.path.islink(self.path):
                raise _run_file_error(self.path, "a symbolic link") from None
            raise ConfigError(f"cannot create the lock file {self.path} ({err.strerror})",
                              field="output.dir") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            os.close(fd)  # a FIFO, or a hard link to a file elsewhere: never truncate it
            raise _run_file_error(self.path, "not a regular file of its own (a FIFO, device "
                                 "or hard link)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                os.close(fd)  # no flock on this file system (e.g. some network mounts)
                return
            try:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise ConfigError(f"{self.path.parent} is being written by another ntkcheck train "
                              f"(pid {holder}); wait for it to end, or choose another --out",
                              field="output.dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
