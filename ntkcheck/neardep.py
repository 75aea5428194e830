"""The margin and what to drop: acting on the near-dependency scores of a result
(:mod:`ntkcheck.injectivity.summary` computes them).

Margin
------
``apply_margin(result, threshold)`` compares the scaled smallest singular value (the smallest
singular value of the core's column-normalised F_perp; 0 when the core is empty) with
``threshold``:
below it the data are close to a dependency. CLI: ``--fail-below`` (exit code
:data:`ntkcheck.results.EXIT_BELOW_MARGIN` for an injective verdict).

Drop suggestions
----------------
``suggest_drop(data, analyze=...)`` re-analyses the data with the analysis function it is given
(:func:`ntkcheck.suggest_drop` passes :func:`ntkcheck.analyze`), so this module depends on the
result type only, never on the orchestrator.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .arrays import as_dataset
from .dataset import Dataset
from .errors import InputError
from .injectivity.pairs import components
from .injectivity.spectrum import GAP
from .results import EXIT_BELOW_MARGIN, INCONCLUSIVE, INJECTIVE, NOT_INJECTIVE, AnalysisResult

if TYPE_CHECKING:
    from .arrays import DataLike

__all__ = ["apply_margin", "suggest_drop", "DropSuggestion", "EXIT_BELOW_MARGIN",
           "DEFAULT_MAX_ROUNDS", "drop_threshold"]

#: Default limit on the re-analyses of :func:`suggest_drop` (``--max-rounds``).
DEFAULT_MAX_ROUNDS = 10


# ---------------------------------------------------------------------------------------------
# margin
# ---------------------------------------------------------------------------------------------

def apply_margin(result: "AnalysisResult", threshold: float) -> "AnalysisResult":
    """``result`` with its ``margin`` field: is the scaled smallest singular value below
    ``threshold``, and which sequences are responsible.

    ``sequences`` are those with score < threshold (lowest first); when none is but the
    singular value is (possible, since min score <= sqrt(N) sigma_min), the lowest-scoring
    sequence. An injective verdict below the margin gets exit code :data:`EXIT_BELOW_MARGIN`.
    """
    if not (threshold > 0 and np.isfinite(threshold)):
        raise InputError(f"must be a positive number, got {threshold}", field="fail_below")
    near = result.near_dependency or {}
    sigma = float(near.get("scaled_smallest_singular_value",
                           result.singular_values[-1] if result.singular_values.size else 0.0))
    if not result.singular_values.size:
        sigma = 0.0
    scores = result.scores or {}
    position = {n: k for k, n in enumerate(result.names)}
    ordered = sorted(scores, key=lambda n: (scores[n], position.get(n, 0)))
    below = sigma < threshold
    flagged = [n for n in ordered if scores[n] < threshold]
    if below and not flagged and ordered:
        flagged = ordered[:1]
    info = {"threshold": float(threshold), "scaled_smallest_singular_value": sigma,
            "below": bool(below),
            "sequences": [{"name": n, "score": scores[n]} for n in flagged] if below else []}
    return replace(result, margin=info)


# ---------------------------------------------------------------------------------------------
# suggest_drop
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, repr=False)
class DropSuggestion:
    """Sequences whose removal makes the data injective, re-verified (:func:`suggest_drop`).

    Attributes
    ----------
    drop : names to remove, in dataset order
    reasons : {name: why it was chosen}
    kept : the remaining names, in dataset order
    before : the analysis of the full data
    after : the full analysis of the reduced data (the re-verification)
    success : ``after`` is injective (and meets ``margin`` when one was given)
    rounds : number of re-analyses run
    margin : the margin asked for, or None
    kept_indices : dataset indices of ``kept``
    max_rounds : the limit on ``rounds`` it ran with
    """

    drop: tuple[str, ...]
    reasons: dict[str, str]
    kept: tuple[str, ...]
    before: "AnalysisResult"
    after: "AnalysisResult"
    success: bool
    rounds: int
    margin: float | None = None
    kept_indices: tuple[int, ...] = field(default=())
    max_rounds: int = DEFAULT_MAX_ROUNDS

    def __repr__(self) -> str:
        return (f"DropSuggestion(drop {list(self.drop)}: {self.after.verdict} on the remaining "
                f"{len(self.kept)}, {'success' if self.success else 'not successful'})")

    def summary(self) -> str:
        """One sentence: what to drop and what the re-verification found."""
        ev = f" ({self.after.evidence} evidence)" if self.after.evidence else ""
        if not self.drop:
            what = "nothing to drop"
        else:
            what = f"drop {len(self.drop)}: {', '.join(self.drop)}"
        marg = ""
        if self.margin is not None and self.after.margin:
            m = self.after.margin
            marg = (f", scaled smallest singular value {m['scaled_smallest_singular_value']:.3g}"
                    f" {'<' if m['below'] else '>='} {self.margin:g}")
        verdict = (f"re-verified {self.after.verdict}{ev} on the remaining {len(self.kept)}{marg}"
                   if self.rounds else f"{self.after.verdict}{ev} as it is{marg}")
        tail = "" if self.success else "; the suggestion is NOT successful"
        if not self.success and self.rounds >= self.max_rounds:
            tail += f" (stopped after max_rounds = {self.max_rounds} re-analyses)"
        return f"{what}; {verdict}{tail}"

    def to_dict(self) -> dict[str, Any]:
        after = self.after
        out: dict[str, Any] = {
            "drop": list(self.drop), "reasons": dict(self.reasons), "kept": len(self.kept),
            "success": self.success, "rounds": self.rounds, "max_rounds": self.max_rounds,
            "after": {"verdict": after.verdict, "evidence": after.evidence,
                      "reason": after.reason, "n_distributions": after.n_distributions,
                      "smallest_singular_value": (float(after.singular_values[-1])
                                                  if after.singular_values.size else 0.0),
                      "dependencies": len(after.dependencies)}}
        if self.margin is not None:
            out["margin"] = self.margin
            if after.margin:
                out["after"]["margin"] = after.margin
        return out


def suggest_drop(data: "DataLike", *, analyze: Callable[..., AnalysisResult],
                 result: "AnalysisResult | None" = None, margin: float | None = None,
                 max_rounds: int = DEFAULT_MAX_ROUNDS,
                 names: Sequence[str] | None = None, weights: Any = None, lengths: Any = None,
                 mask: Any = None, **options: Any) -> DropSuggestion:
    """A small set of sequences whose removal makes ``data`` injective, re-verified.

    Each round analyses the current data (the full :func:`ntkcheck.analyze`, with ``options``)
    and, while it is not injective (or below ``margin``), drops in one go:

    * every near set at the round's threshold t (:func:`drop_threshold`: sqrt(2) times the
      larger of ``margin`` and GAP x the round-off level): the connected components of the
      near pairs closer than t and of the structural classes, from the links of
      ``near_dependency.sets``; one representative of each is kept (the first in dataset order
      that the screen kept in the core), the others are dropped. A pair at distance d alone
      forces the scaled smallest singular value below d / sqrt(2), so every such pair must be
      broken;
    * not injective: one sequence per relation of the reported dependency basis by Gaussian
      elimination over the relations, so that the dropped set meets every relation
      independently (then no combination of the relations survives on the kept sequences).
      The pivot of each relation is, in order of preference: a Dirac mass, a non-representative
      member of a structural class or a sequence dropped with its near set anyway, the lowest
      score, the largest |coefficient|, the latest in dataset order;
    * inconclusive, or injective below ``margin``, with no near set to thin out: the
      lowest-scoring sequence (the column closest to the span of the others); nothing when the
      verdict is inconclusive only because there are too few probes (more ``probes`` decide it).

    The reduced data are analysed again in full (the next round, or the re-verification);
    the final analysis is ``after``, and the suggestion is successful only if it is injective
    (and meets the margin). At most ``max_rounds`` re-analyses run.

    Parameters
    ----------
    data : what :func:`ntkcheck.analyze` accepts (names/weights/lengths/mask as there)
    analyze : the analysis to run on each reduced dataset (:func:`ntkcheck.analyze`)
    result : the analysis of ``data`` with the same options, if already computed
    margin : float, optional
        Also drop until the scaled smallest singular value is >= margin.
    max_rounds : int
        Maximum number of re-analyses (default :data:`DEFAULT_MAX_ROUNDS`).
    **options : passed to :func:`ntkcheck.analyze` (probes, scales, seed, whiten, exact...)

    Returns
    -------
    DropSuggestion
    """
    dataset = as_dataset(data, names=names, weights=weights, lengths=lengths, mask=mask)
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, (int, np.integer)) \
            or max_rounds < 1:
        raise InputError(f"must be an integer >= 1, got {max_rounds!r}", field="max_rounds")

    def run(ds: Dataset) -> "AnalysisResult":
        res = analyze(ds, **options)
        return res if margin is None else apply_margin(res, margin)

    before = result if result is not None else analyze(dataset, **options)
    if margin is not None:
        before = apply_margin(before, margin)
    current, dropped, reasons = before, [], {}
    index = {n: i for i, n in enumerate(dataset.names)}
    rounds = 0

    def done(res: "AnalysisResult") -> bool:
        return res.verdict == INJECTIVE and not (res.margin and res.margin["below"])

    kept = list(dataset.names)
    while not done(current) and rounds < max_rounds and len(kept) > 1:
        if current.verdict == INCONCLUSIVE and _too_few_probes(current):
            break  # more probes decide it; dropping sequences would not
        near = _near_set_drops(current, drop_threshold(current, margin))
        if current.verdict == NOT_INJECTIVE and current.dependencies:
            pivots = _pivots(current, free=set(near))
        else:
            pivots = {} if near else {n: None for n in _lowest(current)}
        chosen = [n for n in current.names if (n in pivots or n in near) and n in kept]
        chosen = chosen[:len(kept) - 1]
        if not chosen:
            break
        reasons.update(_reasons(current, chosen, pivots, near))
        dropped += chosen
        kept = [n for n in kept if n not in set(dropped)]
        reduced = Dataset(tuple(kept), tuple(dataset.distributions[index[n]] for n in kept),
                          dataset.source)
        current = run(reduced)
        rounds += 1
    drop = tuple(n for n in dataset.names if n in set(dropped))
    return DropSuggestion(drop, {n: reasons[n] for n in drop}, tuple(kept), before, current,
                          done(current), rounds, margin, tuple(index[n] for n in kept),
                          int(max_rounds))


def drop_threshold(result: "AnalysisResult", margin: float | None = None) -> float:
    """Pair distance below which :func:`suggest_drop` thins out near sets:
    t = sqrt(2) max(margin, GAP tau) with tau the round-off level of the dense test (a pair at
    distance d < t alone puts the scaled smallest singular value below the margin or into the
    grey zone), at most the ``pair_limit`` up to which pairs are known."""
    near = result.near_dependency or {}
    level = max(float(margin or 0.0), GAP * float(result.noise))
    return float(min(np.sqrt(2.0) * level, near.get("pair_limit", 0.0)))


def _near_set_drops(result: "AnalysisResult", threshold: float) -> dict[str, str]:
    """{name: reason} for every member of a near set at ``threshold`` (links closer than it)
    but its representative: the first in dataset order that is not a structural
    non-representative."""
    near = result.near_dependency or {}
    if not threshold > 0:
        return {}
    roles = _structural_roles(result)
    out = {}
    for s in near.get("sets", []):
        members = list(s["names"])
        pos = {n: k for k, n in enumerate(members)}
        close = [x for x in s["links"] if x["distance"] < threshold]
        if not close:
            continue
        a = np.array([pos[x["names"][0]] for x in close])
        b = np.array([pos[x["names"][1]] for x in close])
        labels = components(len(members), a, b)
        for label in np.unique(labels):
            group = [members[k] for k in np.flatnonzero(labels == label)]
            if len(group) < 2:
                continue
            rep = next((n for n in group if n not in roles), group[0])
            for n in group:
                if n != rep:
                    out[n] = (f"near set of {rep} ({len(group)} sequences joined by pairs "
                              f"closer than {threshold:.3g}; {rep} kept)")
    return out


def _structural_roles(result: "AnalysisResult") -> dict[str, str]:
    """{name: reason} for Dirac masses and non-representative class members."""
    roles = {}
    for f in result.findings:
        d = f.to_dict()
        if d["kind"] == "dirac":
            roles[d["name"]] = "Dirac mass (its LSE is affine)"
            continue
        index = dict(zip(d["members"], d["names"]))
        what = "duplicate" if d["kind"] == "duplicates" else "translate"
        for pos in range(1, len(d["names"])):
            roles[d["names"][pos]] = f"{what} of {index[d['parents'][pos]]}"
    return roles


def _pivots(result: "AnalysisResult", free: set[str] | frozenset = frozenset()
            ) -> dict[str, Any]:
    """{name: the relation it was chosen for}: one pivot per relation, by Gaussian elimination
    with the preferences of :func:`suggest_drop` (relations that become zero after elimination
    are redundant); names in ``free`` are dropped anyway and preferred like structural roles."""
    names = list(result.names)
    col = {n: j for j, n in enumerate(names)}
    C = np.zeros((len(result.dependencies), len(names)))
    for r, dep in enumerate(result.dependencies):
        for n, c in dep.coefficients.items():
            C[r, col[n]] = c
    roles = _structural_roles(result)
    scores = result.scores or {}
    chosen: list[int] = []
    relation: dict[int, Any] = {}
    for r in range(C.shape[0]):
        row = C[r]
        big = np.abs(row).max(initial=0.0)
        if big == 0.0:
            continue
        eligible = [j for j in np.flatnonzero(np.abs(row) > 1e-8 * big) if j not in chosen]
        if not eligible:
            continue
        j = min(eligible, key=lambda j: (names[j] not in roles and names[j] not in free,
                                         scores.get(names[j], 1.0),
                                         -abs(row[j]) / big, -j))
        chosen.append(int(j))
        dep = result.dependencies[r]
        relation[int(j)] = (dep if names[j] in dep.coefficients else
                            [names[k] for k in np.flatnonzero(row)])
        factors = C[r + 1:, j] / row[j]
        C[r + 1:] -= np.outer(factors, row)
        C[r + 1:, j] = 0.0
        small = np.abs(C[r + 1:]) <= 1e-12 * np.abs(C[r + 1:]).max(axis=1, initial=0.0)[:, None]
        C[r + 1:][small] = 0.0
    return {names[j]: relation[j] for j in sorted(chosen)}


def _too_few_probes(result: "AnalysisResult") -> bool:
    """The dense test could not decide because M < N_core + r + 1."""
    s = result.settings
    core = s.get("core_size", result.n_distributions)
    return bool(core) and s.get("probes", 0) < core + s.get("affine_hull_dim", 0) + 1


def _lowest(result: "AnalysisResult") -> list[str]:
    scores = result.scores or {}
    if not scores:
        return []
    position = {n: k for k, n in enumerate(result.names)}
    return [min(scores, key=lambda n: (scores[n], -position.get(n, 0)))]


def _reasons(result: "AnalysisResult", chosen: Sequence[str], pivots: dict[str, Any],
             near: dict[str, str] | None = None) -> dict[str, str]:
    """Why each chosen name was dropped (structural role, relation, near set, or its low
    score)."""
    roles = _structural_roles(result)
    scores = result.scores or {}
    closest = {d["name"]: d["closest"] for d in (result.near_dependency or {}).get("lowest", [])}
    out = {}
    for name in chosen:
        if name in roles:
            out[name] = roles[name]
            continue
        dep = pivots.get(name)
        if isinstance(dep, list):  # a combination of the reported relations
            out[name] = f"in a dependency among {', '.join(dep)}"
            continue
        if dep is not None:
            out[name] = f"in the relation {dep.describe(4)}"
            continue
        if near and name in near:
            out[name] = near[name]
            continue
        partners = ", ".join(p["name"] for p in closest.get(name, []))
        out[name] = (f"lowest score {scores.get(name, 0.0):.3g}"
                     + (f" (closest to {partners})" if partners else ""))
    return out
