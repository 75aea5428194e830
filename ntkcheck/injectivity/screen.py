"""Exact structural screen: Dirac masses, duplicates and translates, and the core (SPEC §7).

Some dependencies are certain and cheap to find on any number of distributions:

* a **Dirac mass** delta_c: LSE(z) = <c, z> is affine, a dependency on its own;
* **duplicates**: two laws equal after merging repeated atoms, up to token order (uniform on
  {a, a, b} is the law with atoms {a, b} and weights 2/3, 1/3);
* **translates**: mu' = mu(. - t), LSE_mu'(z) = LSE_mu(z) + <t, z>.

Weights are compared up to a common factor: a law stored with weights summing to s != 1 has
LSE shifted by the constant log s, which is affine, so proportional weights are the same class.
They are compared *as stored* (the unnormalised weights a file or a spec gives, kept in
``Discrete.rational``), never after the floating-point normalisation: 3 copies of x1 and 7 of x2
are exactly the law with atoms x1, x2 and stored weights 3, 7 (3 * 7 == 7 * 3), while
3 * fl(7/10) != 7 * fl(3/10).

Written values (SPEC §3a): when a distribution's written values are not binary64 numbers
(``Distribution.rounded_inputs``: a spec decimal such as ``0.1``), the screen works on their
nearest doubles as for any data, and then re-checks each of its relations on the values as
written, in exact rational arithmetic (:mod:`.written`): one that holds is ``exact``; a match of
the doubles that fails for the written values is released (the distributions go back to the
core, where it is reported at the precision of the input), never a dependency.

Why the core decides the rest
-----------------------------
Let L_i be the class of LSE_i modulo the affine functions A, and call the dependency space of
mu_1..mu_N the kernel of c -> sum_i c_i L_i, of dimension N - dim span{L_i}. A Dirac has
L_i = 0; a duplicate or translate j of a representative r has L_j = L_r, since LSE_j - LSE_r is
affine. Removing Diracs and all but one member of each class therefore leaves span{L_i}
unchanged, so with the *core* K the set of the representatives and of the other non-Diracs,

    dim dep(all) = N - dim span = (N - |K|) + (|K| - dim span{L_k : k in K})
                 = reductions + dim dep(core),

where ``reductions = #Diracs + sum over classes (size - 1)``. Each reduction is itself a
dependency (e_i for a Dirac, e_j - e_r for a class member) and together with any basis of the
core's dependencies they form a basis of the whole space. The dense test (SPEC §3) runs on the
core only. A *numerical* relation holds only up to the rounding of the stored values, so for it
the identity is exact for the data rounded to its own precision, not for the stored values.

Algorithm, O(T log T) time and O(T) memory for T tokens in total
----------------------------------------------------------------
Each family is packed into one token array (boxes as the point pair {low, high}, Gaussian
mixtures with zero covariances as discrete laws, other mixtures as component rows (mean |
covariance)). Tokens are sorted lexicographically within each distribution (this order is
translation invariant), exactly equal tokens are merged (their weights added), and each
distribution gets a 64-bit hash of its merged tokens relative to its first one: the rounded
differences ``fl(y_j - y_0)`` (identical floats for exact translates, since the exact
differences are equal) for the exact pass, and these differences on a coarse grid of
``2**KEY_BITS`` ulps of the coordinate's largest magnitude for the numerical pass. Candidates
share a hash; every candidate is then checked against its class representative, vectorised over
all pairs at once:

* exact: y'_j - y_j is the same real number for every j, checked with the error-free
  transformation TwoSum (y' - y = s + e exactly, and (s, e) determines the real number, so equal
  pairs (s, e) mean equal differences); weights proportional, checked by comparing the exact
  products v'_j v_0 and v_j v'_0 as TwoProduct pairs; covariances equal as doubles. Merged
  weights are exact when a law has uniform weights (then the merged weights are the counts) or
  no repeated atoms; otherwise, and on overflow or underflow, the check falls back to
  :class:`fractions.Fraction` for that pair.
* numerical: per coordinate the differences spread by at most
  ``ULPS * u * (max |y_l| + max |y'_l|)`` (what ``fl(y + t)`` produces, u = 2^-53), weight
  ratios agree to ``ULPS * (n + n') * u`` relatively, covariances to ``ULPS * u`` relatively.
  Genuine near-translates, perturbed by more than that, never match.

Token-ID data (:class:`~ntkcheck.vocabulary.TokenIdDataset`) are packed from the IDs: tokens
are merged and sorted by the integer rank of their table row (equal rows share a rank; the ranks
follow the rows' lexicographic order, so the order is the one above), and rows are gathered from
the table only when a key or a check needs them. Unweighted sequences first pass an integer pass:
a Dirac is one rank, and duplicates are equal multisets of ranks with proportional counts
(compared as integers); the exact pass below then joins their representatives (translates), and
each duplicate joins its representative's exact class, so the classes are those of the same
data expanded to tokens.

Diracs: ``exact`` when all atoms are one double (one merged atom; low == high for a box),
``numerical`` when per coordinate they spread by at most ``2 ULPS u max |y_l|``. Diracs are
taken out before classes are formed (each is a relation on its own).

The exact pass forms exact classes first (exact equality is transitive); the numerical pass
then joins their representatives, largest class first, so every exact relation found is kept as
one. A numerical match whose coordinates straddle a grid line of the coarse hash (a rounding
error of a few ulps against a grid of 2^36 ulps: probability about 2^-33 per coordinate) is
missed; it stays in the core where the dense test sees it. Within one hash bucket each round
verifies all remaining candidates against one representative, so a bucket holding k distinct
classes costs k rounds: cheap for real data, quadratic only for thousands of laws that agree
to 1e-5 relative without being translates.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import numpy as np

from ..dataset import Dataset
from ..progress import Progress, tick, working
from ..distributions import Discrete, GaussianMixture, UniformBox
from ..vocabulary import RowGather, TokenIdDataset
from .findings import DiracFinding, ScreenResult, TranslateClass
from .keys import _hash_rows, _mix, _two_prod, _two_sum
from .written import as_written

__all__ = ["ScreenResult", "TranslateClass", "DiracFinding", "screen", "core_dataset", "ULPS",
           "KEY_BITS"]

#: Width of the numerical match in units of the round-off of the stored coordinates.
ULPS = 4
#: Grid of the candidate hash of the numerical pass, in ulps of each coordinate's magnitude.
KEY_BITS = 36
#: Grid of the candidate hash of weight ratios (absolute, ratios lie in (0, 1]).
WEIGHT_KEY_BITS = 30
#: Budget of float64 entries per vectorised verification chunk.
CHUNK = 1 << 22

_U = 2.0**-53
_EXACT, _NUMERICAL = "exact", "numerical"


# ---------------------------------------------------------------------------------------------
# packing: one token array per family, sorted and merged
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Family:
    kind: str
    index: np.ndarray       # (Nf,) dataset indices
    start: np.ndarray       # (Nf,) first merged token of each distribution
    size: np.ndarray        # (Nf,) merged token counts
    raw: np.ndarray         # (Nf,) raw token counts
    shift: np.ndarray | RowGather  # (Tm, d) merged tokens, translated part
    fixed: np.ndarray       # (Tm, k) merged tokens, untranslated part (covariances)
    weight: np.ndarray      # (Tm,) merged weights (counts for uniform laws)
    weight_exact: np.ndarray  # (Nf,) merged weights are exact doubles
    raw_start: np.ndarray   # (Tm,) first raw (sorted) token of each merged token
    raw_weight: np.ndarray  # (T,) raw weights in sorted order
    ids: np.ndarray | None = None  # (Tm,) integer row ranks (unweighted token IDs)


def _lex_order(owner: np.ndarray, X: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Order sorting tokens by owner, then lexicographically by (X row, F row).

    Sorted by (owner, first coordinate) first; only runs tied there (rare for continuous data,
    all the tokens of a Dirac) are sorted again on the full rows."""
    order = np.lexsort((X[:, 0], owner))
    o, x0 = owner[order], X[order, 0]
    tie = (o[1:] == o[:-1]) & (x0[1:] == x0[:-1])
    if tie.any():
        in_run = np.zeros(len(order), bool)
        in_run[1:] |= tie
        in_run[:-1] |= tie
        pos = np.flatnonzero(in_run)
        sub = order[pos]
        keys = [F[sub, c] for c in range(F.shape[1] - 1, -1, -1)]
        keys += [X[sub, c] for c in range(X.shape[1] - 1, -1, -1)] + [owner[sub]]
        order[pos] = sub[np.lexsort(keys)]
    return order


