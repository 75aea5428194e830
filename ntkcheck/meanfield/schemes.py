"""Explicit Runge–Kutta schemes for the depth ODE, stored as Butcher tableaux (data).

The depth ODE dX/ds = v_l(X) has layer-wise constant parameters on s in [l/L, (l+1)/L), so a
scheme only needs the stage matrix ``a`` and the weights ``b`` (the nodes ``c`` do not enter an
autonomous right-hand side; they are kept for completeness). One generic step (SPEC §6):

    Z_i = X + h sum_{j<i} a_ij k_j,   k_i = v(Z_i),   X' = X + h sum_i b_i k_i.

Explicit Euler (one stage, b = 1) with one sub-step per layer is the finite transformer itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["ButcherTableau", "SCHEMES", "get_scheme"]


@dataclass(frozen=True, eq=False)
class ButcherTableau:
    """An explicit Runge–Kutta scheme.

    Attributes
    ----------
    name : str
    a : (s, s) float64, strictly lower triangular stage matrix.
    b : (s,) float64, weights summing to 1.
    c : (s,) float64, nodes (row sums of ``a``).
    order : int
        Classical order of accuracy.
    """

    name: str
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    order: int

    @property
    def stages(self) -> int:
        return int(self.b.shape[0])

    @classmethod
    def from_lists(cls, name: str, a, b, order: int) -> "ButcherTableau":
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        s = b.shape[0]
        if a.shape != (s, s) or np.any(np.triu(a) != 0):
            raise ValueError(f"tableau {name}: a must be strictly lower triangular ({s}, {s})")
        if abs(b.sum() - 1.0) > 1e-14:
            raise ValueError(f"tableau {name}: weights b must sum to 1")
        a.setflags(write=False)
        b.setflags(write=False)
        c = a.sum(axis=1)
        c.setflags(write=False)
        return cls(name, a, b, c, order)


_EULER = ButcherTableau.from_lists("euler", [[0.0]], [1.0], 1)
_HEUN = ButcherTableau.from_lists("heun", [[0.0, 0.0], [1.0, 0.0]], [0.5, 0.5], 2)
_RK4 = ButcherTableau.from_lists(
    "rk4",
    [[0.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0], [0.0, 0.5, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]],
    [1 / 6, 1 / 3, 1 / 3, 1 / 6],
    4,
)

#: name -> tableau; ``rk2`` is an alias of ``heun`` (explicit trapezoidal rule).
SCHEMES: dict[str, ButcherTableau] = {"euler": _EULER, "heun": _HEUN, "rk2": _HEUN, "rk4": _RK4}


def get_scheme(name: str | ButcherTableau) -> ButcherTableau:
    """The tableau registered under ``name`` (or ``name`` itself if already a tableau)."""
    if isinstance(name, ButcherTableau):
        return name
    try:
        return SCHEMES[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown scheme {name!r}; valid choices: {', '.join(SCHEMES)}",
                          field="scheme") from None
