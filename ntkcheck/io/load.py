"""Load any supported dataset file by its extension, within the memory limit."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import Dataset
from ..distributions import Discrete, GaussianMixture, UniformBox
from ..errors import InputError
from .ids import load_token_ids, npz_holds_ids
from .paths import existing_file
from .spec import load_spec
from .tokens import (MAX_TOKEN_MAGNITUDE, MAX_UNITS_MAGNITUDE, MIN_TOKEN_SPREAD, check_spread,
                     load_token_npz)

__all__ = ["load_dataset", "SUFFIXES", "MAX_SPEC_BYTES", "max_magnitude", "check_units",
           "dataset_points"]

SUFFIXES = (".npz", ".toml", ".json")
#: Largest ``.toml`` / ``.json`` spec file read (a spec lists distributions by hand).
MAX_SPEC_BYTES = 16 * 2**20


def load_dataset(path: str | Path, max_memory: int | None = None,
                 embeddings: Any = None) -> Dataset:
    """``.npz`` token sequences, token IDs (``.npz`` with ``input_ids``, ``.jsonl``,
    ``.parquet``) with their embedding table, or a ``.toml`` / ``.json`` spec -> Dataset.

    Only regular files are read; ``.npz`` arrays are sized from their headers against
    ``max_memory`` bytes (default: :func:`ntkcheck.resources.default_max_memory`) before they
    are read, spec files are limited to :data:`MAX_SPEC_BYTES`, and every coordinate must have
    magnitude <= :data:`~ntkcheck.io.tokens.MAX_TOKEN_MAGNITUDE`. ``embeddings`` (a table spec
    ``FILE[:NAME]`` or an array (V, d)) is the table of token-ID files
    (:mod:`ntkcheck.io.ids`); it is refused for the other kinds.
    """
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".parquet") or (suffix == ".npz" and npz_holds_ids(path)):
        return load_token_ids(path, embeddings, max_memory)
    if embeddings is not None and suffix in SUFFIXES:
        what = "token coordinates" if suffix == ".npz" else "a distribution spec"
        raise InputError(f"holds {what}, not token IDs; --embeddings applies to token-ID files "
                         "(input_ids in .npz, .jsonl or .parquet): drop it for this file",
                         source=str(path), field="--embeddings")
    if suffix == ".npz":
        return load_token_npz(path, max_memory).to_dataset()
    if suffix in (".toml", ".json"):
        p = existing_file(path, "a .toml or .json file")
        size = os.stat(p).st_size
        if size > MAX_SPEC_BYTES:
            raise InputError(f"is {size} bytes, over the {MAX_SPEC_BYTES // 2**20} MiB limit of a "
                             "spec file; store many sequences as an .npz", source=str(path))
        try:
            dataset = load_spec(path)
        except RecursionError:
            raise InputError("is nested too deeply to parse; flatten it (a spec is a list of "
                             "distributions)", source=str(path)) from None
        _check_magnitudes(dataset)
        return dataset
    raise InputError(f"has unknown extension '{suffix or '(none)'}'; use "
                     f"{', '.join(SUFFIXES + ('.jsonl', '.parquet'))}", source=str(path))


def max_magnitude(dataset: Dataset) -> float:
    """Largest |coordinate| of any atom, box corner or mixture mean of ``dataset``."""
    peak = 0.0
    for dist in dataset.distributions:
        for name in ("atoms", "low", "high", "means"):
            v = getattr(dist, name, None)
            if v is not None and np.size(v):
                peak = max(peak, float(np.max(np.abs(v))))
    return peak


def check_units(points: np.ndarray, source: str | None, field: str, command: str) -> None:
    """Refuse |coordinate| > MAX_UNITS_MAGNITUDE or a non-zero spread below its inverse, for the
    commands that compute in the data's own units (``spectrum``, ``train``); ``analyze`` is
    scale-invariant and accepts any magnitude up to MAX_TOKEN_MAGNITUDE."""
    pts = np.asarray(points, dtype=float).reshape(-1, np.shape(points)[-1])
    if pts.size == 0:
        return
    peak = float(np.abs(pts).max())
    spread = float(np.abs(pts - pts.mean(axis=0)).max())
    if peak > MAX_UNITS_MAGNITUDE or 0.0 < spread < 1.0 / MAX_UNITS_MAGNITUDE:
        what = (f"reaches magnitude {peak:.3g}" if peak > MAX_UNITS_MAGNITUDE
                else f"varies by only {spread:.3g}")
        raise InputError(f"{what}; `{command}` computes in the data's units and supports "
                         f"|x| <= {MAX_UNITS_MAGNITUDE:g} with a spread >= "
                         f"{1 / MAX_UNITS_MAGNITUDE:g}; rescale the data (`analyze` is "
                         "scale-invariant and accepts it)", source=source, field=field)


def dataset_points(dataset: Dataset) -> np.ndarray:
    """Every atom, box corner and mixture mean of ``dataset``, as rows (K, d)."""
    rows = []
    for dist in dataset.distributions:
        for name in ("atoms", "means"):
            v = getattr(dist, name, None)
            if v is not None:
                rows.append(np.asarray(v))
        if isinstance(dist, UniformBox):
            rows += [dist.low[None, :], dist.high[None, :]]
    return np.concatenate(rows) if rows else np.zeros((0, dataset.dim))


def _check_magnitudes(dataset: Dataset) -> None:
    """Refuse coordinates beyond MAX_TOKEN_MAGNITUDE (covariances beyond its square), and a
    positive spread below MIN_TOKEN_SPREAD: the spread of all points (atoms, box corners, means)
    around their mean, or the largest standard deviation of a Gaussian component."""
    points, stds = [], [0.0]
    for name, dist in zip(dataset.names, dataset.distributions):
        if isinstance(dist, Discrete):
            values, field = [dist.atoms], "atoms"
        elif isinstance(dist, UniformBox):
            values, field = [dist.low[None, :], dist.high[None, :]], "low/high"
        elif isinstance(dist, GaussianMixture):
            std = np.sqrt(np.abs(np.diagonal(dist.covariances, axis1=1, axis2=2)))
            values, field = [dist.means, std], "means/covariances"
            stds.append(float(std.max()))
        else:  # pragma: no cover - every loader returns one of the three
            continue
        points += values[:1] if isinstance(dist, GaussianMixture) else values
        peak = max(float(np.max(np.abs(v))) if np.size(v) else 0.0 for v in values)
        if not peak <= MAX_TOKEN_MAGNITUDE:
            raise InputError(f"has a value of magnitude {peak:.3g}; the largest supported "
                             f"magnitude is {MAX_TOKEN_MAGNITUDE:g}; rescale the data (the "
                             "condition is affine-invariant)", source=dataset.source,
                             field=f"{name}.{field}")
    if max(stds) < MIN_TOKEN_SPREAD:
        check_spread(np.concatenate(points), dataset.source, "distribution")