def _pack(kind: str, index: list[int], shift: list[np.ndarray], fixed: list[np.ndarray] | None,
          weights: list[np.ndarray]) -> _Family:
    raw = np.array([len(w) for w in weights])
    owner = np.repeat(np.arange(len(index)), raw)
    X = np.concatenate(shift) + 0.0  # -0.0 -> +0.0: the same real number
    d = X.shape[1]
    F = (np.concatenate(fixed) + 0.0) if fixed is not None else np.zeros((len(X), 0))
    W = np.concatenate(weights)
    order = _lex_order(owner, X, F)
    X, F, W, owner = X[order], F[order], W[order], owner[order]
    new = np.ones(len(X), bool)
    new[1:] = ((owner[1:] != owner[:-1]) | np.any(X[1:] != X[:-1], axis=1)
               | np.any(F[1:] != F[:-1], axis=1))
    raw_start = np.flatnonzero(new)
    counts = np.diff(np.append(raw_start, len(X)))
    m_owner = owner[raw_start]
    start = np.searchsorted(m_owner, np.arange(len(index)))
    size = np.diff(np.append(start, len(raw_start)))
    dist_raw_start = np.searchsorted(owner, np.arange(len(index)))
    uniform = np.minimum.reduceat(W, dist_raw_start) == np.maximum.reduceat(W, dist_raw_start)
    repeats = size < raw
    summed = np.add.reduceat(W, raw_start)
    weight = np.where(uniform[m_owner], counts.astype(float), summed)
    return _Family(kind, np.asarray(index), start, size, raw, X[raw_start], F[raw_start], weight,
                   uniform | ~repeats, raw_start, W)


