"""Exact numbers as the user wrote them: Fraction and Decimal entries kept exact (SPEC §4).

The lowest floor of the package with :mod:`ntkcheck.errors`: the distributions keep these
values in ``rational`` for the exact test, and the array and spec loaders produce them."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from numbers import Integral
from typing import Any, Optional

import numpy as np

from .errors import InputError

__all__ = ["exact_entries"]


def exact_entries(value: Any) -> Optional[np.ndarray]:
    """An object array of exact numbers when ``value`` holds a Fraction or a Decimal, else None.

    Fractions stay, Decimals become the Fraction they denote, integers become ``int``, and
    floats stay floats (the exact test then accepts them only when they are small-denominator
    rationals, as for ``.npz`` data).
    """
    if isinstance(value, np.ndarray) and value.dtype != object:
        return None
    try:
        arr = np.asarray(value, dtype=object)
    except (TypeError, ValueError):
        return None
    flat = arr.ravel()
    if not any(isinstance(x, (Fraction, Decimal)) for x in flat):
        return None
    out = np.empty(arr.shape, dtype=object)
    for idx, x in np.ndenumerate(arr):
        if isinstance(x, (Fraction, Decimal)):
            out[idx] = Fraction(x)
        elif isinstance(x, (bool, np.bool_)):
            raise InputError(f"holds a boolean {x!r}; give numbers", field="tokens")
        elif isinstance(x, Integral):
            out[idx] = int(x)
        else:
            out[idx] = x
    return out
