"""``analyze``: the injectivity verdict for a dataset, with its evidence (SPEC §3).

Decision procedure (thresholds defined in :mod:`ntkcheck.rank`):

1. sigma_min > delta (rigorous round-off bound)            -> ``injective``, ``certified``.
2. all sigma >= GAP * tau on this draw and on a redraw     -> ``injective``, ``numerical``.
3. k singular values <= tau, the others >= GAP * tau, and on a redraw of the probes (seed + 1)
   again exactly k values <= tau with the first draw's null vectors still <= tau
                                                            -> ``not_injective``, ``numerical``,
   with the dependencies as a reduced-echelon basis.
4. anything else (no gap, or unstable under redraw)        -> ``inconclusive``.

Then the exact test of SPEC §4 (:mod:`ntkcheck.exact`), by ``exact=``:

``auto`` (default)
    run it when every parameter is an exact rational and the case is within the
    :class:`~ntkcheck.exact.ExactBudget` and ``exact_timeout``; otherwise keep the numerical
    result (the JSON ``exact`` field says why it was skipped).
``always``
    the same, but a value that is not an exact rational (or a missing requested engine) is an
    InputError (CLI exit 2); a case over budget or out of time keeps the numerical verdict and
    the reason is reported.
``never``
    numerical test only (``exact`` field absent).

When the exact test decides, its verdict, ``evidence = "exact"`` and its verified dependencies
replace the numerical ones; it settles an inconclusive numerical verdict. When both tests are
decisive they must agree (same verdict, same number of dependencies). A disagreement, or an exact
certificate failing its 50-digit re-check, is a bug: the verdict becomes ``inconclusive`` (exit
3), the ``disagreement`` field records both answers, and an :class:`NtkcheckWarning` is issued.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .arrays import as_dataset
from .dataset import Dataset
from .errors import InputError, NtkcheckWarning
from .exact import ExactBudget, ExactCheckFailed, ExactRefused, ExactResult, decide
from .features import (DEFAULT_SCALES, FeatureMatrix, Whitening, feature_matrix, make_probes,
                       make_whitening, probe_settings)
from .kernels import condition_number, effective_rank
from .prescreen import Finding, prescreen
from .results import AnalysisDisplay
from .rank import GAP, Dependency, Spectrum, fit_dependency, null_space_basis, svd_spectrum

if TYPE_CHECKING:
    from .arrays import DataLike

__all__ = ["AnalysisResult", "analyze", "INJECTIVE", "NOT_INJECTIVE", "INCONCLUSIVE", "EXACT_MODES",
           "DEFAULT_EXACT_TIMEOUT"]

INJECTIVE, NOT_INJECTIVE, INCONCLUSIVE = "injective", "not_injective", "inconclusive"

#: Modes of the exact test (see the module docstring).
EXACT_MODES = ("auto", "always", "never")
#: Default time limit of the exact test, seconds.
DEFAULT_EXACT_TIMEOUT = 30.0

Progress = Callable[[str], None]


@dataclass(frozen=True, repr=False)
class AnalysisResult(AnalysisDisplay):
    """Verdict of the injectivity test with everything that supports it.

    Attributes
    ----------
    verdict : "injective" | "not_injective" | "inconclusive"
    evidence : "exact" | "certified" | "numerical" (None when inconclusive)
    reason : one sentence explaining the verdict
    names, dim : the dataset's names and dimension d
    rank : numerical rank of F_perp (singular values above tau)
    singular_values : (N,) descending
    tolerance : delta, the rigorous round-off bound on F_perp
    noise : tau, the round-off level
    dependencies : a sparse basis of the dependency space
    findings : pre-screen facts (Dirac, duplicate, translate)
    settings : probes, scales, seed, whitening, affine-hull dimension
    redraw : singular values of the confirmation draw, when one was made
    exact : the exact test's summary (``status`` "decided" or "skipped", engine, D, variables,
        rank and shape of E, timings, proof) or None when it was not attempted
    disagreement : both answers when the exact and numerical tests disagree (a bug), else None
    """

    verdict: str
    evidence: str | None
    reason: str
    names: tuple[str, ...]
    dim: int
    rank: int
    singular_values: np.ndarray
    tolerance: float
    noise: float
    dependencies: tuple[Dependency, ...]
    findings: tuple[Finding, ...]
    settings: dict
    redraw: np.ndarray | None = None
    exact: dict | None = field(default=None)
    disagreement: dict | None = field(default=None)
    spectrum: dict | None = field(default=None)

    @property
    def n_distributions(self) -> int:
        return len(self.names)

    @property
    def exit_code(self) -> int:
        """0 injective, 1 not injective, 3 inconclusive (the CLI's exit codes)."""
        return {INJECTIVE: 0, NOT_INJECTIVE: 1, INCONCLUSIVE: 3}[self.verdict]

    def to_dict(self) -> dict:
        """JSON-ready dictionary (the ``--json`` schema of the README)."""
        sv = self.singular_values
        out = {
            "verdict": self.verdict,
            "evidence": self.evidence,
            "reason": self.reason,
            "n_distributions": self.n_distributions,
            "dim": self.dim,
            "rank": self.rank,
            "singular_values": [float(x) for x in sv],
            "smallest_singular_value": float(sv[-1]) if sv.size else 0.0,
            "tolerance": self.tolerance,
            "noise": self.noise,
            "names": list(self.names),
            "dependencies": [d.to_dict() for d in self.dependencies],
            "prescreen": [f.to_dict() for f in self.findings],
            "settings": dict(self.settings),
        }
        if self.redraw is not None:
            out["redraw_singular_values"] = [float(x) for x in self.redraw]
        if self.exact is not None:
            out["exact"] = self.exact
        if self.disagreement is not None:
            out["disagreement"] = self.disagreement
        if self.spectrum is not None:
            out["spectrum"] = self.spectrum
        return out


def analyze(data: "DataLike", *, names: Sequence[str] | None = None, weights: Any = None,
            lengths: Any = None, mask: Any = None, probes: int | None = None, scales: Sequence[float] = DEFAULT_SCALES, seed: int = 0,
            whiten: bool = True, exact: str = "auto",
            exact_timeout: float | None = DEFAULT_EXACT_TIMEOUT, exact_engine: str = "auto",
            exact_budget: ExactBudget | None = None,
            progress: Progress | None = None) -> AnalysisResult:
    """Test whether the LSE functions of ``data`` are independent modulo affine functions.

    Parameters
    ----------
    data : Dataset, sequence of Distribution, token array (N, n, d), list of (n_i, d) arrays,
        or an object with ``__array__``
        The distributions mu_1..mu_N (all on one R^d); see :func:`ntkcheck.arrays.as_dataset`.
    names : sequence of str, optional
        Names (default ``mu0, mu1, ...`` for distributions, ``seq0, seq1, ...`` for tokens).
    weights, lengths, mask : optional
        Token weights and padding of token arrays, as in the ``.npz`` format.
    probes : int, optional
        Number M of probe points; default max(2 (N + d + 1), 256).
    scales : sequence of float
        Probe scales after whitening (probes split evenly), default (1, 3, 10, 30).
    seed : int
        Seed of the first probe draw; the confirmation draw uses seed + 1.
    whiten : bool
        Whiten with the pooled mean and covariance (always reduces to the affine hull).
    exact : "auto" | "always" | "never"
        The exact test of SPEC §4 (see the module docstring): ``auto`` runs it when the data
        are rational and within budget, ``always`` also reports why it could not run (and
        raises InputError when a value is not an exact rational), ``never`` skips it.
    exact_timeout : float or None
        Seconds allowed to the exact test (default DEFAULT_EXACT_TIMEOUT); None: no limit.
    exact_engine : "auto" | "flint" | "sympy"
        Engine of the exact test (auto: python-flint when installed).
    exact_budget : ExactBudget, optional
        Size limits of the exact test.
    progress : callable(str), optional
        Receives a short message at the start of each stage.

    Returns
    -------
    AnalysisResult

    Warns
    -----
    NtkcheckWarning
        When the exact and numerical tests disagree (a bug; the verdict is then inconclusive).
    """
    dataset = as_dataset(data, names=names, weights=weights, lengths=lengths, mask=mask)
    say = progress or (lambda msg: None)
    mode = _exact_mode(exact)
    if exact_timeout is not None and not (exact_timeout > 0):
        raise InputError(f"must be a positive number of seconds, got {exact_timeout}",
                         field="exact_timeout")
    numerical = _analyze_numerical(dataset, probes, scales, seed, whiten, say)
    if mode == "never":
        return numerical
    return _with_exact(numerical, dataset, mode, exact_timeout, exact_engine, exact_budget,
                       progress)


def _analyze_numerical(dataset: Dataset, probes: int | None, scales: Sequence[float], seed: int,
                       whiten: bool, say: Progress) -> AnalysisResult:
    """The rank / SVD decision of SPEC §3 (steps 1-4 of the module docstring)."""
    N, d = len(dataset), dataset.dim
    scales, M = probe_settings(scales, probes, N, d)
    say("pre-screen")
    findings = tuple(prescreen(dataset))
    say("whitening")
    white = make_whitening(dataset, whiten)
    settings = {"probes": M, "scales": list(scales), "seed": seed, "whitening": whiten,
                "affine_hull_dim": white.rank, "probe_law": "gaussian"}

    say(f"features ({M} probes x {N} distributions)")
    feats = feature_matrix(dataset, white, make_probes(white, M, scales, seed))
    say("SVD")
    spec = svd_spectrum(feats)
    sv = spec.singular_values
    rank = int(np.sum(sv > spec.noise))

    summary = gram_summary(spec, dataset.names, M)

    def result(verdict, evidence, reason, deps=(), redraw=None):
        return AnalysisResult(verdict, evidence, reason, dataset.names, d, rank, sv,
                              spec.tolerance, spec.noise, tuple(deps), findings, settings, redraw,
                              spectrum=summary)

    if M < N + white.rank + 1:
        return result(INCONCLUSIVE, None,
                      f"only {M} probes for {N} distributions and {white.rank + 1} affine "
                      f"functions; increase --probes to at least {N + white.rank + 1}")
    if spec.smallest > spec.tolerance:
        return result(INJECTIVE, "certified",
                      f"smallest singular value {spec.smallest:.3g} exceeds the rigorous "
                      f"round-off bound {spec.tolerance:.3g}")
    k = spec.null_dim
    lowest_nonnull = sv[N - k - 1] if k < N else np.inf
    if lowest_nonnull < GAP * spec.noise:
        return result(INCONCLUSIVE, None,
                      f"singular value {lowest_nonnull:.3g} lies in the grey zone between the "
                      f"round-off level {spec.noise:.3g} and {GAP:g}x it; try --exact, more "
                      "--probes or other --scales")
    say("confirmation draw")
    feats2 = feature_matrix(dataset, white, make_probes(white, M, scales, seed + 1))
    spec2 = svd_spectrum(feats2)
    sv2 = spec2.singular_values
    k2 = spec2.null_dim
    lowest2 = sv2[N - k2 - 1] if k2 < N else np.inf
    if k2 != k or lowest2 < GAP * spec2.noise:
        return result(INCONCLUSIVE, None,
                      f"the number of round-off singular values changed from {k} to {k2} when "
                      "the probes were redrawn; try --exact or more --probes", redraw=sv2)
    if k == 0:
        return result(INJECTIVE, "numerical",
                      f"smallest singular value {spec.smallest:.3g} is far above the round-off "
                      f"level {spec.noise:.3g} on two probe draws, but below the rigorous bound "
                      f"{spec.tolerance:.3g}", redraw=sv2)
    null = spec.right_vectors()[:, N - k:]
    if not _stable_on(null, feats, feats2, spec2.noise):
        return result(INCONCLUSIVE, None,
                      "the near-dependencies of the first probe draw do not hold on a second "
                      "draw; try --exact or more --probes", redraw=sv2)
    say("dependencies")
    deps = _dependencies(null, feats, white, dataset.names)
    return result(NOT_INJECTIVE, "numerical",
                  f"{k} singular value(s) at round-off level (<= {spec.noise:.3g}), "
                  "stable under a redraw of the probes"
                  + (f", the next {lowest_nonnull:.3g}" if k < N else ""),
                  deps, redraw=sv2)


def gram_summary(spec: Spectrum, names: Sequence[str], probes: int) -> dict:
    """Spectrum summary of the feature Gram G = F_perp^T F_perp / M (SPEC §5) from the test's SVD.

    Eigenvalues sigma^2 / M ascending, tolerance tau^2 / M (the round-off level), condition
    number lambda_max / lambda_min ("inf" when lambda_min <= tolerance), effective rank
    (sum lambda)^2 / sum lambda^2, and the unit eigenvector of the smallest eigenvalue by name
    (columns normalised: the direction that nearly breaks the condition).
    """
    lam = spec.singular_values[::-1] ** 2 / probes
    tol = spec.noise**2 / probes
    cond = condition_number(lam, tol)
    vec = spec.smallest_right_vector()
    vec = vec * np.sign(vec[np.argmax(np.abs(vec))])
    return {"kernel": "gram", "eigenvalues": [float(x) for x in lam],
            "min_eigenvalue": float(lam[0]), "max_eigenvalue": float(lam[-1]),
            "condition_number": cond if np.isfinite(cond) else "inf",
            "effective_rank": effective_rank(lam),
            "numerical_rank": int(np.sum(lam > tol)), "tolerance": float(tol),
            "min_eigenvector": {n: float(x) for n, x in zip(names, vec)}}


def _stable_on(null: np.ndarray, f1: FeatureMatrix, f2: FeatureMatrix, noise2: float) -> bool:
    """Do the null vectors of draw 1 (normalised coordinates) annihilate F_perp of draw 2?"""
    # same original coefficients c = null / nu1, in draw-2 normalised coordinates c * nu2;
    # affine (zeroed) columns have nu = 0 in F_perp terms and keep their entry
    ok = (f1.col_norms > 0) & (f2.col_norms > 0)
    ratio = np.divide(f2.col_norms, f1.col_norms, out=np.ones_like(f1.col_norms), where=ok)
    coef2 = null * ratio[:, None]
    coef2 /= np.linalg.norm(coef2, axis=0)
    return bool(np.all(np.linalg.norm(f2.perp @ coef2, axis=0) <= noise2))


def _dependencies(null: np.ndarray, feats: FeatureMatrix, white: Whitening,
                  names: tuple[str, ...]) -> list[Dependency]:
    # echelon form in normalised coordinates (supports do not depend on the column scaling);
    # fit_dependency converts back to the distributions' own scale
    basis = null_space_basis(null)
    return [fit_dependency(row, feats, white.centre, names) for row in basis]


def _exact_mode(exact: str) -> str:
    if exact not in EXACT_MODES:
        raise InputError(f"is {exact!r}; choose one of {', '.join(EXACT_MODES)}", field="exact")
    return exact


def _with_exact(numerical: AnalysisResult, dataset: Dataset, mode: str, timeout: float | None,
                engine: str, budget: ExactBudget | None,
                progress: Progress | None) -> AnalysisResult:
    """Run the exact test and merge it with the numerical result (module docstring)."""
    (progress or (lambda msg: None))("exact test")
    try:
        ex = decide(dataset, engine=engine, budget=budget, timeout=timeout, progress=progress)
    except ExactRefused as err:
        if mode == "always" and err.kind in ("not_rational", "unsupported", "engine"):
            raise InputError(f"the exact test cannot run: {err.reason}", field="exact") from None
        return replace(numerical, exact={"status": "skipped", "mode": mode, "kind": err.kind,
                                         "reason": err.reason})
    except ExactCheckFailed as err:
        return _disagree(numerical, str(err), {"status": "failed", "mode": mode,
                                               "reason": str(err)}, "failed re-check")
    info = {**ex.to_dict(), "mode": mode,
            "dependencies": [d.certificate(ex.names) for d in ex.dependencies]}
    nullity = len(ex.names) - ex.rank
    agree = numerical.verdict == INCONCLUSIVE or (
        numerical.verdict == ex.verdict
        and (ex.injective or len(numerical.dependencies) == nullity))
    if not agree:
        num_k = len(numerical.dependencies)
        message = (f"the exact test ({ex.verdict}, {_count(nullity)}) and the numerical test "
                   f"({numerical.verdict}, {_count(num_k)}) disagree; this is a bug in "
                   "ntkcheck, please report it with the input file")
        return _disagree(numerical, message, info, ex.verdict)
    if numerical.verdict == INCONCLUSIVE:
        note = "; it settles the inconclusive numerical test"
    else:
        note = f"; the numerical test agrees ({numerical.evidence} evidence)"
    deps = tuple(_as_dependency(d, ex) for d in ex.dependencies)
    return replace(numerical, verdict=ex.verdict, evidence="exact", reason=ex.reason() + note,
                   dependencies=deps, exact=info)


def _count(k: int) -> str:
    return f"{k} dependency" if k == 1 else f"{k} dependencies"


def _as_dependency(dep, ex: ExactResult) -> Dependency:
    names = ex.names
    return Dependency({n: float(c) for n, c in zip(names, dep.coefficients) if c},
                      dep.constant_value, tuple(float(b) for b in dep.linear),
                      dep.check_residual, exact=True, certificate=dep.certificate(names))


def _disagree(numerical: AnalysisResult, message: str, info: dict,
              exact_verdict: str) -> AnalysisResult:
    warnings.warn(message, NtkcheckWarning, stacklevel=3)
    record = {"message": message, "exact": exact_verdict, "numerical": numerical.verdict,
              "numerical_evidence": numerical.evidence,
              "numerical_dependencies": len(numerical.dependencies)}
    if info.get("status") == "decided":
        record["exact_dependencies"] = len(info["dependencies"])
    return replace(numerical, verdict=INCONCLUSIVE, evidence=None, reason=message, exact=info,
                   disagreement=record)