def _stored_weights(dist: Discrete | GaussianMixture) -> np.ndarray:
    """The weights as stored (module docstring): the positive entries of the written weights
    as doubles when they are binary64 numbers and match the kept atoms or components one to
    one, else the normalised float64 weights (written weights that are not binary64 numbers
    are re-checked exactly, :func:`_written_key`)."""
    w = np.asarray(dist.weights)
    raw = (dist.rational or {}).get("weights")
    if raw is None or "weights" in dist.rounded_inputs:
        return w
    try:
        stored = np.array([float(x) for x in np.ravel(np.asarray(raw, dtype=object))])
    except (TypeError, ValueError, OverflowError):
        return w
    stored = stored[stored > 0]
    if len(stored) != len(w) or not np.all(np.isfinite(stored)):
        return w
    return stored


def _pack_ids(ds: TokenIdDataset) -> _Family:
    """Token-ID data as one discrete family: tokens merged and sorted by the integer rank of
    their rows (the lexicographic order of the rows), rows gathered from the table on demand."""
    t = ds.screen_tokens()
    return _Family("discrete", np.arange(len(ds)), t["start"], t["size"], t["raw"],
                   RowGather(ds.table + 0.0, t["row"]), np.zeros((len(t["row"]), 0)),
                   t["weight"], t["uniform"] | (t["size"] == t["raw"]), t["raw_start"],
                   t["raw_weight"], t["rank"] if ds.weights is None else None)


