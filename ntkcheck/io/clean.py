"""Write a dataset restricted to some of its sequences (``analyze --write-clean``).

The reduced file is the same kind of file as the input, in the input's layout, with the
dropped sequences removed and every value of the kept ones copied bit for bit (no
renormalisation of weights):

token ``.npz`` (``tokens``)
    padded ``tokens`` (N, n, d): every array whose first axis has length N is restricted to the
    kept rows (tokens, weights, mask or lengths, names, extra per-sequence arrays such as
    ``targets``); ragged ``tokens`` (T, d) with ``offsets``: the kept sequences' tokens,
    per-token weights and any extra array with first axis T are concatenated and ``offsets``
    rebuilt. Other arrays are copied unchanged.
token-ID ``.npz`` (``input_ids``)
    1-D ``input_ids`` (T,): the kept sequences' IDs and per-ID ``weights`` concatenated,
    ``offsets`` rebuilt or ``lengths`` restricted; padded (N, n): ``input_ids``, ``lengths`` or
    ``attention_mask`` and ``weights`` restricted to the kept rows. ``embeddings`` (the table)
    and other arrays are copied unchanged (an extra array is restricted like the IDs when its
    first axis has length T, like the sequences when it has length N).
``.jsonl``
    The kept lines, byte for byte, in order (blank lines dropped); a record without a
    ``name`` gets the default name it had (``seq3``), re-serialised with ``json.dumps``
    (numbers keep their exact values).
``.parquet``
    The kept rows of every column (``pyarrow``'s ``take``), the schema and its metadata kept;
    a missing or null ``name`` becomes the default name it had.

A file without names gets the default names of the kept sequences (``seq3``, ...) so that
they can be traced back. Written through :func:`ntkcheck.io.atomic.atomic_write` (temporary
file, fsync, rename: a regular file at the named path, never through a symlink, never the
input).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Sequence

import numpy as np

from ..errors import InputError
from .atomic import atomic_savez, atomic_write
from .ids import PYARROW_HINT, npz_holds_ids
from .paths import existing_file
from .tokens import load_token_npz, read_npz

__all__ = ["write_subset", "write_subset_npz", "check_clean_target", "CLEAN_SUFFIXES"]

#: Inputs ``--write-clean`` can reduce: token or token-ID ``.npz``, ``.jsonl``, ``.parquet``.
CLEAN_SUFFIXES = (".npz", ".jsonl", ".parquet")
_FIELD = "--write-clean"


def check_clean_target(source: str | Path, target: str | Path) -> None:
    """Refuse (InputError naming ``--write-clean``) an input that cannot be reduced (a
    distribution spec), a target of another kind than the input (``.jsonl`` -> ``.jsonl``),
    and the input itself as target. Checked before any work."""
    src, out = Path(source), Path(target)
    kind = src.suffix.lower()
    if kind not in CLEAN_SUFFIXES:
        raise InputError(f"writes token datasets and token IDs ({', '.join(CLEAN_SUFFIXES)}) "
                         f"only, but {src} is a distribution spec; remove the suggested "
                         "sequences from it by hand", field=_FIELD)
    if out.suffix.lower() != kind:
        raise InputError(f"'{out}' must end in {kind}: the reduced data are written as the "
                         f"same kind of file as the input {src.name}", field=_FIELD)
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise InputError(f"'{out}' is the input file; write the reduced data to a new file",
                         field=_FIELD)


def write_subset(source: str | Path, target: str | Path, keep: Sequence[int]) -> int:
    """Write the sequences ``keep`` (indices, in the file's order) of ``source`` to ``target``,
    a file of the same kind (module docstring). Returns the number of sequences written.

    Raises InputError when :func:`check_clean_target` refuses the pair, when ``keep`` is empty
    or out of range, or when the write fails (nothing at ``target`` changed then)."""
    check_clean_target(source, target)
    keep = [int(i) for i in keep]
    if not keep:
        raise InputError("no sequence would be kept", field=_FIELD)
    kind = Path(source).suffix.lower()
    if kind == ".jsonl":
        return _subset_jsonl(Path(source), Path(target), keep)
    if kind == ".parquet":
        return _subset_parquet(Path(source), Path(target), keep)
    if npz_holds_ids(source):
        return _subset_id_npz(Path(source), Path(target), keep)
    return write_subset_npz(source, target, keep)


def _rows(keep: Sequence[int], N: int, src: Path) -> np.ndarray:
    rows = np.asarray(keep, dtype=np.intp)
    if rows.min() < 0 or rows.max() >= N:
        raise InputError(f"sequence index out of range for the {N} sequences of {src}",
                         field=_FIELD)
    return rows


def _ragged(arrays: dict, rows: np.ndarray, offsets: np.ndarray, T: int, N: int,
            skip: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Arrays of a ragged layout restricted to ``rows``: first axis T -> the kept sequences'
    entries (concatenated), first axis N -> the kept rows, ``offsets`` rebuilt, the rest (and
    ``skip``) copied."""
    pick = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in rows])
    lengths = np.diff(offsets)[rows]
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        a = np.asarray(value)
        if key in skip:
            out[key] = a
        elif key == "offsets":
            out[key] = np.concatenate([[0], np.cumsum(lengths)]).astype(a.dtype)
        elif a.ndim >= 1 and a.shape[0] == T and key not in ("names", "lengths"):
            out[key] = a[pick]
        elif a.ndim >= 1 and a.shape[0] == N:
            out[key] = a[rows]
        else:
            out[key] = a
    return out


