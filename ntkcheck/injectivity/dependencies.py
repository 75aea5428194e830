"""Dependencies by name: the null space of F_perp in reduced echelon form, each candidate
refined on its support with its affine part fitted (SPEC §2, §3 step 6), and the relations the
structural screen proves (SPEC §7).

A :class:`Dependency` is sum_i c_i LSE_i(z) = a + <b, z>; it carries how it was verified."""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.linalg

from ..dataset import Dataset
from .features import FeatureMatrix
from .findings import ScreenResult

__all__ = ["Dependency", "null_space_basis", "fit_dependency", "refit_affine_part", "snap_text",
           "precise_coefficients", "precise_affine", "verified_tolerance",
           "structural_dependencies", "ZERO_COEF_RTOL"]

#: Coefficients below ZERO_COEF_RTOL * max |c| in a relation are round-off (sqrt(u)).
ZERO_COEF_RTOL = float(np.sqrt(np.finfo(float).eps))

@dataclass(frozen=True)
class Dependency:
    """A relation sum_i c_i LSE_i(z) = a + <b, z> (SPEC §2).

    Attributes
    ----------
    coefficients : {name: c_i}, non-zero entries only
    constant : a
    linear : b, length d
    residual : relative misfit || F c - (a + Z b) || / sum_i |c_i| ||F_i|| on the probes
    exact : True when proven symbolically (SPEC §4)
    certificate : the exact certificate (rational coefficients), when exact
    verification : how the claim was checked independently before it was reported
        (``method`` and its figures; see :mod:`ntkcheck.injectivity.verify`)
    affine_tolerance : how far a and b may be from the affine part of the relation with exactly
        these coefficients (the error bound of :func:`~ntkcheck.injectivity.verify.affine_part`;
        0 for values that are exact). The text form shows an affine term as 0 or as a small
        fraction only within this tolerance (:func:`_pretty`); ``affine.tolerance`` in
        ``to_dict`` when positive.
    precise_coefficients : {name: decimal text} for the coefficients of a numerically verified
        relation that are not binary64 numbers (their doubles in ``coefficients`` fail the
        50-digit re-check: covariances written 1 + 1e-18 times another's): the refitted values
        to 25 significant digits, printed instead of the doubles (with them, the affine
        values that are not binary64 numbers in ``precise_affine``, keys "constant", "z1",
        ...). An exact relation's
        non-binary64 values are in its ``certificate``, whose identity is then printed.
    """

    coefficients: dict[str, float]
    constant: float
    linear: tuple[float, ...]
    residual: float
    exact: bool = False
    certificate: dict | None = None
    verification: dict | None = None
    affine_tolerance: float = 0.0
    precise_coefficients: dict[str, str] | None = None
    precise_affine: dict[str, str] | None = None

    def to_dict(self) -> dict:
        affine = {"constant": self.constant, "linear": list(self.linear)}
        if self.affine_tolerance > 0:
            affine["tolerance"] = self.affine_tolerance
        out = {"coefficients": dict(self.coefficients), "affine": affine,
               "residual": self.residual, "exact": self.exact}
        if self.certificate is not None:
            out["certificate"] = self.certificate
        if self.verification is not None:
            out["verification"] = self.verification
        if self.precise_coefficients:
            out["precise_coefficients"] = dict(self.precise_coefficients)
        if self.precise_affine:
            out["precise_affine"] = dict(self.precise_affine)
        return out

    def describe(self, precision: int = 6) -> str:
        """Human-readable identity, e.g. ``LSE[b] - LSE[a] = 1/2 + z1``.

        Coefficients that are not binary64 numbers are never shown as their doubles (which do
        not satisfy the relation): an exact relation holding such a value in its certificate
        is printed as the certificate's identity, and ``precise_coefficients`` replace the
        doubles of a numerically verified one."""
        if self.exact and _beyond_binary64(self.certificate):
            return str(self.certificate["identity"])
        precise = self.precise_coefficients or {}
        left = _linear_combination([(c, f"LSE[{n}]", precise.get(n))
                                    for n, c in self.coefficients.items()], precision)
        exact_affine = self.precise_affine or {}
        right = _linear_combination([(self.constant, "", exact_affine.get("constant"))] + [
            (b, f"z{l + 1}", exact_affine.get(f"z{l + 1}")) for l, b in enumerate(self.linear)],
            precision, self.affine_tolerance)
        return f"{left} = {right}"


