"""Rigorous certificate that LSE functions are linearly independent modulo affine functions.

SPEC §3a "Certified means rigorous". The certified object is the exact real matrix

    A = diag(2^r) [1, Z, F] diag(2^k),   F[m, i] = LSE_i(z_m) - <z_m, c_i>        (M' x (N+d+1))

built from the stored binary64 parameters of the distributions and the probes z_m (all taken as
exact real numbers), a shift c_i per distribution (any vector: <z, c_i> is affine) and power-of-two
row and column scalings (r, k) chosen here. A lower bound sigma_min(A) >= beta > 0 proves full
column rank, hence independence: a relation sum_i a_i LSE_i = a_0 + <b, z> would give the null
vector (-a_0, sum_i a_i c_i - b, a_1..a_N) of [1, Z, F] (before scaling). Dropping probes only
lowers singular values, so a certificate on a subset of probe rows certifies every larger set.

beta = beta_float - ||Rad||_F, where (Weyl's inequality for A = A~ + E, |E| <= Rad entrywise):

1. **Entry enclosures** ``|F[m, i] - F~[m, i]| <= rad[m, i]`` by Arb or by an a-priori float64
   bound (:mod:`ntkcheck.injectivity.enclosure`, which states the assumptions of each).
2. **beta_float**, a rigorous lower bound on sigma_min of the float matrix A~
   (:mod:`ntkcheck.injectivity.sigma`). First from the Gram matrix, computed once:
   G~ = fl(A~^T A~) (one dsyrk, M' n^2 flops) with ||G~ - A~^T A~||_2 <= e_G =
   gamma_M' ||A~||_F^2 + 2 M' n 2^-1074; s slightly below an estimate of lambda_min(G~)
   (inverse iteration on chol(G~)), and a Cholesky factorisation of fl(G~ - s I) run to
   completion proves lambda_min(G~) >= s - c (Higham's backward error
   gamma_(n+1) / (1 - gamma_(n+1)) tr, the rounding of the shifted diagonal, Rump's underflow
   term), so sigma_min(A~) = sqrt(lambda_min(A~^T A~)) >= sqrt(s - c - e_G). This squares
   the condition number, so it is used only when c + e_G <= 2^-6 s and the bound beats the
   entry radii; otherwise the fallback, which never squares it: Y ~ R^-1 (R from the same
   Cholesky factor, or a Householder QR), with the exact C := A~ Y,
   sigma_min(A~) >= sigma_min(C) / ||Y||_2, where
   sigma_min(C) >= sqrt(1 - ||C~^T C~ - I||_2) - ||C - C~||_F for the computed C~, and
   ||Y||_2 <= sqrt(alpha) is proved by a Cholesky factorisation of alpha I - Y^T Y run to
   completion (as in Rump's verification of positive definiteness). Float products obey
   |fl(X Y) - X Y| <= gamma_k |X| |Y| (k the inner dimension, any summation order, FMA
   allowed: the standard model, which BLAS satisfies as it uses no Strassen-like algorithm),
   with Cauchy-Schwarz for |X| |Y|; every bound is evaluated in float64 with an explicit
   upward (or downward) margin.
3. **Weyl**: sigma_min(A) >= beta_float - ||Rad||_F.

[1, Z] must itself have full column rank (probes not in a hyperplane), which the certificate
proves along the way.
"""

from __future__ import annotations

import functools
from concurrent.futures import ThreadPoolExecutor
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..distributions import Distribution
from ..errors import InputError
from .enclosure import (_NO_FLINT, ARB_PREC, DEFAULT_BUDGET, SCRATCH_BYTES, _enclose_apriori,
                        _enclose_arb, _have_flint, _validate, _work, feature_enclosure)
from .. import resources
from ..backends.local import usable_cores
from ..dataset import Dataset
from ..resources import default_max_memory, format_bytes
from ..progress import Progress, Work
from .features import FeatureMatrix
from .rounding import _ETA, _TINY, LIBM_ULPS, _norm_up, _up
from .reuse import pass_radii
from .sigma import float_sigma_lower_bound, sigma_min_lower_bound

