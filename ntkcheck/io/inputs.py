"""Expand the paths given to ``analyze``: files as given, directories searched recursively."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .load import SUFFIXES

__all__ = ["expand_inputs"]


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


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Every path in order; a directory is replaced by the dataset files under it.

    A directory contributes its files with a suffix in :data:`SUFFIXES` (``.npz``, ``.toml``,
    ``.json``, any case), found recursively in sorted order, skipping hidden files and
    directories (names starting with ``.``). A directory without any such file contributes
    itself, so that the loader reports it as unreadable with the fix. Duplicates are kept once.
    """
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve() if _exists(p) else p
        if key not in seen:
            seen.add(key)
            out.append(p)

    for raw in paths:
        path = Path(raw)
        if not _is_dir(path):
            add(path)
            continue
        found = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(Path(root) / f for f in sorted(files)
                         if not f.startswith(".") and Path(f).suffix.lower() in SUFFIXES)
        if not found:
            add(path)
        for p in sorted(found):
            add(p)
    return out
