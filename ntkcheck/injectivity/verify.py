"""Independent re-check of a numerical dependency in extended precision (SPEC §3a).

A dependency found by the rank test is a claim about *all* z: sum_i c_i LSE_i(z) = a + <b, z>.
Before it is reported it is re-evaluated, independently of the floating-point test, on the
values the user wrote (SPEC §3a), in ``digits``-digit arithmetic (mpmath):

0. **The written values.** Each distribution's exact parameters (``rational``): spec decimals
   and rationals as written (``0.1`` is 1/10), ``.npz`` values as stored (binary64 or float32,
   taken exactly), and weights as stored, *unnormalised*, normalised here in ``digits``-digit
   arithmetic (log w_j - log sum_k w_k), not by the tool's float normalisation (weights (1, 3)
   are 1/4, 3/4 to 50 digits, not their doubles). Without exact parameters the float64
   attributes are used.

1. **Fresh points at every relevant scale.** Triples (z, z + h, z - h) with z, h drawn in the
   whitened coordinates of the test at the scales 0.1, 1, 10, 100, 1000 (small |z|: low
   cumulants; large |z|: LSE approaches the support function max_y <z, y>) and 1, 10, 100
   divided by the internal spread rho_i of every involved distribution (its own scale), from a
   random stream independent of the test's probes. The spreads are computed again here from
   the distributions themselves (:func:`~ntkcheck.injectivity.geometry.whitened_spreads`);
   where they differ from the test's by more than a factor 2 (a distribution too tight for the
   probe law, whose spread the test holds at a floor) both sets of scales are used. Points
   whose scale is beyond binary64 range are formed in extended precision.
2. **The affine part is eliminated exactly**: the second difference
   D2 f = f(z + h) + f(z - h) - 2 f(z) vanishes for every affine f, so a relation holds iff
   sum_i c_i D2 LSE_i = 0 on all triples. This is equivalent to refitting (a, b) at the fresh
   points, in any dimension, with no ill-conditioned fit.
3. **The coefficients are refitted** in extended precision on half of the triples (the largest
   coefficient fixed to its value, least squares for the others), so that a true relation whose
   float coefficients carry round-off (a ratio of variances, 1/3) is recovered to ``digits``.
4. **The misfit is measured on the other triples**: |sum_i c_i D2 LSE_i| divided by
   sum_i |c_i| (|LSE_i(z+h)| + |LSE_i(z-h)| + 2 |LSE_i(z)|), the size of what cancels. A true
   relation leaves 10^-digits times a modest condition number; binary64 data that only nearly
   satisfy it (a translate with one atom moved by one ulp) leave at least ~1e-17. The threshold
   :data:`MISFIT_THRESHOLD` = 10^(-digits / 2) sits in that gap.

4b. **Written values that are not binary64 numbers** may differ by far less than one ulp
   (0.1 against 0.1 + 1e-31), so the gap of step 4 does not hold for them: a relation they
   break by 1e-31 passes at 50 digits. When a passing relation involves such values it is
   measured again at :func:`confirmation_digits` (at least 100 digits, more for values written
   with many digits) with the same points, and passes only below 10^-(that precision - 25):
   a true relation's misfit falls with the precision, a false one's stays.
5. **Rounding of the input.** When a relation fails for the written values and some of them
   are not binary64 numbers (``Distribution.rounded_inputs``), it is re-checked on the same
   points with the nearest doubles, the data the numerical test saw. If it holds there it is a
   relation of the rounded input only (``level = "input_rounding"``, not passed): a
   near-dependency at the precision of the input, never reported as a dependency.
6. **Data precision.** A relation that fails but whose misfit is within the typical effect of
   rounding every stored value once (first-order sensitivity at the same points) is labelled
   ``level = "data_precision"``: a near-dependency at the data's own precision (SPEC §7, e.g. a
   translate y + t computed in floating point). It is *not* reported as a dependency by the
   dense test; such translates and duplicates are recognised by the structural screen, whose
   criterion (every value equal up to one rounding) is exact.

What "verified" then means: the relation holds to a relative misfit below the threshold at every
test triple, in exact arithmetic up to ``digits`` digits on the values as written. Directions in
which the pooled data vary only at round-off level (outside the affine hull of the test) are not
probed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Sequence

import mpmath
import numpy as np

from ..distributions import Discrete, Distribution, GaussianMixture, UniformBox
from .geometry import whitened_spreads

__all__ = ["RelationCheck", "verify_relation", "confirmation_digits", "affine_part", "DIGITS",
           "MISFIT_THRESHOLD", "POOLED_SCALES",
           "OWN_SCALES", "MAX_WORK"]

#: Working precision of the re-check, decimal digits.
DIGITS = 50
#: A relation passes when its relative misfit is below this on every test triple.
MISFIT_THRESHOLD = 10.0 ** (-DIGITS / 2)
#: Whitened scales of the fresh points, and multiples of 1/rho_i for each involved distribution.
POOLED_SCALES = (0.1, 1.0, 10.0, 100.0, 1000.0)
OWN_SCALES = (1.0, 10.0, 100.0)
#: A misfit within DATA_ROUNDING times the typical effect of rounding every stored value of the
#: involved distributions once (relative errors u adding like a random walk, first order,
#: evaluated on the same second differences; e.g. y + t computed in floating point) is a
#: near-dependency at the data's own precision. A single value moved by more than a few ulps
#: is not.
DATA_ROUNDING = 1.0
_U = np.finfo(float).eps / 2
#: Largest whitened scale whose points are drawn in binary64 (larger ones in extended precision).
FLOAT_SCALE = 1e200
#: The test's spread of a distribution is used as given unless the re-check's own computation
#: differs from it by more than this factor (then both give scales).
SPREAD_AGREEMENT = 2.0
#: Largest number of multiply-adds (points x atoms x dimension) spent on one relation.
MAX_WORK = 30_000_000
#: Significant digits of the refitted coefficients kept as text (``RelationCheck.precise``):
#: half the working precision, the digits a misfit below MISFIT_THRESHOLD = 10^(-DIGITS/2)
#: can vouch for.
PRECISE_DIGITS = DIGITS // 2


@dataclass(frozen=True)
class RelationCheck:
    """Outcome of :func:`verify_relation`.

    Attributes
    ----------
    passed : whether the relation holds to ``threshold`` at every test triple (None: not
        checked, see reason)
    misfit : largest relative misfit on the test triples
    threshold : the misfit below which the relation passes
    coefficients : (k,) refitted coefficients (extended precision, rounded to float64)
    digits, fit_points, test_points, scales, seconds : how it was checked
    reason : one sentence
    float_misfit : the misfit of ``coefficients`` as they are, rounded to float64, on the same
        triples: above ``threshold`` for a relation whose coefficients are not binary64 numbers
        (covariances written 1 + 1e-18 times another's), whose doubles are then not the relation
    precise : the refitted coefficients to :data:`PRECISE_DIGITS` significant digits
    level : "exact" (holds to ``threshold`` for the values as written), "input_rounding"
        (fails for the values as written, holds for their nearest doubles: the written values
        are not binary64 numbers), "data_precision" (fails, but only by what the rounding of
        the stored values explains) or "failed"
    data_ratio : misfit divided by what a relative change of DATA_ROUNDING u of the stored values
        can explain (<= 1: within the data's own precision)
    """

    passed: bool | None
    misfit: float
    threshold: float
    coefficients: np.ndarray
    digits: int
    fit_points: int
    test_points: int
    scales: tuple[float, ...]
    seconds: float
    reason: str
    level: str = "failed"
    data_ratio: float = float("nan")
    float_misfit: float = float("nan")
    precise: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"method": "extended-precision re-evaluation at fresh points (second differences)",
                "passed": self.passed, "level": self.level, "misfit": self.misfit,
                "threshold": self.threshold, "data_rounding_ratio": self.data_ratio,
                "digits": self.digits, "fit_points": self.fit_points,
                "test_points": self.test_points, "scales": [float(s) for s in self.scales],
                "seconds": round(self.seconds, 4), "reason": self.reason}


def _work(dist: Distribution) -> int:
    if isinstance(dist, Discrete):
        return dist.atoms.size
    if isinstance(dist, UniformBox):
        return dist.dim
    return dist.means.size + dist.covariances.size


def _prepare(dist: Distribution, written: bool = True) -> tuple:
    """The parameters as mpf numbers, once per distribution: the values as written
    (``written``; module docstring, step 0) or the float64 attributes the numerical test
    used, each binary64 value taken exactly."""
    if written:
        law = _written_law(dist)
        if law is not None:
            return law
    mp = lambda a: [mpmath.mpf(float(x)) for x in np.ravel(a)]  # noqa: E731
    if isinstance(dist, Discrete):
        return ("discrete", [mp(y) for y in dist.atoms], [mpmath.log(w) for w in mp(dist.weights)])
    if isinstance(dist, UniformBox):
        return ("uniform", mp(dist.low), mp(dist.high))
    if isinstance(dist, GaussianMixture):
        d = dist.dim
        covs = [[mp(S[a]) for a in range(d)] for S in dist.covariances]
        return ("mixture", [mp(m) for m in dist.means], covs,
                [mpmath.log(w) for w in mp(dist.weights)])
    raise TypeError(f"unsupported distribution type {type(dist).__name__}")  # pragma: no cover


def _exact_mpf(x: Any) -> mpmath.mpf:
    """A written value (float, int, Fraction, Decimal) as an mpf: exact for floats and ints,
    rounded to the working precision for other rationals."""
    if isinstance(x, (float, np.floating)):
        return mpmath.mpf(float(x))
    if isinstance(x, (int, np.integer)):
        return mpmath.mpf(int(x))
    q = x if isinstance(x, Fraction) else Fraction(x)
    return mpmath.mpf(q.numerator) / q.denominator


def _written_law(dist: Distribution) -> tuple | None:
    """The parameters as written (``dist.rational``), weights normalised in extended precision
    and zero-weight entries dropped, in :func:`_prepare`'s layout; None without exact
    parameters."""
    exact = dist.rational
    if not exact:
        return None
    vec = lambda a: [_exact_mpf(x) for x in np.ravel(np.asarray(a, dtype=object))]  # noqa: E731

    def log_weights(count: int) -> tuple[list, list[int]]:
        raw = exact.get("weights")
        w = [mpmath.mpf(1)] * count if raw is None else vec(raw)
        keep = [j for j, x in enumerate(w) if x != 0]
        total = mpmath.fsum(w[j] for j in keep)
        return [mpmath.log(w[j]) - mpmath.log(total) for j in keep], keep

    if isinstance(dist, Discrete) and exact.get("atoms") is not None:
        atoms = np.asarray(exact["atoms"], dtype=object)
        atoms = atoms.reshape(len(atoms), -1)
        logw, keep = log_weights(len(atoms))
        return ("discrete", [vec(atoms[j]) for j in keep], logw)
    if isinstance(dist, UniformBox) and exact.get("low") is not None:
        return ("uniform", vec(exact["low"]), vec(exact["high"]))
    if isinstance(dist, GaussianMixture) and exact.get("means") is not None:
        means = np.asarray(exact["means"], dtype=object)
        covs = np.asarray(exact["covariances"], dtype=object)
        logw, keep = log_weights(len(means))
        return ("mixture", [vec(means[j]) for j in keep],
                [[vec(row) for row in covs[j]] for j in keep], logw)
    return None


def _logsumexp(s: list) -> mpmath.mpf:
    top = max(s)
    return top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in s))


def _lse(law: tuple, p: list, grads: bool = True) -> tuple[mpmath.mpf, list | None]:
    """LSE_mu(p) in the current mpmath precision from :func:`_prepare`'s exact values and, with
    ``grads``, its first-order sensitivity to the stored values: G[q] = d LSE / d theta_q over
    the parameters theta (atoms and log-weights; box bounds; means, covariances and
    log-weights; in the order of :func:`_amplitudes`), so that a change |d theta_q| <= u A[q]
    moves LSE by sum_q G[q] d theta_q."""
    kind = law[0]
    if kind == "uniform":
        total, G = mpmath.mpf(0), []
        for pl, lo, hi in zip(p, law[1], law[2]):
            h = (hi - lo) * pl
            total += lo * pl
            if h != 0:
                total += mpmath.log(mpmath.expm1(h) / h)
            if grads:
                slope = 1 / (1 - mpmath.exp(-h)) - 1 / h if abs(h) > 1e-20 else mpmath.mpf(1) / 2
                G += [pl - pl * slope, pl * slope]
        return total, (G if grads else None)
    if kind == "discrete":
        scores = [mpmath.fdot(p, y) + lw for y, lw in zip(law[1], law[2])]
        value = _logsumexp(scores)
        if not grads:
            return value, None
        prob = [mpmath.exp(v - value) for v in scores]
        return value, [pj * pl for pj in prob for pl in p] + prob
    scores = []
    for m, S, lw in zip(law[1], law[2], law[3]):
        quad = mpmath.fdot(p, [mpmath.fdot(row, p) for row in S])
        scores.append(lw + mpmath.fdot(p, m) + quad / 2)
    value = _logsumexp(scores)
    if not grads:
        return value, None
    resp = [mpmath.exp(v - value) for v in scores]
    G = []
    for r in resp:
        G += [r * pl for pl in p] + [r * pa * pb / 2 for pa in p for pb in p] + [r]
    return value, G


def _amplitudes(law: tuple) -> list:
    """A[q] = |theta_q| for the parameters of :func:`_lse`'s sensitivities, in their order
    (the same at every point: computed once per law)."""
    kind = law[0]
    if kind == "uniform":
        return [x for lo, hi in zip(law[1], law[2]) for x in (abs(lo), abs(hi))]
    if kind == "discrete":
        return [abs(x) for y in law[1] for x in y] + [mpmath.mpf(1)] * len(law[2])
    return [a for m, S in zip(law[1], law[2])
            for a in [abs(x) for x in m] + [abs(x) for row in S for x in row] + [mpmath.mpf(1)]]


def _triples(transform: np.ndarray, scales: Sequence[float], per_scale: int,
             rng: np.random.Generator) -> list[tuple[list, list, list]]:
    """(z, z + h, z - h) as mpf vectors: the sums are exact at this precision. Beyond
    :data:`FLOAT_SCALE` (z or h could overflow binary64) z = sigma (transform @ g) is formed
    in extended precision from the same draws."""
    r = transform.shape[1]
    out = []
    for sigma in scales:
        for _ in range(per_scale):
            gz, gh = rng.standard_normal(r), rng.standard_normal(r)
            if sigma <= FLOAT_SCALE:
                zm = [mpmath.mpf(float(x)) for x in transform @ (gz * sigma)]
                hm = [mpmath.mpf(float(x)) for x in transform @ (gh * sigma)]
            else:
                big = mpmath.mpf(sigma)
                zm = [big * mpmath.mpf(float(x)) for x in transform @ gz]
                hm = [big * mpmath.mpf(float(x)) for x in transform @ gh]
            out.append((zm, [a + b for a, b in zip(zm, hm)], [a - b for a, b in zip(zm, hm)]))
    return out


def _second_differences(dists: Sequence[Distribution], triples, written: bool = True,
                        sensitivities: bool = True) -> tuple[list, list, list]:
    """For every triple and distribution: D2 LSE_i, the cancelled size
    |L(z+h)| + |L(z-h)| + 2 |L(z)|, and (``sensitivities``; else empty lists) the typical
    first-order change of D2 LSE_i when every stored value is rounded once (independent
    relative errors of size u, which add like a random walk): sqrt(sum_q (D2 G_q A_q)^2)
    (:func:`_lse`, :func:`_amplitudes`). ``written``: the parameters as written, else the
    doubles of the numerical test (:func:`_prepare`)."""
    laws = [_prepare(dist, written) for dist in dists]
    amps = [_amplitudes(law) for law in laws] if sensitivities else [None] * len(laws)
    d2, size, sens = [], [], []
    for z, zp, zm in triples:
        row, mag, sen = [], [], []
        for law, amp in zip(laws, amps):
            (l0, g0), (lp, gp), (lm, gm) = (_lse(law, x, sensitivities) for x in (z, zp, zm))
            row.append(lp + lm - 2 * l0)
            mag.append(abs(lp) + abs(lm) + 2 * abs(l0))
            if sensitivities:
                sen.append(mpmath.sqrt(mpmath.fsum(((a + b - 2 * c) * w) ** 2
                                                   for a, b, c, w in zip(gp, gm, g0, amp))))
        d2.append(row)
        size.append(mag)
        sens.append(sen)
    return d2, size, sens


def _ratio(num, den):
    return num / den if den != 0 else (mpmath.mpf(0) if num == 0 else mpmath.inf)


def _own_spreads(distributions: Sequence[Distribution], transform: np.ndarray,
                 spreads: Sequence[float]) -> list[float]:
    """The test's spreads, plus the re-check's own where they disagree (module docstring)."""
    given = [float(x) for x in spreads]
    out = [x for x in given if x > 0 and np.isfinite(x)]
    if transform.shape[1] == 0:
        return out
    with np.errstate(all="ignore"):
        mine = whitened_spreads(distributions, transform)
    for rho, theirs, dist in zip(mine, given + [0.0] * (len(mine) - len(given)),
                                 distributions):
        for rho in (rho, _written_spread(dist, transform) if dist.rounded_inputs else 0.0):
            if not (rho > 0 and np.isfinite(rho)):
                continue
            if not (theirs > 0) or max(rho / theirs, theirs / rho) > SPREAD_AGREEMENT:
                out.append(float(rho))
    return out


def _written_spread(dist: Distribution, transform: np.ndarray) -> float:
    """The rms spread of the written law about its mean in the whitened coordinates y @
    transform, in extended precision: sum_j w_j |(y_j - mean) T|^2 (+ tr(T^T S_j T) for a
    mixture's components; (high - low)^2 / 12 per axis for a box). For a distribution whose
    written values are not binary64 numbers the float spread can miss it entirely (atoms 0.1
    and "0.1000000000000000001" are one double): its own scales then come from this one, where
    the written law's curvature shows (0.0 when the law cannot be read exactly)."""
    law = _written_law(dist)
    if law is None:
        return 0.0
    T = [[mpmath.mpf(float(x)) for x in row] for row in np.asarray(transform, dtype=float)]
    r = len(T[0]) if T else 0

    def white_sq(v: list) -> mpmath.mpf:  # |v @ T|^2
        return mpmath.fsum(mpmath.fdot(v, [row[a] for row in T]) ** 2 for a in range(r))

    with mpmath.workdps(DIGITS):
        if law[0] == "uniform":
            var = mpmath.fsum((hi - lo) ** 2 / 12 * T[l][a] ** 2
                              for l, (lo, hi) in enumerate(zip(law[1], law[2]))
                              for a in range(r))
        else:
            pts, logw = law[1], law[-1]
            w = [mpmath.exp(x) for x in logw]
            mean = [mpmath.fsum(wj * p[l] for wj, p in zip(w, pts)) for l in range(len(pts[0]))]
            var = mpmath.fsum(wj * white_sq([x - m for x, m in zip(p, mean)])
                              for wj, p in zip(w, pts))
            if law[0] == "mixture":
                var += mpmath.fsum(wj * mpmath.fsum(
                    mpmath.fdot([row[a] for row in T], [mpmath.fdot(S_row, [row[a] for row in T])
                                                        for S_row in S]) for a in range(r))
                    for wj, S in zip(w, law[2]))
        return float(mpmath.sqrt(var))


#: Cap of :func:`confirmation_digits` (its threshold, 10^-(digits - 25), stays a float64
#: number); values written with more than about 85 digits are confirmed to this precision only.
CONFIRMATION_MAX_DIGITS = 280


def confirmation_digits(distributions: Sequence[Distribution], digits: int = DIGITS) -> int:
    """Working precision of step 4b: at least twice ``digits`` and 3 W + digits / 2, W the
    largest number of decimal digits of a written value's numerator and denominator together
    (two distinct such values differ by at least 10^-W relative to their size, so a relation
    they break leaves a misfit of that order, or of its square or cube where the first orders
    cancel, above this precision's threshold)."""
    width = 0
    for dist in distributions:
        for value in (dist.rational or {}).values():
            if value is None:
                continue
            for x in np.ravel(np.asarray(value, dtype=object)):
                if isinstance(x, (Fraction, Decimal)):
                    q = Fraction(x)
                    width = max(width, len(str(abs(q.numerator))) + len(str(q.denominator)))
                elif isinstance(x, (int, np.integer)) and not isinstance(x, bool):
                    width = max(width, len(str(abs(int(x)))))
    return int(min(max(2 * digits, 3 * width + digits // 2), CONFIRMATION_MAX_DIGITS))


def verify_relation(distributions: Sequence[Distribution], coefficients: np.ndarray,
                    transform: np.ndarray, spreads: Sequence[float], *, seed: int = 0,
                    digits: int = DIGITS) -> RelationCheck:
    """Re-check sum_i c_i LSE_i = affine in extended precision (module docstring).

    Parameters
    ----------
    distributions : the k distributions of the relation (stored parameters taken as exact)
    coefficients : (k,) their float coefficients c
    transform : (d, r) whitened-to-data probe map of the test (z = transform @ s)
    spreads : (k,) internal spread rho_i of each distribution in whitened coordinates
    seed : seed of the fresh points (independent of the test's probe stream)
    digits : working precision

    Returns
    -------
    RelationCheck
    """
    start = time.perf_counter()
    c = np.asarray(coefficients, dtype=float)
    k = len(distributions)
    own = sorted({float(f"{f / rho:.3g}") for rho in _own_spreads(distributions, transform,
                                                                   spreads)
                  for f in OWN_SCALES})
    scales = tuple(sorted(set(POOLED_SCALES) | set(own)))
    fit_per_scale = max(1, -(-2 * max(k - 1, 0) // len(scales)))
    test_per_scale = 2
    threshold = 10.0 ** (-digits / 2)
    n_points = 3 * len(scales) * (fit_per_scale * (k > 1) + test_per_scale)
    work = n_points * sum(_work(dist) for dist in distributions)
    if transform.shape[1] == 0 or work > MAX_WORK:
        why = ("the data have no direction to probe" if transform.shape[1] == 0 else
               f"re-checking it needs about {work:.2g} extended-precision operations (limit "
               f"{MAX_WORK:.2g})")
        return RelationCheck(None, float("nan"), threshold, c, digits, 0, 0, scales,
                             time.perf_counter() - start, f"not re-checked: {why}")
    kw: dict[str, Any] = dict(transform=transform, scales=scales, fit_per_scale=fit_per_scale,
                              test_per_scale=test_per_scale, seed=seed, digits=digits)
    misfit, data_ratio, refit, fit_points, tested, extra = _measure(distributions, c,
                                                                    written=True, **kw)
    rounded = sorted({f for dist in distributions for f in dist.rounded_inputs})
    base_threshold, confirmed = threshold, False
    if misfit <= threshold and rounded:
        # Written values that are not binary64 numbers can differ by any amount (0.1 against
        # 0.1 + 1e-31), far below the gap that makes the threshold safe for binary64 data
        # (step 4): a relation false by that much passes at this precision. Step 4b: its
        # misfit stays where it is at more digits, while a true relation's falls with them.
        hi = confirmation_digits(distributions, digits)
        m_hi, ratio_hi, refit_hi, _, _, extra_hi = _measure(distributions, c, written=True,
                                                            **{**kw, "digits": hi})
        base_digits, base_misfit = digits, misfit
        misfit, data_ratio, digits = m_hi, ratio_hi, hi
        threshold = 10.0 ** (-(hi - base_digits / 2))  # the same allowance, 10^(digits / 2)
        refit, extra, confirmed = refit_hi, extra_hi, True
    if misfit <= threshold:
        passed, level = True, "exact"
        reason = (f"holds at {tested} fresh test points to a relative misfit {misfit:.2g} "
                  f"(<= {threshold:.0e}) in {digits}-digit arithmetic"
                  + (" for the values as written" if rounded else "")
                  + (f" ({base_misfit:.2g} in {base_digits}-digit arithmetic: the written "
                     "values are not binary64 numbers, so the misfit must fall with the "
                     "precision)" if confirmed else ""))
        return RelationCheck(passed, misfit, threshold, refit, digits, fit_points, tested,
                             scales, time.perf_counter() - start, reason, level, data_ratio,
                             *extra)
    if rounded:  # does it hold for the nearest doubles, the data the numerical test saw?
        # (binary64 data: the threshold of step 4 at the base precision is safe for them)
        m2, _, refit2, _, _, _ = _measure(distributions, c, written=False, **kw)
        if m2 <= base_threshold:
            reason = (f"holds for the nearest doubles of the written values (relative misfit "
                      f"{m2:.2g} at {tested} fresh points in {kw['digits']}-digit arithmetic) "
                      f"but not for the values as written (relative misfit {misfit:.2g} in "
                      f"{digits}-digit arithmetic): the "
                      f"{'/'.join(rounded)} written are not binary64 numbers, and the relation "
                      "is one of their rounding, a near-dependency at the precision of the "
                      "input, not a dependency of the data as written")
            return RelationCheck(False, misfit, threshold, refit2, digits, fit_points, tested,
                                 scales, time.perf_counter() - start, reason, "input_rounding",
                                 data_ratio)
    if data_ratio <= 1.0:
        passed, level = False, "data_precision"
        reason = (f"holds at fresh points only up to the rounding of the stored values "
                  f"(relative misfit {misfit:.2g}, {data_ratio:.2g}x the typical effect of "
                  "rounding every stored value once): a near-dependency at the data's own "
                  "precision, not an exact relation")
    else:
        passed, level = False, "failed"
        explained = (f"{data_ratio:.2g}x what the rounding of the stored values explains"
                     if np.isfinite(data_ratio) else
                     "more than 1e308x what the rounding of the stored values explains (at "
                     "these points the tilted laws are point masses, which rounding barely "
                     "moves)")
        reason = (f"fails at fresh points in {digits}-digit arithmetic: relative misfit "
                  f"{misfit:.2g}, {explained} (a true relation leaves <= {threshold:.0e})")
    return RelationCheck(passed, misfit, threshold, refit, digits, fit_points, tested, scales,
                         time.perf_counter() - start, reason, level, data_ratio)


def _measure(distributions: Sequence[Distribution], c: np.ndarray, *, transform: np.ndarray,
             scales: tuple, fit_per_scale: int, test_per_scale: int, seed: int, digits: int,
             written: bool) -> tuple[float, float, np.ndarray, int, int, tuple]:
    """Steps 1-4 of the module docstring: (misfit, data ratio, refitted coefficients, fit
    points, test points, (float misfit, precise coefficients)), on the values as written or on
    the doubles (``written``); the same points either way. The float misfit is that of the
    refitted coefficients rounded to float64 (:class:`RelationCheck`)."""
    k = len(distributions)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED, 9]))
    with mpmath.workdps(digits):
        cm = [mpmath.mpf(float(x)) for x in c]
        lead = int(np.argmax(np.abs(c)))
        fit_points = 0
        if k > 1:
            fit = _triples(transform, scales, fit_per_scale, rng)
            fit_points = len(fit)
            d2, size, _ = _second_differences(distributions, fit, written, False)
            others = [j for j in range(k) if j != lead]
            # rows scaled by the size of what cancels, so every scale weighs the same
            rows = [[d2[t][j] / (sum(size[t]) or 1) for j in others] for t in range(len(fit))]
            rhs = [-cm[lead] * d2[t][lead] / (sum(size[t]) or 1) for t in range(len(fit))]
            try:
                sol, _ = mpmath.qr_solve(mpmath.matrix(rows), mpmath.matrix(rhs))
                for pos, j in enumerate(others):
                    cm[j] = sol[pos]
            except (ZeroDivisionError, ValueError):
                pass  # rank-deficient fit: keep the float coefficients
        test = _triples(transform, scales, test_per_scale, rng)
        d2, size, sens = _second_differences(distributions, test, written)
        cf = [mpmath.mpf(float(x)) for x in cm]
        worst, worst_data, worst_float = mpmath.mpf(0), mpmath.mpf(0), mpmath.mpf(0)
        for t in range(len(test)):
            num = abs(mpmath.fsum(cm[j] * d2[t][j] for j in range(k)))
            den = mpmath.fsum(abs(cm[j]) * size[t][j] for j in range(k))
            data = DATA_ROUNDING * mpmath.mpf(_U) * mpmath.sqrt(mpmath.fsum(
                (cm[j] * sens[t][j]) ** 2 for j in range(k)))
            worst = max(worst, _ratio(num, den))
            worst_data = max(worst_data, _ratio(num, data))
            worst_float = max(worst_float, _ratio(abs(mpmath.fsum(
                cf[j] * d2[t][j] for j in range(k))), den))
        precise = tuple(mpmath.nstr(x, PRECISE_DIGITS) for x in cm)
        return (float(worst), float(worst_data), np.array([float(x) for x in cm]), fit_points,
                len(test), (float(worst_float), precise))


def affine_part(distributions: Sequence[Distribution], coefficients: Sequence,
                digits: int = DIGITS, texts: list | None = None) -> tuple[float, np.ndarray, float]:
    """(a, b, tolerance) with sum_i c_i LSE_i(z) = a + <b, z>, for a relation that
    :func:`verify_relation` accepted: S = sum_i c_i LSE_i is affine, so a = S(0) and
    b_j = S(e_j) - S(0), evaluated in ``digits``-digit arithmetic from the stored parameters and
    rounded to float64 (a float least-squares fit would carry the round-off of the features,
    ~u |LSE|, into a and b).

    ``tolerance`` bounds how far a and b may be from the affine part of the verified relation:
    the float coefficients c differ from the refitted ones by a few units in their last place,
    |dc_i| <= 2 u |c_i|, which moves S(p) by at most 2 u sum_i |c_i| |LSE_i(p)| at each point p
    used (0 and e_j), and b_j is a difference of two such values: tolerance =
    4 u max_p sum_i |c_i| |LSE_i(p)|. The text form prints an affine term as 0 or as a small
    fraction only within it (:class:`~ntkcheck.injectivity.dependencies.Dependency`).
    Coefficients given as text (``RelationCheck.precise``, not binary64 numbers) are used to
    their digits; ``texts`` (a list) then receives a and b_1..b_d as :data:`PRECISE_DIGITS`-digit
    text, whose error is that of the coefficients' text (the relative 10^-PRECISE_DIGITS of
    their last digit) times the same sums, well below ``tolerance``."""
    d = distributions[0].dim
    with mpmath.workdps(digits):
        c = [_exact_mpf(Fraction(x)) if isinstance(x, str) else mpmath.mpf(float(x))
             for x in np.ravel(np.asarray(coefficients, dtype=object))]
        laws = [_prepare(dist) for dist in distributions]

        def total(p: list) -> tuple[mpmath.mpf, mpmath.mpf]:
            values = [_lse(law, p, grads=False)[0] for law in laws]
            return (mpmath.fsum(ci * v for ci, v in zip(c, values)),
                    mpmath.fsum(abs(ci * v) for ci, v in zip(c, values)))

        zero = [mpmath.mpf(0)] * d
        a, size = total(zero)
        b = []
        for j in range(d):
            s_j, size_j = total([mpmath.mpf(int(j == k)) for k in range(d)])
            b.append(s_j - a)
            size = max(size, size_j)
        if texts is not None:
            texts[:] = [mpmath.nstr(x, PRECISE_DIGITS) for x in [a] + b]
        return float(a), np.array([float(x) for x in b]), float(4 * _U * size)
