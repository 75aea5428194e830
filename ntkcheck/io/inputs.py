"""Expand the paths given to ``analyze``: files as given, directories searched recursively.

A scan never skips anything silently: a directory that cannot be listed (permission denied)
is kept as an entry of its own, which the loader reports as unreadable (exit 2) while the other
files are still analysed; a symbolic link to a directory is followed once (a link back to a
directory already searched is not searched twice).

:func:`scan_inputs` also leaves out, in directory scans only, what ``--exclude GLOB`` names
and the files with an input suffix that are not ntkcheck inputs (:func:`not_an_input`: a
Hugging Face ``dataset_info.json``, an ``.npz`` of embeddings, a training configuration, a
training run's ``history.jsonl``), each with the reason, for the caller to print as a note and
list in the machine formats. A file named on the command line is always an input: if it is not
one, the loader says why (exit 2).

Scans look for :data:`SCAN_SUFFIXES`: token datasets and specs (``.npz``, ``.toml``,
``.json``) and token-ID files (``.jsonl``, ``.parquet``; ``.npz`` with ``input_ids``), which
need an embedding table (``--embeddings``, or ``embeddings`` stored in the ``.npz``): an ID
file found without one is an input all the same, and the loader's error (exit 2) names the
fix, so a forgotten ``--embeddings`` never passes CI unnoticed (:func:`holds_token_ids` tells
the CLI which scanned files the table applies to).
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import stat
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .load import MAX_SPEC_BYTES, SUFFIXES
from ..errors import InputError
from .ids import npz_holds_ids

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["expand_inputs", "scan_inputs", "Scan", "not_an_input", "unreadable_directory",
           "DATASET_ARRAYS", "SCAN_SUFFIXES", "holds_token_ids"]

#: Arrays that make an ``.npz`` a dataset (token vectors; token IDs with an embedding table).
DATASET_ARRAYS = ("tokens", "input_ids")
#: Suffixes a directory scan looks for (any case): datasets, specs and token-ID files.
SCAN_SUFFIXES = SUFFIXES + (".jsonl", ".parquet")
#: Bytes of a ``.jsonl`` read to recognise it (its first record, or the start of it).
JSONL_PEEK = 2**20
#: Largest parquet footer (file metadata) read to recognise a ``.parquet``.
PARQUET_FOOTER = 64 * 2**20


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


def _excluded(rel: str, name: str, patterns: Sequence[str]) -> bool:
    """Whether a glob of ``patterns`` matches ``rel`` (the path relative to the scanned
    directory, ``/``-separated) or the base name ``name`` (:func:`fnmatch.fnmatchcase`: ``*``
    also matches ``/``)."""
    return any(fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(name, g) for g in patterns)


def _walk(top: Path, out: list[Path], exclude: Sequence[str] = (),
          excluded: list[Path] | None = None) -> list[Path]:
    """Dataset files under ``top`` (sorted, hidden names skipped, ``exclude`` globs left out
    and appended to ``excluded``; an excluded directory is not searched) appended to ``out``,
    and the directories that could not be listed returned (in the order met)."""
    failed: list[Path] = []
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path, rel: str) -> None:
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
            sub = f"{rel}{entry.name}"
            is_dir = _is_dir(path)
            if not is_dir and Path(entry.name).suffix.lower() not in SCAN_SUFFIXES:
                continue
            if exclude and _excluded(sub, entry.name, exclude):
                if excluded is not None:
                    excluded.append(path)
                continue
            if is_dir:
                dirs.append((path, sub + "/"))
            else:
                out.append(path)
        for d, sub in dirs:
            visit(d, sub)

    visit(top, "")
    return failed


def expand_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Every path in order; a directory is replaced by the dataset files under it.

    A directory contributes its files with a suffix in :data:`SCAN_SUFFIXES` (``.npz``,
    ``.toml``, ``.json``, ``.jsonl``, ``.parquet``, any case), found recursively in sorted order, skipping hidden files and
    directories (names starting with ``.``), and every subdirectory that cannot be listed (so
    that the loader reports it). A directory without any such file contributes itself, so that
    the loader reports it as empty or unreadable with the fix. Duplicates are kept once.
    """
    return scan_inputs(paths, recognise=False).files


@dataclass(frozen=True)
class Scan:
    """What :func:`scan_inputs` found.

    Attributes
    ----------
    files : the inputs to analyse, in order (a directory that yields none stands for itself,
        so that the loader reports it)
    skipped : (path, reason) of the files of directory scans that are not ntkcheck inputs
    excluded : the files and directories of directory scans matched by an ``exclude`` glob
    """

    files: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    excluded: list[Path] = field(default_factory=list)


def scan_inputs(paths: Sequence[str | Path], exclude: Sequence[str] = (),
                recognise: bool = True) -> Scan:
    """:func:`expand_inputs` with the clean-up of directory scans.

    In a directory, an entry whose path relative to that directory (``sub/x.json``) or whose
    base name matches a glob of ``exclude`` is left out (a directory with all it holds), and
    with ``recognise`` a file that is not an ntkcheck input (:func:`not_an_input`) is skipped
    with its reason. Paths named on the command line are never excluded nor skipped. A
    directory that yields no input stands for itself (the loader then reports it, exit 2).
    """
    out: list[Path] = []
    seen: set[Path] = set()
    skipped: list[tuple[Path, str]] = []
    excluded: list[Path] = []

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
        failed = _walk(path, found, exclude, excluded)
        kept = []
        for p in sorted(found):
            why = not_an_input(p) if recognise else None
            if why is None:
                kept.append(p)
            elif _key(p) not in seen:
                skipped.append((p, why))
        if not kept and not failed:
            add(path)
        for p in kept + failed:
            add(p)
    return Scan(out, skipped, excluded)


