"""Readers and writers: every file ntkcheck touches goes through this package."""

from .atomic import atomic_savez, atomic_write, atomic_write_text
from .load import SUFFIXES, load_dataset
from .spec import load_spec, parse_spec
from .tokens import TokenArrays, load_token_npz, read_npz

__all__ = ["load_dataset", "load_spec", "parse_spec", "SUFFIXES", "TokenArrays", "load_token_npz", "read_npz", "atomic_write", "atomic_write_text",
           "atomic_savez"]
