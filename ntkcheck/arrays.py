"""Array-first inputs: turn what a user holds into a validated :class:`~ntkcheck.Dataset`.

Accepted kinds (:data:`ACCEPTED`), by :func:`as_dataset`:

* a :class:`~ntkcheck.Dataset` (returned as is, renamed when ``names=`` is given);
* a sequence of :class:`~ntkcheck.Distribution` objects (default names ``mu0, mu1, ...``);
* a numpy array of tokens, shape (N, n, d), padded, with optional ``weights=`` (N, n),
  ``lengths=`` (N,) or ``mask=`` (N, n) as in the ``.npz`` format;
* a list of (n_i, d) token arrays (ragged), with optional ``weights=`` a list of (n_i,) arrays;
* anything with ``__array__`` (a torch or JAX tensor, an xarray) in place of a numpy array:
  it is converted with ``numpy.asarray`` (never imported here);
* with ``embeddings=`` (a table (V, d) or a table file ``FILE[:NAME]``): token IDs, as a list
  of integer sequences (optional ``weights=`` a list of (n_i,) arrays) or a token-ID file
  (``.npz`` with ``input_ids``, ``.jsonl``, ``.parquet``, see :mod:`ntkcheck.io.ids`): a
  :class:`~ntkcheck.vocabulary.TokenIdDataset`, whose features cost M (V d + T).

One sequence is one discrete law with uniform weights unless given (default names ``seq0``,
``seq1``, ...). Exact values stay exact: :class:`fractions.Fraction` and
:class:`decimal.Decimal` entries (an object array or nested lists) are kept as Fractions in
``Discrete.rational`` for the exact test (``Decimal("0.1")`` is 1/10), and used as the nearest
doubles by the numerical test; Python and numpy integers are exact as they are. A value of
another kind raises a :class:`TypeError` naming the accepted kinds; a malformed array raises an
:class:`~ntkcheck.InputError` naming the argument and the fix.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from .dataset import Dataset
from .distributions import Discrete, Distribution
from .errors import InputError
from .exact_values import exact_entries
from .vocabulary import TokenIdDataset

__all__ = ["as_dataset", "exact_entries", "ACCEPTED", "DataLike", "training_set"]

#: What :func:`as_dataset` accepts, as printed in its TypeError.
ACCEPTED = ("a Dataset, a sequence of Distribution objects (Discrete, UniformBox, "
            "GaussianMixture), a numpy array of tokens (N, n, d), a list of (n_i, d) token "
            "arrays, or an object with __array__ (e.g. a torch or JAX tensor)")

#: Anything :func:`as_dataset` accepts (for type hints).
DataLike = Union[Dataset, Sequence[Distribution], np.ndarray, Sequence[Any], Any]




def _numeric(value: Any, what: str) -> np.ndarray:
    """float64 array of ``value`` (exact entries rounded to the nearest double)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise InputError(f"cannot be read as an array ({err})", field=what) from None
    if arr.dtype == object:
        try:
            arr = np.asarray(arr.tolist(), dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("holds entries that are not numbers; give real numbers",
                             field=what) from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"has dtype {arr.dtype}; give real numbers", field=what)
    return arr.astype(np.float64)


def _is_array_like(value: Any) -> bool:
    return isinstance(value, np.ndarray) or hasattr(value, "__array__")


