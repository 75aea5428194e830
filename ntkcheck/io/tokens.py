"""Token-sequence datasets stored as ``.npz`` (numpy.savez) files.

Two layouts, validated once here (SPEC §1: one sequence = one discrete law):

padded
    ``tokens`` (N, n, d) float; optional ``weights`` (N, n) >= 0; optional padding given by
    either ``mask`` (N, n) bool (True = real token) or ``lengths`` (N,) int (first lengths[i]
    tokens are real). Padded tokens neither attend nor count; their values are ignored.
ragged
    ``tokens`` (T, d) float with ``offsets`` (N+1,) int, 0 = offsets[0] <= ... <= offsets[N] = T;
    sequence i is tokens[offsets[i]:offsets[i+1]]; optional ``weights`` (T,).

Optional ``names`` (N,) strings (bytes that are not UTF-8 and lone surrogates are kept as visible
``\\xNN`` / ``\\udNNN`` escapes); the default names are ``seq0``, ``seq1``, ... Other arrays (for
instance ``targets`` for training) are kept in :attr:`TokenArrays.extra`, unvalidated.
Weights of each sequence are normalised to sum 1 in floating point for the numerical work; the
stored weights are kept as they are (:attr:`TokenArrays.raw_weights`) and become each law's
exact parameters (``Discrete.rational``), so that the exact test and the extended-precision
re-check normalise them exactly (SPEC §3a: weights (1, 3) are 1/4 and 3/4, not their doubles).
"""

from __future__ import annotations

import os
import struct
import tokenize
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dataset import Dataset
from ..distributions import Discrete
from .. import resources
from ..errors import InputError
from .paths import escape_surrogates, existing_file

__all__ = ["TokenArrays", "load_token_npz", "read_npz", "npz_members", "NpyMember",
           "MAX_TOKEN_MAGNITUDE", "MIN_TOKEN_SPREAD", "MAX_UNITS_MAGNITUDE", "check_spread"]

_KNOWN = {"tokens", "weights", "mask", "lengths", "offsets", "names"}


@dataclass(frozen=True, eq=False)
class TokenArrays:
    """Validated, padded token sequences.

    Attributes
    ----------
    tokens : (N, n, d) float64
        Tokens, zero at padded positions.
    weights : (N, n) float64
        Token weights, each row summing to 1, exactly 0 at padded positions.
    names : tuple of N str
    source : str
        The file the arrays came from.
    extra : dict
        Other arrays found in the file (e.g. ``targets``), as loaded.
    raw_weights : (N, n) float64 or None
        The weights as stored (binary64, not normalised), 0 at padded positions; None when the
        file gives no weights (uniform).
    """

    tokens: np.ndarray
    weights: np.ndarray
    names: tuple[str, ...]
    source: str = "<arrays>"
    extra: dict = field(default_factory=dict)
    raw_weights: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """(N, n) bool, True for real tokens."""
        return self.weights > 0

    @property
    def lengths(self) -> np.ndarray:
        return self.mask.sum(axis=1)

    def to_dataset(self) -> Dataset:
        """One :class:`~ntkcheck.Discrete` law per sequence; its exact parameters are the
        stored tokens and the stored (unnormalised) weights."""
        if self.raw_weights is None:
            dists = tuple(Discrete(x[m], w[m])
                          for x, w, m in zip(self.tokens, self.weights, self.mask))
        else:
            dists = tuple(Discrete(x[m], w[m], rational={"atoms": x[m], "weights": r[m]})
                          for x, w, r, m in zip(self.tokens, self.weights, self.raw_weights,
                                                self.mask))
        return Dataset(self.names, dists, self.source)

    @classmethod
    def from_arrays(cls, arrays: dict, source: str = "<arrays>",
                    max_memory: int | None = None) -> "TokenArrays":
        """Validate a mapping of arrays in either layout (see module docstring)."""
        return _validate(arrays, source, max_memory)


