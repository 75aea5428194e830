"""Token-ID corpora and embedding tables -> a validated :class:`~ntkcheck.vocabulary.TokenIdDataset`.

IDs (one sequence = the discrete law on its tokens' table rows, SPEC §1):

``.npz``
    ``input_ids`` (T,) int with ``offsets`` (N+1,) or ``lengths`` (N,), optional ``weights``
    (T,); or ``input_ids`` (N, n) padded with optional ``lengths`` (N,) or ``attention_mask``
    (N, n) and optional ``weights`` (N, n). Optional ``names`` (N,) str, and optional
    ``embeddings`` (V, d): the table, when none is given separately.
``.jsonl``
    One JSON object per line: ``input_ids`` (list of int), optional ``weights`` (list of
    numbers, one per ID) and ``name`` (str). Blank lines are skipped.
``.parquet``
    Columns ``input_ids`` (list of int), optional ``weights`` (list of float) and ``name``
    (str); needs pyarrow (``pip install pyarrow``, or the ``ids`` extra).

Tables (``--embeddings SPEC``): ``.npy`` (a 2-D array), ``.npz`` (``FILE.npz:NAME``, or the
only array), ``.safetensors`` (``FILE.safetensors:NAME``, or the only tensor; read here from
its documented layout, no extra package). Float16, float32, float64 (and bfloat16 in
safetensors) are converted exactly to float64: a row of the table is exactly the stored values.

Every size is checked before the data are read: ``.npz`` and ``.npy`` headers, the safetensors
header (at most :data:`MAX_SAFETENSORS_HEADER` bytes) and its declared offsets, a ``.jsonl``
line (at most :data:`MAX_JSONL_LINE` bytes) and the parquet metadata, against ``max_memory``.
Every error is one line naming the file, the field and the fix.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import resources
from ..errors import InputError
from ..vocabulary import TokenIdDataset
from .paths import existing_file
from .tokens import MAX_TOKEN_MAGNITUDE, check_spread, npz_members, read_npz

__all__ = ["load_token_ids", "load_table", "token_id_dataset", "split_table_spec",
           "ID_SUFFIXES", "TABLE_SUFFIXES", "MAX_JSONL_LINE", "MAX_SAFETENSORS_HEADER",
           "npz_holds_ids", "PYARROW_HINT"]

ID_SUFFIXES = (".npz", ".jsonl", ".parquet")
TABLE_SUFFIXES = (".npy", ".npz", ".safetensors")
#: Longest accepted ``.jsonl`` line (one sequence): 64 MiB, about ten million IDs.
MAX_JSONL_LINE = 64 * 2**20
#: Largest accepted safetensors JSON header (the format's own reference reader uses 100 MB).
MAX_SAFETENSORS_HEADER = 100 * 2**20
PYARROW_HINT = ("reading .parquet needs pyarrow: pip install pyarrow (or pip install -e "
                "'.[ids]' in a clone of ntkcheck)")
_SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2"}
_TABLE_FIX = "pass the table that matches the tokenizer of the IDs"


# ---------------------------------------------------------------------------------------------
# embedding tables
# ---------------------------------------------------------------------------------------------

def split_table_spec(spec: str | os.PathLike) -> tuple[Path, str | None]:
    """``emb.safetensors:embed_tokens.weight`` -> (path, name); a plain path -> (path, None).

    The name follows the first ``.npz:`` or ``.safetensors:`` (any case) in the text."""
    text = os.fspath(spec)
    low = text.lower()
    for suffix in (".npz:", ".safetensors:"):
        at = low.find(suffix)
        if at >= 0:
            cut = at + len(suffix) - 1
            return Path(text[:cut]), text[cut + 1:] or None
    return Path(text), None


def load_table(spec: str | os.PathLike, max_memory: int | None = None) -> tuple[np.ndarray, str]:
    """(the table as float64 (V, d), its source text) from ``.npy`` / ``.npz[:NAME]`` /
    ``.safetensors[:NAME]``; sizes checked against ``max_memory`` before reading."""
    path, name = split_table_spec(spec)
    src = os.fspath(spec)
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise InputError(f"has extension '{suffix or '(none)'}'; give the embedding table as "
                         ".npy, .npz[:NAME] or .safetensors[:NAME]", source=src,
                         field="--embeddings")
    existing_file(path, f"a {suffix} embedding table")
    if suffix == ".npy":
        if name is not None:
            raise InputError("holds one array; drop ':NAME'", source=src, field="--embeddings")
        raw = _read_npy(path, max_memory)
    elif suffix == ".npz":
        raw = _read_npz_member(path, name, max_memory)
    else:
        raw = _read_safetensors(path, name, max_memory)
    return _as_table(raw, src), src


def _as_table(raw: np.ndarray, src: str) -> np.ndarray:
    if raw.dtype.kind != "f" or raw.dtype.itemsize not in (2, 4, 8):
        raise InputError(f"has dtype {raw.dtype}; the embedding table must be float (float16, "
                         "float32, float64, or bfloat16 in .safetensors)", source=src,
                         field="embeddings")
    if raw.ndim != 2 or raw.shape[0] == 0 or raw.shape[1] == 0:
        raise InputError(f"has shape {raw.shape}; the embedding table must be 2-D (V, d) with "
                         "V >= 1 rows and d >= 1 columns", source=src, field="embeddings")
    return np.ascontiguousarray(raw, dtype=np.float64)  # exact: every float16/32 is a float64


def _check_table_bytes(nbytes: int, itemsize: int, max_memory: int | None, src: str) -> None:
    count = nbytes // max(itemsize, 1)
    resources.check_memory(nbytes + 16 * count, max_memory, "reading the embedding table",
                           "use a smaller table", source=src, field="embeddings")


def _read_npy(path: Path, max_memory: int | None) -> np.ndarray:
    src = str(path)
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = reader(fh)
    except (ValueError, SyntaxError, TypeError, OverflowError, OSError, EOFError) as err:
        raise InputError(f"is not a readable .npy file ({_first_line(err)}); write it with "
                         "numpy.save", source=src) from None
    if dtype.hasobject:
        raise InputError("is an object array (pickled); store the table as a float array",
                         source=src, field="embeddings")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes > os.stat(path).st_size:
        raise InputError(f"is truncated: its header declares {nbytes} bytes of data; write the "
                         "file again", source=src, field="embeddings")
    _check_table_bytes(nbytes, dtype.itemsize, max_memory, src)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"cannot be read ({_first_line(err)})", source=src,
                         field="embeddings") from None


def _pick(found: dict, name: str | None, kind: str, want: str, path: Path) -> str:
    """The member ``name`` of a table file (the only one when None), or a one-line InputError
    listing what the file holds."""
    listed = ", ".join(sorted(found)[:8]) or "nothing"
    if name is None:
        if len(found) != 1:
            raise InputError(f"holds {len(found)} {kind}s ({listed}); name the {want} as "
                             f"{path.name}:NAME", source=str(path), field="--embeddings")
        return next(iter(found))
    if name not in found:
        raise InputError(f"has no {kind} '{name}'; it holds {listed}", source=str(path),
                         field="--embeddings")
    return name


def _read_npz_member(path: Path, name: str | None, max_memory: int | None,
                     want: str = "embedding table") -> np.ndarray:
    src = str(path)
    members = {m.key: m for m in npz_members(path)}
    name = _pick(members, name, "array", want, path)
    m = members[name]
    _check_table_bytes(m.nbytes, m.dtype.itemsize, max_memory, src)
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as data:
            return data[name]
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"cannot be read ({_first_line(err)})", source=src, field=name) from None


def _read_safetensors(path: Path, name: str | None, max_memory: int | None) -> np.ndarray:
    """One tensor of a safetensors file: an 8-byte little-endian header length, a JSON header
    {name: {dtype, shape, data_offsets: [begin, end]}} (offsets into the data after it)."""
    src = str(path)
    size = os.stat(path).st_size
    bad = "is not a safetensors file ({}); write it with safetensors.numpy.save_file"
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise InputError(bad.format("shorter than its 8-byte header length"), source=src)
        (hlen,) = struct.unpack("<Q", head)
        if hlen > MAX_SAFETENSORS_HEADER or hlen > size - 8:
            raise InputError(bad.format(f"a header of {hlen} bytes, over the "
                                        f"{min(MAX_SAFETENSORS_HEADER, size - 8)} possible"),
                             source=src)
        try:
            header = json.loads(fh.read(hlen).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as err:
            raise InputError(bad.format(f"its header is not JSON: {_first_line(err)}"),
                             source=src) from None
        if not isinstance(header, dict):
            raise InputError(bad.format("its header is not a JSON object"), source=src)
        tensors = {k: v for k, v in header.items() if k != "__metadata__"}
        name = _pick(tensors, name, "tensor", "table", path)
        info = tensors[name]
        try:
            kind, shape = info["dtype"], [int(k) for k in info["shape"]]
            begin, end = (int(k) for k in info["data_offsets"])
        except (TypeError, KeyError, ValueError):
            raise InputError(bad.format(f"the entry of '{name}' lacks dtype, shape or "
                                        "data_offsets"), source=src) from None
        if kind not in _SAFETENSORS_DTYPES:
            raise InputError(f"has dtype {kind}; the embedding table must be float (F16, BF16, "
                             "F32 or F64)", source=src, field=name)
        dtype = np.dtype(_SAFETENSORS_DTYPES[kind])
        count = int(np.prod(shape, dtype=np.int64)) if all(k >= 0 for k in shape) else -1
        if count < 0 or not 0 <= begin <= end <= size - 8 - hlen \
                or end - begin != count * dtype.itemsize:
            raise InputError(bad.format(f"'{name}' declares shape {shape} at bytes "
                                        f"[{begin}, {end}) of {size - 8 - hlen}"), source=src)
        _check_table_bytes(end - begin, dtype.itemsize, max_memory, src)
        fh.seek(8 + hlen + begin)
        flat = np.frombuffer(fh.read(end - begin), dtype=dtype)
    if kind == "BF16":  # bfloat16 is the top half of a float32: exact
        flat = (flat.astype("<u4") << 16).view("<f4")
    return flat.reshape(shape)


# ---------------------------------------------------------------------------------------------
# IDs
# ---------------------------------------------------------------------------------------------

def npz_holds_ids(path: str | Path) -> bool:
    """Whether an ``.npz`` holds token IDs (an ``input_ids`` member), from its headers."""
    return any(m.key == "input_ids" for m in npz_members(path))


def load_token_ids(path: str | Path, embeddings: Any = None,
                   max_memory: int | None = None) -> TokenIdDataset:
    """Read token IDs (``.npz`` / ``.jsonl`` / ``.parquet``) and their table (``embeddings``: a
    table spec ``FILE[:NAME]``, an array (V, d), or None for an ``.npz`` holding
    ``embeddings``) into a validated :class:`TokenIdDataset`."""
    src = str(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        fields = _ids_from_npz(path, max_memory)
    elif suffix == ".jsonl":
        fields = _ids_from_jsonl(path, max_memory)
    elif suffix == ".parquet":
        fields = _ids_from_parquet(path, max_memory)
    else:
        raise InputError(f"has extension '{suffix or '(none)'}'; token IDs are read from "
                         f"{', '.join(ID_SUFFIXES)}", source=src)
    inner = fields.pop("embeddings", None)
    if embeddings is None and inner is None:
        raise InputError("holds token IDs but no embedding table; pass --embeddings TABLE "
                         "(.npy, .npz[:NAME] or .safetensors[:NAME]), or store it in the .npz "
                         "as embeddings=", source=src, field="embeddings")
    if embeddings is None:
        table, table_src = _as_table(np.asarray(inner), src), src
    elif isinstance(embeddings, (str, os.PathLike)):
        table, table_src = load_table(embeddings, max_memory)
    else:
        table, table_src = _as_table(np.asarray(embeddings), "<embeddings>"), "<embeddings>"
    return token_id_dataset(table=table, source=src, table_source=table_src, **fields)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def _ints(a: Any, src: str, field: str) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "b" and a.size == 0):
        raise InputError(f"has dtype {a.dtype}; token IDs, offsets and lengths are integers",
                         source=src, field=field)
    if a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise InputError("has an ID beyond the int64 range", source=src, field=field)
    return a.astype(np.int64)


def _ids_from_npz(path: str | Path, max_memory: int | None) -> dict:
    src = str(path)
    arrays = read_npz(path, max_memory)
    if "input_ids" not in arrays:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise InputError(f"missing array; found {found}; save the IDs as input_ids=",
                         source=src, field="input_ids")
    if "tokens" in arrays:
        raise InputError("holds both tokens and input_ids; keep one (tokens are coordinates, "
                         "input_ids index the embedding table)", source=src, field="tokens")
    ids = _ints(arrays["input_ids"], src, "input_ids")
    weights = arrays.get("weights")
    if ids.ndim == 2:
        N, n = ids.shape
        keep = np.ones((N, n), bool)
        if "lengths" in arrays and "attention_mask" in arrays:
            raise InputError("given together with attention_mask; give one", source=src,
                             field="lengths")
        if "offsets" in arrays:
            raise InputError("is for 1-D input_ids; 2-D (N, n) IDs are padded: give lengths "
                             "or attention_mask", source=src, field="offsets")
        if "lengths" in arrays:
            lengths = _ints(arrays["lengths"], src, "lengths")
            if lengths.shape != (N,) or np.any(lengths < 0) or np.any(lengths > n):
                raise InputError(f"must be (N,) = ({N},) integers in [0, {n}]", source=src,
                                 field="lengths")
            keep = np.arange(n) < lengths[:, None]
        elif "attention_mask" in arrays:
            mask = np.asarray(arrays["attention_mask"])
            if mask.shape != (N, n) or not np.all(np.isin(mask, (0, 1))):
                raise InputError(f"must be (N, n) = ({N}, {n}) of 0/1", source=src,
                                 field="attention_mask")
            keep = mask.astype(bool)
        if weights is not None:
            weights = np.asarray(weights)
            if weights.shape != (N, n):
                raise InputError(f"has shape {weights.shape}, expected ({N}, {n}) to match "
                                 "input_ids", source=src, field="weights")
            weights = weights[keep]
        offsets = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
        ids = ids[keep]
    elif ids.ndim == 1:
        T = ids.shape[0]
        if "attention_mask" in arrays:
            raise InputError("is for 2-D (N, n) input_ids", source=src, field="attention_mask")
        if ("offsets" in arrays) == ("lengths" in arrays):
            raise InputError("1-D input_ids need exactly one of offsets (N+1,) or lengths (N,) "
                             "to split them into sequences", source=src, field="offsets")
        if "offsets" in arrays:
            offsets = _ints(arrays["offsets"], src, "offsets")
            if offsets.ndim != 1 or offsets.shape[0] < 2 or offsets[0] != 0 \
                    or offsets[-1] != T or np.any(np.diff(offsets) < 0):
                raise InputError(f"must be 1-D (N+1,), non-decreasing from 0 to T = {T} "
                                 "(the number of IDs)", source=src, field="offsets")
        else:
            lengths = _ints(arrays["lengths"], src, "lengths")
            if lengths.ndim != 1 or np.any(lengths < 0) or int(lengths.sum()) != T:
                raise InputError(f"must be 1-D (N,) non-negative and sum to T = {T} (the "
                                 "number of IDs)", source=src, field="lengths")
            offsets = np.concatenate([[0], np.cumsum(lengths)])
        if weights is not None and np.shape(weights) != (T,):
            raise InputError(f"has shape {np.shape(weights)}, expected ({T},): one weight per "
                             "ID", source=src, field="weights")
    else:
        raise InputError(f"must be 1-D (T,) with offsets or lengths, or 2-D (N, n) padded; "
                         f"got shape {ids.shape}", source=src, field="input_ids")
    names = None
    if "names" in arrays:
        raw = np.asarray(arrays["names"])
        if raw.dtype.kind not in "US":
            raise InputError(f"has dtype {raw.dtype}; give a str array", source=src,
                             field="names")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw.ravel().tolist()]
    return {"ids": ids, "offsets": offsets, "weights": weights, "names": names,
            "embeddings": arrays.get("embeddings")}


def _ids_from_jsonl(path: str | Path, max_memory: int | None) -> dict:
    src = str(path)
    p = existing_file(path, "a .jsonl file")
    # an ID costs >= 2 characters ("1,") and 16 bytes once read (int64 ID + float64 weight)
    resources.check_memory(8 * os.stat(p).st_size, max_memory, "reading the token IDs",
                           "split the corpus into several files", source=src)
    seqs, weights, names = [], [], []
    any_weights = False
    with open(p, "rb") as fh:
        line_no = 0
        while True:
            raw = fh.readline(MAX_JSONL_LINE + 1)
            if not raw:
                break
            line_no += 1
            if len(raw) > MAX_JSONL_LINE:
                raise InputError(f"line {line_no} is longer than {MAX_JSONL_LINE // 2**20} MiB; "
                                 "split that sequence", source=src)
            if not raw.strip():
                continue
            where = f"line {line_no}"
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError) as err:
                raise InputError(f"is not valid JSON ({_first_line(err)}); write one object per "
                                 'line, e.g. {"input_ids": [1, 2, 3]}', source=src,
                                 field=where) from None
            if not isinstance(obj, dict) or "input_ids" not in obj:
                raise InputError('has no "input_ids"; write one object per line, e.g. '
                                 '{"input_ids": [1, 2, 3]}', source=src, field=where)
            seqs.append(_json_ints(obj["input_ids"], src, f"{where}.input_ids"))
            w = obj.get("weights")
            if w is not None:
                any_weights = True
                w = _json_floats(w, src, f"{where}.weights")
                if w.shape != seqs[-1].shape:
                    raise InputError(f"has {w.shape[0]} entries for {seqs[-1].shape[0]} IDs; give "
                                     "one weight per ID", source=src, field=f"{where}.weights")
            weights.append(w)
            name = obj.get("name")
            if name is not None and not isinstance(name, str):
                raise InputError("must be a string", source=src, field=f"{where}.name")
            names.append(name)
    if not seqs:
        raise InputError("holds no sequences; write one JSON object per line", source=src)
    lengths = [len(s) for s in seqs]
    w_all = None
    if any_weights:
        w_all = np.concatenate([np.ones(n) if w is None else w for w, n in zip(weights, lengths)])
    default = [f"seq{i}" for i in range(len(seqs))]
    return {"ids": np.concatenate(seqs), "offsets": np.concatenate([[0], np.cumsum(lengths)]),
            "weights": w_all, "names": [n if n is not None else d for n, d in zip(names, default)]}


def _json_ints(value: Any, src: str, field: str) -> np.ndarray:
    if not isinstance(value, list) or not all(type(x) is int for x in value):
        raise InputError("must be a list of integers (token IDs)", source=src, field=field)
    try:
        return np.array(value, dtype=np.int64)
    except OverflowError:
        raise InputError("has an ID beyond the int64 range", source=src, field=field) from None


def _json_floats(value: Any, src: str, field: str) -> np.ndarray:
    if not isinstance(value, list) or not all(type(x) in (int, float) for x in value):
        raise InputError("must be a list of numbers", source=src, field=field)
    try:
        return np.array(value, dtype=np.float64)
    except OverflowError:
        raise InputError("has a number beyond the float64 range", source=src,
                         field=field) from None


def _ids_from_parquet(path: str | Path, max_memory: int | None) -> dict:
    src = str(path)
    p = existing_file(path, "a .parquet file")
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(PYARROW_HINT, source=src) from None
    import pyarrow as pa

    try:
        handle = pq.ParquetFile(p)
        meta, columns = handle.metadata, set(handle.schema_arrow.names)
        wanted = [c for c in ("input_ids", "weights", "name") if c in columns]
        if "input_ids" not in columns:
            raise InputError(f"has no column input_ids (columns: {', '.join(sorted(columns))}); "
                             "store the IDs as a list<int> column input_ids", source=src,
                             field="input_ids")
        # uncompressed sizes of the columns read, as the metadata declares them
        need = sum(meta.row_group(g).column(c).total_uncompressed_size
                   for g in range(meta.num_row_groups)
                   for c in range(meta.num_columns)
                   if meta.row_group(g).column(c).path_in_schema.split(".")[0] in wanted)
        resources.check_memory(3 * need, max_memory, "reading the token IDs",
                               "split the corpus into several files", source=src)
        table = pq.read_table(p, columns=wanted)
    except InputError:
        raise
    except (OSError, ValueError, pa.ArrowException) as err:
        raise InputError(f"is not a readable parquet file ({_first_line(err)})", source=src) \
            from None
    ids, offsets = _arrow_lists(table.column("input_ids"), src, "input_ids", pa)
    if ids.dtype.kind not in "iu":
        raise InputError(f"holds {ids.dtype} values; token IDs are integers", source=src,
                         field="input_ids")
    weights = None
    if "weights" in wanted:
        weights, w_off = _arrow_lists(table.column("weights"), src, "weights", pa)
        if not np.array_equal(w_off, offsets):
            row = int(np.flatnonzero(np.diff(w_off) != np.diff(offsets))[0])
            raise InputError(f"row {row} has {int(np.diff(w_off)[row])} weights for "
                             f"{int(np.diff(offsets)[row])} IDs; give one weight per ID",
                             source=src, field="weights")
    names = None
    if "name" in wanted:
        col = table.column("name")
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise InputError(f"has type {col.type}; names are strings", source=src, field="name")
        names = [n if n is not None else f"seq{i}" for i, n in enumerate(col.to_pylist())]
    return {"ids": _ints(ids, src, "input_ids"), "offsets": offsets, "weights": weights,
            "names": names}


def _arrow_lists(col, src: str, field: str, pa) -> tuple[np.ndarray, np.ndarray]:
    """(flat values, offsets (N+1,)) of a list column, refusing nulls."""
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
            or pa.types.is_fixed_size_list(col.type)):
        raise InputError(f"has type {col.type}; store a list column (one list per sequence)",
                         source=src, field=field)
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if arr.null_count:
        raise InputError(f"row {int(np.flatnonzero(arr.is_null().to_numpy(False))[0])} is null; "
                         "give a list for every row", source=src, field=field)
    values = arr.flatten()
    if values.null_count:
        raise InputError("holds a null value; give a number for every entry", source=src,
                         field=field)
    lengths = np.asarray(arr.value_lengths().to_numpy(zero_copy_only=False), dtype=np.int64)
    return values.to_numpy(zero_copy_only=False), np.concatenate([[0], np.cumsum(lengths)])


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------

def token_id_dataset(*, ids: Any, offsets: Any, table: np.ndarray, weights: Any = None,
                     names: Sequence[str] | None = None, source: str = "<ids>",
                     table_source: str = "<embeddings>") -> TokenIdDataset:
    """Validate IDs (T,), offsets (N+1,), optional weights (T,) and names against a float64
    table (V, d); tokens of weight 0 are dropped. Errors name the file and field at fault."""
    ids = _ints(ids, source, "input_ids")
    offsets = np.asarray(offsets, dtype=np.int64)
    V = table.shape[0]
    N = len(offsets) - 1
    if N == 0:
        raise InputError("holds no sequences (N = 0); the dataset is empty", source=source,
                         field="input_ids")
    lengths = np.diff(offsets)
    owner = np.repeat(np.arange(N), lengths)
    for bad, what in ((ids < 0, "is negative"), (ids >= V, "is out of range")):
        if bad.any():
            t = int(np.argmax(bad))
            i = int(owner[t])
            raise InputError(f"sequence {i} token {t - int(offsets[i])} has ID {int(ids[t])}, "
                             f"which {what} for the {V} rows of {table_source} (IDs 0..{V - 1});"
                             f" {_TABLE_FIX}", source=source, field="input_ids")
    if weights is not None:
        w = np.asarray(weights)
        if w.dtype.kind not in "biuf":
            raise InputError(f"has dtype {w.dtype}; give real numbers", source=source,
                             field="weights")
        w = w.astype(np.float64).ravel()
        if w.shape != ids.shape:
            raise InputError(f"has {w.shape[0]} entries for {ids.shape[0]} IDs; give one weight "
                             "per ID", source=source, field="weights")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            t = int(np.argmax(~np.isfinite(w) | (w < 0)))
            raise InputError(f"sequence {int(owner[t])} has weight {w[t]}; weights must be "
                             "finite and >= 0", source=source, field="weights")
        keep = w > 0
        if not keep.all():
            ids, w, owner = ids[keep], w[keep], owner[keep]
            lengths = np.bincount(owner, minlength=N)
        # one common weight for every token: the uniform law of every sequence (counts)
        weights = None if (w.size and np.all(w == w[0])) else w
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        raise InputError(f"sequence {int(empty[0])} has no token (of positive weight); drop it "
                         "or fix its IDs/weights", source=source, field="input_ids")
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    names = _checked_names(names, N, source)
    used = np.unique(ids)
    rows = table[used]
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        v = int(used[np.argmin(finite)])
        i = int(owner[int(np.argmax(ids == v))])
        raise InputError(f"row {v} (used by sequence {i}) has NaN or Inf; fix the table or drop "
                         "those tokens", source=table_source, field="embeddings")
    peak = np.abs(rows).max(axis=1)
    if not np.all(peak <= MAX_TOKEN_MAGNITUDE):
        v = int(used[np.argmax(peak)])
        raise InputError(f"row {v} has a coordinate of magnitude {peak.max():.3g}; the largest "
                         f"supported magnitude is {MAX_TOKEN_MAGNITUDE:g}; rescale the table "
                         "(the condition is affine-invariant)", source=table_source,
                         field="embeddings")
    check_spread(rows, table_source, "embeddings")
    return TokenIdDataset(table, ids, offsets, weights, names, source)


def _checked_names(names: Sequence[str] | None, N: int, src: str) -> tuple[str, ...]:
    if names is None:
        return tuple(f"seq{i}" for i in range(N))
    names = tuple(str(n) for n in names)
    if len(names) != N:
        raise InputError(f"has {len(names)} entries for {N} sequences; give one name per "
                         "sequence", source=src, field="names")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if not n:
            raise InputError(f"entry {i} is empty; give every sequence a name", source=src,
                             field="names")
        if n in seen:
            raise InputError(f"'{n}' is used twice (sequences {seen[n]} and {i}); names must "
                             "be unique", source=src, field="names")
        seen[n] = i
    return names