__all__ = ["Certificate", "certify_independence", "feature_enclosure", "sigma_min_lower_bound",
           "certificate_flops", "LIBM_ULPS", "DEFAULT_BUDGET", "ARB_PREC", "SCRATCH_BYTES"]


# ------------------------------------------------------------------------------------------
# Certificate


@dataclass(frozen=True)
class Certificate:
    """Outcome of :func:`certify_independence`.

    Attributes
    ----------
    certified : bool
        True when ``lower_bound > 0``: the LSE functions are linearly independent modulo
        affine functions (a proof, under the stated assumptions of ``method``).
    lower_bound : float
        Rigorous lower bound on sigma_min of the scaled exact matrix A (<= 0 or nan when not
        certified).
    method : "arb" or "a-priori"
        How the entries of F were enclosed.
    rows : (M',) int array
        The probe indices used.
    columns : int
        N + d + 1.
    row_exponents, column_exponents : int arrays
        The scalings diag(2^r), diag(2^k) of A.
    max_radius : float
        Largest entry radius of F (in the scaled A).
    sigma_float : float
        Rigorous lower bound on sigma_min of the float matrix A~.
    radius_norm : float
        Upper bound on ||A - A~||_F.
    seconds : float
    reason : str
        Why it is or is not certified, with the numbers.
    statement : str
        One sentence saying exactly what is proved (or that nothing is).
    """

    certified: bool
    lower_bound: float
    method: str
    rows: np.ndarray
    columns: int
    row_exponents: np.ndarray
    column_exponents: np.ndarray
    max_radius: float
    sigma_float: float
    radius_norm: float
    seconds: float
    reason: str
    statement: str = field(default="")

    def to_dict(self) -> dict:
        """JSON-ready dictionary (row indices as a list)."""
        return {
            "certified": self.certified,
            "lower_bound": _json_float(self.lower_bound),
            "method": self.method,
            "rows": int(self.rows.size),
            "row_indices": [int(r) for r in self.rows],
            "columns": self.columns,
            "row_exponents": [int(e) for e in self.row_exponents],
            "column_exponents": [int(e) for e in self.column_exponents],
            "max_radius": _json_float(self.max_radius),
            "sigma_float": _json_float(self.sigma_float),
            "radius_norm": _json_float(self.radius_norm),
            "seconds": self.seconds,
            "reason": self.reason,
            "statement": self.statement,
        }


def _json_float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


# ------------------------------------------------------------------------------------------
# progress


#: Work of one (probe, term) pair of the a-priori enclosure and of the Arb one, in flops of
#: the linear algebra (a score's 2 d flops come on top): the exponential, the logarithm and
#: the error terms cost about as much as ENCLOSURE_FLOPS flops of the factorisations (the
#: enclosure took 45% of the certificate at N = 1000 and 4000, d = 16); an Arb pair about
#: 1.5 us. These weights only shape the progress (its ETA), never the certificate.
ENCLOSURE_FLOPS, ARB_FLOPS = 350, 20000


def certificate_flops(rows: int, columns: int, terms: int, d: int, arb: bool = False) -> dict:
    """The work of :func:`certify_independence` on ``rows`` x ``columns`` (N + d + 1), with
    ``terms`` atoms and components in all, by step (flops; the enclosure's pairs at
    ENCLOSURE_FLOPS or ARB_FLOPS each): the entries, the scalings (a few passes over the
    matrix), the Gram matrix (M n^2) and its Cholesky factor with the estimate (2/3 n^3), and the
    shifted Cholesky proof (n^3 / 3): the Gram route of :mod:`ntkcheck.injectivity.sigma`. The
    fallback (C = A R^-1 and C^T C, 2 M n^2; the bound on ||R^-1||_2, ~ 4/3 n^3), when it runs,
    is counted on top and the progress is held at its total."""
    M, n = float(rows), float(columns)
    per = ARB_FLOPS if arb else ENCLOSURE_FLOPS + 2 * d
    return {"enclosure": M * terms * per, "scaling": 12 * M * n,
            "gram": M * n * n, "factor": 2 * n**3 / 3, "proof": n**3 / 3}