#: Largest accepted |token coordinate|. ``analyze`` divides every coordinate by a power of two
#: (exact) before anything is squared, so it handles any representable data whose sums over
#: tokens stay finite: |x| <= 1e300 (a factor 1e8 below the float64 overflow at 1.8e308).
#: ``spectrum`` and ``train`` work in the data's own units and check the stricter
#: :data:`MAX_UNITS_MAGNITUDE` themselves. Rescale larger data (the condition is
#: affine-invariant, SPEC §2).
MAX_TOKEN_MAGNITUDE = 1e300
#: Smallest accepted non-zero spread max |x - pooled mean| of the tokens: a spread below it is
#: within a factor 1e8 of the float64 underflow (2.2e-308), where differences of tokens lose
#: their digits. Data with no spread at all (one point) are accepted.
MIN_TOKEN_SPREAD = 1e-300
#: Largest |coordinate| (and smallest non-zero spread, 1 / it) for the commands that compute in
#: the data's own units (``spectrum`` kernels square tilted moments; ``train`` exponentiates
#: attention scores): 1e100 keeps their squares and sums far from overflow and underflow.
MAX_UNITS_MAGNITUDE = 1e100
#: Most members an ``.npz`` may hold (a zip directory of millions of entries is refused).
MAX_NPZ_MEMBERS = 4096


@dataclass(frozen=True)
class NpyMember:
    """One array of an ``.npz`` as its ``.npy`` header declares it (nothing read yet)."""

    key: str
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def npz_members(path: str | Path) -> list[NpyMember]:
    """Keys, shapes, dtypes and sizes of the arrays of an ``.npz``, from the headers only.

    Raises InputError for a file that is not a zip archive, a member that is not an ``.npy``
    array, an object (pickle) dtype, a corrupt header, or a header that declares more bytes
    than its member holds (truncated data).
    """
    src = str(path)
    p = existing_file(path, "an .npz file")
    if not zipfile.is_zipfile(p):
        raise InputError("is not an .npz file (a zip archive written by numpy.savez)",
                         source=src)
    count = _declared_members(p)
    if count > MAX_NPZ_MEMBERS:
        raise InputError(f"holds {count} members, more than {MAX_NPZ_MEMBERS}; store the arrays "
                         "in fewer members", source=src)
    members = []
    try:
        with zipfile.ZipFile(p) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_NPZ_MEMBERS:
                raise InputError(f"holds {len(infos)} members, more than {MAX_NPZ_MEMBERS}; "
                                 "store the arrays in fewer members", source=src)
            for info in infos:
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                with zf.open(info) as fh:
                    members.append(_npy_header(fh, key, info.file_size, src))
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError,
            RuntimeError, KeyError, OverflowError, zlib.error) as err:
        raise InputError(f"is not a readable .npz file ({_reason(err)}); write it with "
                         "numpy.savez", source=src) from None
    return members


def _declared_members(path: Path) -> int:
    """Number of entries the zip's end-of-central-directory record (or its ZIP64 version)
    declares, read from the last 64 KiB of the file, before zipfile builds one object per
    entry. 0 when the record is not found (zipfile then reports the damage)."""
    size = os.stat(path).st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - (1 << 16) - 22))
        tail = fh.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return 0
    count = struct.unpack_from("<H", tail, at + 10)[0]
    z64 = tail.rfind(b"PK\x06\x06", 0, at)
    if count == 0xFFFF and z64 >= 0 and z64 + 40 <= len(tail):
        count = struct.unpack_from("<Q", tail, z64 + 32)[0]
    return int(count)


