"""What the structural screen finds (SPEC §7): Dirac masses and classes of duplicates /
translates, and the screen's outcome (the core kept for the dense test). Plain frozen records,
produced by :mod:`ntkcheck.injectivity.screen` and read by the results and the renderers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["DiracFinding", "TranslateClass", "ScreenResult"]

_EXACT, _NUMERICAL = "exact", "numerical"

def _fmt(v: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:.6g}" for x in v) + ")"


@dataclass(frozen=True)
class DiracFinding:
    """A Dirac mass delta_point: its LSE <point, z> is affine, a dependency on its own.

    ``evidence`` is ``exact`` when all atoms are the same double (or low == high for a box),
    ``numerical`` when they differ only at the rounding of the stored values.
    """

    index: int
    name: str
    point: tuple[float, ...]
    evidence: str

    def to_dict(self) -> dict:
        return {"kind": "dirac", "index": self.index, "name": self.name,
                "point": list(self.point), "evidence": self.evidence}

    def describe(self) -> str:
        return f"{self.name} is a Dirac mass at {_fmt(self.point)} [{self.evidence}]"


@dataclass(frozen=True)
class TranslateClass:
    """Distributions equal up to translation (and up to token order, after merging atoms).

    Attributes
    ----------
    members : tuple of int, length k >= 2
        Dataset indices; ``members[0]`` is the representative kept in the core.
    names : tuple of str, length k
    shifts : tuple of k tuples of d floats
        t with mu_member = mu_rep(. - t) (atoms of the member = atoms of the representative
        + t); the nearest doubles to the exact shifts, ``shifts[0]`` is zero.
    parents : tuple of int, length k
        The member each one was matched against (a spanning tree of the class rooted at the
        representative; the representative is its own parent).
    evidence : tuple of str, length k
        Evidence of each member's match with its parent (``exact`` or ``numerical``).
    family : str
        ``discrete``, ``box`` or ``mixture``.
    """

    members: tuple[int, ...]
    names: tuple[str, ...]
    shifts: tuple[tuple[float, ...], ...]
    parents: tuple[int, ...]
    evidence: tuple[str, ...]
    family: str

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def kind(self) -> str:
        """``duplicates`` when every shift is zero, else ``translates``."""
        return "duplicates" if all(x == 0.0 for t in self.shifts for x in t) else "translates"

    @property
    def exact_relations(self) -> int:
        return sum(e == _EXACT for e in self.evidence[1:])

    @property
    def class_evidence(self) -> str:
        """``exact`` when every match in the class is exact, else ``numerical``."""
        return _EXACT if self.exact_relations == self.size - 1 else _NUMERICAL

    def to_dict(self) -> dict:
        return {"kind": self.kind, "family": self.family, "members": list(self.members),
                "names": list(self.names), "shifts": [list(t) for t in self.shifts],
                "parents": list(self.parents), "evidence": list(self.evidence),
                "class_evidence": self.class_evidence, "relations": self.size - 1}

    def describe(self) -> str:
        shown = ", ".join(self.names[1:4]) + (f" (+{self.size - 4} more)" if self.size > 4 else "")
        what = "duplicate" if self.kind == "duplicates" else "translate(s) of"
        ev = self.class_evidence
        if ev == _NUMERICAL and self.exact_relations:
            ev = f"{self.exact_relations} exact, {self.size - 1 - self.exact_relations} numerical"
        return f"{shown} {what} {self.names[0]}: {self.size - 1} relation(s) [{ev}]"


@dataclass(frozen=True)
class ScreenResult:
    """Outcome of :func:`screen` on N distributions.

    ``core`` lists, in increasing order, the indices kept for the dense test: every non-Dirac
    distribution that is not a non-representative class member.
    ``reductions = len(diracs) + sum(size - 1 over classes)`` and
    dim dep(dataset) = reductions + dim dep(core) (module docstring).
    """

    n: int
    classes: tuple[TranslateClass, ...]
    diracs: tuple[DiracFinding, ...]
    core: tuple[int, ...]

    @property
    def reductions(self) -> int:
        return len(self.diracs) + sum(c.size - 1 for c in self.classes)

    @property
    def exact_reductions(self) -> int:
        return (sum(d.evidence == _EXACT for d in self.diracs)
                + sum(c.exact_relations for c in self.classes))

    def to_dict(self) -> dict:
        return {"n": self.n, "reductions": self.reductions,
                "exact_reductions": self.exact_reductions, "core": list(self.core),
                "diracs": [d.to_dict() for d in self.diracs],
                "classes": [c.to_dict() for c in self.classes]}

    def describe(self) -> list[str]:
        """One line per finding (a class is one line whatever its size)."""
        return [d.describe() for d in self.diracs] + [c.describe() for c in self.classes]
