"""Near-dependencies: per-sequence scores, near-duplicate pairs, the margin, and what to drop.

Score of a sequence
-------------------
Let a_1..a_N be the unit columns of the column-normalised F_perp (LSE features at the probes,
projected off the affine functions, each column divided by its norm; :mod:`ntkcheck.features`).
The score of sequence i is the distance of its column to the span of the other columns,

    score_i = min_{x : x_i = 1} || sum_j x_j a_j || = 1 / sqrt((G^+)_{ii}),   G = F_perp^T F_perp,

in [0, 1]: 1 when the LSE of mu_i is orthogonal to the others modulo affine functions, 0 when it
is exactly a combination of them plus an affine function. It is scale-free (columns are
normalised, and whitening makes it invariant under affine maps of the data), computed from the
R factor of the test's QR (:meth:`ntkcheck.rank.Spectrum.scores`), and bounds the scaled smallest
singular value: ``sigma_min <= min_i score_i <= sqrt(N) sigma_min``. ``closest`` lists the (at
most 3) sequences j with the largest |x_j| in the best approximation a_i ~ -sum_{j != i} x_j a_j,
as ``coefficient`` -x_j, leaving out terms below 5 % of the largest.

Sequences removed by the structural screen (:mod:`ntkcheck.injectivity.screen`) have score 0
with reason ``structural``, and so do the representatives of their classes (a duplicate of
them is among the others). A column whose LSE is affine at round-off level has reason
``affine``; an exact dependency found by the dense test gives reason ``dependent``; otherwise
``dense``.

Near pairs
----------
For two sequences with unit columns a_i, a_j the pair distance is ||a_i - a_j|| (in [0, 2]; it
is >= both scores). Pairs closer than :data:`PAIR_LIMIT` are listed (at most
:data:`MAX_PAIRS`), computed from the columns of R (||r_i - r_j||, no cancellation), with
``ratio`` nu_i / nu_j of the column norms before normalisation: LSE_i ~ ratio LSE_j + affine.
``kind`` is ``near_duplicate`` (ratio ~ 1, same mean), ``near_translate`` (ratio ~ 1, means
differ by ``shift``) or ``proportional`` (e.g. a convolution power). Structural classes give
pairs (member, parent) at distance 0 with ``source`` ``structural``.

Margin
------
``apply_margin(result, threshold)`` compares the scaled smallest singular value (the smallest
singular value of the core's column-normalised F_perp; 0 when the core is empty) with
``threshold``:
below it the data are close to a dependency. CLI: ``--fail-below`` (exit code
:data:`EXIT_BELOW_MARGIN` for an injective verdict).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .dataset import Dataset
from .distributions import Discrete, UniformBox
from .errors import InputError

if TYPE_CHECKING:
    from .analysis import AnalysisResult
    from .arrays import DataLike
    from .features import FeatureMatrix
    from .rank import Spectrum

__all__ = ["core_near_dependency", "with_structure", "apply_margin", "suggest_drop",
           "DropSuggestion", "PAIR_LIMIT", "MAX_PAIRS", "LISTED", "PARTNERS",
           "EXIT_BELOW_MARGIN"]

#: Pairs of unit columns closer than this are listed as near pairs.
PAIR_LIMIT = 0.05
#: At most this many near pairs (closest first) in the result.
MAX_PAIRS = 20
#: The lowest-scoring sequences described in detail (partners) in the result.
LISTED = 10
#: Partners named per described sequence (at most), among those with |coefficient| at least
#: PARTNER_RTOL times the largest.
PARTNERS = 3
PARTNER_RTOL = 0.05
#: Exit code of ``analyze --fail-below`` when the verdict is injective but the margin is not met.
EXIT_BELOW_MARGIN = 6
#: Ratio of column norms within this of 1: a near duplicate or translate, not a proportional pair.
RATIO_TOL = 1e-3
_U = np.finfo(float).eps / 2


# ---------------------------------------------------------------------------------------------
# scores and pairs
# ---------------------------------------------------------------------------------------------

def core_near_dependency(spec: "Spectrum", features: "FeatureMatrix",
                         dataset: Dataset) -> dict[str, Any]:
    """Scores, partners and near pairs of the columns of one dense test (module docstring).

    Parameters
    ----------
    spec : Spectrum of the column-normalised F_perp (N columns)
    features : the FeatureMatrix it came from (column norms nu_i, for the pair ratios)
    dataset : the N distributions (means, for the pair shifts)

    Returns
    -------
    dict with ``scores`` {name: score}, ``reasons`` {name: reason}, ``closest``
    {name: [{name, coefficient}]} for the :data:`LISTED` lowest, ``pairs`` (closest first),
    ``method`` and ``scaled_smallest_singular_value``.
    """
    names = dataset.names
    cs = spec.scores()
    dist = cs.distance
    affine = features.affine_mask
    reasons = {}
    for i, name in enumerate(names):
        reasons[name] = ("affine" if affine[i] else
                         "dependent" if dist[i] == 0.0 else "dense")
    order = np.lexsort((np.arange(len(names)), dist))
    closest: dict[str, list[dict[str, Any]]] = {}
    for i in order[:LISTED]:
        if affine[i]:
            closest[names[i]] = []
            continue
        x = cs.approximation(int(i))
        x[i] = 0.0
        biggest = float(np.abs(x).max())
        top = [j for j in np.argsort(-np.abs(x), kind="stable")[:PARTNERS]
               if biggest > 0 and abs(x[j]) >= PARTNER_RTOL * biggest]
        closest[names[i]] = [{"name": names[j], "coefficient": float(-x[j])} for j in top]
    return {"scores": {n: float(d) for n, d in zip(names, dist)}, "reasons": reasons,
            "closest": closest, "pairs": _pairs(spec, features, dataset, dist),
            "method": cs.method, "scaled_smallest_singular_value": spec.smallest}


def _pairs(spec: "Spectrum", features: "FeatureMatrix", dataset: Dataset,
           dist: np.ndarray) -> list[dict[str, Any]]:
    """Pairs of columns closer than PAIR_LIMIT. Only columns scoring <= PAIR_LIMIT can be in
    one (the pair distance bounds both scores), so the Gram matrix is formed on those only."""
    R = np.asarray(spec.triangle, dtype=float)
    nu = np.asarray(features.col_norms, dtype=float)
    live = np.flatnonzero((dist <= PAIR_LIMIT) & (np.linalg.norm(R, axis=0) > 0))
    if live.size < 2:
        return []
    Rs = R[:, live]
    G = Rs.T @ Rs
    out = []
    rows, cols = np.nonzero(np.triu(G >= 1.0 - PAIR_LIMIT**2, 1))
    for a, b in zip(rows, cols):
        i, j = int(live[a]), int(live[b])
        d = float(np.linalg.norm(R[:, i] - R[:, j]))
        if d <= PAIR_LIMIT:
            out.append(_pair(dataset, i, j, d, float(nu[i] / nu[j])))
    out.sort(key=lambda p: (p["distance"], p["names"]))
    return out


def _extent(dist: Any) -> np.ndarray:
    """Per-coordinate extent of a distribution's support (range of atoms, box widths, range of
    the means plus component standard deviations)."""
    if isinstance(dist, Discrete):
        return np.ptp(dist.atoms, axis=0)
    if isinstance(dist, UniformBox):
        return dist.high - dist.low
    sd = np.sqrt(np.maximum(np.diagonal(dist.covariances, axis1=1, axis2=2), 0.0)).max(axis=0)
    return np.ptp(dist.means, axis=0) + sd


def _pair(dataset: Dataset, i: int, j: int, d: float, ratio: float) -> dict[str, Any]:
    mi, mj = (np.asarray(dataset.distributions[k].mean, dtype=float) for k in (i, j))
    shift = mj - mi
    # coordinate by coordinate, with no squares: any units, any magnitude up to 1e300
    size = _extent(dataset.distributions[i]) + _extent(dataset.distributions[j]) \
        + np.abs(mi) + np.abs(mj)
    if abs(ratio - 1.0) > RATIO_TOL:
        kind = "proportional"
    elif np.all(np.abs(shift) <= 1e-6 * size):
        kind = "near_duplicate"
    else:
        kind = "near_translate"
    return {"names": [dataset.names[i], dataset.names[j]], "distance": d, "kind": kind,
            "ratio": ratio, "shift": [float(x) for x in shift], "source": "dense"}


def with_structure(core: dict[str, Any] | None, findings: Sequence[Any],
                   names: Sequence[str]) -> dict[str, Any]:
    """Scores of every sequence: the core's, and 0 (``structural``) for Dirac masses, class
    members and their representatives. Returns the ``scores`` and ``near_dependency`` fields
    of :class:`~ntkcheck.AnalysisResult`."""
    core = core or {"scores": {}, "reasons": {}, "closest": {}, "pairs": [], "method": "empty",
                    "scaled_smallest_singular_value": 0.0}
    scores = dict(core["scores"])
    reasons = dict(core["reasons"])
    closest = {k: list(v) for k, v in core["closest"].items()}
    pairs: list[dict[str, Any]] = []
    for f in findings:
        d = f.to_dict()
        if d["kind"] == "dirac":
            scores[d["name"]], reasons[d["name"]] = 0.0, "structural"
            closest[d["name"]] = []
            continue
        members = d["names"]
        index = dict(zip(d["members"], members))
        for pos, member in enumerate(members):
            scores[member], reasons[member] = 0.0, "structural"
            parent = index[d["parents"][pos]]
            closest[member] = ([{"name": parent, "coefficient": 1.0}] if pos else
                               [{"name": m, "coefficient": 1.0} for m in members[1:1 + PARTNERS]])
            if pos:
                shift = np.asarray(d["shifts"][pos]) - np.asarray(
                    d["shifts"][members.index(parent)])
                pairs.append({"names": [parent, member], "distance": 0.0,
                              "kind": "duplicate" if not np.any(shift) else "translate",
                              "ratio": 1.0, "shift": [float(x) for x in shift],
                              "source": "structural", "evidence": d["evidence"][pos]})
    pairs += core["pairs"]
    position = {n: k for k, n in enumerate(names)}
    ordered = sorted(names, key=lambda n: (scores.get(n, 1.0), position[n]))
    listed = [{"name": n, "score": scores[n], "reason": reasons[n], "closest": closest.get(n, [])}
              for n in ordered[:LISTED] if n in scores]
    near = {"scaled_smallest_singular_value": core["scaled_smallest_singular_value"],
            "method": core["method"], "lowest": listed, "pairs": pairs[:MAX_PAIRS],
            "pairs_omitted": max(0, len(pairs) - MAX_PAIRS), "pair_limit": PAIR_LIMIT}
    return {"scores": {n: scores[n] for n in names if n in scores}, "near_dependency": near}


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
        return f"{what}; {verdict}{tail}"

    def to_dict(self) -> dict[str, Any]:
        after = self.after
        out: dict[str, Any] = {
            "drop": list(self.drop), "reasons": dict(self.reasons), "kept": len(self.kept),
            "success": self.success, "rounds": self.rounds,
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


def suggest_drop(data: "DataLike", *, result: "AnalysisResult | None" = None,
                 margin: float | None = None, max_rounds: int = 8,
                 names: Sequence[str] | None = None, weights: Any = None, lengths: Any = None,
                 mask: Any = None, **options: Any) -> DropSuggestion:
    """A small set of sequences whose removal makes ``data`` injective, re-verified.

    Each round analyses the current data (the full :func:`ntkcheck.analyze`, with ``options``)
    and, while it is not injective (or below ``margin``):

    * not injective: drops one sequence per relation of the reported dependency basis by
      Gaussian elimination over the relations, so that the dropped set meets every relation
      independently (then no combination of the relations survives on the kept sequences).
      The pivot of each relation is, in order of preference: a Dirac mass or a non-representative
      member of a structural class, the lowest score, the largest |coefficient|, the latest in
      dataset order;
    * inconclusive, or injective below ``margin``: drops the lowest-scoring sequence
      (the column closest to the span of the others); nothing when the verdict is
      inconclusive only because there are too few probes (more ``probes`` decide it).

    The final analysis of the reduced data is ``after``; the suggestion is successful only if
    it is injective (and meets the margin).

    Parameters
    ----------
    data : what :func:`ntkcheck.analyze` accepts (names/weights/lengths/mask as there)
    result : the analysis of ``data`` with the same options, if already computed
    margin : float, optional
        Also drop until the scaled smallest singular value is >= margin.
    max_rounds : int
        Maximum number of re-analyses.
    **options : passed to :func:`ntkcheck.analyze` (probes, scales, seed, whiten, exact...)

    Returns
    -------
    DropSuggestion
    """
    from .analysis import INCONCLUSIVE, INJECTIVE, NOT_INJECTIVE, analyze
    from .arrays import as_dataset

    dataset = as_dataset(data, names=names, weights=weights, lengths=lengths, mask=mask)
    if max_rounds < 1:
        raise InputError(f"must be >= 1, got {max_rounds}", field="max_rounds")

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
        if current.verdict == NOT_INJECTIVE and current.dependencies:
            pivots = _pivots(current)
        else:
            pivots = {n: None for n in _lowest(current)}
        chosen = [n for n in current.names if n in pivots and n in kept][:len(kept) - 1]
        if not chosen:
            break
        reasons.update(_reasons(current, chosen, pivots))
        dropped += chosen
        kept = [n for n in kept if n not in set(dropped)]
        reduced = Dataset(tuple(kept), tuple(dataset.distributions[index[n]] for n in kept),
                          dataset.source)
        current = run(reduced)
        rounds += 1
    drop = tuple(n for n in dataset.names if n in set(dropped))
    return DropSuggestion(drop, {n: reasons[n] for n in drop}, tuple(kept), before, current,
                          done(current), rounds, margin, tuple(index[n] for n in kept))


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


def _pivots(result: "AnalysisResult") -> dict[str, Any]:
    """{name: the relation it was chosen for}: one pivot per relation, by Gaussian elimination
    with the preferences of :func:`suggest_drop` (relations that become zero after elimination
    are redundant)."""
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
        j = min(eligible, key=lambda j: (names[j] not in roles, scores.get(names[j], 1.0),
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


def _reasons(result: "AnalysisResult", chosen: Sequence[str],
             pivots: dict[str, Any]) -> dict[str, str]:
    """Why each chosen name was dropped (structural role, relation, or its low score)."""
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
        partners = ", ".join(p["name"] for p in closest.get(name, []))
        out[name] = (f"lowest score {scores.get(name, 0.0):.3g}"
                     + (f" (closest to {partners})" if partners else ""))
    return out