def _families(dataset: Dataset) -> list[_Family]:
    """Pack the distributions by family: (kind, index, translated rows, fixed rows, weights)."""
    if isinstance(dataset, TokenIdDataset):
        return [_pack_ids(dataset)]
    rows: dict[str, tuple[list, list, list, list]] = {
        k: ([], [], [], []) for k in ("discrete", "box", "mixture")}

    def add(kind: str, i: int, shift: np.ndarray, weights: np.ndarray,
            fixed: np.ndarray | None = None) -> None:
        idx, sh, fx, w = rows[kind]
        idx.append(i)
        sh.append(shift)
        w.append(weights)
        if fixed is not None:
            fx.append(fixed)

    for i, dist in enumerate(dataset.distributions):
        if isinstance(dist, Discrete):
            add("discrete", i, dist.atoms, _stored_weights(dist))
        elif isinstance(dist, UniformBox):  # the point pair {low, high}: translates alike
            add("box", i, np.stack([dist.low, dist.high]), np.ones(2))
        elif isinstance(dist, GaussianMixture):
            if not np.any(dist.covariances):  # the discrete law of its means
                add("discrete", i, dist.means, _stored_weights(dist))
            else:
                add("mixture", i, dist.means, _stored_weights(dist),
                    dist.covariances.reshape(len(dist.weights), -1))
    return [_pack(kind, idx, sh, fx or None, w)
            for kind, (idx, sh, fx, w) in rows.items() if idx]


# ---------------------------------------------------------------------------------------------
# hashing and exact arithmetic helpers
# ---------------------------------------------------------------------------------------------











# ---------------------------------------------------------------------------------------------
# candidate keys and pairwise verification
# ---------------------------------------------------------------------------------------------

