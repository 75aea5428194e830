"""What the rigorous certificate takes from the dense test instead of computing it again
(SPEC §3a "Certified means rigorous"; the certificate: :mod:`ntkcheck.injectivity.certify`).

**Entry enclosures from the features pass** (:func:`pass_enclosure`). The dense test's in-memory
feature matrix F~ = ``FeatureMatrix.values`` was computed by :meth:`ntkcheck.dataset.Dataset.lse`
on the distributions centred at their own means (:func:`ntkcheck.injectivity.features.
centred_each`). For discrete laws that is the algorithm of the a-priori enclosure
(:func:`ntkcheck.injectivity.enclosure._apriori_logsumexp_group`): centred atoms y' = fl(y - c)
(checked here entry by entry: ``centred.atoms == atoms - c`` in float64), scores
s~_j = fl(<z, y'_j>) + log w'_j as GEMMs, the largest subtracted, exp, the sum, log, the largest
added back. The exp is numpy's, or on large inputs the compiled one of
:func:`ntkcheck._compiled.lse_scores` (relative error < 6 u, inside the K u = 2 LIBM_ULPS u
the bound assumes; it returns exp(0) = 1 exactly for the largest term, whose unused 8 u of
slack covers the terms below e^-708 that it flushes to 0: n of them move S >= 1 by less than
n 2^-1021). Its all-order bound therefore holds for F~ with two changes:

* the centred laws carry their own weights w' (re-normalised when they were built), so each
  score also moves by |log w'_j - log w_j| <= r / (1 - r), r = |w'_j - w_j| / w_j (the difference
  of two doubles within a factor 2 of each other is exact, Sterbenz), a per-law constant
  ``dlw`` added to the score error (logsumexp is 1-Lipschitz in its scores);
* the log of the computed sum, ls = log S~ with 1 <= S <= n, is not kept by the features pass:
  |ls| <= log n (1 + 2^-40) + 2^-40 replaces it (S~ = S (1 + theta), theta <= gamma_(K+2n+2),
  far below 2^-40 for n < 10^12; the padding of the packs adds exact zeros, which round nothing).

With zeta_m >= ||z_m||, rho_i >= max_j ||y'_j|| (upward), and the constants of the a-priori
bound (g_score = gamma_(d^2+3d+12), g_log = gamma_(K+4), theta = gamma_(K+2n+2), K = 2
LIBM_ULPS):

    rad[m, i] = g_score zeta_m rho_i + g_log max_j |log w'_j| + (d^2 + 4 d + 8) 2^-1074
                + dlw_i + gamma_(K+1) LS_i + theta / (1 - theta) + gamma_1 |F~[m, i]|

plus the written-value radius: for laws stored exactly (no rounded inputs) its weights term with
||p - w~||_1 <= 2, a constant per column (:func:`written_weights_radius`; the per-probe bound
of :func:`ntkcheck.injectivity.enclosure._written_radius` is at most that and costs an exp per
entry), else that function itself; all rounded upward. Mixtures and boxes (other algorithms) and data whose centred atoms differ from
fl(y - c) get None: the certificate then encloses every entry itself, as before.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..distributions import Discrete, Distribution
from .enclosure import _with_written_radius
from .rounding import _ETA, _K_LIBM, _gamma, _norm_up, _up

__all__ = ["pass_enclosure", "pass_radii", "PassRadii", "column_constants", "all_column_constants",
           "written_weights_radius"]

#: The upward factor applied to every radius of :func:`pass_enclosure`.
_UPWARD = float(np.nextafter((1.0 + 2.0 * _gamma(10)) * (1.0 + 4 * 2.0**-53), np.inf))
#: Relative and absolute slack of the bound |log S~| <= log n (1 + LS_SLACK) + LS_SLACK.
LS_SLACK = 2.0**-40


def column_constants(dist: Discrete, centred: Discrete, centre: np.ndarray):
    """(rho, wmax, dlw, LS, lse_err) of one law for :func:`pass_enclosure`, or None when the
    centred law is not the float64 image the bound assumes (atoms other than fl(y - c), a
    different number of atoms, weights more than a factor 2 apart): :func:`all_column_constants`
    of that law alone."""
    consts = all_column_constants([dist], [centred], np.asarray(centre, float)[None, :])
    return None if consts is None else tuple(float(v[0]) for v in consts)


def all_column_constants(dists: Sequence[Distribution], centred: Sequence[Distribution],
                         centres: np.ndarray) -> tuple[np.ndarray, ...] | None:
    """(rho, wmax, dlw, LS, lse_err), each (N,), of the laws for :func:`pass_enclosure`, or
    None when one is not covered: the centred law must be the float64 image the bound assumes
    (atoms exactly fl(y - c), as many, weights at most a factor 2 apart, re-normalised by less
    than a factor 1.5). rho >= max_j ||y_j - c||, wmax = max |log w'_j|, dlw >= max |log w'_j -
    log w_j| (r / (1 - r) with r the largest relative weight change), LS >= log n and lse_err
    the log-sum-exp's rounding factor. The laws are taken in batches of one atom count, each
    batch's checks and bounds as whole-array operations (no Python step per law)."""
    N = len(dists)
    out = np.empty((5, N))
    groups: dict[int, list[int]] = {}
    for i, (dist, cd) in enumerate(zip(dists, centred)):
        if not (isinstance(dist, Discrete) and isinstance(cd, Discrete)):
            return None
        if cd.atoms.shape != dist.atoms.shape:
            return None
        groups.setdefault(len(dist.weights), []).append(i)
    batches = []
    for n, idx in groups.items():
        per = max(1, (1 << 20) // (n * centres.shape[1]))  # ~2^20 numbers a batch
        batches += [(n, idx[a:a + per]) for a in range(0, len(idx), per)]
    for n, idx in batches:
        atoms = np.stack([dists[i].atoms for i in idx])  # (k, n, d)
        yc = atoms - centres[idx][:, None, :]
        if not np.array_equal(np.stack([centred[i].atoms for i in idx]), yc):
            return None
        w = np.stack([dists[i].weights for i in idx])
        w2 = np.stack([centred[i].weights for i in idx])
        if not np.all((w2 <= 2 * w) & (w <= 2 * w2)):
            return None
        r = _up(np.abs(w2 - w) / w, 1).max(axis=1)
        if not np.all(r < 0.5):
            return None
        out[2, idx] = _up(r / (1.0 - r), 2)
        out[0, idx] = _up(_norm_up(yc, axis=2).max(axis=1), 1)
        with np.errstate(divide="ignore"):
            out[1, idx] = np.abs(np.log(w2)).max(axis=1)
        out[3, idx] = float(_up(np.log(n) * (1 + LS_SLACK) + LS_SLACK, 2))
        theta = _gamma(_K_LIBM + 2 * n + 2)
        out[4, idx] = float(_up(theta / (1.0 - theta), 3))
    return tuple(out)


def pass_enclosure(dists: Sequence[Distribution], centred: Sequence[Distribution],
                   z: np.ndarray, centres: np.ndarray, F: np.ndarray) -> np.ndarray | None:
    """Radii rad (M, N) with |LSE_i(z_m) - <z_m, c_i> - F[m, i]| <= rad[m, i] (up to a constant
    per column, which changes no rank: see below) for the features pass's F on the ``centred``
    laws (module docstring), or None when a law is not covered (the certificate then encloses
    the entries itself): :func:`pass_radii` computed for every column at once.

    The constant: the centred laws' weights w' = w / s with s = sum w' / sum w a positive
    constant per law; log w'_j - log w_j = -log s + (rounding), and the -log s part adds the
    same number to every entry of the column, a multiple of the column of ones (a column
    operation: no change of rank). ``dlw`` bounds the whole difference, so the radius covers it
    either way."""
    radii = pass_radii(dists, centred, z, centres, F)
    return None if radii is None else radii.columns(0, F.shape[1])


def pass_radii(dists: Sequence[Distribution], centred: Sequence[Distribution],
               z: np.ndarray, centres: np.ndarray, F: np.ndarray) -> "PassRadii | None":
    """The radii of :func:`pass_enclosure` as :class:`PassRadii` (column blocks computed when
    asked for: the certificate never holds an M x N array of them), or None when a law is
    not covered."""
    d = z.shape[1]
    consts = all_column_constants(dists, centred, centres)
    if consts is None:
        return None
    rho, wmax, dlw, ls, lse_err = consts
    rounded = any(dist.rounded_inputs for dist in dists)
    zeta = np.asarray(_norm_up(z, axis=1))
    g_score = _gamma(d * d + 3 * d + 12)
    g_log = _gamma(_K_LIBM + 4)
    # per column: the score terms, the log-sum terms and (laws stored exactly) the written
    # radius with ||p - w~||_1 <= 2 (:func:`written_weights_radius`)
    per_col = (g_log * wmax + (d * d + 4 * d + 8) * _ETA + dlw
               + _gamma(_K_LIBM + 1) * ls + lse_err)
    if not rounded:
        per_col = per_col + written_weights_radius(dists)
    return PassRadii(F, zeta, g_score * rho, per_col,
                     (list(dists), z, centres) if rounded else None)


class PassRadii:
    """rad[:, c0:c1] of :func:`pass_enclosure` by :meth:`columns`, each call a new array
    computed from F's columns (the same operations entry by entry as for the whole array)."""

    def __init__(self, F: np.ndarray, zeta: np.ndarray, g_rho: np.ndarray, per_col: np.ndarray,
                 written: tuple | None):
        self.F, self.zeta, self.g_rho, self.per_col, self.written = F, zeta, g_rho, per_col, written
        self.shape = F.shape

    def columns(self, c0: int, c1: int) -> np.ndarray:
        """rad[:, c0:c1] (M, c1 - c0), computed in row blocks that stay in cache."""
        F = self.F[:, c0:c1]
        rad = np.empty(F.shape)
        step = max(1, (1 << 16) // max(F.shape[1], 1))
        g_rho, per_col = self.g_rho[c0:c1], self.per_col[c0:c1]
        with np.errstate(over="ignore", invalid="ignore"):
            for a in range(0, F.shape[0], step):
                blk = rad[a:a + step]
                np.abs(F[a:a + step], out=blk)
                blk *= _gamma(1)
                blk += np.multiply.outer(self.zeta[a:a + step], g_rho)
                blk += per_col
                # at most 8 roundings of non-negative terms on any path: one upward factor
                # for all, (1 + 2 gamma_10)(1 + 4u) rounded up, so that its own product's
                # rounding (a factor >= 1 - u when the result is normal) is covered too; a
                # subnormal result can be up to 2^-1075 low: + 2^-1074 (exact for a
                # subnormal; a normal result is already an upper bound, and adding to it
                # rounds back to it). No nextafter.
                blk *= _UPWARD
                blk += _ETA
        rad[~np.isfinite(rad)] = np.inf
        if self.written is None:
            return rad
        dists, z, centres = self.written
        cs = centres[c0:c1] if np.ndim(centres) == 2 else centres
        return _with_written_radius(rad, dists[c0:c1], z, cs)


def written_weights_radius(dists: Sequence[Distribution]) -> np.ndarray:
    """(N,) the written-value radius of :func:`ntkcheck.injectivity.enclosure._written_radius`
    for laws without rounded inputs, bounded over every probe: the stored weights' term
    ||p - w~||_1 delta (1 + delta) / (1 - delta)^2 with ||p - w~||_1 <= 2 (two probability
    vectors), delta = gamma_(n+2) + 2^-1074 / min w~ (inf when delta >= 1/2)."""
    out = np.empty(len(dists))
    for i, dist in enumerate(dists):
        w = dist.weights
        delta = float(_up(_gamma(len(w) + 2) + _ETA / float(w.min()), 2))
        out[i] = (float(_up(2.0 * delta * (1 + delta) / (1 - delta) ** 2, 18)) if delta < 0.5
                  else np.inf)
    return out