def as_dataset(data: DataLike, *, names: Optional[Sequence[str]] = None,
               weights: Any = None, lengths: Any = None, mask: Any = None,
               source: str = "<array>", embeddings: Any = None) -> Dataset:
    """A validated :class:`Dataset` from any accepted kind (see the module docstring).

    Parameters
    ----------
    data : Dataset, sequence of Distribution, array (N, n, d), list of (n_i, d) arrays, or an
        object with ``__array__``
    names : sequence of N str, optional
    weights : (N, n) array for padded tokens, or a list of (n_i,) arrays for a list of
        sequences; non-negative, normalised per sequence
    lengths : (N,) int, optional (padded tokens: sequence i is its first lengths[i] tokens)
    mask : (N, n) bool, optional (padded tokens: True for real tokens); not with ``lengths``
    source : str
        Name used in error messages.
    embeddings : (V, d) float array, or a table file ``FILE[:NAME]``, optional
        The embedding table of token IDs: ``data`` is then a list of ID sequences or a
        token-ID file path.

    Raises
    ------
    TypeError
        When ``data`` is of none of the accepted kinds (the message lists them).
    InputError
        When an array is malformed (shape, NaN, negative weights, ...).
    """
    token_options = {"weights": weights, "lengths": lengths, "mask": mask}
    if isinstance(data, TokenIdDataset):
        _no_token_options({**token_options, "embeddings": embeddings}, "a TokenIdDataset")
        return data if names is None else data.renamed(names)
    if isinstance(data, Dataset):
        _no_token_options(token_options, "a Dataset")
        return data if names is None else Dataset(tuple(names), data.distributions, data.source)
    if embeddings is not None:
        return _token_ids(data, embeddings, names, weights, lengths, mask, source)
    if isinstance(data, (str, bytes, Mapping)) or data is None or np.isscalar(data):
        raise TypeError(f"cannot analyse a {type(data).__name__}; give {ACCEPTED}")
    if _is_array_like(data):
        return _padded(data, names, weights, lengths, mask, source)
    if not isinstance(data, Sequence):
        try:
            data = list(data)
        except TypeError:
            raise TypeError(f"cannot analyse a {type(data).__name__}; give {ACCEPTED}") from None
    items = list(data)
    if not items:
        raise InputError("the dataset is empty; give at least one distribution", source=source)
    kinds = [isinstance(x, Distribution) for x in items]
    if all(kinds):
        _no_token_options(token_options, "Distribution objects")
        default = tuple(f"mu{i}" for i in range(len(items)))
        return Dataset(tuple(names) if names is not None else default, tuple(items))
    if any(kinds):
        bad = next(i for i, k in enumerate(kinds) if not k)
        raise TypeError(f"entry {bad} is a {type(items[bad]).__name__} among Distribution "
                        f"objects; give {ACCEPTED}")
    for i, x in enumerate(items):
        if isinstance(x, (str, bytes, Mapping)) or x is None:
            raise TypeError(f"entry {i} is a {type(x).__name__}; give {ACCEPTED}")
    return _ragged(items, names, weights, lengths, mask, source)


def _token_ids(data: Any, embeddings: Any, names: Optional[Sequence[str]], weights: Any,
               lengths: Any, mask: Any, source: str) -> TokenIdDataset:
    """Token IDs (a list of integer sequences, or an ID file) with their table."""
    from .io.ids import _as_table, load_table, load_token_ids, token_id_dataset

    if lengths is not None or mask is not None:
        raise InputError("applies to padded token arrays; give token IDs as a list of "
                         "sequences", field="lengths" if lengths is not None else "mask")
    if isinstance(data, (str, os.PathLike)):
        if weights is not None:
            raise InputError("comes from the ID file itself", field="weights")
        ds = load_token_ids(data, embeddings)
        return ds if names is None else ds.renamed(names)
    if isinstance(embeddings, (str, os.PathLike)):
        table, table_src = load_table(embeddings)
    else:
        table, table_src = _as_table(np.asarray(embeddings), "<embeddings>"), "<embeddings>"
    if isinstance(data, (bytes, Mapping)) or data is None or np.isscalar(data):
        raise TypeError(f"cannot read token IDs from a {type(data).__name__}; give a list of "
                        "integer sequences or a token-ID file")
    seqs = [np.asarray(x) for x in data]
    for i, x in enumerate(seqs):
        if x.ndim != 1 or (x.size and x.dtype.kind not in "iu"):
            raise InputError(f"has shape {x.shape} and dtype {x.dtype}; every sequence must be "
                             "a 1-D list of integer IDs", field=f"sequence {i}")
    if weights is not None and (not isinstance(weights, Sequence) or len(weights) != len(seqs)):
        raise InputError(f"must be a list of {len(seqs)} weight arrays (n_i,), one per "
                         "sequence", field="weights")
    lengths_ = [len(x) for x in seqs]
    flat_w = None
    if weights is not None:
        flat_w = [np.asarray(_numeric(w, f"weights[{i}]")).ravel() for i, w in enumerate(weights)]
        for i, (w, n) in enumerate(zip(flat_w, lengths_)):
            if w.shape != (n,):
                raise InputError(f"has {w.shape[0]} entries for {n} IDs", field=f"weights[{i}]")
        flat_w = np.concatenate(flat_w) if flat_w else np.zeros(0)
    ids = np.concatenate([x.astype(np.int64) for x in seqs]) if seqs else np.zeros(0, np.int64)
    return token_id_dataset(ids=ids, offsets=np.concatenate([[0], np.cumsum(lengths_)]),
                            weights=flat_w, names=names, table=table, source=source,
                            table_source=table_src)


def _no_token_options(options: dict[str, Any], what: str) -> None:
    for key, value in options.items():
        if value is not None:
            raise InputError(f"applies to token arrays, not to {what}; give the weights in "
                             "the distributions themselves", field=key)


