"""The verdict of the dense test from its evidence (SPEC §3 steps 2-6, §3a).

Decision procedure:

Steps 0-1 (structural screen, geometry and probes) run before: :mod:`ntkcheck.analysis`.
2. M < N + r + 1 probes                                      -> ``inconclusive``.
3. full rank beyond the fast path's error bound and the rigorous certificate of
   :mod:`ntkcheck.injectivity.certify` holds                -> ``injective``, ``certified``.
4. Singular values against the round-off level tau(v) of their own singular vectors
   (:func:`ntkcheck.injectivity.spectrum.classify_singular_values`): any value in [tau, GAP tau)
                                                            -> ``inconclusive`` (grey zone).
5. none at round-off, and again every value >= GAP tau on a redraw (seed + 1; only its
   smallest singular triplets are computed when they clear GAP x the bound of every level)
                                                            -> ``injective``, ``numerical``.
6. k values at round-off: k candidate relations (reduced echelon basis, refined on their
   support), each re-checked in extended precision at fresh points
   (:mod:`ntkcheck.injectivity.verify`); those that hold are printed
                                                            -> ``not_injective``, ``numerical``;
   if none holds                                            -> ``inconclusive``.


"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import scipy.linalg

from ..dataset import Dataset
from ..progress import Progress, tick, working
from .certify import rigorous_certificate
from .dependencies import (Dependency, fit_dependency, null_space_basis, precise_affine,
                           precise_coefficients, refit_affine_part, verified_tolerance)
from .features import FeatureMatrix
from .geometry import thinnest_direction
from .probes import SPREAD_BAND, make_probes
from .spectrum import GAP, PARTIAL_COUNT, Spectrum, classify_singular_values, partial_spectrum
from .stream import compute_features
from .summary import _top_names
from .verify import PRECISE_DIGITS, affine_part, verify_relation

__all__ = ["Decision", "decide_dense", "INJECTIVE", "NOT_INJECTIVE", "INCONCLUSIVE", "GAP",
           "CONFIRM_COUNT"]

INJECTIVE, NOT_INJECTIVE, INCONCLUSIVE = "injective", "not_injective", "inconclusive"


@dataclass(frozen=True)
class Decision:
    """A verdict with what supports it: ``evidence`` "exact" | "certified" | "numerical" (None
    when inconclusive), a one-sentence ``reason``, the verified ``dependencies``, the numerical
    ``rank``, the confirmation draw's singular values (``redraw``) and the ``verification``
    record (certificate or confirmation draw)."""

    verdict: str
    evidence: str | None
    reason: str
    dependencies: tuple[Dependency, ...] = ()
    rank: int = 0
    redraw: np.ndarray | None = None
    verification: dict | None = None


def decide_dense(dataset: Dataset, geom, feats: FeatureMatrix, spec: Spectrum, *, M: int,
                 scales: Sequence[float], seed: int, stream_options: dict | None, partial: bool,
                 max_memory: int | None, say: Progress) -> Decision:
    """Steps 2-6 of the module docstring on one dense test: its features ``feats`` at ``M``
    probes of ``scales`` drawn with ``seed``, their spectrum ``spec``; the confirmation draw
    (seed + 1) is computed with ``stream_options`` (the plan's options for it: streamed when
    the first draw's matrices and its own would not fit in memory) and ``partial``."""
    N = len(dataset)
    sv = spec.singular_values

    def decision(verdict, evidence, reason, deps=(), redraw=None, rank=None, verification=None):
        rank = N - int(np.sum(sv <= spec.noise)) if rank is None else rank
        unresolved = getattr(geom, "unresolved", ())
        if verdict == INCONCLUSIVE and unresolved:
            shown = ", ".join(dataset.names[i] for i in unresolved[:5])
            more = f" and {len(unresolved) - 5} more" if len(unresolved) > 5 else ""
            reason += (f"; {shown}{more} are tighter than any probe scale up to 1e100 resolves "
                       "(their columns look affine): rescale the data or try --exact")
        if verdict == INCONCLUSIVE:
            reason += spread_note(_spread_ratio(geom), thinnest_direction(dataset, geom.transform))
        return Decision(verdict, evidence, reason, tuple(deps), rank, redraw, verification)

    if M < N + geom.rank + 1:
        return decision(INCONCLUSIVE, None,
                        f"only {M} probes for {N} distributions and {geom.rank + 1} affine "
                        f"functions: no rank decision is possible; increase --probes to at least "
                        f"{N + geom.rank + 1}")
    fast = _fast_certificate(spec)
    if fast is not None:
        say("rigorous certificate")
        cert = rigorous_certificate(dataset, feats, geom, seed, max_memory, progress=say)
        if cert["certified"]:
            return decision(INJECTIVE, "certified",
                            f"rigorous certificate ({cert['enclosure']}): the smallest singular "
                            f"value of the scaled [1, Z, F] on {cert['rows']} probes is at least "
                            f"{cert['lower_bound']:.3g} > 0, so no dependency exists (smallest "
                            f"singular value of F_perp {spec.smallest:.3g})",
                            rank=N, verification=cert)
    V, tau, off = spec.tail_levels()  # vectors of the values that can be small only
    k, grey = classify_singular_values(sv, tau)
    if grey:
        j = grey[-1]
        undecided = (f"singular value {sv[j]:.3g} lies in the grey zone: above the round-off "
                     f"level {tau[j]:.3g} of its own direction "
                     f"({_top_names(V[:, j - off], dataset.names)})"
                     f" but below {GAP:g}x it")
        # an undecided value never hides the relations of the values at the round-off level:
        # those that survive the independent re-check are dependencies all the same
        deps = []
        if k:
            say("dependencies")
            with working(say, "dependencies", k):  # ticked once per relation checked
                deps, failed = candidate_relations(V[:, V.shape[1] - k:], len(sv), feats,
                                                   dataset, geom, seed)
        if deps:
            return decision(NOT_INJECTIVE, "numerical",
                            f"{k} singular value(s) at the round-off level of their own "
                            f"directions; {len(deps)} relation(s) hold at fresh points in "
                            f"extended precision"
                            + (f", {len(failed)} other candidate(s) did not and are not "
                               "reported" if failed else "")
                            + f"; there may be more: {undecided}, so it is neither a "
                            "dependency nor independent; try --exact (rational data), more "
                            "--probes or other --scales", deps, rank=N - k)
        return decision(INCONCLUSIVE, None,
                        f"{undecided}, so neither independence nor a dependency is "
                        "established; try --exact (rational data), more --probes or other --scales",
                        rank=N - k)
    if k == 0:
        say("confirmation draw")
        feats2 = compute_features(dataset, geom, make_probes(geom, M, scales, seed + 1),
                                  stream_options, say)
        spec2, ratio = _confirmation_ratios(feats2, partial, say)
        check = {"method": "confirmation draw", "seed": seed + 1,
                 "singular_values_computed": int(spec2.singular_values.shape[0]),
                 "smallest_singular_value": spec2.smallest,
                 "smallest_ratio_to_noise": float(ratio.min())}
        note = ("" if fast is None else
                f"; the rigorous certificate was not obtained ({cert['reason']})")
        if ratio.min() < GAP:
            j = int(np.argmin(ratio))
            return decision(INCONCLUSIVE, None,
                            f"every singular value is far above its round-off level on the first "
                            f"probe draw (smallest {spec.smallest:.3g}), but on a redraw (seed "
                            f"{seed + 1}) singular value {spec2.singular_values[j]:.3g} is only "
                            f"{_times(ratio[j])} its level "
                            f"{spec2.singular_values[j] / ratio[j]:.3g}; try more --probes",
                            redraw=spec2.singular_values, rank=N, verification=check)
        return decision(INJECTIVE, "numerical",
                        f"every singular value is at least {GAP:g}x the round-off level of its own "
                        f"direction on two probe draws (smallest {spec.smallest:.3g}, noise "
                        f"{tau[-1]:.3g}), but not certified{note}",
                        redraw=spec2.singular_values, rank=N, verification=check)
    say("dependencies")
    p = sv.shape[0]  # N, or the computed count of a partial spectrum
    with working(say, "dependencies", k):  # ticked once per relation checked
        deps, failed = candidate_relations(V[:, V.shape[1] - k:], len(sv), feats, dataset, geom,
                                           seed)
    found = (f"{'at least ' if k == p < N else ''}{k} singular value(s) at the round-off level "
             "of their own directions"
             + (f", the next {sv[p - k - 1]:.3g} ({_times(sv[p - k - 1] / tau[p - k - 1])} its level)"
                if k < p else ""))
    if not failed and deps:
        return decision(NOT_INJECTIVE, "numerical",
                        f"{found}; every relation re-checked at fresh points in extended precision",
                        deps, rank=N - k)
    why = ("; ".join(f"{dep.describe(4)} {chk.reason}" for dep, chk in failed[:3])
           or "no candidate relation could be formed")  # never not_injective without one
    if deps:
        return decision(NOT_INJECTIVE, "numerical",
                        f"{found}; {len(deps)} relation(s) hold at fresh points in extended "
                        f"precision, {len(failed)} other candidate(s) did not and are not reported "
                        f"({why})", deps, rank=N - k)
    return decision(INCONCLUSIVE, None,
                    f"{found}, but no candidate relation survives the independent re-check: "
                    f"{why}. The data are nearly dependent at double precision; try --exact "
                    "(rational data) or inspect the named distributions", rank=N - k)



def candidate_relations(null_vectors: np.ndarray, size: int, feats: FeatureMatrix,
                        dataset: Dataset, geom, seed: int) -> tuple[list, list]:
    """(verified, failed): one candidate relation per null direction (reduced echelon basis of
    ``null_vectors``, refined on its support), each re-checked in extended precision at fresh
    points (:mod:`ntkcheck.injectivity.verify`); ``size`` is the number of singular values."""
    basis = null_space_basis(null_vectors)
    # the same rows with only round-off-level entries zeroed: when a relation's coefficient on
    # a nearly affine column (normalised, it is tiny) was cut by the sqrt(u) threshold, the
    # narrow candidate fails its re-check and the wide one is tried (it too must pass it)
    wide = null_space_basis(null_vectors, zero_rtol=WIDE_COEF_RTOL * size)
    deps, failed = [], []
    index = {n: i for i, n in enumerate(dataset.names)}
    for row, row_wide in zip(basis, wide):
        dep, check = _fit_and_verify(row, feats, dataset, geom, seed)
        if not check.passed and np.count_nonzero(row_wide) > np.count_nonzero(row):
            dep2, check2 = _fit_and_verify(row_wide, feats, dataset, geom, seed)
            if check2.passed:
                dep, check = dep2, check2
        if check.passed:
            coefs = {name: float(c) for name, c in zip(dep.coefficients, check.coefficients)}
            # the affine part is fitted again for the verified coefficients (a round-off
            # coefficient left in the float fit would otherwise bias it)
            dep = refit_affine_part(coefs, feats, dataset.names)
            if _repeats(dep.coefficients, deps, index):
                failed.append((dep, replace(check, passed=False, level="repeated", reason=(
                    "holds, but it is a combination of the relations already reported (its "
                    "null direction is another near-dependency of double precision)"))))
            else:  # the text form and the 50-digit affine part only for a reported relation
                # coefficients whose doubles fail the re-check are printed as their refit's text
                precise = (precise_coefficients(dep.coefficients, dict(zip(coefs, check.precise)),
                                                PRECISE_DIGITS)
                           if check.float_misfit > check.threshold else {})
                texts: list = []
                a, b, tol = affine_part([dataset.distributions[index[n]]
                                         for n in dep.coefficients],
                                        [precise.get(n, c) for n, c in dep.coefficients.items()],
                                        texts=texts)
                if precise or check.float_misfit <= check.threshold:
                    tol = verified_tolerance(tol, PRECISE_DIGITS)
                keys = ["constant"] + [f"z{j + 1}" for j in range(len(b))]
                affine = (precise_affine(dict(zip(keys, texts)), tol, PRECISE_DIGITS) if precise
                          else {})
                deps.append(replace(dep, constant=a, linear=tuple(float(x) for x in b),
                                    verification=check.to_dict(), affine_tolerance=tol,
                                    precise_coefficients=precise or None,
                                    precise_affine=affine or None))
        else:
            failed.append((dep, check))
        tick(1)
    return deps, failed


#: Spread ratio rho_max / rho_min beyond which the tightest columns' round-off level, about
#: u times the ratio (docs/limits.md), exceeds sqrt(u): named in an inconclusive reason.
SPREAD_RATIO_NOTE = 1.0 / np.sqrt(np.finfo(float).eps / 2)
#: Thickness below which no relative float64 computation of a covariance resolves it.
THINNEST_RESOLVED = 1e-8


def _spread_ratio(geom) -> float:
    own = np.asarray(getattr(geom, "own_spreads", None) if getattr(geom, "own_spreads", None)
                     is not None else [], dtype=float)
    own = own[(own > 0) & np.isfinite(own)]
    return float(own.max() / own.min()) if own.size else 1.0


def spread_note(ratio: float, thinness: float) -> str:
    """What limited an inconclusive verdict, from the geometry (docs/limits.md, "Extreme
    spreads"): the distributions' own spreads spanning ``ratio`` > :data:`SPREAD_RATIO_NOTE`
    (the tightest columns are evaluated to an absolute ~u at the probes matched to the
    widest, so their round-off levels are about u x ratio), and/or most distributions thinner
    than 1 / SPREAD_BAND along one direction relative to their own spread there
    (``thinness``, :func:`~ntkcheck.injectivity.geometry.thinnest_direction`), which the
    isotropic probes then do not resolve."""
    notes = []
    if ratio > SPREAD_RATIO_NOTE:
        notes.append(f"the distributions' own spreads span a ratio of {ratio:.2g}, so the "
                     "round-off levels of the tightest columns are about "
                     f"{ratio * np.finfo(float).eps / 2:.2g} (u times that ratio)")
    if thinness < 1.0 / SPREAD_BAND:
        size = (f"{thinness:.2g}" if thinness >= THINNEST_RESOLVED
                else f"less than {THINNEST_RESOLVED:g}")
        notes.append(f"along one direction most distributions spread {size} times what they "
                     "spread along the others (a few much wider ones set the pooled scale "
                     "there), so the probes see their structure along it only weakly")
    if not notes:
        return ""
    return ("; limited by the spread of the data: " + " and ".join(notes)
            + " (docs/limits.md, extreme spreads)")


#: A verified relation is new when its coefficient vector is farther than this (relative) from
#: the span of those already reported: verified coefficients are exact to 50 digits and then
#: rounded to binary64 (a repeat is within ~u), distinct relations differ at O(1); sqrt(u)
#: sits between.
REPEAT_RTOL = np.sqrt(np.finfo(float).eps / 2)


def _repeats(coefficients: dict, deps: list, index: dict) -> bool:
    """Whether ``coefficients`` lie (to REPEAT_RTOL) in the span of the verified ``deps``: the
    dependency space has the dimension of the span, and one relation is printed once."""
    if not deps:
        return False
    B = np.zeros((len(deps), len(index)))
    for k, dep in enumerate(deps):
        for n, c in dep.coefficients.items():
            B[k, index[n]] = c
    v = np.zeros(len(index))
    for n, c in coefficients.items():
        v[index[n]] = c
    x = np.linalg.lstsq(B.T, v, rcond=None)[0]
    return bool(np.linalg.norm(B.T @ x - v) <= REPEAT_RTOL * np.linalg.norm(v))


def _times(ratio: float) -> str:
    """'12.3x', or 'more than 1e308x' when the ratio overflowed (never the text 'infx')."""
    return f"{ratio:.3g}x" if np.isfinite(ratio) else "more than 1e308x"


#: Zeroing level of the wide candidates, times N, relative to the row's largest entry.
WIDE_COEF_RTOL = 64 * np.finfo(float).eps


def _fit_and_verify(row: np.ndarray, feats: FeatureMatrix, dataset: Dataset, geom, seed: int):
    """A candidate relation on the support of ``row``: refitted, then re-checked (verify.py)."""
    dep = fit_dependency(row, feats, dataset.names)
    support = np.flatnonzero(row)
    check = verify_relation([dataset.distributions[i] for i in support],
                            np.array(list(dep.coefficients.values())), geom.transform,
                            geom.spreads[support], seed=seed)
    return dep, check


#: Singular triplets the confirmation draw computes first (block inverse iteration).
CONFIRM_COUNT = 8


def _confirmation_ratios(feats: FeatureMatrix, partial: bool,
                         say: Progress | None = None) -> tuple[Spectrum, np.ndarray]:
    """(spectrum, sigma_j / tau(v_j)) of the confirmation draw (M >= N), at the cost of its
    smallest singular triplets: the :data:`CONFIRM_COUNT` smallest (PARTIAL_COUNT on a partial
    spectrum) with the levels of their own directions; when the largest of them clears GAP x
    the bound of every level (:meth:`Spectrum.max_vector_noise`), so does every uncomputed
    value, which is then not needed. Otherwise every singular value of the same R (full mode)
    with the levels of :meth:`Spectrum.tail_levels`."""
    spec = partial_spectrum(feats, count=PARTIAL_COUNT if partial else CONFIRM_COUNT,
                            progress=say)
    sv = spec.singular_values
    if sv.shape[0] == spec.size or sv[0] >= GAP * spec.max_vector_noise():
        return spec, sv / spec.vector_noise(spec.vectors)
    if not partial:
        R = spec.triangle
        spec = replace(spec, singular_values=scipy.linalg.svdvals(R, check_finite=False),
                       vectors=None, columns=None, largest=None)
    _, tau, _ = spec.tail_levels()
    return spec, spec.singular_values / tau


def _fast_certificate(spec: Spectrum) -> float | None:
    """The fast path's full-rank test: sigma_min > delta, or its per-column form (spectrum.py)."""
    N = spec.size
    if spec.smallest > spec.tolerance:
        return spec.smallest
    bar = np.sqrt(N) * (1.0 + 4 * N * np.finfo(float).eps)
    if spec.partial and spec.weighted_upper_bound() <= bar:
        return None  # the per-column test cannot pass: no iteration for its estimate
    weighted = spec.weighted_smallest()
    return weighted if weighted > bar else None
