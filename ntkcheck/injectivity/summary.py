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

Near pairs
----------
For two sequences with unit columns a_i, a_j the pair distance is ||a_i - a_j|| (in [0, 2]; it
is >= both scores). Pairs closer than :data:`PAIR_LIMIT` are listed (at most
:data:`MAX_PAIRS`), computed from the columns of R (||r_i - r_j||, no cancellation), with
``ratio`` nu_i / nu_j of the column norms before normalisation: LSE_i ~ ratio LSE_j + affine.
``kind`` is ``near_duplicate`` (ratio ~ 1, same mean), ``near_translate`` (ratio ~ 1, means
differ by ``shift``) or ``proportional`` (e.g. a convolution power). Structural classes give
pairs (member, parent) at distance 0 with ``source`` ``structural``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..dataset import Dataset
from ..distributions import Discrete, UniformBox
from .features import FeatureMatrix
from .spectrum import Spectrum

__all__ = ["gram_summary", "condition_number", "effective_rank", "core_near_dependency",
           "with_structure", "PAIR_LIMIT", "MAX_PAIRS", "LISTED", "PARTNERS"]

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
#: Ratio of column norms within this of 1: a near duplicate or translate, not a proportional pair.
RATIO_TOL = 1e-3
_U = np.finfo(float).eps / 2


def _top_names(vec: np.ndarray, names: Sequence[str], count: int = 3) -> str:
    order = np.argsort(-np.abs(vec))[:count]
    return ", ".join(f"{names[i]} {vec[i]:+.3f}" for i in order)


def gram_summary(spec: Spectrum, names: Sequence[str], probes: int) -> dict:
    """Spectrum summary of the feature Gram G = F_perp^T F_perp / M (SPEC §5) from the test's SVD.

    Eigenvalues sigma^2 / M ascending, tolerance tau^2 / M (the round-off level), condition
    number lambda_max / lambda_min ("inf" when lambda_min <= tolerance), effective rank
    (sum lambda)^2 / sum lambda^2, and the unit eigenvector of the smallest eigenvalue by name
    (columns normalised: the direction that nearly breaks the condition).
    """
    lam = spec.singular_values[::-1] ** 2 / probes
    tol = spec.noise**2 / probes
    vec = spec.smallest_right_vector()
    vec = vec * np.sign(vec[np.argmax(np.abs(vec))])
    out = {"kernel": "gram", "eigenvalues": [float(x) for x in lam]}
    if spec.partial:
        # the smallest eigenvalues only; the largest from power iteration, the effective rank
        # from the traces tr G = ||R||_F^2 / M and tr G^2 = ||R^T R||_F^2 / M^2
        top = max(float(spec.largest or 0.0) ** 2 / probes, float(lam[-1]))
        cond = condition_number(np.array([lam[0], top]), tol)
        R = spec.triangle
        tr = float(np.einsum("ij,ij->", R, R)) / probes
        tr2 = _gram_frobenius_sq(R) / probes**2
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
    """||R^T R||_F^2 for upper-triangular R, in column blocks: columns a..b-1 of R^T R are
    R[:b]^T R[:b, a:b] (rows below b of those columns are zero), about N^3 flops at GEMM
    speed in all, N x block scratch."""
    N = R.shape[1]
    total = 0.0
    for a in range(0, N, block):
        b = min(N, a + block)
        C = R[:b].T @ R[:b, a:b]
        total += float(np.einsum("ij,ij->", C, C))
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
