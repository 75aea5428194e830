"""Write a token dataset restricted to some of its sequences (``analyze --write-clean``).

The reduced file keeps the layout of the original: for the padded layout (``tokens`` (N, n, d))
every array whose first axis has length N is restricted to the kept rows (tokens, weights, mask
or lengths, names, and extra arrays such as per-sequence ``targets``); for the ragged layout
(``tokens`` (T, d) with ``offsets``) the kept sequences' tokens, per-token weights and any extra
array with first axis T are concatenated and ``offsets`` rebuilt. Other arrays are copied
unchanged. Values are copied bit for bit (no renormalisation), and a file without ``names``
gets the default names of the kept sequences (``seq3``, ...) so that they can be traced back.
Written through :func:`ntkcheck.io.atomic_savez` (temporary file, fsync, rename).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from .atomic import atomic_savez
from .tokens import load_token_npz, read_npz

__all__ = ["write_subset_npz"]


def write_subset_npz(source: str | Path, target: str | Path, keep: Sequence[int]) -> int:
    """Write the sequences ``keep`` (indices, in the file's order) of ``source`` to ``target``.

    Returns the number of sequences written. Raises InputError when ``source`` is not a token
    ``.npz`` file, when ``target`` is ``source`` or does not end in ``.npz``, or when ``keep`` is
    empty.
    """
    src, out = Path(source), Path(target)
    if src.suffix.lower() != ".npz":
        raise InputError(f"writes token datasets (.npz) only, but {src} is a distribution "
                         "spec; remove the suggested sequences from it by hand",
                         field="--write-clean")
    if out.suffix.lower() != ".npz":
        raise InputError(f"'{out}' must end in .npz", field="--write-clean")
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise InputError(f"'{out}' is the input file; write the reduced data to a new file",
                         field="--write-clean")
    keep = [int(i) for i in keep]
    if not keep:
        raise InputError("no sequence would be kept", field="--write-clean")
    arrays = read_npz(src)
    names = load_token_npz(src).names  # validates the file and gives the default names
    N = len(names)
    rows = np.asarray(keep, dtype=np.intp)
    tokens = np.asarray(arrays["tokens"])
    result: dict[str, np.ndarray] = {}
    if tokens.ndim == 2:  # ragged
        offsets = np.asarray(arrays["offsets"]).astype(np.int64)
        T = tokens.shape[0]
        pick = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in rows])
        lengths = np.diff(offsets)[rows]
        for key, value in arrays.items():
            a = np.asarray(value)
            if key == "offsets":
                result[key] = np.concatenate([[0], np.cumsum(lengths)]).astype(a.dtype)
            elif a.ndim >= 1 and a.shape[0] == T and key != "names":
                result[key] = a[pick]
            elif a.ndim >= 1 and a.shape[0] == N:
                result[key] = a[rows]
            else:
                result[key] = a
    else:
        for key, value in arrays.items():
            a = np.asarray(value)
            result[key] = a[rows] if a.ndim >= 1 and a.shape[0] == N else a
    if "names" not in arrays:
        result["names"] = np.array([names[i] for i in rows])
    atomic_savez(out, **result)
    return len(rows)
