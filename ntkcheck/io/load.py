"""Load any supported dataset file by its extension."""

from __future__ import annotations

from pathlib import Path

from ..dataset import Dataset
from ..errors import InputError
from .spec import load_spec
from .tokens import load_token_npz

__all__ = ["load_dataset", "SUFFIXES"]

SUFFIXES = (".npz", ".toml", ".json")


def load_dataset(path: str | Path) -> Dataset:
    """``.npz`` token sequences or a ``.toml`` / ``.json`` distribution spec -> Dataset."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return load_token_npz(path).to_dataset()
    if suffix in (".toml", ".json"):
        return load_spec(path)
    raise InputError(f"has unknown extension '{suffix or '(none)'}'; use "
                     f"{', '.join(SUFFIXES)}", source=str(path))