def _beyond_binary64(certificate: dict | None) -> bool:
    """Whether an exact certificate holds a coefficient or linear term that is not a binary64
    number (its float in the Dependency is then not the relation)."""
    if not certificate or "identity" not in certificate:
        return False
    values = list((certificate.get("coefficients") or {}).values())
    values += list(certificate.get("linear") or [])
    for text in values:
        try:
            q = Fraction(str(text))
        except (ValueError, ZeroDivisionError):
            continue
        if q != Fraction(float(q)):
            return True
    return False


def _linear_combination(terms: list[tuple], precision: int, tolerance: float = 0.0) -> str:
    """'2 LSE[a] - LSE[b]' from [(2, 'LSE[a]'), (-1, 'LSE[b]')], dropping terms that print as 0
    (within ``tolerance``, see :func:`_pretty`). A third entry, when given and not None, is the
    value as decimal text (``Dependency.precise_coefficients``), printed as it is."""
    out = []
    for value, label, *text in terms:
        if text and text[0] is not None:
            value, mag = float(Fraction(text[0])), text[0].lstrip("-")
        else:
            mag = _pretty(abs(value), precision, tolerance)
        if mag == "0":
            continue
        sign = "-" if value < 0 else "+"
        body = label if (mag == "1" and label) else (f"{mag}*{label}" if label.startswith("z")
                                                     else f"{mag} {label}".strip())
        out.append((sign, body))
    if not out:
        return "0"
    text = ("-" if out[0][0] == "-" else "") + out[0][1]
    return text + "".join(f" {sign} {body}" for sign, body in out[1:])


#: A printed value may differ from the computed one by PRINT_ULPS units in the last place (the
#: computed coefficients are 50-digit values rounded once to float64) plus the value's own
#: error bound; a wider rule printed LSE[A] - 0.9999999999 LSE[B] as LSE[A] - LSE[B], a false
#: relation.
PRINT_ULPS = 4.0
#: Fractions are printed below this magnitude only (above it 4810363371522/5 would read worse
#: than the decimal).
FRACTION_MAX = 1e4


def snap_text(text: str, error: Fraction) -> str:
    """Decimal ``text`` as the small fraction (the rule of :func:`_pretty`) within ``error`` of
    it, when there is one ('0.3333333333333333333333333' -> '1/3'), else ``text``."""
    v = Fraction(text)
    q = v.limit_denominator(12)
    if (q.denominator == 1 or abs(v) < FRACTION_MAX) and abs(v - q) <= error:
        return str(q)
    return text


def precise_coefficients(coefs: dict[str, float], texts: dict[str, str], digits: int
                         ) -> dict[str, str]:
    """The verified coefficients that are not the doubles ``coefs`` (whose leading one is 1),
    as decimal text: ``texts`` (the 50-digit refit to ``digits`` significant digits, on the
    same names) scaled like ``coefs``, each a small fraction when it is one within its digits
    (:func:`snap_text`)."""
    lead = Fraction(texts[next(iter(coefs))])
    out = {}
    with decimal.localcontext() as ctx:
        ctx.prec = digits
        for n, c in coefs.items():
            q = Fraction(texts[n]) / lead
            text = str((decimal.Decimal(q.numerator) / decimal.Decimal(q.denominator)).normalize())
            text = snap_text(text, abs(q) * Fraction(10) ** (1 - digits))
            if Fraction(text) != Fraction(c):
                out[n] = text
    return out