def _reason(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else "corrupt data"


def _header_reason(err: BaseException) -> str:
    if isinstance(err, tokenize.TokenError):  # args: (message, (line, column))
        return str(err.args[0]) if err.args else "unterminated literal"
    if isinstance(err, (RecursionError, MemoryError)):
        return "nested too deeply"
    return _reason(err)


def _npy_header(fh, key: str, stored: int, src: str) -> NpyMember:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
    except ValueError:
        raise InputError("is not a .npy array; write the file with numpy.savez", source=src,
                         field=key) from None
    try:
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
    except (ValueError, SyntaxError, TypeError, OverflowError, KeyError, tokenize.TokenError,
            RecursionError, MemoryError) as err:
        # numpy parses the header's Python literal; damaged bytes can make its tokenizer stop
        # ("EOF in multi-line statement", a TokenError) or nest too deeply
        raise InputError(f"has a corrupt .npy header ({_header_reason(err)}); write the file "
                         "again with numpy.savez", source=src, field=key) from None
    if dtype.hasobject:
        raise InputError("is an object array (pickled); store it as a numeric or str array, "
                         "e.g. np.array(names, dtype=str)", source=src, field=key)
    count = 1
    for k in shape:
        count *= int(k)
    nbytes = count * dtype.itemsize
    if nbytes > stored:
        raise InputError(f"is truncated or corrupt: its header declares {nbytes} bytes of data, "
                         f"the member holds at most {stored}; write the file again",
                         source=src, field=key)
    return NpyMember(key, tuple(int(k) for k in shape), dtype, nbytes)


def read_npz(path: str | Path, max_memory: int | None = None) -> dict:
    """All arrays of an ``.npz`` file (no pickles), or an :class:`InputError` naming the file.

    The headers are read first: the declared sizes (whatever the compression ratio) must fit
    in ``max_memory`` bytes (default :func:`ntkcheck.resources.default_max_memory`) before any
    array is decompressed.
    """
    src = str(path)
    members = npz_members(path)
    need = resources.npz_read_bytes(m.nbytes for m in members)
    big = max(members, key=lambda m: m.nbytes).key if members else ""
    resources.check_memory(need, max_memory, f"reading its arrays (largest '{big}')",
                           "use a smaller file", source=src)
    arrays = {}
    try:
        # open the file ourselves so that it is closed even when numpy fails half-way
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            for key in data.files:
                try:
                    arrays[key] = data[key]
                except ValueError as err:
                    if "pickle" in str(err).lower():
                        raise InputError("is an object array (pickled); store it as a numeric "
                                         "or str array, e.g. np.array(names, dtype=str)",
                                         source=src, field=key) from None
                    raise InputError(f"cannot be read ({_reason(err)})", source=src,
                                     field=key) from None
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, NotImplementedError,
            RuntimeError, OverflowError, zlib.error) as err:
        raise InputError(f"is not a readable .npz file ({_reason(err)}); write it with "
                         "numpy.savez", source=src) from None
    return arrays


def load_token_npz(path: str | Path, max_memory: int | None = None) -> TokenArrays:
    """Read and validate a token dataset (padded or ragged layout) within ``max_memory``."""
    return _validate(read_npz(path, max_memory), str(path), max_memory)


def _float(arrays: dict, key: str, src: str, ndim: int) -> np.ndarray:
    a = np.asarray(arrays[key])
    if a.dtype.kind not in "biuf":
        raise InputError(f"has dtype {a.dtype}; give real numbers", source=src, field=key)
    if a.ndim != ndim:
        raise InputError(f"must have {ndim} dimensions, got shape {a.shape}", source=src, field=key)
    return a.astype(np.float64)


def _int(arrays: dict, key: str, src: str, shape: tuple) -> np.ndarray:
    a = np.asarray(arrays[key])
    if a.dtype.kind not in "biu" and not (a.dtype.kind == "f" and np.all(np.isfinite(a))
                                           and np.all(a == np.round(a))):
        raise InputError(f"has dtype {a.dtype}; give integers", source=src, field=key)
    if a.shape != shape:
        raise InputError(f"has shape {a.shape}, expected {shape}", source=src, field=key)
    return a.astype(np.int64)


