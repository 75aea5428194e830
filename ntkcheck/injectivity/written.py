"""The structural screen's findings re-decided on the values as written (SPEC §7, §3a): for a
distribution whose written values are not binary64 numbers (a spec's "0.1", "1/3"), the float
screen compares nearest doubles, so its ``exact`` evidence is re-decided in exact rational
arithmetic on the written values: ``exact`` iff the relation holds for them exactly."""

from __future__ import annotations

from ..dataset import Dataset
from ..distributions import Distribution, UniformBox
from ..exact.errors import ExactRefused
from ..exact.laws import exact_law
from .findings import _EXACT, _NUMERICAL, DiracFinding, TranslateClass

__all__ = ["as_written"]


def _written_key(dist: Distribution):
    """(canonical form relative to the first point, first point) of the written values, exact:
    two distributions are translates as written iff their canonical forms are equal, and
    duplicates iff their first points are equal too; None when the written values cannot be
    read exactly (then nothing is claimed exact for them)."""
    try:
        law = exact_law("screen", dist)
    except ExactRefused:
        return None
    if isinstance(dist, UniformBox):
        return ("box", tuple(h - lo for lo, h in zip(law.low, law.high))), tuple(law.low)
    merged: dict = {}
    for k, (p, w) in enumerate(zip(law.points, law.weights)):
        cov = law.covariances[k] if law.covariances else ()
        merged[(tuple(p), cov)] = merged.get((tuple(p), cov), 0) + w
    items = sorted(merged.items())
    first = items[0][0][0]
    form = tuple((tuple(x - f for x, f in zip(p, first)), cov, w) for (p, cov), w in items)
    return ("law", form), first


def as_written(dataset: Dataset, diracs: list, classes: list, rounded: set) -> tuple:
    """The evidence of every finding that involves a distribution in ``rounded`` (written
    values that are not binary64 numbers), re-decided on the values as written: ``exact`` iff
    the relation holds for them exactly (module docstring)."""
    keys: dict = {}

    def key(i: int):
        if i not in keys:
            keys[i] = _written_key(dataset.distributions[i])
        return keys[i]

    out_d = []
    for f in diracs:
        if f.index in rounded:
            k = key(f.index)
            one = (k is not None and k[0][0] == "law" and len(k[0][1]) == 1
                   and not any(x for row in k[0][1][0][1] for x in row))
            box = k is not None and k[0][0] == "box" and not any(k[0][1])
            f = DiracFinding(f.index, f.name, f.point, _EXACT if one or box else _NUMERICAL)
        out_d.append(f)
    out_c = []
    for c in classes:
        ev = list(c.evidence)
        for pos in range(1, c.size):
            m, p = c.members[pos], c.parents[pos]
            if m in rounded or p in rounded:
                km, kp = key(m), key(p)
                ev[pos] = (_EXACT if km is not None and kp is not None and km[0] == kp[0]
                           else _NUMERICAL)
        out_c.append(TranslateClass(c.members, c.names, c.shifts, c.parents, tuple(ev),
                                    c.family))
    return out_d, out_c