def verified_tolerance(tolerance: float, digits: int) -> float:
    """The error bound of a verified relation's affine part when the printed coefficients
    themselves passed the re-check (their doubles, or their text): not the float bound
    ``tolerance`` = 4 u max_p sum_i |c_i LSE_i(p)| (:func:`~.verify.affine_part`, for
    coefficients a few ulps off), but the same sums times 10^(1 - digits), the relative
    accuracy to which the re-check (misfit <= 10^-digits) and the text vouch for the
    coefficients. A written shift of 1e-19 then prints as 1e-19*z1, not as 0."""
    return float(tolerance / (2 * np.finfo(float).eps) * 10.0 ** (1 - digits))


def precise_affine(texts: dict[str, str], tolerance: float, digits: int) -> dict[str, str]:
    """The affine values of a relation with non-binary64 coefficients (``texts``: a, b_j from
    the coefficients' text, :func:`~.verify.affine_part`) that differ from their doubles by
    more than ``tolerance`` (:func:`verified_tolerance`), each a small fraction or rounded to
    the digits that error leaves (at most ``digits``)."""
    err = Fraction(tolerance)
    out = {}
    for key, text in texts.items():
        v = Fraction(text)
        if abs(v - Fraction(float(v))) <= err or v == 0:
            continue
        snapped = snap_text(text, err)
        if snapped != text:
            out[key] = snapped
            continue
        keep = int(np.clip(np.floor(np.log10(float(abs(v) / err))), 1, digits))
        with decimal.localcontext() as ctx:
            ctx.prec = keep
            out[key] = str((+decimal.Decimal(text)).normalize())
    return out


def _pretty(x: float, precision: int, tolerance: float = 0.0) -> str:
    """``x`` (>= 0) as text that never suggests a different exact value.

    A small fraction (denominator <= 12, 0 included; an integer or a value below
    :data:`FRACTION_MAX`) when it is within ``tolerance`` plus
    :data:`PRINT_ULPS` ulps of ``x``; else ``precision`` significant digits, unless that
    rounding reads as a shorter, exact-looking number (``1`` for 1.0000001): then the shortest
    decimal that round-trips to ``x``.
    """
    slack = tolerance + PRINT_ULPS * np.finfo(float).eps * abs(x)
    frac = Fraction(x).limit_denominator(12)
    if (frac.denominator == 1 or abs(x) < FRACTION_MAX) and abs(frac - Fraction(x)) <= slack:
        return str(frac)
    text = f"{x:.{precision}g}"
    digits = len(text.split("e")[0].replace(".", "").lstrip("0"))
    if digits < precision and abs(Fraction(text) - Fraction(x)) > slack:
        return repr(float(x))
    return text


def null_space_basis(vectors: np.ndarray, zero_rtol: float = ZERO_COEF_RTOL) -> np.ndarray:
    """Reduced row echelon form of the rows of ``vectors.T`` (a basis of the null space).

    ``vectors`` is (N, k), columns spanning the null space. Returns (k, N) with one leading 1
    per row at the leftmost possible column and zeros in the other rows' pivot columns, so
    unrelated dependencies come out as separate relations on disjoint supports. Pivots must
    exceed ZERO_COEF_RTOL times the largest entry; entries below ``zero_rtol`` times the row's
    largest are set to 0 (the rows are the same for any ``zero_rtol``: only the zeroing
    differs, so a smaller one gives a wider support of the same candidate).
    """
    A = np.array(vectors.T, dtype=float)
    k, N = A.shape
    scale = np.abs(A).max() if A.size else 0.0
    row = 0
    for col in range(N):
        if row == k:
            break
        p = row + int(np.argmax(np.abs(A[row:, col])))
        if abs(A[p, col]) <= ZERO_COEF_RTOL * scale:
            continue
        A[[row, p]] = A[[p, row]]
        A[row] /= A[row, col]
        others = np.arange(k) != row
        A[others] -= np.outer(A[others, col], A[row])
        row += 1
    A = A[:row]
    A[np.abs(A) <= zero_rtol * np.abs(A).max(axis=1, keepdims=True)] = 0.0
    return A