def _validate(arrays: dict, src: str, max_memory: int | None = None) -> TokenArrays:
    if "tokens" not in arrays:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise InputError(f"missing array; found {found}; save the token array as tokens=...",
                         source=src, field="tokens")
    raw = np.asarray(arrays["tokens"])
    if raw.ndim == 2 and "offsets" in arrays:
        tokens, weights = _ragged_to_padded(arrays, src, max_memory)
    elif raw.ndim == 2:
        raise InputError(f"is 2-D {raw.shape} without 'offsets'; give (N, n, d) padded tokens "
                         "or add offsets (N+1,) for the ragged layout", source=src, field="tokens")
    elif raw.ndim == 3:
        held = sum(np.asarray(a).nbytes for a in arrays.values())  # the arrays as read
        resources.check_memory(held + resources.padded_tokens_bytes(*raw.shape), max_memory,
                               f"validating tokens of shape {raw.shape}",
                               "use fewer or shorter sequences", source=src, field="tokens")
        tokens, weights = _padded(arrays, src)
    else:
        raise InputError(f"must be (N, n, d) or ragged (T, d), got shape {raw.shape}",
                         source=src, field="tokens")
    N = tokens.shape[0]
    if N == 0:
        raise InputError("holds no sequences (N = 0); the dataset is empty", source=src,
                         field="tokens")
    if tokens.shape[2] == 0:
        raise InputError("has d = 0 coordinates per token", source=src, field="tokens")
    real = weights > 0
    bad = ~np.isfinite(tokens) & real[..., None]
    if bad.any():
        i, a, _ = np.argwhere(bad)[0]
        raise InputError(f"has NaN or Inf at sequence {i}, token {a}; clean the data or mask "
                         "those tokens", source=src, field="tokens")
    tokens = np.where(real[..., None], tokens, 0.0)
    big = np.abs(tokens) > MAX_TOKEN_MAGNITUDE
    if big.any():
        i, a, _ = np.argwhere(big)[0]
        raise InputError(f"has a coordinate of magnitude {np.abs(tokens[i, a]).max():.3g} at "
                         f"sequence {i}, token {a}; the largest supported magnitude is "
                         f"{MAX_TOKEN_MAGNITUDE:g}; rescale the data (the condition is "
                         "affine-invariant)", source=src, field="tokens")
    check_spread(tokens[real], src, "tokens")
    raw_weights = weights.copy() if "weights" in arrays else None
    totals = weights.sum(axis=1)
    huge = ~np.isfinite(totals)
    if huge.any():  # finite weights whose sum overflows: rescale those rows first
        weights[huge] /= weights[huge].max(axis=1, keepdims=True)
        totals = weights.sum(axis=1)
    empty = np.flatnonzero(~(totals > 0))
    if empty.size:
        raise InputError(f"sequence {empty[0]} has no token of positive weight (empty sequence); "
                         "drop it or fix its weights/mask", source=src, field="weights")
    weights = weights / totals[:, None]
    names = _names(arrays, N, src)
    extra = {k: v for k, v in arrays.items() if k not in _KNOWN}
    return TokenArrays(tokens, weights, names, src, extra, raw_weights)


def check_spread(points: np.ndarray, src: str | None, field: str) -> None:
    """Refuse points (K, d) whose spread max |x - mean| is positive but below MIN_TOKEN_SPREAD.

    The check is exact in the sense that matters: the pooled covariance that whitening uses
    has entries of order spread^2, and below 1e-100 they come within reach of underflow, where
    the affine hull and every verdict would be wrong.
    """
    if points.size == 0:
        return
    spread = float(np.max(np.abs(points - points.mean(axis=0))))
    if 0.0 < spread < MIN_TOKEN_SPREAD:
        raise InputError(f"varies by at most {spread:.3g} around its mean; the smallest "
                         f"supported spread is {MIN_TOKEN_SPREAD:g}; rescale the data (the "
                         "condition is affine-invariant)", source=src, field=field)


def _check_weights(w: np.ndarray, src: str) -> None:
    if not np.all(np.isfinite(w)):
        raise InputError("has NaN or Inf; give finite weights", source=src, field="weights")
    if np.any(w < 0):
        raise InputError("has negative entries; weights must be >= 0", source=src,
                         field="weights")


def _padded(arrays: dict, src: str) -> tuple[np.ndarray, np.ndarray]:
    tokens = _float(arrays, "tokens", src, 3)
    N, n, _ = tokens.shape
    if n == 0:
        raise InputError("has n = 0 tokens per sequence; every sequence is empty", source=src,
                         field="tokens")
    if "offsets" in arrays:
        raise InputError("given with 3-D tokens; offsets is only for ragged (T, d) tokens",
                         source=src, field="offsets")
    if "weights" in arrays:
        w = _float(arrays, "weights", src, 2)
        if w.shape != (N, n):
            raise InputError(f"has shape {w.shape}, expected {(N, n)} to match tokens",
                             source=src, field="weights")
        _check_weights(w, src)
    else:
        w = np.ones((N, n))
    if "mask" in arrays and "lengths" in arrays:
        raise InputError("given together with mask; give either mask or lengths", source=src,
                         field="lengths")
    if "mask" in arrays:
        m = np.asarray(arrays["mask"])
        if m.shape != (N, n):
            raise InputError(f"has shape {m.shape}, expected {(N, n)}", source=src, field="mask")
        if m.dtype.kind != "b" and not (m.dtype.kind in "iuf" and np.all(np.isin(m, (0, 1)))):
            raise InputError("must be boolean (True for real tokens)", source=src, field="mask")
        w = np.where(m.astype(bool), w, 0.0)
    elif "lengths" in arrays:
        lengths = _int(arrays, "lengths", src, (N,))
        if np.any(lengths < 0) or np.any(lengths > n):
            raise InputError(f"must lie in [0, {n}] (the padded length)", source=src,
                             field="lengths")
        w = np.where(np.arange(n) < lengths[:, None], w, 0.0)
    return tokens, w


