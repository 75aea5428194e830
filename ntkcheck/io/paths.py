"""Checks shared by every reader and writer: inputs are regular files, output targets are safe,
and names are printable.

Readers accept only regular files (a symlink to one is fine): FIFOs, devices, sockets,
directories and symlink loops are refused before anything is opened, so that a FIFO cannot hang
a run and ``/dev/zero`` cannot be read until memory runs out. Writers accept only a path that
does not exist yet or is a regular file (not a symlink), is not one of the inputs, and whose
directory exists; these checks run before the work starts.
"""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from pathlib import Path
from typing import Iterable

from ..errors import InputError

__all__ = ["existing_file", "output_target", "printable", "shortened", "MAX_NAME_BYTES"]

#: Longest file-name component most file systems accept (NAME_MAX).
MAX_NAME_BYTES = 255

# bidirectional overrides and isolates can reorder what a terminal shows
_BIDI = {0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def printable(text: object) -> str:
    """``str(text)`` with control characters escaped, safe to print on one terminal line.

    C0/C1 controls (newline, ESC, ...), DEL and bidirectional overrides become ``\\xNN`` or
    ``\\uNNNN``, so a file or sequence name cannot split an error line, retitle or clear the
    terminal, or reorder the text around it.
    """
    s = str(text)
    if s.isprintable():
        return s
    out = []
    for ch in s:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o < 0xA0 or o in _BIDI or (
                unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")):
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def shortened(text: object, limit: int = 160) -> str:
    """:func:`printable` text cut in its middle to at most about ``limit`` characters
    (``head...tail``), so that a path of thousands of characters keeps an error on one
    readable line."""
    s = printable(text)
    if len(s) <= limit:
        return s
    half = max(limit // 2 - 2, 1)
    return f"{s[:half]}...{s[-half:]}"


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _os_reason(err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "is a symlink loop; point it at a file"
    if err.errno == errno.ENAMETOOLONG:
        parts = Path(os.fsdecode(err.filename)).parts if err.filename is not None else ()
        if parts and all(len(os.fsencode(p)) <= MAX_NAME_BYTES for p in parts):
            return "has a path too long for the file system; use a shorter path"
        return (f"has a name too long for the file system (a component over {MAX_NAME_BYTES} "
                "bytes); use a shorter name")
    if err.errno in (errno.EACCES, errno.EPERM):
        return "cannot be accessed (permission denied); check its permissions"
    return f"cannot be accessed ({err.strerror or 'error'}); check the path"


def existing_file(path: str | Path, expected: str) -> Path:
    """``Path(path)`` if it is an existing regular file (symlinks followed), else an InputError.

    ``expected`` completes "give ..." in the message, e.g. "an .npz file".
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise InputError("no such file; check the path", source=str(path)) from None
    except OSError as err:
        raise InputError(_os_reason(err), source=str(path)) from None
    except ValueError:  # "embedded null byte"
        raise InputError("contains a NUL character; check the path", source=str(path)) from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"is {_kind(st.st_mode)}, not a regular file; give {expected}",
                         source=str(path))
    return p


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def output_target(path: str | Path, option: str, inputs: Iterable[str | Path] = ()) -> Path:
    """Check, before any work, that ``path`` can receive an output file; return it as a Path.

    Refused (InputError naming ``option``): a directory, a FIFO, a device, a socket, a symlink
    (it would be replaced by a regular file), one of ``inputs``, a name component longer than
    :data:`MAX_NAME_BYTES` bytes, and a missing or non-writable parent directory.
    """
    p = Path(path)
    src = str(path)
    if not src or src.endswith(os.sep):
        raise InputError("is a directory; give a file name", source=src, field=option)
    for part in p.parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise InputError(f"has a name component over {MAX_NAME_BYTES} bytes; use a shorter "
                             "name", source=src, field=option)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise InputError(_os_reason(err), source=src, field=option) from None
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise InputError("is a symbolic link; writing would replace it, give the path of a "
                             "regular file", source=src, field=option)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"is {_kind(st.st_mode)}; give the path of a regular file",
                             source=src, field=option)
        for inp in inputs:
            if _same_file(p, Path(inp)):
                raise InputError("is also an input; writing it would destroy the input, give "
                                 "another file name", source=src, field=option)
    parent = p.parent
    if not parent.is_dir():
        raise InputError("its directory does not exist; create it first", source=src,
                         field=option)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError("its directory is not writable; check the permissions or choose "
                         "another path", source=src, field=option)
    return p