def fit_dependency(coef: np.ndarray, features: FeatureMatrix,
                   names: tuple[str, ...]) -> Dependency:
    """Refine a relation on its support and fit its affine part by least squares.

    The coefficients on the support S are re-estimated as the smallest right singular vector
    of F_perp[:, S] (more accurate than the global null basis), scaled so the leading one is 1.
    """
    support = np.flatnonzero(coef)
    F, A = features.columns(support)
    _, _, vt = np.linalg.svd(A, full_matrices=False)
    c_norm = vt[-1]
    nu = features.col_norms[support]
    c = c_norm / np.where(nu > 0, nu, 1.0)  # zeroed (affine) columns have no scale
    return _affine_fit(c, support, F, features, names)


def refit_affine_part(coefficients: dict[str, float], features: FeatureMatrix,
                      names: tuple[str, ...]) -> Dependency:
    """The relation with these (verified) coefficients, entries below ZERO_COEF_RTOL of the
    largest dropped (they are round-off: the relation holds without them), scaled so that the
    leading one is 1, with its affine part fitted again for exactly these coefficients."""
    index = {n: i for i, n in enumerate(names)}
    c = np.array(list(coefficients.values()), dtype=float)
    keep = np.abs(c) > ZERO_COEF_RTOL * np.abs(c).max()
    support = np.array([index[n] for n in coefficients])[keep]
    order = np.argsort(support)
    support, c = support[order], c[keep][order]
    F, _ = features.columns(support)
    return _affine_fit(c, support, F, features, names)


def _affine_fit(c: np.ndarray, support: np.ndarray, F: np.ndarray, features: FeatureMatrix,
                names: tuple[str, ...]) -> Dependency:
    """Dependency with coefficients c (scaled: leading one 1) on ``support`` and the least-squares
    affine part of F c on [1, z] (F the raw columns of the support)."""
    c = c / c[np.flatnonzero(c)[0]] if np.any(c) else np.ones_like(c)
    Fc = F @ c
    Z = features.probes.z
    B = np.column_stack([np.ones(len(Z)), Z])
    sol, *_ = scipy.linalg.lstsq(B, Fc, lapack_driver="gelsd", check_finite=False)
    misfit = np.linalg.norm(Fc - B @ sol)
    denom = np.sum(np.abs(c) * np.linalg.norm(F, axis=0))
    residual = float(misfit / denom) if denom > 0 else 0.0
    # undo the centring: LSE_mu_i = LSE_{mu_i - m_i} + <z, m_i>
    centres = features.centres if features.centres is not None else np.zeros((len(names), Z.shape[1]))
    linear = sol[1:] + c @ centres[support]
    return Dependency({names[j]: float(cj) for j, cj in zip(support, c)}, float(sol[0]),
                      tuple(float(b) for b in linear), residual)


def structural_dependencies(scr: ScreenResult, dataset: Dataset) -> list[Dependency]:
    """One relation per reduction of the screen: e_i for a Dirac mass at c (LSE = <c, z>),
    LSE[parent] - LSE[member] = -<t, z> for a member translated by t from its parent."""
    deps = []
    for f in scr.diracs:
        deps.append(Dependency({f.name: 1.0}, 0.0, tuple(float(x) for x in f.point), 0.0,
                               exact=f.evidence == "exact",
                               verification=_screen_verification(f.evidence)))
    for c in scr.classes:
        shift = {m: np.asarray(t, dtype=float) for m, t in zip(c.members, c.shifts)}
        for pos in range(1, c.size):
            member, parent = c.members[pos], c.parents[pos]
            t = shift[member] - shift[parent]
            deps.append(Dependency({dataset.names[parent]: 1.0, c.names[pos]: -1.0}, 0.0,
                                   tuple(float(-x) for x in t), 0.0,
                                   exact=c.evidence[pos] == "exact",
                                   verification=_screen_verification(c.evidence[pos])))
    return deps


def _screen_verification(evidence: str) -> dict:
    if evidence == "exact":
        return {"method": "structural screen", "level": "exact", "passed": True,
                "reason": "equal in exact arithmetic on the stored binary64 values"}
    return {"method": "structural screen", "level": "data_precision", "passed": True,
            "reason": "equal up to the rounding of the stored values (e.g. y + t computed in "
                      "floating point): a near-dependency at the data's own precision"}
