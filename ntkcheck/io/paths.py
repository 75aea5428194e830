"""Checks shared by every reader and writer: inputs are regular files, output targets are safe,
and names are printable.

Readers accept only regular files (a symlink to one is fine): FIFOs, devices, sockets,
directories and symlink loops are refused before anything is opened, so that a FIFO cannot hang
a run and ``/dev/zero`` cannot be read until memory runs out; a file that cannot be opened
(permission denied) is reported as such. Writers accept only a path that does not exist yet or
is a regular file (not a symlink), is not one of the inputs, and whose directory exists; these
checks run before the work starts (see docs/safety.md).
"""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from pathlib import Path
from typing import Iterable

from ..errors import InputError

__all__ = ["existing_file", "output_target", "printable", "escape_surrogates", "same_file",
           "shortened", "MAX_NAME_BYTES"]

#: Longest file-name component most file systems accept (NAME_MAX).
MAX_NAME_BYTES = 255

# bidirectional overrides and isolates can reorder what a terminal shows
_BIDI = {0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def _escape_char(ch: str) -> str:
    """``\\xNN`` / ``\\uNNNN`` for one character; a surrogate-escaped byte (U+DC80..U+DCFF,
    what Python makes of an undecodable byte in a file name) is shown as the byte ``\\xNN``."""
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def escape_surrogates(text: str) -> str:
    """``text`` with every lone surrogate (U+D800..U+DFFF, which no UTF-8 encoder accepts)
    written as a visible escape: a file name byte that is not UTF-8 (``b"\\xff"``, read as
    ``"\\udcff"``) becomes ``\\xff``, any other surrogate ``\\udNNN``. Other text is unchanged."""
    if not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        return text
    return "".join(_escape_char(ch) if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


def printable(text: object) -> str:
    """``str(text)`` with control characters escaped, safe to print on one terminal line.

    C0/C1 controls (newline, ESC, 0x9B, ...), DEL, lone surrogates and bidirectional overrides
    become ``\\xNN`` or ``\\uNNNN``, so a file or sequence name cannot split an error line,
    retitle or clear the terminal, or reorder the text around it; ``##[`` (which a GitHub
    Actions runner reads as a command anywhere in a line) is shown as ``#\\x23[``.
    """
    s = str(text)
    if s.isprintable():
        return s.replace("##[", "#\\x23[") if "##[" in s else s
    out = []
    for ch in s:
        o = ord(ch)
        if o < 0x20 or 0x7F <= o < 0xA0 or o in _BIDI or (
                unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")):
            out.append(_escape_char(ch))
        else:
            out.append(ch)
    s = "".join(out)
    return s.replace("##[", "#\\x23[") if "##[" in s else s


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
    try:  # a mode-000 file is unreadable, not "not an .npz file" (O_NONBLOCK: never hangs)
        os.close(os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM):
            raise InputError("cannot be read (permission denied); check its permissions",
                             source=str(path)) from None
        raise InputError(_os_reason(err), source=str(path)) from None
    return p


def same_file(a: str | Path, b: str | Path) -> bool:
    """``a`` and ``b`` name the same file: the same inode when both exist, else the same
    absolute path with symlinks of the directories resolved."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        pass
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return os.path.abspath(a) == os.path.abspath(b)


_same_file = same_file


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