def write_subset_npz(source: str | Path, target: str | Path, keep: Sequence[int]) -> int:
    """Write the sequences ``keep`` of a token ``.npz`` (``tokens``) to ``target``."""
    src, out = Path(source), Path(target)
    check_clean_target(src, out)
    arrays = read_npz(src)
    names = load_token_npz(src).names  # validates the file and gives the default names
    N = len(names)
    rows = _rows(keep, N, src)
    tokens = np.asarray(arrays["tokens"])
    if tokens.ndim == 2:  # ragged
        offsets = np.asarray(arrays["offsets"]).astype(np.int64)
        result = _ragged(arrays, rows, offsets, tokens.shape[0], N)
    else:
        result = {key: (np.asarray(a)[rows] if np.ndim(a) >= 1 and np.shape(a)[0] == N
                        else np.asarray(a)) for key, a in arrays.items()}
    if "names" not in arrays:
        result["names"] = np.array([names[i] for i in rows])
    atomic_savez(out, **result)
    return len(rows)


def _subset_id_npz(src: Path, out: Path, keep: Sequence[int]) -> int:
    arrays = read_npz(src)
    ids = np.asarray(arrays["input_ids"])
    if ids.ndim == 2:
        N = ids.shape[0]
        rows = _rows(keep, N, src)
        result = {key: (np.asarray(a)[rows] if key != "embeddings" and np.ndim(a) >= 1
                        and np.shape(a)[0] == N else np.asarray(a))
                  for key, a in arrays.items()}
    elif ids.ndim == 1:
        if "offsets" in arrays:
            offsets = np.asarray(arrays["offsets"]).astype(np.int64)
        elif "lengths" in arrays:
            offsets = np.concatenate([[0], np.cumsum(np.asarray(arrays["lengths"]))])
        else:
            raise InputError("1-D input_ids need offsets or lengths", source=str(src),
                             field="offsets")
        N = len(offsets) - 1
        rows = _rows(keep, N, src)
        result = _ragged(arrays, rows, offsets, ids.shape[0], N, skip=("embeddings",))
        if "lengths" in arrays:
            result["lengths"] = np.asarray(arrays["lengths"])[rows]
    else:
        raise InputError(f"input_ids must be 1-D or 2-D, got shape {ids.shape}",
                         source=str(src), field="input_ids")
    if "names" not in arrays:
        result["names"] = np.array([f"seq{i}" for i in rows])
    atomic_savez(out, **result)
    return len(rows)


def _subset_jsonl(src: Path, out: Path, keep: Sequence[int]) -> int:
    wanted = set(keep)
    p = existing_file(src, "a .jsonl file")
    written = [0]

    def writer(fh: IO[bytes]) -> None:
        index = 0
        with open(p, "rb") as inp:
            for line in inp:
                if not line.strip():
                    continue
                if index in wanted:
                    record = json.loads(line)
                    if record.get("name") is None:
                        record["name"] = f"seq{index}"
                        line = json.dumps(record).encode("utf-8") + b"\n"
                    elif not line.endswith(b"\n"):
                        line += b"\n"
                    fh.write(line)
                    written[0] += 1
                index += 1
        if max(wanted) >= index:
            raise InputError(f"sequence index out of range for the {index} sequences of {src}",
                             field=_FIELD)

    atomic_write(out, writer)
    return written[0]


def _subset_parquet(src: Path, out: Path, keep: Sequence[int]) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(PYARROW_HINT, source=str(src)) from None
    table = pq.read_table(existing_file(src, "a .parquet file"))
    rows = _rows(keep, table.num_rows, src)
    names = table.column("name").to_pylist() if "name" in table.column_names else None
    table = table.take(pa.array(rows))
    default = [f"seq{i}" for i in rows]
    if names is None:
        table = table.append_column("name", pa.array(default, pa.string()))
    else:
        filled = [names[i] if names[i] is not None else d for i, d in zip(rows, default)]
        where = table.column_names.index("name")
        table = table.set_column(where, table.schema.field(where),
                                 pa.array(filled, table.schema.field(where).type))
    atomic_write(out, lambda fh: pq.write_table(table, fh))
    return len(rows)