def _keys(fam: _Family, members: np.ndarray, coarse: bool, grid: np.ndarray,
          fgrid: np.ndarray) -> np.ndarray:
    """64-bit hash per member of (size, tokens relative to the first, weight ratios), over
    chunks of members of about CHUNK key entries (each member's hash is its own)."""
    width = fam.shift.shape[1] + fam.fixed.shape[1] + 2
    out = np.empty(len(members), np.uint64)
    ends = np.cumsum(fam.size[members])
    a = 0
    while a < len(members):
        b = max(a + 1, int(np.searchsorted(ends, ends[a] + CHUNK // width, side="right")))
        out[a:b] = _keys_chunk(fam, members[a:b], coarse, grid, fgrid)
        tick(ends[b - 1] - (ends[a - 1] if a else 0))
        a = b
    return out


def _id_keys(fam: _Family, members: np.ndarray) -> np.ndarray:
    """64-bit hash per member of its row ranks and its counts divided by their gcd."""
    m = fam.size[members]
    starts = np.cumsum(m) - m
    tok = np.repeat(fam.start[members] - starts, m) + np.arange(int(m.sum()))
    counts = fam.weight[tok].astype(np.int64)
    reduced = counts // np.repeat(np.gcd.reduceat(counts, starts), m)
    Q = np.stack([fam.ids[tok], reduced], axis=1).view(np.uint64)
    return _mix(np.add.reduceat(_hash_rows(Q), starts) ^ m.astype(np.uint64))


def _verify_ids(fam: _Family, a: np.ndarray, b: np.ndarray) -> "_Verdict":
    """Is member a[k] a duplicate of b[k] as a multiset of row ranks with proportional counts?
    Integer comparisons only (counts c_a[j] c_b[0] == c_b[j] c_a[0])."""
    ok = np.zeros(len(a), bool)
    idx = np.flatnonzero(fam.size[a] == fam.size[b])
    for part in np.array_split(idx, max(1, int(fam.size[a[idx]].sum()) // CHUNK + 1)):
        if len(part) == 0:
            continue
        m = fam.size[a[part]]
        starts = np.cumsum(m) - m
        off = np.arange(int(m.sum())) - np.repeat(starts, m)
        ia, ib = np.repeat(fam.start[a[part]], m) + off, np.repeat(fam.start[b[part]], m) + off
        ca, cb = fam.weight[ia].astype(np.int64), fam.weight[ib].astype(np.int64)
        ref = np.repeat(starts, m)
        bad = (fam.ids[ia] != fam.ids[ib]) | (ca * cb[ref] != cb * ca[ref])
        ok[part] = np.add.reduceat(bad.astype(np.int64), starts) == 0
        tick(m.sum())
    return _Verdict(ok, ok, np.zeros((len(a), fam.shift.shape[1])))


def _keys_chunk(fam: _Family, members: np.ndarray, coarse: bool, grid: np.ndarray,
                fgrid: np.ndarray) -> np.ndarray:
    m = fam.size[members]
    owner = np.repeat(np.arange(len(members)), m)
    first = np.repeat(fam.start[members], m)
    tok = first + (np.arange(len(owner)) - np.repeat(np.cumsum(m) - m, m))
    D = fam.shift[tok]
    with np.errstate(over="ignore", invalid="ignore"):
        np.subtract(D, fam.shift[first], out=D)
    D[~np.isfinite(D)] = 0.0  # overflowing differences: candidates on the other columns only
    F = fam.fixed[tok]
    vmax = np.maximum.reduceat(fam.weight[tok], np.cumsum(m) - m)
    r = fam.weight[tok] / vmax[owner]
    d, k = D.shape[1], F.shape[1]
    Q = np.empty((len(tok), d + k + 2), np.uint64)  # one key row per token, filled in place
    if coarse:
        np.floor(np.divide(D, grid, out=D), out=D)
        np.floor(np.divide(F, fgrid, out=F), out=F)
        for c in range(d):  # column by column: no second T x d temporary
            Q[:, c] = D[:, c].astype(np.int64).view(np.uint64)
        for c in range(k):
            Q[:, d + c] = F[:, c].astype(np.int64).view(np.uint64)
        Q[:, d + k] = np.floor(r * 2.0**WEIGHT_KEY_BITS).astype(np.int64).view(np.uint64)
    else:
        D += 0.0  # -0.0 -> +0.0
        Q[:, :d] = D.view(np.uint64)
        Q[:, d:d + k] = np.ascontiguousarray(F).view(np.uint64)
        Q[:, d + k] = r.view(np.uint64)
    del D, F
    Q[:, d + k + 1] = tok - first
    h = np.add.reduceat(_hash_rows(Q), np.cumsum(m) - m)
    return _mix(h ^ m.astype(np.uint64))


@dataclass(frozen=True)
class _Verdict:
    exact: np.ndarray      # (P,) bool
    numerical: np.ndarray  # (P,) bool (includes exact)
    shift: np.ndarray      # (P, d) member - representative


def _verify(fam: _Family, a: np.ndarray, b: np.ndarray) -> _Verdict:
    """Is member a[k] a translate (or duplicate) of representative b[k]? Exact and numerical."""
    P, d = len(a), fam.shift.shape[1]
    exact = np.zeros(P, bool)
    numer = np.zeros(P, bool)
    shift = np.zeros((P, d))
    width = d + fam.fixed.shape[1] + 4
    same = fam.size[a] == fam.size[b]
    cost = fam.size[a] * width
    # a pair belongs to the chunk where its entries start: at most CHUNK + one pair per chunk
    chunk = (np.cumsum(cost) - cost) // CHUNK
    edges = np.concatenate([[0], np.flatnonzero(np.diff(chunk)) + 1, [P]])
    for start, stop in zip(edges[:-1], edges[1:]):
        idx = np.flatnonzero(same[start:stop]) + start
        if len(idx) == 0:
            continue
        ex, nu, sh, fallback = _verify_chunk(fam, a[idx], b[idx])
        for k in np.flatnonzero(fallback):
            ex[k] = _verify_fraction(fam, a[idx[k]], b[idx[k]])
        exact[idx], numer[idx], shift[idx] = ex, nu | ex, sh
        tick(fam.size[a[start:stop]].sum())
    return _Verdict(exact, numer, shift)


def _verify_chunk(fam: _Family, a: np.ndarray, b: np.ndarray):
    # differences near the overflow threshold give inf/nan here; those pairs are marked for
    # the rational fallback, so the floating-point warnings carry no information
    with np.errstate(over="ignore", invalid="ignore"):
        return _verify_chunk_float(fam, a, b)


def _verify_chunk_float(fam: _Family, a: np.ndarray, b: np.ndarray):
    m = fam.size[a]
    starts = np.cumsum(m) - m
    pair = np.repeat(np.arange(len(a)), m)
    off = np.arange(len(pair)) - starts[pair]
    ia = fam.start[a][pair] + off
    ib = fam.start[b][pair] + off
    Xa, Xb = fam.shift[ia], fam.shift[ib]
    s, e = _two_sum(Xa, -Xb)
    finite = np.isfinite(s).all(axis=1) & np.isfinite(e).all(axis=1)
    ref = starts[pair]
    same_diff = np.all((s == s[ref]) & (e == e[ref]), axis=1)
    fa, fb = fam.fixed[ia], fam.fixed[ib]
    same_fixed = np.all(fa == fb, axis=1)
    # weights: v_a[j] v_b[0] == v_b[j] v_a[0] exactly (TwoProduct pairs)
    va, vb = fam.weight[ia], fam.weight[ib]
    p1, e1 = _two_prod(va, vb[ref])
    p2, e2 = _two_prod(vb, va[ref])
    same_w = (p1 == p2) & (e1 == e2)
    bad_tok = ~(same_diff & same_fixed & same_w)
    exact = np.add.reduceat(bad_tok.astype(np.int64), starts) == 0
    # numerical: spread of the rounded differences within ULPS ulps of the coordinates
    spread = np.maximum.reduceat(s, starts) - np.minimum.reduceat(s, starts)
    scale = np.maximum.reduceat(np.abs(Xa), starts) + np.maximum.reduceat(np.abs(Xb), starts)
    ok_shift = np.all(spread <= ULPS * _U * scale, axis=1)
    fdev = np.abs(fa - fb) <= ULPS * _U * (np.abs(fa) + np.abs(fb))
    ra, rb = va / va[ref], vb / vb[ref]
    ntok = (fam.raw[a] + fam.raw[b])[pair]
    wdev = np.abs(ra - rb) <= ULPS * ntok * _U * np.maximum(ra, rb)
    bad_num = ~(np.all(fdev, axis=1) & wdev)
    numer = ok_shift & (np.add.reduceat(bad_num.astype(np.int64), starts) == 0)
    shift = (np.maximum.reduceat(s, starts) + np.minimum.reduceat(s, starts)) / 2.0
    shift = np.where(exact[:, None], s[starts], shift)
    # exact arithmetic unavailable in doubles: inexact merged weights, over/underflow
    tiny = np.minimum.reduceat(np.minimum(va, vb), starts) < 2.0**-450
    tiny |= np.maximum.reduceat(np.maximum(va, vb), starts) > 2.0**450  # products overflow
    fallback = (~fam.weight_exact[a] | ~fam.weight_exact[b] | tiny
                | (np.add.reduceat((~finite).astype(np.int64), starts) > 0))
    exact &= ~fallback
    numer &= np.isfinite(shift).all(axis=1)
    return exact, numer, shift, fallback


def _exact_weights(fam: _Family, first: int, m: int) -> list[Fraction]:
    counts = np.diff(np.append(fam.raw_start, len(fam.raw_weight)))
    return [sum((Fraction(float(w)) for w in
                 fam.raw_weight[fam.raw_start[t]: fam.raw_start[t] + counts[t]]), Fraction(0))
            for t in range(first, first + m)]


def _verify_fraction(fam: _Family, a: int, b: int) -> bool:
    """Exact check of one pair in rational arithmetic (the rare fallback)."""
    m = int(fam.size[a])
    sa, sb = int(fam.start[a]), int(fam.start[b])
    Xa, Xb = fam.shift[sa:sa + m], fam.shift[sb:sb + m]
    if not np.array_equal(fam.fixed[sa:sa + m], fam.fixed[sb:sb + m]):
        return False
    t0 = [Fraction(float(x)) - Fraction(float(y)) for x, y in zip(Xa[0], Xb[0])]
    for j in range(1, m):
        if [Fraction(float(x)) - Fraction(float(y)) for x, y in zip(Xa[j], Xb[j])] != t0:
            return False
    wa, wb = _exact_weights(fam, sa, m), _exact_weights(fam, sb, m)
    return all(wa[j] * wb[0] == wb[j] * wa[0] for j in range(m))


# ---------------------------------------------------------------------------------------------
# the screen
# ---------------------------------------------------------------------------------------------

def _greedy(fam: _Family, cand: np.ndarray, group: np.ndarray, exact_only: bool,
            verify=None):
    """Partition candidates (ordered by priority within equal ``group`` labels, groups
    contiguous) into classes, each member matched against the first remaining one (by
    ``verify``, default :func:`_verify`).
    Returns parent (local ids), evidence flags (True = exact) and shifts, for the matched."""
    parent: dict[int, tuple[int, bool, np.ndarray]] = {}
    rem, grp = cand, group
    while len(rem) > 1:
        first = np.ones(len(rem), bool)
        first[1:] = grp[1:] != grp[:-1]
        rep_of = rem[first][np.cumsum(first) - 1]
        others, reps = rem[~first], rep_of[~first]
        if len(others) == 0:
            break
        v = (verify or _verify)(fam, others, reps)
        ok = v.exact if exact_only else v.numerical
        for k in np.flatnonzero(ok):
            parent[int(others[k])] = (int(reps[k]), bool(v.exact[k]), v.shift[k])
        rem, grp = others[~ok], grp[~first][~ok]
    return parent


def _magnitude(X: np.ndarray) -> np.ndarray:
    """max_j |X[j, c]| per column, without a full-size temporary."""
    if isinstance(X, RowGather):
        return X.magnitude()
    if X.shape[0] == 0:
        return np.zeros(X.shape[1])
    return np.maximum(np.abs(X.max(axis=0)), np.abs(X.min(axis=0)))


def _screen_family(fam: _Family, names: Sequence[str]):
    d = fam.shift.shape[1]
    nf = len(fam.index)
    # Diracs: one merged atom (exact) or atoms within the rounding of their coordinates
    if isinstance(fam.shift, RowGather):
        lo, hi = (fam.shift.reduce_runs(f, fam.start) for f in (np.minimum, np.maximum))
    else:
        lo = np.minimum.reduceat(fam.shift, fam.start)
        hi = np.maximum.reduceat(fam.shift, fam.start)
    mag = np.maximum(np.abs(lo), np.abs(hi))
    if fam.fixed.shape[1]:
        is_exact_dirac = np.zeros(nf, bool)
        is_num_dirac = np.zeros(nf, bool)
    else:
        is_exact_dirac = fam.size == 1
        with np.errstate(over="ignore"):  # an overflowing spread is no Dirac
            is_num_dirac = ~is_exact_dirac & np.all(hi - lo <= 2 * ULPS * _U * mag, axis=1)
    diracs = [DiracFinding(int(fam.index[i]), names[fam.index[i]],
                           tuple(float(x) for x in fam.shift[fam.start[i]]),
                           _EXACT if is_exact_dirac[i] else _NUMERICAL)
              for i in np.flatnonzero(is_exact_dirac | is_num_dirac)]
    live = np.flatnonzero(~(is_exact_dirac | is_num_dirac))
    grid = _magnitude(fam.shift) * (_U * 2.0**KEY_BITS)
    grid = np.where(grid > 0, grid, 1.0)
    fgrid = _magnitude(fam.fixed) * (_U * 2.0**KEY_BITS)
    fgrid = np.where(fgrid > 0, fgrid, 1.0)
    # pass 0 (unweighted token IDs): duplicates as multisets of row ranks, in integers
    p0: dict = {}
    if fam.ids is not None and len(live) > 1:
        key = _id_keys(fam, live)
        order = np.lexsort((live, key))
        p0 = _greedy(fam, live[order], key[order], True, _verify_ids)
    # pass 1: exact classes among candidates with identical rounded differences
    first = np.array([i for i in live if int(i) not in p0], dtype=np.intp)
    key = _keys(fam, first, False, grid, fgrid)
    order = np.lexsort((first, key))
    p1 = _greedy(fam, first[order], key[order], exact_only=True)
    for j, (u, _, t) in p0.items():  # a duplicate of u joins u's exact class, as in pass 1
        root, _, shift = p1.get(u, (u, True, t))
        p1[j] = (root, True, shift)
    # pass 2: join the exact classes' representatives numerically, largest class first
    size = {int(i): 1 for i in live}
    for j, (r, _, _) in p1.items():
        size[r] += 1
    reps = np.array([i for i in live if int(i) not in p1], dtype=np.intp)
    rsize = np.array([size[int(i)] for i in reps])
    key2 = _keys(fam, reps, True, grid, fgrid)
    order = np.lexsort((reps, -rsize, key2))
    p2 = _greedy(fam, reps[order], key2[order], exact_only=False)
    # assemble classes: root -> members with parent, evidence, shift relative to the root
    members: dict[int, list[tuple[int, int, bool, np.ndarray]]] = {}
    for s, (r, ex, t) in p2.items():
        members.setdefault(r, []).append((s, r, ex, t))
    root_of = {s: r for s, (r, _, _) in p2.items()}
    shift_to_root = {s: t for s, (_, _, t) in p2.items()}
    for j, (s, ex, t) in p1.items():
        r = root_of.get(s, s)
        total = t + shift_to_root[s] if s in shift_to_root else t
        members.setdefault(r, []).append((j, s, ex, total))
    classes = []
    zero = tuple(0.0 for _ in range(d))
    for r, mem in members.items():
        mem.sort(key=lambda x: fam.index[x[0]])
        idx = [int(fam.index[r])] + [int(fam.index[j]) for j, _, _, _ in mem]
        classes.append(TranslateClass(
            members=tuple(idx), names=tuple(names[i] for i in idx),
            shifts=(zero,) + tuple(tuple(float(x) for x in t) for _, _, _, t in mem),
            parents=(idx[0],) + tuple(int(fam.index[p]) for _, p, _, _ in mem),
            evidence=(_EXACT,) + tuple(_EXACT if ex else _NUMERICAL for _, _, ex, _ in mem),
            family=fam.kind))
    removed = {int(fam.index[j]) for j in p1} | {int(fam.index[j]) for j in p2}
    core = [int(fam.index[i]) for i in live if int(fam.index[i]) not in removed]
    return diracs, classes, core


def screen(dataset: Dataset, progress: Progress | None = None) -> ScreenResult:
    """Find Dirac masses, duplicates and translates in ``dataset`` and its core (SPEC §7).

    Parameters
    ----------
    dataset : Dataset
        N distributions with T tokens (atoms, box corners, mixture components) in total.

    Returns
    -------
    ScreenResult
        Diracs and classes sorted by their first index, each with its evidence; the core.
        O(T log T) time, O(T) memory (plus exact rational work on the distributions whose
        written values are not binary64 numbers). ``progress`` hears ``structural screen``
        with done / total in tokens (two key passes and the checks, ticked per chunk).
    """
    diracs: list[DiracFinding] = []
    classes: list[TranslateClass] = []
    core: list[int] = []
    families = _families(dataset)
    with working(progress, "structural screen", 3 * sum(int(f.size.sum()) for f in families)):
        for fam in families:
            dd, cc, kk = _screen_family(fam, dataset.names)
            diracs += dd
            classes += cc
            core += kk
    rounded = {i for i, dist in enumerate(dataset.distributions) if dist.rounded_inputs}
    if rounded:
        diracs, classes, released = as_written(dataset, diracs, classes, rounded)
        core += released
    return ScreenResult(len(dataset), tuple(sorted(classes, key=lambda c: c.members[0])),
                        tuple(sorted(diracs, key=lambda f: f.index)), tuple(sorted(core)))


def core_dataset(dataset: Dataset, result: ScreenResult) -> Dataset:
    """The core of ``dataset`` (``result.core``, in order) as a Dataset with the same names,
    for the dense test. Raises InputError when the core is empty (every distribution a Dirac
    or a class member: the screen alone decided)."""
    return dataset.select(result.core)