#: What marks a spec that does not parse (so that a broken spec is reported, not skipped):
#: its ``distribution`` key, in JSON or TOML syntax.
_SPEC_MARKER = {".json": re.compile(rb'"distribution"\s*:'),
                ".toml": re.compile(rb'(?m)^\s*(\[\[\s*"?distribution"?\s*\]\]|"?distribution"?\s*=)')}


def not_an_input(path: str | Path) -> str | None:
    """Why the file ``path`` (found by a directory scan) is not an ntkcheck input, or None when
    it is one or may be one (the loader then reads it and reports any fault).

    * ``.npz``: an input when it holds an array of :data:`DATASET_ARRAYS` (read from the zip
      directory only); a file that is not a zip archive is left to the loader.
    * ``.jsonl``: token IDs when its first non-blank line is a JSON object with ``input_ids``;
      a line that does not parse (or is longer than :data:`JSONL_PEEK`) counts when its text
      holds ``"input_ids"`` (a broken corpus is reported, never skipped). A training run's
      ``history.jsonl`` or an empty file is not an input.
    * ``.parquet``: token IDs when its footer (the file metadata, read without pyarrow) names
      a column ``input_ids``; a file without the parquet magic is left to the loader.
    * ``.json`` / ``.toml``: a distribution spec is a document whose top level has the key
      ``distribution`` (SPEC files hold nothing else). A document that parses without it is not
      an input (a Hugging Face ``dataset_info.json``, a ``train.toml``); one that does not parse
      (or is over the spec size limit) is an input when its text holds the key (a truncated or
      broken spec is reported, never skipped), else not.
    * other suffixes: an input.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    try:  # never open a FIFO or a device: the loader refuses them with the reason
        if not stat.S_ISREG(os.stat(p).st_mode):
            return None
    except OSError:
        return None
    if suffix == ".npz":
        try:
            with zipfile.ZipFile(p) as zf:
                names = {n[:-4] if n.endswith(".npy") else n for n in zf.namelist()}
        except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, EOFError):
            return None
        if names & set(DATASET_ARRAYS):
            return None
        found = ", ".join(sorted(names)[:5]) + (", ..." if len(names) > 5 else "")
        return (f"an .npz without a dataset array ({' or '.join(DATASET_ARRAYS)}; it holds "
                f"{found or 'nothing'})")
    if suffix == ".jsonl":
        return _not_jsonl_ids(p)
    if suffix == ".parquet":
        return _not_parquet_ids(p)
    if suffix not in _SPEC_MARKER:
        return None
    kind = "JSON" if suffix == ".json" else "TOML"
    try:
        with os.fdopen(os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except OSError:
        return None  # unreadable: the loader says why
    if len(data) <= MAX_SPEC_BYTES:
        doc = _parse(data, suffix)
        if doc is not _UNPARSED:
            if isinstance(doc, dict) and "distribution" in doc:
                return None
            return (f"a {kind} document without a top-level 'distribution' list (not a "
                    "distribution spec)")
    if _SPEC_MARKER[suffix].search(data):
        return None
    return f"not a distribution spec (no 'distribution' key in this {kind} file)"


_UNPARSED = object()


def _parse(data: bytes, suffix: str):
    """The parsed document, or _UNPARSED (not UTF-8, a syntax error, nested too deeply)."""
    try:
        text = data.decode("utf-8")
        return json.loads(text) if suffix == ".json" else tomllib.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError, tomllib.TOMLDecodeError):
        return _UNPARSED


def _peek(path: Path, size: int, offset: int | None = None) -> bytes | None:
    """Up to ``size`` bytes of ``path`` (from ``offset``, negative: from the end), or None when
    it cannot be read (the loader then says why)."""
    try:
        with os.fdopen(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)), "rb") as fh:
            if offset is not None:
                fh.seek(offset, os.SEEK_END if offset < 0 else os.SEEK_SET)
            return fh.read(size)
    except OSError:
        return None


def _not_jsonl_ids(path: Path) -> str | None:
    data = _peek(path, JSONL_PEEK)
    if data is None:
        return None
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        return "an empty JSON Lines file (no token IDs)"
    first = lines[0]
    try:
        record = json.loads(first.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        record = _UNPARSED
    if isinstance(record, dict):
        return None if "input_ids" in record else (
            "a JSON Lines file whose first record has no 'input_ids' (not token IDs)")
    if record is _UNPARSED and b'"input_ids"' in first:
        return None
    return "a JSON Lines file whose first line is not a record with 'input_ids' (not token IDs)"


def _not_parquet_ids(path: Path) -> str | None:
    tail = _peek(path, 8, -8) if _size(path) >= 12 else None
    if tail is None or tail[4:] != b"PAR1":
        return None  # not a parquet file (or unreadable): the loader reports it
    length = int.from_bytes(tail[:4], "little")
    if length + 12 > _size(path) or length > PARQUET_FOOTER:
        return None
    footer = _peek(path, length, -8 - length)
    if footer is None or b"input_ids" in footer:
        return None
    return "a parquet file without an 'input_ids' column (not token IDs)"


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def holds_token_ids(path: str | Path) -> bool:
    """Whether ``path`` is a token-ID file (``.jsonl``, ``.parquet``, or an ``.npz`` whose zip
    directory lists ``input_ids``): the files an embedding table applies to."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".parquet"):
        return True
    if suffix != ".npz":
        return False
    try:
        return npz_holds_ids(path)
    except (InputError, OSError, ValueError):  # the loader reports it
        return False
