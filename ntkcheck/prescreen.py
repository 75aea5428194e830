"""Cheap structural pre-screen run before the heavy computation (SPEC §2).

Flags, in O(total atoms x log) time:

* ``dirac``: a distribution supported on one point (its LSE is affine: a dependency alone);
* ``duplicate``: two discrete laws with the same atoms and weights up to token order, or two
  equal boxes;
* ``translate``: two discrete laws (or boxes) equal up to a shift t (LSE differs by <t, z>).

Comparisons use a relative tolerance of :data:`MATCH_RTOL` (64 u) of the data's scale, so
translates computed in floating point (y + t rounded) are recognised. These findings are hints
printed with the report; the verdict always comes from the rank test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .dataset import Dataset
from .distributions import Discrete, GaussianMixture, UniformBox

__all__ = ["Finding", "prescreen", "MATCH_RTOL"]

MATCH_RTOL = 64 * np.finfo(float).eps


@dataclass(frozen=True)
class Finding:
    """One structural fact: ``kind`` in {dirac, duplicate, translate}, the names involved and,
    for translates, the shift t with names[1] = names[0] + t."""

    kind: str
    names: tuple[str, ...]
    shift: tuple[float, ...] | None = None

    def to_dict(self) -> dict:
        out: dict = {"kind": self.kind, "names": list(self.names)}
        if self.shift is not None:
            out["shift"] = list(self.shift)
        return out

    def describe(self) -> str:
        if self.kind == "dirac":
            return f"{self.names[0]} is a Dirac mass (its LSE is affine)"
        if self.kind == "duplicate":
            return f"{self.names[1]} duplicates {self.names[0]} (up to token order)"
        t = ", ".join(f"{x:.6g}" for x in self.shift or ())
        return f"{self.names[1]} is {self.names[0]} translated by ({t})"


def _canonical(dist) -> tuple[np.ndarray, np.ndarray] | None:
    """(centred support description, offset) for discrete laws and boxes, else None."""
    if isinstance(dist, Discrete):
        mean = dist.weights @ dist.atoms
        rows = np.column_stack([dist.atoms - mean, dist.weights])
        order = np.lexsort(rows.T[::-1])
        return rows[order], mean
    if isinstance(dist, UniformBox):
        return (dist.high - dist.low)[None, :], dist.low
    return None


def _is_dirac(dist, scale: float) -> bool:
    tol = MATCH_RTOL * scale
    if isinstance(dist, Discrete):
        return bool(np.all(np.abs(dist.atoms - dist.atoms[0]).max(initial=0.0) <= tol))
    if isinstance(dist, UniformBox):
        return bool(np.all(dist.high - dist.low <= tol))
    if isinstance(dist, GaussianMixture):
        return bool(np.abs(dist.means - dist.means[0]).max(initial=0.0) <= tol
                    and np.abs(dist.covariances).max(initial=0.0) <= tol)
    return False


def prescreen(dataset: Dataset) -> list[Finding]:
    """Dirac masses, duplicates and translates in ``dataset`` (see module docstring)."""
    findings: list[Finding] = []
    canon = [_canonical(d) for d in dataset.distributions]
    scale = max([float(np.abs(c[0]).max()) + float(np.abs(c[1]).max())
                 for c in canon if c is not None] + [1.0])
    dirac = [_is_dirac(d, scale) for d in dataset.distributions]
    findings += [Finding("dirac", (name,)) for name, dd in zip(dataset.names, dirac) if dd]
    # bucket by family, shape and a coarse rounding of the centred support; verify exactly
    buckets: dict[tuple, list[int]] = {}
    for i, c in enumerate(canon):
        if c is None or dirac[i]:
            continue
        key = (type(dataset.distributions[i]).__name__, c[0].shape,
               tuple(np.round(c[0].ravel()[:8] / scale, 6)))
        buckets.setdefault(key, []).append(i)
    tol = MATCH_RTOL * scale
    for members in buckets.values():
        matched: set[int] = set()
        for a_pos, a in enumerate(members):
            if a in matched:
                continue
            for b in members[a_pos + 1:]:
                if b in matched or np.abs(canon[a][0] - canon[b][0]).max() > tol:
                    continue
                matched.add(b)
                shift = canon[b][1] - canon[a][1]
                pair = (dataset.names[a], dataset.names[b])
                if np.abs(shift).max() <= tol:
                    findings.append(Finding("duplicate", pair))
                else:
                    findings.append(Finding("translate", pair, tuple(float(x) for x in shift)))
    return findings
