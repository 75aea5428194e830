"""Summaries of the dense test (SPEC §5, §3): the feature Gram's spectrum from the test's own
factorisation, and the near-dependency scores and pairs of each sequence.

Score of a sequence
-------------------
Let a_1..a_N be the unit columns of the column-normalised F_perp (LSE features at the probes,
projected off the affine functions, each column divided by its norm;
:mod:`ntkcheck.injectivity.features`).
The score of sequence i is the distance of its column to the span of the other columns,

    score_i = min_{x : x_i = 1} || sum_j x_j a_j || = 1 / sqrt((G^+)_{ii}),   G = F_perp^T F_perp,

in [0, 1]: 1 when the LSE of mu_i is orthogonal to the others modulo affine functions, 0 when it
is exactly a combination of them plus an affine function. It is scale-free (columns are
normalised, and whitening makes it invariant under affine maps of the data), computed from the
R factor of the test's QR (:meth:`ntkcheck.injectivity.spectrum.Spectrum.scores`), and bounds the
scaled smallest
singular value: ``sigma_min <= min_i score_i <= sqrt(N) sigma_min``. ``closest`` lists the (at
most 3) sequences j with the largest |x_j| in the best approximation a_i ~ -sum_{j != i} x_j a_j,
as ``coefficient`` -x_j, leaving out terms below 5 % of the largest.

Sequences removed by the structural screen (:mod:`ntkcheck.injectivity.screen`) have score 0
with reason ``structural``, and so do the representatives of their classes (a duplicate of
them is among the others). A column whose LSE is affine at round-off level has reason
``affine``; an exact dependency found by the dense test gives reason ``dependent``; otherwise
``dense``.

Near pairs and sets
-------------------
For two sequences with unit columns a_i, a_j the pair distance is ||a_i - a_j|| (in [0, 2]; it
is >= both scores). Every pair closer than :data:`PAIR_LIMIT` is found
(:func:`ntkcheck.injectivity.pairs.near_pairs`: from the columns of R, ||r_i - r_j||, no
cancellation, in bounded memory) and counted; the closest ``max_pairs`` (default
:data:`MAX_PAIRS`) are listed, ``pairs_omitted`` counts the rest. Each listed pair has
``ratio`` nu_i / nu_j of the column norms before normalisation: LSE_i ~ ratio LSE_j + affine.
``kind`` is ``near_duplicate`` (ratio ~ 1, same mean), ``near_translate`` (ratio ~ 1, means
differ by ``shift``) or ``proportional`` (e.g. a convolution power). Structural classes give
pairs (member, parent) at distance 0 with ``source`` ``structural``.

``sets`` are the connected components of the near pairs and the structural classes (single
linkage), always complete: each lists its names in dataset order, its ``representative`` (the
first one the screen kept in the core) and its ``links``, a minimum spanning forest of its
pairs, so that its links closer than any t <= PAIR_LIMIT give the sets at threshold t
(:func:`ntkcheck.neardep.suggest_drop` uses this).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..dataset import Dataset
from ..distributions import Discrete, UniformBox
from ..errors import InputError
from .features import FeatureMatrix
from .pairs import components, near_pairs
from .spectrum import Spectrum

__all__ = ["null_representative", "gram_summary", "condition_number", "effective_rank",
           "core_near_dependency", "with_structure", "near_sets", "NearOptions", "PAIR_LIMIT",
           "MAX_PAIRS", "LISTED", "PARTNERS"]

#: Pairs of unit columns closer than this are listed as near pairs.
PAIR_LIMIT = 0.05
#: Default cap on the near pairs listed (closest first) in the result; the sets are always
#: complete (at most N names and N - 1 links in all).
MAX_PAIRS = 10_000
#: The lowest-scoring sequences described in detail (partners) in the result.
LISTED = 10
#: Partners named per described sequence (at most), among those with |coefficient| at least
#: PARTNER_RTOL times the largest.
PARTNERS = 3
PARTNER_RTOL = 0.05
#: Ratio of column norms within this of 1: a near duplicate or translate, not a proportional pair.
RATIO_TOL = 1e-3
_U = np.finfo(float).eps / 2


def _top_names(vec: np.ndarray, names: Sequence[str], count: int = 3) -> str:
    order = np.argsort(-np.abs(vec))[:count]
    return ", ".join(f"{names[i]} {vec[i]:+.3f}" for i in order)


#: Relative tolerance under which two weights of a subspace's coordinates count as tied in
#: :func:`null_representative`: sqrt(u), far above their own round-off (a few ulps, plus the
#: subspace's perturbation u ||K|| / gap when its gap to the rest exceeds sqrt(u) ||K||).
TIE_RTOL = float(np.sqrt(np.finfo(float).eps))


def null_representative(V: np.ndarray) -> np.ndarray:
    """The canonical unit vector of span(V) (V: (N, k) orthonormal columns, k >= 1).

    When several eigenvalues are at round-off level, an eigensolver returns any orthonormal
    basis of their space, and "the eigenvector of the smallest eigenvalue" is any unit vector
    of it (a different one on another CPU's BLAS). This returns one that depends on the space
    alone: with P = V V^T its orthogonal projector, P e_i / ||P e_i|| for the coordinate i of
    largest weight P_ii = ||row i of V||^2 (the first in order among those within
    :data:`TIE_RTOL` of it), i.e. the unit vector of the space closest to e_i, with entry i
    positive. For k = 1 it is the vector itself, signed so that its largest entry is positive.
    """
    V = np.asarray(V, dtype=float)
    w = np.einsum("ij,ij->i", V, V)
    i = int(np.flatnonzero(w >= w.max() * (1.0 - TIE_RTOL))[0])
    x = V @ V[i]
    return x / np.linalg.norm(x)


def gram_summary(spec: Spectrum, names: Sequence[str], probes: int) -> dict:
    """Spectrum summary of the feature Gram G = F_perp^T F_perp / M (SPEC §5) from the test's SVD.

    Eigenvalues sigma^2 / M ascending, tolerance tau^2 / M (the round-off level), condition
    number lambda_max / lambda_min ("inf" when lambda_min <= tolerance), effective rank
    (sum lambda)^2 / sum lambda^2, and the unit eigenvector of the smallest eigenvalue by name
    (columns normalised: the direction that nearly breaks the condition); when several are at
    the round-off level, the canonical vector of their space (:func:`null_representative`).
    """
    lam = spec.singular_values[::-1] ** 2 / probes
    tol = spec.noise**2 / probes
    if spec.null_dim >= 2:
        vec = null_representative(spec.trailing_right_vectors(spec.null_dim))
    else:
        vec = spec.smallest_right_vector()
        vec = vec * np.sign(vec[np.argmax(np.abs(vec))])
    out = {"kernel": "gram", "eigenvalues": [float(x) for x in lam]}
    if spec.partial:
        # the smallest eigenvalues only; the largest from Krylov iteration, the effective rank
        # from the traces tr G = ||R||_F^2 / M and tr G^2 = ||R^T R||_F^2 / M^2
        top = max(float(spec.largest or 0.0) ** 2 / probes, float(lam[-1]))
        cond = condition_number(np.array([lam[0], top]), tol)
        tr = spec.triangle_frobenius_sq / probes
        tr2 = (spec.gram_frobenius_sq if spec.gram_frobenius_sq is not None
               else _gram_frobenius_sq(spec.triangle)) / probes**2
        erank = tr * tr / tr2 if tr2 > 0 else 0.0
        rank = spec.size - int(np.sum(lam <= tol))
        out.update(partial=True)
    else:
        top = float(lam[-1])
        cond = condition_number(lam, tol)
        erank = effective_rank(lam)
        rank = int(np.sum(lam > tol))
    out.update({"min_eigenvalue": float(lam[0]), "max_eigenvalue": top,
                "condition_number": cond if np.isfinite(cond) else "inf",
                "effective_rank": erank,
                "numerical_rank": rank, "tolerance": float(tol),
                "min_eigenvector": {n: float(x) for n, x in zip(names, vec)}})
    return out


def _gram_frobenius_sq(R: np.ndarray, block: int = 1024) -> float:
    """||R^T R||_F^2 for upper-triangular R, by row panels of G = R^T R and symmetry: rows
    a..e-1 of G only involve rows < e of R (R[k, i] = 0 for k > i), so their upper part is
    G[a:e, a:] = R[:e, a:e]^T R[:e, a:], one GEMM on views of R (no copies; 2 e (e - a) (N - a)
    flops); the diagonal block G[a:e, a:e] is counted once, the columns beyond it twice
    (G_ij = G_ji): N^3 / 3 flops in all at the GEMM rate (83 GFLOP/s at N = 12000 on 2 cores,
    where triangular products on copied panels reached 67), block x N scratch."""
    N = R.shape[1]
    total = 0.0
    for a in range(0, N, block):
        e = min(N, a + block)
        C = R[:e, a:e].T @ R[:e, a:]  # numpy's matmul takes the strided views as they are
        total += float(np.einsum("ij,ij->", C[:, :e - a], C[:, :e - a]))
        total += 2.0 * float(np.einsum("ij,ij->", C[:, e - a:], C[:, e - a:]))
    return total


def condition_number(eigenvalues: np.ndarray, tolerance: float) -> float:
    """lambda_max / lambda_min of ascending ``eigenvalues``, inf when lambda_min <= tolerance."""
    if not eigenvalues.size or not eigenvalues[0] > tolerance:
        return float("inf")
    return float(eigenvalues[-1] / eigenvalues[0])


def effective_rank(eigenvalues: np.ndarray) -> float:
    """(sum lambda)^2 / sum lambda^2 over the clipped eigenvalues max(lambda, 0); 0 if all are 0."""
    lam = np.maximum(eigenvalues, 0.0)
    if not lam.size or lam.max() == 0.0:
        return 0.0
    lam = lam / lam.max()  # avoids overflow / underflow of the squares
    return float(np.sum(lam) ** 2 / np.sum(lam**2))


# ---------------------------------------------------------------------------------------------
# scores, pairs and sets
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NearOptions:
    """What the near-dependency summary lists: at most ``max_pairs`` near pairs (None: all), and
    the lowest-scoring sequences outside ``representatives`` (the structural classes' kept
    members, whose partners are their class) described with their partners."""

    max_pairs: int | None = MAX_PAIRS
    representatives: frozenset = frozenset()

    @classmethod
    def checked(cls, max_pairs: Any) -> "NearOptions":
        """Options with a validated ``max_pairs`` (InputError naming the field)."""
        if max_pairs is not None and (not isinstance(max_pairs, (int, np.integer))
                                      or isinstance(max_pairs, bool) or max_pairs < 0):
            raise InputError(f"must be a non-negative integer or None, got {max_pairs!r}",
                             field="max_pairs")
        return cls(None if max_pairs is None else int(max_pairs))


def core_near_dependency(spec: "Spectrum", features: "FeatureMatrix", dataset: Dataset,
                         options: NearOptions = NearOptions()) -> dict[str, Any]:
    """Scores, partners, near pairs and the near-pair forest of one dense test (module
    docstring).

    Parameters
    ----------
    spec : Spectrum of the column-normalised F_perp (N columns)
    features : the FeatureMatrix it came from (column norms nu_i, for the pair ratios)
    dataset : the N distributions (means, for the pair shifts)
    options : NearOptions (the pair cap; names not to describe)

    Returns
    -------
    dict with ``scores`` {name: score} (empty when a partial spectrum cannot give them),
    ``reasons`` {name: reason}, ``closest`` {name: [{name, coefficient}]} for the
    :data:`LISTED` lowest outside ``options.representatives``, ``pairs`` (the closest
    ``max_pairs``, closest first), ``pairs_total``, ``links`` (a minimum spanning forest of
    all near pairs, [(name, name, distance)]), ``method`` and
    ``scaled_smallest_singular_value``.
    """
    names = dataset.names
    out: dict[str, Any] = {"scores": {}, "reasons": {}, "closest": {}, "method": "partial",
                           "scaled_smallest_singular_value": spec.smallest}
    dist = None
    if spec.has_scores():
        cs = spec.scores()
        dist = cs.distance
        affine = features.affine_mask
        reasons = {}
        for i, name in enumerate(names):
            reasons[name] = ("affine" if affine[i] else
                             "dependent" if dist[i] == 0.0 else "dense")
        order = [i for i in np.lexsort((np.arange(len(names)), dist))
                 if names[i] not in options.representatives]
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
        out.update(scores={n: float(d) for n, d in zip(names, dist)}, reasons=reasons,
                   closest=closest, method=cs.method)
    found = near_pairs(spec.triangle, limit=PAIR_LIMIT, max_pairs=options.max_pairs,
                       candidates=None if dist is None else dist <= PAIR_LIMIT * 1.01)
    nu = np.asarray(features.col_norms, dtype=float)
    out["pairs"] = [_pair(dataset, int(i), int(j), float(d), float(nu[i] / nu[j]))
                    for i, j, d in zip(found.first, found.second, found.distance)]
    out["pairs_total"] = found.total
    out["links"] = [(names[i], names[j], float(d)) for i, j, d in zip(*found.links)]
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



def with_structure(core: dict[str, Any] | None, findings: Sequence[Any], names: Sequence[str],
                   max_pairs: int | None = MAX_PAIRS) -> dict[str, Any]:
    """Scores of every sequence (the core's, and 0 ``structural`` for Dirac masses, class
    members and their representatives), the near pairs (the screen's, at distance 0, then the
    core's; at most ``max_pairs``) and the near sets. Returns the ``scores`` and
    ``near_dependency`` fields of :class:`~ntkcheck.AnalysisResult`.

    ``lowest`` lists the :data:`LISTED` lowest-scoring sequences outside the structure (the
    structural ones, all at 0, are in ``structure`` and ``sets``). ``sets`` are the connected
    components of the near pairs and the screen's classes, each with its ``representative``
    (the first in dataset order that the screen kept in the core) and ``links``, the pairs of
    a minimum spanning forest: its links closer than t give the sets at any t <= pair_limit.
    """
    core = core or {"scores": {}, "reasons": {}, "closest": {}, "pairs": [], "pairs_total": 0,
                    "links": [], "method": "empty", "scaled_smallest_singular_value": 0.0}
    scores = dict(core["scores"])
    reasons = dict(core["reasons"])
    closest = {k: list(v) for k, v in core["closest"].items()}
    pairs: list[dict[str, Any]] = []
    links = [{"names": [a, b], "distance": d, "source": "dense"} for a, b, d in core["links"]]
    moved: set[str] = set()
    for f in findings:
        d = f.to_dict()
        if d["kind"] == "dirac":
            scores[d["name"]], reasons[d["name"]] = 0.0, "structural"
            closest[d["name"]] = []
            continue
        members = d["names"]
        index = dict(zip(d["members"], members))
        moved.update(members[1:])
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
                links.append({"names": [parent, member], "distance": 0.0,
                              "source": "structural"})
    total = len(pairs) + core["pairs_total"]
    pairs += core["pairs"]
    listed = pairs if max_pairs is None else pairs[:max_pairs]
    position = {n: k for k, n in enumerate(names)}
    ordered = sorted((n for n in names if n in scores and reasons.get(n) != "structural"),
                     key=lambda n: (scores[n], position[n]))
    lowest = [{"name": n, "score": scores[n], "reason": reasons[n], "closest": closest.get(n, [])}
              for n in ordered[:LISTED]]
    near = {"scaled_smallest_singular_value": core["scaled_smallest_singular_value"],
            "method": core["method"], "lowest": lowest, "pairs": listed,
            "pairs_omitted": total - len(listed), "pair_limit": PAIR_LIMIT,
            "max_pairs": max_pairs, "sets": near_sets(links, names, moved)}
    return {"scores": {n: scores[n] for n in names if n in scores}, "near_dependency": near}


def near_sets(links: Sequence[dict[str, Any]], names: Sequence[str],
              moved: set[str] | frozenset = frozenset()) -> list[dict[str, Any]]:
    """The connected components (two or more sequences) of ``links`` [{names: [a, b],
    distance, source}], in the order of their first member: {names (dataset order),
    representative (the first not in ``moved``, or the first), links (closest first)}."""
    if not links:
        return []
    position = {n: k for k, n in enumerate(names)}
    a = np.array([position[x["names"][0]] for x in links], dtype=np.int64)
    b = np.array([position[x["names"][1]] for x in links], dtype=np.int64)
    labels = components(len(names), a, b)
    touched = np.zeros(len(names), dtype=bool)
    touched[a], touched[b] = True, True
    out: dict[int, dict[str, Any]] = {}
    for k in map(int, np.flatnonzero(touched)):  # dataset order: sets by first member
        entry = out.setdefault(int(labels[k]), {"names": [], "representative": None,
                                                "links": []})
        entry["names"].append(names[k])
        if entry["representative"] is None and names[k] not in moved:
            entry["representative"] = names[k]
    for link, label in sorted(zip(links, labels[a]), key=lambda t: (
            t[0]["distance"], position[t[0]["names"][0]], position[t[0]["names"][1]])):
        out[int(label)]["links"].append(dict(link))
    sets = sorted(out.values(), key=lambda s: position[s["names"][0]])
    for s in sets:
        s["representative"] = s["representative"] or s["names"][0]
    return sets