def _ragged_to_padded(arrays: dict, src: str,
                      max_memory: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    flat = _float(arrays, "tokens", src, 2)
    T, d = flat.shape
    off_raw = np.asarray(arrays["offsets"])
    if off_raw.ndim != 1 or off_raw.shape[0] < 1:
        raise InputError(f"must be 1-D (N+1,), got shape {off_raw.shape}", source=src,
                         field="offsets")
    offsets = _int(arrays, "offsets", src, off_raw.shape)
    if offsets[0] != 0 or offsets[-1] != T or np.any(np.diff(offsets) < 0):
        raise InputError(f"must be non-decreasing from 0 to T = {T} (number of tokens)",
                         source=src, field="offsets")
    for key in ("mask", "lengths"):
        if key in arrays:
            raise InputError("is for the padded layout; ragged data uses offsets only",
                             source=src, field=key)
    if "weights" in arrays:
        wf = _float(arrays, "weights", src, 1)
        if wf.shape != (T,):
            raise InputError(f"has shape {wf.shape}, expected ({T},): one weight per token",
                             source=src, field="weights")
        _check_weights(wf, src)
    else:
        wf = np.ones(T)
    lengths = np.diff(offsets)
    N = lengths.shape[0]
    n = int(lengths.max()) if N else 0
    held = sum(np.asarray(a).nbytes for a in arrays.values()) + flat.nbytes + wf.nbytes
    resources.check_memory(held + resources.ragged_padding_bytes(n, N, d), max_memory,
                           f"padding {N} sequences to the longest one ({n} tokens)",
                           "split off or shorten the longest sequences", source=src,
                           field="offsets")
    tokens = np.zeros((N, max(n, 1), d))
    weights = np.zeros((N, max(n, 1)))
    row = np.repeat(np.arange(N), lengths)
    col = np.arange(T) - np.repeat(offsets[:-1], lengths)
    tokens[row, col] = flat
    weights[row, col] = wf
    return tokens, weights


def _decode_names(names: np.ndarray, src: str) -> tuple[str, ...]:
    """The names as str; damaged bytes give an InputError, not a crash.

    A ``U`` array holds UCS-4 code points that numpy does not check when reading a file (a
    value above U+10FFFF makes ``tolist`` raise SystemError); an ``S`` array holds bytes that
    that are not UTF-8 are shown with their bytes escaped (a name, not data: it only has to be
    recognisable and encodable in every output format).
    """
    if names.dtype.kind == "U" and names.size and names.dtype.itemsize:
        codes = np.ascontiguousarray(names).view(np.uint32)
        if np.any(codes > 0x10FFFF):
            i = int(np.flatnonzero((codes > 0x10FFFF).reshape(names.shape[0], -1).any(axis=1))[0])
            raise InputError(f"entry {i} holds a code point above U+10FFFF (damaged data); "
                             "write the names again, e.g. np.array(names, dtype=str)",
                             source=src, field="names")
    # bytes names that are not UTF-8 keep their bytes visible (b"\xff" -> "\\xff"), and lone
    # surrogates of str names become escapes: every name then encodes in every output format
    return tuple(escape_surrogates(n.decode("utf-8", "backslashreplace") if isinstance(n, bytes)
                                   else str(n)) for n in names.tolist())


def _names(arrays: dict, N: int, src: str) -> tuple[str, ...]:
    if "names" not in arrays:
        return tuple(f"seq{i}" for i in range(N))
    names = np.asarray(arrays["names"])
    if names.dtype.kind not in "US":
        raise InputError(f"has dtype {names.dtype}; give a str array", source=src, field="names")
    if names.shape != (N,):
        raise InputError(f"has shape {names.shape}, expected ({N},): one name per sequence",
                         source=src, field="names")
    out = _decode_names(names, src)
    if len(set(out)) != N:
        dup = next(x for x in out if out.count(x) > 1)
        raise InputError(f"'{dup}' appears twice; names must be unique", source=src,
                         field="names")
    return out
