"""The structural screen's findings re-decided on the values as written (SPEC §7, §3a): for a
distribution whose written values are not binary64 numbers (a spec's "0.1", "1/3"), the float
screen compares nearest doubles, so each finding is re-decided in exact rational arithmetic on
the written values:

* ``exact`` when the relation holds for them exactly;
* **released** when it provably does not (the written values are read exactly and differ: a
  "0.500000000000000001" atom against 0.5, two Dirac atoms 0.1 and "0.1000000000000000001"):
  the match is one of the input's rounding, a near-dependency at the precision of the input,
  never a dependency of the data as written (SPEC §3a). Such a distribution goes back to the
  core, where the dense test finds the doubles' relation, re-checks it on the written values
  and reports it at that level (``input_rounding``); a class splits along the broken matches;
* ``numerical`` when the written values cannot be read exactly (nothing is claimed for them
  beyond the doubles)."""

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
    """(diracs, classes, released): every finding that involves a distribution in ``rounded``
    (written values that are not binary64 numbers) re-decided on the values as written (module
    docstring); ``released`` lists the indices that go back to the core."""
    keys: dict = {}

    def key(i: int):
        if i not in keys:
            keys[i] = _written_key(dataset.distributions[i])
        return keys[i]

    out_d, released = [], []
    for f in diracs:
        if f.index in rounded:
            k = key(f.index)
            one = (k is not None and k[0][0] == "law" and len(k[0][1]) == 1
                   and not any(x for row in k[0][1][0][1] for x in row))
            box = k is not None and k[0][0] == "box" and not any(k[0][1])
            if k is not None and not (one or box):
                released.append(f.index)
                continue
            f = DiracFinding(f.index, f.name, f.point, _EXACT if one or box else _NUMERICAL)
        out_d.append(f)
    out_c = []
    for c in classes:
        ev, broken = list(c.evidence), set()

        def as_written_match(a: int, b: int) -> bool | None:
            """Whether positions a, b of c match as written (None: not readable exactly)."""
            ka, kb = key(c.members[a]), key(c.members[b])
            if ka is None or kb is None:
                return None
            # a duplicate claim (equal doubles) needs equal written first points too
            return ka[0] == kb[0] and (ka[1] == kb[1] or c.shifts[a] != c.shifts[b])

        for pos in range(1, c.size):
            m, p = c.members[pos], c.parents[pos]
            if m in rounded or p in rounded:
                match = as_written_match(pos, c.members.index(p))
                if match is None:
                    ev[pos] = _NUMERICAL
                elif match:
                    ev[pos] = _EXACT
                else:
                    broken.add(pos)
        kept, freed = _split(TranslateClass(c.members, c.names, c.shifts, c.parents, tuple(ev),
                                            c.family), broken, as_written_match)
        out_c += kept
        released += freed
    return out_d, out_c, released


def _split(c: TranslateClass, broken: set, match) -> tuple[list, list]:
    """The class without the matches at ``broken`` positions (each member's match with its
    parent): the subtrees of its spanning tree, those whose tops match as written
    (``match(a, b)``) joined again (an exact match), each part with two or more members a class
    rooted at its top member (shifts relative to it); and the indices that become core members
    (the new roots and the members left alone; the old root already is one)."""
    if not broken:
        return [c], []
    pos = {m: j for j, m in enumerate(c.members)}

    def top(j: int) -> int:
        while j != 0 and j not in broken:
            j = pos[c.parents[j]]
        return j

    parents, evidence = list(c.parents), list(c.evidence)
    groups: dict[int, list[int]] = {}
    for j in range(c.size):
        groups.setdefault(top(j), []).append(j)
    roots: list[int] = []
    for r in sorted(groups):
        home = next((q for q in roots if match(q, r)), None)
        if home is None:
            roots.append(r)
            continue
        parents[r], evidence[r] = c.members[home], _EXACT
        groups[home] += groups.pop(r)
    kept, freed = [], []
    for root in roots:
        group = [root] + sorted(j for j in groups[root] if j != root)
        if root != 0:
            freed.append(c.members[root])
        if len(group) < 2:
            continue
        t0 = c.shifts[root]
        kept.append(TranslateClass(
            tuple(c.members[j] for j in group), tuple(c.names[j] for j in group),
            tuple(tuple(a - b for a, b in zip(c.shifts[j], t0)) for j in group),
            tuple(c.members[root] if j == root else parents[j] for j in group),
            tuple(c.evidence[0] if j == root else evidence[j] for j in group), c.family))
    return kept, freed
