"""Expand the paths given to ``analyze``: files as given, directories searched recursively.

A scan never skips anything silently: a directory that cannot be listed (permission denied)
is kept as an entry of its own, which the loader reports as unreadable (exit 2) while the other
files are still analysed; a symbolic link to a directory is followed once (a link back to a
directory already searched is not searched twice).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Sequence

from .load import SUFFIXES

__all__ = ["expand_inputs", "unreadable_directory"]


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):  # a name too long, a loop: the loader reports it
        return False


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except (OSError, ValueError):
        return False


def _key(p: Path) -> Path:
    try:
        return p.resolve() if _exists(p) else p
    except (OSError, RuntimeError, ValueError):
        return p


def unreadable_directory(path: str | Path) -> str | None:
    """Why the directory ``path`` cannot be searched (a one-line reason with the fix), or None
    when it can be listed."""
    try:
        with os.scandir(path):
            pass
    except OSError as err:
        if err.errno in (errno.EACCES, errno.EPERM):
            return ("is a directory that cannot be read (permission denied); check its "
                    "permissions, its files were not analysed")
        return (f"is a directory that cannot be read ({err.strerror or err}); its files were "
                "not analysed")
    return None


def _walk(top: Path, out: list[Path]) -> list[Path]:
    """Dataset files under ``top`` (sorted, hidden names skipped) appended to ``out``, and
    the directories that could not be listed returned (in the order met)."""
    failed: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path) -> None:
        try:
            st = os.stat(folder)
        except OSError:
            failed.append(folder)
            return
        if (st.st_dev, st.st_ino) in seen:  # a link back to a directory already searched
            return
        seen.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            failed.append(folder)
            return
        dirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            if _is_dir(path):
                dirs.append(path)
            elif Path(entry.name).suffix.lower() in SUFFIXES:
                out.append(path)
        for d in dirs:
            visit(d)

    visit(top)
    return failed


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Every path in order; a directory is replaced by the dataset files under it.

    A directory contributes its files with a suffix in :data:`SUFFIXES` (``.npz``, ``.toml``,
    ``.json``, any case), found recursively in sorted order, skipping hidden files and
    directories (names starting with ``.``), and every subdirectory that cannot be listed (so
    that the loader reports it). A directory without any such file contributes itself, so that
    the loader reports it as empty or unreadable with the fix. Duplicates are kept once.
    """
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = _key(p)
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in paths:
        path = Path(raw)
        if not _is_dir(path):
            add(path)
            continue
        found: list[Path] = []
        failed = _walk(path, found)
        if not found and not failed:
            add(path)
        for p in sorted(found) + failed:
            add(p)
    return out
