"""Distribution specs in ``.toml`` or ``.json``: a list of named distributions.

TOML::

    [[distribution]]
    name = "coin"
    kind = "discrete"            # discrete | uniform | gaussian_mixture
    atoms = [[0], [1]]           # (n, d); a flat list [0, 1] means d = 1
    weights = ["1/2", "1/2"]     # optional for discrete (uniform by default)

    [[distribution]]
    name = "box"
    kind = "uniform"
    low = [0]
    high = [2]

    [[distribution]]
    name = "gm"
    kind = "gaussian_mixture"
    weights = [1, 1]
    means = [[0], [1]]
    covariances = [[[1]], [[1]]]   # (K, d, d); singular allowed

JSON: ``{"distribution": [{"name": ..., "kind": ..., ...}, ...]}``.

Numbers are ints, floats, or strings holding an exact rational (``"1/3"``, ``"-2"``, ``"0.25"``).
Every value is also kept exactly as a :class:`fractions.Fraction` in ``distribution.rational``
(a float keeps its exact binary value), for the exact test (:mod:`ntkcheck.exact`).
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import Dataset
from ..distributions import Discrete, Distribution, GaussianMixture, UniformBox
from ..errors import InputError
from .paths import existing_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_spec", "parse_spec", "KINDS"]

#: Valid ``kind`` values and the keys each accepts (required, optional).
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "discrete": (("atoms",), ("weights",)),
    "uniform": (("low", "high"), ()),
    "gaussian_mixture": (("weights", "means", "covariances"), ()),
}
_SHAPES = {"atoms": 2, "weights": 1, "low": 1, "high": 1, "means": 2, "covariances": 3}


def load_spec(path: str | Path) -> Dataset:
    """Read a ``.toml`` or ``.json`` spec file into a validated :class:`Dataset`."""
    src = str(path)
    p = existing_file(path, "a .toml or .json file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot be read as UTF-8 text ({type(err).__name__})",
                         source=src) from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            doc = tomllib.loads(text)
        elif suffix == ".json":
            doc = json.loads(text)
        else:
            raise InputError(f"has unknown extension '{suffix}'; use .npz, .toml or .json",
                             source=src)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"is not valid TOML ({err})", source=src) from None
    except json.JSONDecodeError as err:
        raise InputError(f"is not valid JSON ({err.msg} at line {err.lineno})",
                         source=src) from None
    return parse_spec(doc, src)


def parse_spec(doc: Any, source: str = "<spec>") -> Dataset:
    """Validate a parsed spec document (dict with a ``distribution`` list)."""
    if not isinstance(doc, dict):
        raise InputError("must be a table/object with a 'distribution' list", source=source)
    extra = set(doc) - {"distribution"}
    if extra:
        raise InputError(f"unknown top-level key(s) {sorted(extra)}; only [[distribution]] "
                         "entries are allowed", source=source, field=sorted(extra)[0])
    entries = doc.get("distribution")
    if not isinstance(entries, list) or not entries:
        raise InputError("missing or empty; add [[distribution]] entries", source=source,
                         field="distribution")
    names, dists = [], []
    for i, entry in enumerate(entries):
        prefix = f"distribution[{i}]"
        try:
            name, dist = _parse_entry(entry)
        except InputError as err:
            raise err.located(source, prefix) from None
        names.append(name)
        dists.append(dist)
    return Dataset(tuple(names), tuple(dists), source)


def _parse_entry(entry: Any) -> tuple[str, Distribution]:
    if not isinstance(entry, dict):
        raise InputError("must be a table with name, kind and parameters")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise InputError("missing or not a non-empty string", field="name")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise InputError(f"is {kind!r}; choose one of {', '.join(KINDS)}", field="kind")
    required, optional = KINDS[kind]
    allowed = {"name", "kind", *required, *optional}
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise InputError(f"is not a key of a {kind} distribution; valid keys: "
                         f"{', '.join(sorted(allowed))}", field=unknown[0])
    for key in required:
        if key not in entry:
            raise InputError(f"is missing (required for kind = \"{kind}\")", field=key)
    exact = {key: _rational_array(entry[key], key) for key in (*required, *optional)
             if key in entry}
    if kind == "discrete":
        exact["atoms"] = _atoms_2d(exact["atoms"])
    num = {key: _to_float(val) for key, val in exact.items()}
    if kind == "discrete":
        dist: Distribution = Discrete(num["atoms"], num.get("weights"), rational=exact)
    elif kind == "uniform":
        dist = UniformBox(num["low"], num["high"], rational=exact)
    else:
        dist = GaussianMixture(num["weights"], num["means"], num["covariances"], rational=exact)
    return name, dist


def _atoms_2d(atoms: np.ndarray) -> np.ndarray:
    if atoms.ndim == 1:  # a flat list of scalars: atoms in R^1
        return atoms.reshape(-1, 1)
    return atoms


def _rational(value: Any, key: str) -> Fraction:
    if isinstance(value, bool):
        raise InputError(f"holds a boolean ({value}); give numbers", field=key)
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not np.isfinite(value):
            raise InputError("contains NaN or Inf; give finite numbers", field=key)
        return Fraction(value)
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise InputError(f"holds '{value}', which is not a number or rational such as "
                             "\"1/3\"", field=key) from None
    raise InputError(f"holds {type(value).__name__} {value!r}; give numbers", field=key)


def _rational_array(value: Any, key: str) -> np.ndarray:
    """Nested lists of numbers -> object array of Fractions, rectangular."""
    try:
        arr = np.array(value, dtype=object)
    except ValueError:
        arr = None
    if arr is None or (arr.size and any(isinstance(x, list) for x in arr.ravel())):
        raise InputError("is ragged; every row must have the same length", field=key)
    want = _SHAPES[key]
    if arr.ndim not in (want, want - 1 if key == "atoms" else want):
        raise InputError(f"must be a {want}-level nested list, got shape {arr.shape}", field=key)
    out = np.empty(arr.shape, dtype=object)
    flat_in, flat_out = arr.ravel(), out.ravel()
    for j, v in enumerate(flat_in):
        flat_out[j] = _rational(v, key)
    return out


def _to_float(arr: np.ndarray) -> np.ndarray:
    return np.array([float(x) for x in arr.ravel()], dtype=np.float64).reshape(arr.shape)