# ------------------------------------------------------------------------------------------
# Entry point


def certify_independence(distributions: Sequence[Distribution], z: np.ndarray, *,
                         centre: np.ndarray | None = None, rows=None, row_weights=None,
                         budget: int = DEFAULT_BUDGET, method: str = "auto",
                         progress: Progress | None = None, enclosure=None) -> Certificate:
    """Prove that the LSE functions are linearly independent modulo affine functions.

    Certifies sigma_min(A) >= lower_bound > 0 for the exact matrix
    A = diag(2^r) [1, Z, F] diag(2^k), F[m, i] = LSE_i(z_m) - <z_m, c_i>, on the probe rows
    ``rows`` (module docstring; SPEC §3a).

    Parameters
    ----------
    distributions : sequence of N Discrete / UniformBox / GaussianMixture on R^d; their stored
        float64 parameters are the exact values certified.
    z : (M, d) probes (exact doubles).
    centre : (d,) or (N, d), optional
        Shift c (or c_i per distribution) subtracted inside the enclosure; any value is valid,
        a value near each distribution's mean keeps |F| and its radii small.
    rows : int array, optional
        Probe indices to use (all by default); needs at least N + d + 1.
    row_weights : (M,) positive, optional
        Row weights, rounded down to powers of two 2^r (exact scaling).
    budget : int
        ``method="auto"`` uses Arb when M' * (atoms + components (1 + d) + d per box) <= budget
        and python-flint is installed, else the a-priori bound.
    method : "auto", "arb" or "a-priori"
    progress : callable(str), optional
        Receives ``rigorous certificate`` updates with ``done`` / ``total`` in millions of
        flops (:func:`certificate_flops`) as the enclosure's blocks and each factorisation end.
    enclosure : (mid, rad) of shape (M', N), optional
        Entry enclosures already proved (:func:`ntkcheck.injectivity.reuse.pass_enclosure`),
        used instead of the a-priori ones when that method is chosen; ``rad`` may also be
        :class:`ntkcheck.injectivity.reuse.PassRadii` (its column blocks computed when read,
        no M' x N array of radii).

    Returns
    -------
    Certificate
    """
    t0 = time.perf_counter()
    if method not in ("auto", "arb", "a-priori"):
        raise InputError(f"unknown method {method!r}; choose 'auto', 'arb' or 'a-priori'",
                         field="method")
    dists, z, centres, rows, row_exp = _validate(distributions, z, centre, rows, row_weights)
    N, d = len(dists), z.shape[1]
    n_cols = N + d + 1
    Mp = rows.size
    chosen = method if method != "auto" else ("arb" if Mp * _work(dists) <= budget else "a-priori")
    if chosen == "arb" and not _have_flint():
        if method == "arb":
            raise InputError(_NO_FLINT, field="method")
        chosen = "a-priori"

    def result(certified, lower, reason, col_exp=np.zeros(n_cols, int), max_rad=np.nan,
               sig=np.nan, radn=np.nan):
        statement = _statement(certified, lower, chosen, Mp, N, d)
        return Certificate(bool(certified), float(lower), chosen, rows, n_cols, row_exp,
                           np.asarray(col_exp, int), float(max_rad), float(sig), float(radn),
                           time.perf_counter() - t0, reason, statement)

    if Mp < n_cols:
        return result(False, np.nan, f"{Mp} probe rows < N + d + 1 = {n_cols} columns: "
                      "add probes")
    zs = z[rows]
    terms = _work(dists)
    steps = certificate_flops(Mp, n_cols, terms, d, arb=chosen == "arb")
    work = Work(progress, "rigorous certificate", sum(steps.values()), unit=1e6)
    if chosen == "arb":
        fmid, frad = _enclose_arb(dists, zs, centres)
        work.add(steps["enclosure"])
    elif enclosure is not None:
        fmid, frad = enclosure
        work.add(steps["enclosure"])
    else:
        per = steps["enclosure"] / max(Mp * terms, 1)
        with np.errstate(over="ignore", invalid="ignore"):
            fmid, frad = _enclose_apriori(dists, zs, centres, tick=lambda k: work.add(k * per))
    def unenclosed() -> Certificate:
        return result(False, np.nan, "an LSE entry could not be enclosed in float64 range")

    lazy = hasattr(frad, "columns")  # (its blocks are checked as they are computed)
    if not (np.all(np.isfinite(fmid)) and (lazy or np.all(np.isfinite(frad)))):
        return unenclosed()
    # [1, Z, F] is read in column blocks (temporaries of ~2^20 entries), never stacked whole
    step = max(1, _BLOCK_ENTRIES // max(Mp, 1))

    def original(j0: int, j1: int) -> np.ndarray:
        if j0 >= d + 1:
            return fmid[:, j0 - d - 1:j1 - d - 1]
        return np.column_stack([np.ones(Mp), zs, fmid[:, :max(j1 - d - 1, 0)]])[:, j0:j1]

    starts = range(0, n_cols, step)
    col = np.empty(n_cols)

    def norm_block(j0: int) -> None:
        j1 = min(n_cols, j0 + step)
        with np.errstate(over="ignore", under="ignore"):  # (per thread: set in each block)
            col[j0:j1] = _norm_up(_times_power_of_two(original(j0, j1), row_exp), axis=0)

    # the column blocks on every core (numpy's elementwise passes run on one thread each)
    with ThreadPoolExecutor(usable_cores()) as pool:
        list(pool.map(norm_block, starts))
    _, e = np.frexp(np.where((col > 0) & np.isfinite(col), col, 1.0))
    col_exp = -(e - 1)  # any power of two is valid; this one brings column norms into [1, 2)
    # scale in column blocks; 2^k scaling is exact unless the result overflows (caught below)
    # or is subnormal (checked by scaling back)
    A = np.empty((Mp, n_cols))
    # the F columns' radii, scaled block by block: a view of frad (scaled in place), or a new
    # block computed from the features pass (:class:`ntkcheck.injectivity.reuse.PassRadii`)
    radii = frad.columns if lazy else functools.partial(_view_columns, frad)

    def scale_block(j0: int) -> tuple[bool, int, bool, float | None, float]:
        """(enclosed, inexact, finite, ||rad block||_F bound or None, max rad) of one block."""
        with np.errstate(over="ignore", under="ignore"):  # (per thread: set in each block)
            return _scale_block(j0)

    def _scale_block(j0: int) -> tuple[bool, int, bool, float | None, float]:
        j1 = min(n_cols, j0 + step)
        blk = A[:, j0:j1]
        orig = original(j0, j1)
        blk[...] = _times_power_of_two(orig, row_exp, col_exp[j0:j1])
        inexact, norm, top = 0, None, 0.0
        ti, tj = np.nonzero(np.abs(blk) < _TINY)  # (the small entries: maybe subnormal)
        if ti.size:
            back = np.ldexp(blk[ti, tj], -(row_exp[ti] + col_exp[j0 + tj]))
            inexact = int(np.count_nonzero(back != orig[ti, tj]))
        finite = bool(np.all(np.isfinite(blk)))
        f0, f1 = max(j0, d + 1), j1
        if f1 > f0:  # radii of the F columns: exact but when subnormal (1 ulp added then)
            fr = radii(f0 - d - 1, f1 - d - 1)
            if lazy and not np.all(np.isfinite(fr)):
                return False, 0, False, None, 0.0
            fr[...] = _times_power_of_two(fr, row_exp, col_exp[f0:f1])
            tiny = fr < _TINY
            fr[tiny] = np.nextafter(fr[tiny], np.inf)
            finite = finite and bool(np.all(np.isfinite(fr)))
            if finite and fr.size:  # ||Rad||_F from the blocks' upper bounds
                norm, top = float(_norm_up(fr)), float(fr.max())
        return True, inexact, finite, norm, top

    with ThreadPoolExecutor(usable_cores()) as pool:
        blocks = list(pool.map(scale_block, starts))  # (in block order: the same sums)
    if not all(b[0] for b in blocks):
        return unenclosed()
    if not all(b[2] for b in blocks):
        return result(False, np.nan, "overflow when scaling the matrix", col_exp)
    inexact = sum(b[1] for b in blocks)
    norms = [b[3] for b in blocks if b[3] is not None]
    max_rad = max((b[4] for b in blocks), default=0.0)
    # ||Rad||_F^2 is the sum of the blocks' squares: the 2-norm of their upper bounds bounds it;
    # each inexactly scaled entry is within 2^-1074 of its exact value
    radn = float(_up(_norm_up(np.asarray(norms, float)) + np.sqrt(inexact) * 2 * _ETA, 2))
    max_rad = max_rad + (2 * _ETA if inexact else 0.0) if norms else 0.0
    # M' x n numbers fewer while the factorisation runs (the entries' midpoints and radii, when
    # this function made them; the block functions hold these names, so they are rebound)
    radii = frad = fmid = None
    work.add(steps["scaling"])
    sig, note = float_sigma_lower_bound(A, work, need=radn)
    work.add(work.total)  # every step done (a second shift or the fallback counted beyond it)
    if not np.isfinite(sig):
        return result(False, np.nan, note, col_exp, max_rad, sig, radn)
    lower = sig - radn
    lower = float(np.nextafter(lower, -np.inf))
    if lower > 0:
        reason = f"{note}; entry radii ||Rad||_F <= {radn:.3g}, so sigma_min(A) >= {lower:.6g}"
    else:
        reason = (f"not certified: {note}; entry radii ||Rad||_F <= {radn:.3g} "
                  f"(lower bound {lower:.3g} <= 0)")
    return result(lower > 0, lower, reason, col_exp, max_rad, sig, radn)


#: Entries of one column block of [1, Z, F] (and of its radii) in :func:`certify_independence`.
_BLOCK_ENTRIES = 1 << 20


def _view_columns(a: np.ndarray, c0: int, c1: int) -> np.ndarray:
    return a[:, c0:c1]


def _times_power_of_two(x: np.ndarray, rows: np.ndarray, cols: np.ndarray | None = None
                        ) -> np.ndarray:
    """x[m, j] 2^(rows[m] + cols[j]), equal value for value to ``np.ldexp`` with those
    exponents: one multiplication by the double 2^(rows[m] + cols[j]) (an exact product of the
    doubles 2^rows[m] and 2^cols[j] when both and their product are normal), which is exact
    unless the result is subnormal or overflows, and then rounded to nearest as ldexp rounds.
    Other exponents take ldexp itself (a few times slower)."""
    cols = np.zeros(x.shape[1], dtype=rows.dtype) if cols is None else cols
    lo, hi = int(rows.min()) + int(cols.min()), int(rows.max()) + int(cols.max())
    if (min(lo, int(rows.min()), int(cols.min())) < -1022
            or max(hi, int(rows.max()), int(cols.max())) > 1023):
        return np.ldexp(x, rows[:, None] + cols[None, :])
    return x * np.multiply.outer(np.ldexp(1.0, rows), np.ldexp(1.0, cols))


def _statement(certified: bool, lower: float, method: str, rows: int, N: int, d: int) -> str:
    how = ("Arb ball arithmetic" if method == "arb" else
           f"a float64 error bound with all orders, assuming libm exp/log/log1p within "
           f"{LIBM_ULPS} ulps")
    if not certified:
        return (f"Nothing is proved: no positive lower bound on sigma_min of the "
                f"{rows} x {N + d + 1} matrix [1, Z, F] was found ({how}).")
    return (f"For the stored binary64 parameters and the {rows} probes taken as exact reals, "
            f"the {rows} x {N + d + 1} matrix [1, Z, F] with F[m, i] = LSE_i(z_m) - <z_m, c_i> "
            f"(power-of-two row/column scaling) has smallest singular value >= {lower:.3g} > 0 "
            f"(entries by {how}; verification in IEEE float64 with Higham's gamma_k bounds), so "
            f"the {N} LSE functions are linearly independent modulo affine functions.")


#: Bytes the certificate holds per entry of its M' x (N + d + 1) matrix and per entry of its
#: (N + d + 1)^2 factors, besides the enclosure's block temporaries
#: (:data:`ntkcheck.injectivity.certify.SCRATCH_BYTES`). At most three M' x n arrays live at
#: once (mid, rad and [1, Z, F]; then rad, [1, Z, F] and A; then A and C = A Y, or A and the
#: Householder QR's copy): tracemalloc measured 23 bytes per entry beyond the scratch
#: (N = 1500, d = 16, M' = 3100, both factorisation paths); 32 leaves a third for the
#: allocator.
CERT_BYTES_PER_ENTRY = 4 * 8

CERT_BYTES_PER_SQUARE = 3 * 8


def rigorous_certificate(dataset: Dataset, feats: FeatureMatrix, geom, seed: int,
                         max_memory: int | None = None, progress: Progress | None = None
                         ) -> dict:
    """The rigorous lower bound on sigma_min of :mod:`ntkcheck.injectivity.certify` on the
    test's probes (when the data's hull is lower-dimensional, each probe also gets a random
    component along the complement of the hull, of its own scale, so that [1, Z] has full
    column rank; any probes are valid for the certificate).

    When the features were streamed, its memory (about ``CERT_BYTES_PER_ENTRY`` M' n +
    ``CERT_BYTES_PER_SQUARE`` n^2 bytes, n = N + d + 1) must fit in what ``max_memory``
    (default: half the machine) leaves beside what the process already holds (its resident
    size: the tokens and their packed copies, the streamed R factor, the probes): it runs on
    the first M' rows that fit (dropping probe rows only lowers singular values, so the
    certificate stays valid), at least n + n / 4 of them; if even those do not fit it is not
    attempted (``certified`` False, with the reason)."""
    z = feats.probes.z
    extra = geom.complement.shape[1] if geom.complement is not None else 0
    if extra:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xCE27]))
        g = rng.standard_normal((len(z), extra)) * feats.probes.scale[:, None]
        z = z + g @ geom.complement.T
    rows = None
    if feats.perp is None:
        limit = default_max_memory() if max_memory is None else int(max_memory)
        held = resources.resident_bytes()
        n = len(dataset) + z.shape[1] + 1
        fit = int((limit - held - CERT_BYTES_PER_SQUARE * n * n - SCRATCH_BYTES)
                  // (CERT_BYTES_PER_ENTRY * n))
        need = n + -(-n // 4)
        if fit < min(need, len(z)):
            need_bytes = (CERT_BYTES_PER_ENTRY * need * n + CERT_BYTES_PER_SQUARE * n * n
                          + SCRATCH_BYTES)
            return {"certified": False, "method": "rigorous certificate",
                    "reason": f"not attempted: it needs about {format_bytes(need_bytes)} for "
                              f"{need} probe rows, over the {format_bytes(max(limit - held, 0))}"
                              f" the memory limit of {format_bytes(limit)} leaves beside the "
                              f"{format_bytes(held)} already held"}
        if fit < len(z):
            rows = np.arange(fit)
    enclosure = None
    if not extra and feats.values is not None and feats.source is not None:
        # the features pass's values with a bound on the algorithm that computed them
        rad = pass_radii(dataset.distributions, feats.source.distributions, z,
                         feats.centres, feats.values)
        enclosure = None if rad is None else (feats.values, rad)
    cert = certify_independence(dataset.distributions, z, centre=feats.centres,
                                row_weights=1.0 / feats.probes.scale, rows=rows,
                                progress=progress, enclosure=enclosure)
    out = cert.to_dict()
    out.pop("row_indices", None)  # the probes are reproducible from the seed; keep JSON small
    out["enclosure"] = cert.method
    out["method"] = "rigorous certificate"
    out["complement_probes"] = bool(extra)
    return out