def _padded(data: Any, names: Optional[Sequence[str]], weights: Any, lengths: Any, mask: Any,
            source: str) -> Dataset:
    exact = exact_entries(data)
    tokens = _numeric(data, "tokens")
    if tokens.ndim == 2:
        raise InputError(f"is 2-D {tokens.shape}; give (N, n, d) tokens (one (n, d) sequence: "
                         "x[None]; d = 1: x[..., None]) or a list of (n_i, d) arrays",
                         field="tokens")
    arrays: dict[str, Any] = {"tokens": tokens}
    exact_w = None
    if weights is not None:
        exact_w = exact_entries(weights)
        arrays["weights"] = _numeric(weights, "weights")
    if lengths is not None:
        arrays["lengths"] = np.asarray(lengths)
    if mask is not None:
        arrays["mask"] = np.asarray(mask)
    if names is not None:
        arrays["names"] = np.array([str(n) for n in names])
    from .io.tokens import TokenArrays

    ta = TokenArrays.from_arrays(arrays, source)
    if exact is None and exact_w is None:
        return ta.to_dataset()
    if exact is None:
        exact = np.asarray(tokens.tolist(), dtype=object)
    dists = []
    for i in range(len(ta.names)):
        m = ta.mask[i]
        rational = {"atoms": exact[i][m],
                    "weights": None if exact_w is None else exact_w[i][m]}
        # the weights as given (unnormalised; uniform stays exactly uniform), never their
        # float64 normalisation: the exact test and the re-checks normalise them exactly
        w = (None if weights is None else
             ta.raw_weights[i][m] if ta.raw_weights is not None else ta.weights[i][m])
        dists.append(Discrete(ta.tokens[i][m], w, rational=rational))
    return Dataset(ta.names, tuple(dists), source)


def _ragged(items: list[Any], names: Optional[Sequence[str]], weights: Any, lengths: Any,
            mask: Any, source: str) -> Dataset:
    if lengths is not None or mask is not None:
        raise InputError("applies to a padded (N, n, d) array; a list of sequences needs no "
                         "padding", field="lengths" if lengths is not None else "mask")
    if weights is not None and (not isinstance(weights, Sequence) or len(weights) != len(items)):
        raise InputError(f"must be a list of {len(items)} weight arrays (n_i,), one per "
                         "sequence", field="weights")
    dists = []
    for i, x in enumerate(items):
        where = f"sequence {i}"
        exact = exact_entries(x)
        atoms = _numeric(x, f"{where}")
        if atoms.ndim != 2:
            raise InputError(f"has shape {atoms.shape}; every sequence must be (n_i, d) (for "
                             "d = 1: x[:, None])", field=where)
        w = None if weights is None else weights[i]
        exact_w = None if w is None else exact_entries(w)
        w_num = None if w is None else _numeric(w, f"weights[{i}]")
        rational = None
        if exact is not None or exact_w is not None:
            rational = {"atoms": exact if exact is not None else
                        np.asarray(atoms.tolist(), dtype=object), "weights": exact_w}
        try:
            dists.append(Discrete(atoms, w_num, rational=rational))
        except InputError as err:
            raise err.located(source, where) from None
    default = tuple(f"seq{i}" for i in range(len(items)))
    return Dataset(tuple(names) if names is not None else default, tuple(dists), source)


def training_set(tokens: Any, targets: Any, *, loss: str = "token", weights: Any = None,
                 lengths: Any = None, mask: Any = None) -> Any:
    """Training data from arrays, for ``nk.train(config, training_set=...)``.

    Parameters
    ----------
    tokens : (N, n, d) array or object with ``__array__``
    targets : (N, n, d') for ``loss="token"`` or (N, d') for ``loss="pooled"``, d' <= d
    weights, lengths, mask : as for :func:`as_dataset` (padded tokens)

    Returns
    -------
    ntkcheck.meanfield.TrainingSet
    """
    from .io.tokens import TokenArrays
    from .meanfield.config import TrainingSet
    from .meanfield.loss import LossKind, RegressionLoss

    arrays: dict[str, Any] = {"tokens": _numeric(tokens, "tokens")}
    for key, value in (("weights", weights), ("lengths", lengths), ("mask", mask)):
        if value is not None:
            arrays[key] = _numeric(value, key) if key == "weights" else np.asarray(value)
    data = TokenArrays.from_arrays(arrays, "<array>")
    try:
        kind = LossKind(loss)
    except ValueError:
        raise InputError(f"must be 'token' or 'pooled', got {loss!r}", field="loss") from None
    T = _numeric(targets, "targets")
    N, n, d = data.tokens.shape
    want = (N, n) if kind is LossKind.TOKEN else (N,)
    if T.ndim != len(want) + 1 or T.shape[:-1] != want or not 1 <= T.shape[-1] <= d:
        raise InputError(f"has shape {T.shape}; the {kind.value} loss needs "
                         f"{want + ('d' + chr(39),)} with 1 <= d' <= d = {d}", field="targets")
    if kind is LossKind.TOKEN:
        T = np.where(data.mask[..., None], T, 0.0)
    if not np.all(np.isfinite(T)):
        raise InputError("has NaN or Inf (at real tokens); give finite targets", field="targets")
    return TrainingSet(data, RegressionLoss(kind, T))
