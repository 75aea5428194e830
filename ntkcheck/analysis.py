"""``analyze``: the injectivity verdict for a dataset, with its evidence (SPEC §3, §3a, §7).

Decision procedure:

0. Structural screen (:mod:`ntkcheck.injectivity.screen`): Dirac masses, duplicates and
   translates, each a dependency (exact, or up to the rounding of the stored values); the dense
   test runs on the *core* (one representative per class, Diracs removed), and the nullity is
   the number of reductions plus the core's.
1. Geometry and probes (:mod:`ntkcheck.injectivity.geometry`, :mod:`ntkcheck.features`):
   unit-invariant hull and whitening, probe scales matched to every distribution's spread.
2. M < N + r + 1 probes                                      -> ``inconclusive``.
3. full rank beyond the fast path's error bound and the rigorous certificate of
   :mod:`ntkcheck.injectivity.certify` holds                -> ``injective``, ``certified``.
4. Singular values against the round-off level tau(v) of their own singular vectors
   (:func:`ntkcheck.rank.classify_singular_values`): any value in [tau, GAP tau)
                                                            -> ``inconclusive`` (grey zone).
5. none at round-off, and again every value >= GAP tau on a redraw (seed + 1; only its
   smallest singular triplets are computed when they clear GAP x the bound of every level)
                                                            -> ``injective``, ``numerical``.
6. k values at round-off: k candidate relations (reduced echelon basis, refined on their
   support), each re-checked in extended precision at fresh points
   (:mod:`ntkcheck.injectivity.verify`); those that hold are printed
                                                            -> ``not_injective``, ``numerical``;
   if none holds                                            -> ``inconclusive``.

Then the exact test of SPEC §4 (:mod:`ntkcheck.exact`), by ``exact=``:

``auto`` (default)
    run it when the case is within the :class:`~ntkcheck.exact.ExactBudget` and
    ``exact_timeout`` (values are exact: spec decimals as written, floats as their binary64
    values); otherwise keep the numerical result (the JSON ``exact`` field says why it was
    skipped).
``always``
    the same, but an unsupported input (or a missing requested engine) is an InputError (CLI
    exit 2); a case over budget or out of time keeps the numerical verdict with the reason.
``never``
    numerical test only (``exact`` field absent).

When the exact test decides, its verdict, ``evidence = "exact"`` and its verified dependencies
replace the numerical ones; it settles an inconclusive numerical verdict. When both tests are
decisive they must agree: the same verdict, and no more exactly-holding numerical relations
than the exact nullity (relations that hold only up to the rounding of the float values may
vanish for the exact values). A disagreement, or an exact certificate failing its 50-digit
re-check, is a bug: the verdict becomes ``inconclusive`` (exit 3), the ``disagreement`` field
records both answers, and an :class:`NtkcheckWarning` is issued.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import scipy.linalg

from .arrays import as_dataset
from .dataset import Dataset
from .errors import InputError, NtkcheckWarning, ResourceError
from .exact import ExactBudget, ExactCheckFailed, ExactRefused, ExactResult, decide
from .features import (FeatureMatrix, ProgressUpdate, auto_scales, feature_matrix, make_probes,
                       make_whitening, probe_settings, stream_applies, stream_block_rows,
                       streamed_feature_matrix)
from .injectivity.certify import SCRATCH_BYTES as CERT_SCRATCH
from .injectivity.certify import certify_independence
from .injectivity.verify import affine_part, verify_relation
from .kernels import condition_number, effective_rank
from .injectivity.screen import screen as structural_screen
from .neardep import EXIT_BELOW_MARGIN, core_near_dependency, with_structure
from .rank import (FULL_SPECTRUM_MAX_N, GAP, PARTIAL_COUNT, Dependency, Spectrum,
                   classify_singular_values,
                   fit_dependency, partial_spectrum, refit_affine_part,
                   null_space_basis, svd_spectrum)
from .results import AnalysisDisplay

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
    findings : the structural screen's Dirac masses and classes of duplicates / translates
    settings : probes, scales, seed, whitening, affine-hull dimension
    redraw : singular values of the confirmation draw, when one was made
    exact : the exact test's summary (``status`` "decided" or "skipped", engine, D, variables,
        rank and shape of E, timings, proof) or None when it was not attempted
    disagreement : both answers when the exact and numerical tests disagree (a bug), else None
    scores : {name: score} in [0, 1], distance of each sequence's normalised LSE column to the
        span of the others modulo affine functions (0 = dependent; :mod:`ntkcheck.neardep`)
    near_dependency : the lowest scores with the sequences they are closest to, near pairs,
        the scaled smallest singular value (:mod:`ntkcheck.neardep`)
    margin : set by :func:`ntkcheck.neardep.apply_margin` (``--fail-below``), else None
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
    findings: tuple
    settings: dict
    redraw: np.ndarray | None = None
    exact: dict | None = field(default=None)
    disagreement: dict | None = field(default=None)
    spectrum: dict | None = field(default=None)
    verification: dict | None = field(default=None)
    scores: dict | None = field(default=None)
    near_dependency: dict | None = field(default=None)
    margin: dict | None = field(default=None)

    @property
    def n_distributions(self) -> int:
        return len(self.names)

    def structure_dict(self) -> dict:
        """The structural screen's findings: Dirac masses and classes (one entry per class of
        duplicates or translates, however large), with the number of relations they give."""
        diracs = [f.to_dict() for f in self.findings if f.to_dict()["kind"] == "dirac"]
        classes = [f.to_dict() for f in self.findings if f.to_dict()["kind"] != "dirac"]
        relations = len(diracs) + sum(c["relations"] for c in classes)
        exact = (sum(d["evidence"] == "exact" for d in diracs)
                 + sum(e == "exact" for c in classes for e in c["evidence"][1:]))
        return {"reductions": relations, "exact_reductions": exact,
                "core_size": self.settings.get("core_size", len(self.names)),
                "diracs": diracs, "classes": classes}

    @property
    def exit_code(self) -> int:
        """0 injective, 1 not injective, 3 inconclusive (the CLI's exit codes); 6 injective but
        below the margin of :func:`ntkcheck.neardep.apply_margin` (``--fail-below``)."""
        if self.verdict == INJECTIVE and self.margin and self.margin.get("below"):
            return EXIT_BELOW_MARGIN
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
            "structure": self.structure_dict(),
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
        if self.verification is not None:
            out["verification"] = self.verification
        if self.scores is not None:
            out["scores"] = dict(self.scores)
        if self.near_dependency is not None:
            out["near_dependency"] = self.near_dependency
        if self.margin is not None:
            out["margin"] = self.margin
        return out


def analyze(data: "DataLike", *, names: Sequence[str] | None = None, weights: Any = None,
            lengths: Any = None, mask: Any = None, probes: int | None = None,
            scales: Sequence[float] | None = None, seed: int = 0,
            whiten: bool = True, exact: str = "auto",
            exact_timeout: float | None = DEFAULT_EXACT_TIMEOUT, exact_engine: str = "auto",
            exact_budget: ExactBudget | None = None,
            progress: Progress | None = None, stream: bool | None = None,
            backend: str = "local", scheduler: str | None = None, client: Any = None,
            max_memory: int | None = None, spectrum: str = "auto") -> AnalysisResult:
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
        Number M of probe points; default max(2 (N + d + 1), 64 x number of scales).
    scales : sequence of float, optional
        Probe scales after whitening (probes split evenly); default: (1, 3, 10, 30) plus scales
        matched to distributions much tighter or wider than the pool
        (:func:`ntkcheck.features.auto_scales`).
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
        Receives a short message at the start of each stage, and as long stages advance; the
        messages are :class:`ntkcheck.features.ProgressUpdate` strings with ``stage``,
        ``done`` / ``total`` (for a fraction and an ETA) and ``kind`` (``"estimate"``: the
        dense test's time and memory estimate, before it starts).
    stream : bool or None
        Streamed dense test with bounded memory (:func:`ntkcheck.features.
        streamed_feature_matrix`): None (default) when the M x N feature matrix would exceed
        :data:`ntkcheck.features.STREAM_THRESHOLD_BYTES`, or forced on / off.
    backend : "local" | "dask"
        Where the streamed probe blocks are computed and folded (``dask`` streams always).
    scheduler : str, optional
        Dask scheduler address (``tcp://host:8786``) for ``backend="dask"``; or pass ``client``.
    max_memory : int, optional
        Refuse (ResourceError) when the dense test's estimated peak exceeds this many bytes
        (default: the ``--max-memory`` default, :func:`ntkcheck.resources.default_max_memory`).
    spectrum : "auto" | "full" | "partial"
        Singular values the dense test computes: ``full`` every one (an N x N
        bidiagonalisation, 8/3 N^3 flops at level-2 BLAS speed), ``partial`` the
        :data:`ntkcheck.rank.PARTIAL_COUNT` smallest and an estimate of the largest (O(N^2) per
        iteration; the verdict, the relations and the certificate are the same, the Gram
        summary lists only the computed eigenvalues), ``auto`` partial beyond
        :data:`ntkcheck.rank.FULL_SPECTRUM_MAX_N` columns.

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
    if backend not in ("local", "dask"):
        raise InputError(f"unknown backend '{backend}'; choose local or dask", field="backend")
    if spectrum not in SPECTRUM_MODES:
        raise InputError(f"unknown spectrum mode {spectrum!r}; choose one of "
                         + ", ".join(SPECTRUM_MODES), field="spectrum")
    if backend == "dask":
        from .backends.dask import _distributed
        _distributed()  # a clear InputError when dask is missing
        if client is None and not scheduler:
            raise InputError("give a scheduler address (e.g. tcp://host:8786) or a client",
                             field="scheduler")
        stream = True
    dense = _DenseOptions(stream, backend, scheduler, client, max_memory, spectrum)
    numerical = _analyze_numerical(dataset, probes, scales, seed, whiten, say, dense)
    if mode == "never":
        return numerical
    return _with_exact(numerical, dataset, mode, exact_timeout, exact_engine, exact_budget,
                       progress)


@dataclass(frozen=True)
class _DenseOptions:
    """How the dense test runs (never what it decides): streaming, backend, memory limit."""

    stream: bool | None = None
    backend: str = "local"
    scheduler: str | None = None
    client: Any = None
    max_memory: int | None = None
    spectrum: str = "auto"

    def partial(self, N: int, M: int) -> bool:
        """Whether the dense test of N columns and M probes computes a partial spectrum."""
        wanted = self.spectrum == "partial" or (self.spectrum == "auto"
                                                and N > FULL_SPECTRUM_MAX_N)
        return wanted and M >= N


#: Values of ``analyze(spectrum=...)`` and ``--spectrum``.
SPECTRUM_MODES = ("auto", "full", "partial")


def _analyze_numerical(dataset: Dataset, probes: int | None, scales: Sequence[float] | None,
                       seed: int, whiten: bool, say: Progress,
                       dense: _DenseOptions = _DenseOptions()) -> AnalysisResult:
    """Structural screen, then the dense test on the core (SPEC §7), combined."""
    if seed < 0:
        raise InputError(f"must be a non-negative integer, got {seed}", field="seed")
    say("structural screen")
    scr = structural_screen(dataset)
    findings = scr.diracs + scr.classes
    structural = _structural_dependencies(scr, dataset)
    if not scr.core:
        near = with_structure(None, findings, dataset.names)
        return AnalysisResult(
            NOT_INJECTIVE, "exact" if scr.exact_reductions else "numerical",
            f"the structural screen finds {_count(scr.reductions)} and every distribution is "
            "a Dirac mass or a member of a class", dataset.names, dataset.dim, 0, np.zeros(0),
            0.0, 0.0, tuple(structural), findings,
            {"probes": 0, "scales": [], "seed": seed, "whitening": whiten, "core_size": 0,
             "affine_hull_dim": 0, "probe_law": "gaussian"}, **near)
    if scr.reductions == 0:
        core = _dense_test(dataset, probes, scales, seed, whiten, say, dense)
        return replace(core, findings=findings,
                       settings={**core.settings, "core_size": len(dataset)},
                       **with_structure(core.near_dependency, findings, dataset.names))
    idx = list(scr.core)
    core_ds = Dataset(tuple(dataset.names[i] for i in idx),
                      tuple(dataset.distributions[i] for i in idx), dataset.source)
    say(f"dense test on the core ({len(idx)} of {len(dataset)} distributions)")
    exact = scr.exact_reductions > 0
    try:
        core = _dense_test(core_ds, probes, scales, seed, whiten, say, dense)
    except ResourceError as err:
        # the screen's relations already settle the verdict: report them, and that the
        # core's dense test (which could add more) did not fit the memory limit
        near = with_structure(None, findings, dataset.names)
        return AnalysisResult(
            NOT_INJECTIVE, "exact" if exact else "numerical",
            f"the structural screen finds {_count(scr.reductions)} ({scr.exact_reductions} "
            f"exact); the dense test on the core of {len(idx)} was not run, so there may be "
            f"more: {err.reason}", dataset.names, dataset.dim, len(idx), np.zeros(0), 0.0, 0.0,
            tuple(structural), findings,
            {"probes": 0, "scales": [], "seed": seed, "whitening": whiten,
             "core_size": len(idx), "core_verdict": "not_run", "rank_upper_bound": True,
             "affine_hull_dim": make_whitening(core_ds, whiten).rank,
             "probe_law": "gaussian"}, **near)
    if core.verdict == NOT_INJECTIVE:
        tail = f"the dense test on the core adds {_count(len(core.dependencies))}"
    elif core.verdict == INJECTIVE:
        tail = (f"the core of {len(idx)} is injective ({core.evidence}), so these are all the "
                "dependencies")
    else:
        tail = (f"the dense test on the core of {len(idx)} is inconclusive ({core.reason}), so "
                "there may be more")
    reason = (f"the structural screen finds {_count(scr.reductions)} ({scr.exact_reductions} "
              f"exact); {tail}")
    return replace(core, verdict=NOT_INJECTIVE, evidence="exact" if exact else "numerical",
                   reason=reason, names=dataset.names,
                   dependencies=tuple(structural) + core.dependencies, findings=findings,
                   settings={**core.settings, "core_size": len(idx),
                             "core_verdict": core.verdict, "core_evidence": core.evidence},
                   **with_structure(core.near_dependency, findings, dataset.names))


def _structural_dependencies(scr, dataset: Dataset) -> list[Dependency]:
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


#: Parallel folds (one R factor each) are used only while their extra factors take at most
#: this fraction of the memory limit (``_dense_plan``).
PARALLEL_FOLD_MEMORY_FRACTION = 0.125


def _dense_plan(dataset: Dataset, geom, M: int, dense: _DenseOptions) -> tuple[dict, dict]:
    """(estimate, feature options): whether the test streams, its blocks and workers, and the
    estimated time and memory (:mod:`ntkcheck.injectivity.estimate`, :mod:`ntkcheck.resources`),
    checked against ``dense.max_memory``."""
    from .backends.local import have_threadpoolctl, usable_cores
    from .features import _entry_scales
    from .injectivity.estimate import estimate_streaming
    from .resources import _chunk_bytes, analysis_bytes, check_memory, default_max_memory

    N, d = len(dataset), dataset.dim
    tokens = int(np.sum(_entry_scales(dataset)[3]))
    n_cols = N + geom.rank + 1
    limit = default_max_memory() if dense.max_memory is None else int(dense.max_memory)
    # automatic: stream beyond the threshold, or when the in-memory test would not fit
    streamed = M >= n_cols and (stream_applies(M, N, dense.stream) or (
        dense.stream is None and analysis_bytes(M, N, d) > limit))
    b = stream_block_rows(n_cols, M)
    workers = usable_cores() if (have_threadpoolctl() and dense.backend == "local") else 1
    while True:
        est = estimate_streaming(n_cols, d, M, max(tokens, 1), b, method="householder",
                                 workers=workers, scratch_bytes=workers * _chunk_bytes(),
                                 partial=dense.partial(N, M))
        # parallel folds each hold an R factor: worth it only while those extra factors are
        # a small part of the memory limit (one fold uses every BLAS thread at ~1.7x the
        # one-thread rate on 2 cores, so a second fold buys little and costs N^2 numbers)
        extra = 8 * (workers - 1) * n_cols**2
        if (not streamed or dense.backend != "local" or workers == 1
                or (est.peak_bytes + 8 * M * (geom.rank + d + 1) <= limit
                    and extra <= PARALLEL_FOLD_MEMORY_FRACTION * limit)):
            break
        workers -= 1
    info = {"mode": "streamed" if streamed else "in_memory", "backend": dense.backend,
            "seconds": est.seconds, "time": dict(est.time), "covers": "features, "
            "factorisation and SVD of one probe draw; a confirmation draw, when made, costs as "
            "much again; the rigorous certificate and the relation checks are not included"}
    n_cert = N + d + 1
    # the certificate (when reached) runs on the rows that fit the limit (rigorous_certificate)
    info["certificate_peak_bytes"] = int(min(
        CERT_BYTES_PER_ENTRY * M * n_cert + CERT_BYTES_PER_SQUARE * n_cert**2 + CERT_SCRATCH,
        limit))
    if streamed:
        probe_bytes = 8 * M * (geom.rank + d + 1)  # s, z and the scales, held throughout
        info.update(peak_bytes=int(est.peak_bytes + probe_bytes),
                    memory={**est.memory, "probes": probe_bytes}, block_rows=b, workers=workers)
        if dense.backend == "local":
            check_memory(info["peak_bytes"], limit,
                         f"the streamed dense test of N = {N} distributions with M = {M} probes",
                         "pass fewer --probes, shrink N, or run it on a cluster with "
                         "--backend dask --scheduler ADDRESS", field="max-memory")
        options = {"block_rows": b, "backend": dense.backend}
        if dense.backend == "local":
            options["workers"] = workers
        else:
            options.update(scheduler=dense.scheduler, client=dense.client)
    else:
        need = analysis_bytes(M, N, d)
        info.update(peak_bytes=int(need), memory={"in_memory_features": int(need)})
        check_memory(need, limit, f"the dense test of N = {N} distributions with M = {M} probes "
                     "in memory", "pass --stream (bounded memory), fewer --probes, or shrink N",
                     field="max-memory")
        options = None
    return info, options


def _features(dataset: Dataset, geom, probes, options: dict | None, say: Progress) -> FeatureMatrix:
    if options is None:
        return feature_matrix(dataset, geom, probes, progress=say)
    return streamed_feature_matrix(dataset, geom, probes, progress=say, **options)


def _dense_test(dataset: Dataset, probes: int | None, scales: Sequence[float] | None,
                seed: int, whiten: bool, say: Progress,
                dense: _DenseOptions = _DenseOptions()) -> AnalysisResult:
    """The rank / SVD decision of SPEC §3 and §3a (steps of the module docstring)."""
    N, d = len(dataset), dataset.dim
    findings: tuple = ()
    say("geometry")
    geom = make_whitening(dataset, whiten)
    mode = "auto" if scales is None else "given"
    scales, M = probe_settings(auto_scales(geom) if scales is None else scales, probes, N, d)
    settings = {"probes": M, "scales": list(scales), "scales_mode": mode, "seed": seed,
                "whitening": whiten, "affine_hull_dim": geom.rank, "probe_law": "gaussian",
                "hull_tolerance": geom.hull_tolerance,
                "equilibration": [int(np.frexp(s)[1] - 1) for s in geom.scaling]}

    estimate, stream_options = _dense_plan(dataset, geom, M, dense)
    settings["estimate"] = estimate
    say(ProgressUpdate(_describe_estimate(estimate, M, N), stage="estimate", kind="estimate",
                       data=estimate))
    say(ProgressUpdate(f"features ({M} probes x {N} distributions"
                       + (", streamed)" if stream_options else ")"), stage="features"))
    feats = _features(dataset, geom, make_probes(geom, M, scales, seed), stream_options, say)
    if feats.stream is not None:
        settings["stream"] = {k: (float(v) if isinstance(v, float) else v)
                              for k, v in feats.stream.items()
                              if k != "timings" and not (isinstance(v, float) and np.isnan(v))}
    partial = dense.partial(N, M)
    say("partial spectrum" if partial else "SVD")
    spec = _spectrum(feats, partial)
    sv = spec.singular_values
    if partial:
        settings["spectrum"] = {"mode": "partial", "requested": dense.spectrum,
                                "computed": int(sv.shape[0]),
                                "largest_estimate": float(spec.largest or 0.0)}
    summary = gram_summary(spec, dataset.names, M)
    # the scores need every singular direction (an N x N SVD) or the inverse of R: on a
    # partial spectrum only the latter, when R is well conditioned (rank.Spectrum.scores)
    near = (core_near_dependency(spec, feats, dataset) if spec.has_scores() else
            {"scores": {}, "reasons": {}, "closest": {}, "pairs": [], "method": "partial",
             "scaled_smallest_singular_value": spec.smallest})

    def result(verdict, evidence, reason, deps=(), redraw=None, rank=None, verification=None):
        rank = N - int(np.sum(sv <= spec.noise)) if rank is None else rank
        return AnalysisResult(verdict, evidence, reason, dataset.names, d, rank, sv,
                              spec.tolerance, spec.noise, tuple(deps), findings, settings, redraw,
                              spectrum=summary, verification=verification,
                              near_dependency=near)

    if M < N + geom.rank + 1:
        return result(INCONCLUSIVE, None,
                      f"only {M} probes for {N} distributions and {geom.rank + 1} affine "
                      f"functions: no rank decision is possible; increase --probes to at least "
                      f"{N + geom.rank + 1}")
    fast = _fast_certificate(spec)
    if fast is not None:
        say("rigorous certificate")
        cert = rigorous_certificate(dataset, feats, geom, seed, dense.max_memory)
        if cert["certified"]:
            return result(INJECTIVE, "certified",
                          f"rigorous certificate ({cert['enclosure']}): the smallest singular "
                          f"value of the scaled [1, Z, F] on {cert['rows']} probes is at least "
                          f"{cert['lower_bound']:.3g} > 0, so no dependency exists (smallest "
                          f"singular value of F_perp {spec.smallest:.3g})",
                          rank=N, verification=cert)
    V, tau, off = spec.tail_levels()  # vectors of the values that can be small only
    k, grey = classify_singular_values(sv, tau)
    if grey:
        j = grey[-1]
        return result(INCONCLUSIVE, None,
                      f"singular value {sv[j]:.3g} lies in the grey zone: above the round-off "
                      f"level {tau[j]:.3g} of its own direction "
                      f"({_top_names(V[:, j - off], dataset.names)})"
                      f" but below {GAP:g}x it, so neither independence nor a dependency is "
                      "established; try --exact (rational data), more --probes or other --scales",
                      rank=N - k)
    if k == 0:
        say("confirmation draw")
        feats2 = _features(dataset, geom, make_probes(geom, M, scales, seed + 1), stream_options,
                           say)
        spec2, ratio = _confirmation_ratios(feats2, partial)
        check = {"method": "confirmation draw", "seed": seed + 1,
                 "singular_values_computed": int(spec2.singular_values.shape[0]),
                 "smallest_singular_value": spec2.smallest,
                 "smallest_ratio_to_noise": float(ratio.min())}
        note = ("" if fast is None else
                f"; the rigorous certificate was not obtained ({cert['reason']})")
        if ratio.min() < GAP:
            j = int(np.argmin(ratio))
            return result(INCONCLUSIVE, None,
                          f"every singular value is far above its round-off level on the first "
                          f"probe draw (smallest {spec.smallest:.3g}), but on a redraw (seed "
                          f"{seed + 1}) singular value {spec2.singular_values[j]:.3g} is only "
                          f"{ratio[j]:.3g}x its level "
                          f"{spec2.singular_values[j] / ratio[j]:.3g}; try more --probes",
                          redraw=spec2.singular_values, rank=N, verification=check)
        return result(INJECTIVE, "numerical",
                      f"every singular value is at least {GAP:g}x the round-off level of its own "
                      f"direction on two probe draws (smallest {spec.smallest:.3g}, noise "
                      f"{tau[-1]:.3g}), but not certified{note}",
                      redraw=spec2.singular_values, rank=N, verification=check)
    say("dependencies")
    p = sv.shape[0]  # N, or the computed count of a partial spectrum
    basis = null_space_basis(V[:, V.shape[1] - k:])
    # the same rows with only round-off-level entries zeroed: when a relation's coefficient on
    # a nearly affine column (normalised, it is tiny) was cut by the sqrt(u) threshold, the
    # narrow candidate fails its re-check and the wide one is tried (it too must pass it)
    wide = null_space_basis(V[:, V.shape[1] - k:], zero_rtol=WIDE_COEF_RTOL * len(sv))
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
            a, b = affine_part([dataset.distributions[index[n]] for n in dep.coefficients],
                               np.array(list(dep.coefficients.values())))
            deps.append(replace(dep, constant=a, linear=tuple(float(x) for x in b),
                                verification=check.to_dict()))
        else:
            failed.append((dep, check))
    found = (f"{'at least ' if k == p < N else ''}{k} singular value(s) at the round-off level "
             "of their own directions"
             + (f", the next {sv[p - k - 1]:.3g} ({sv[p - k - 1] / tau[p - k - 1]:.3g}x its level)"
                if k < p else ""))
    if not failed and deps:
        return result(NOT_INJECTIVE, "numerical",
                      f"{found}; every relation re-checked at fresh points in extended precision",
                      deps, rank=N - k)
    why = ("; ".join(f"{dep.describe(4)} {chk.reason}" for dep, chk in failed[:3])
           or "no candidate relation could be formed")  # never not_injective without one
    if deps:
        return result(NOT_INJECTIVE, "numerical",
                      f"{found}; {len(deps)} relation(s) hold at fresh points in extended "
                      f"precision, {len(failed)} other candidate(s) did not and are not reported "
                      f"({why})", deps, rank=N - k)
    return result(INCONCLUSIVE, None,
                  f"{found}, but no candidate relation survives the independent re-check: "
                  f"{why}. The data are nearly dependent at double precision; try --exact "
                  "(rational data) or inspect the named distributions", rank=N - k)


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


def _confirmation_ratios(feats: FeatureMatrix, partial: bool) -> tuple[Spectrum, np.ndarray]:
    """(spectrum, sigma_j / tau(v_j)) of the confirmation draw (M >= N), at the cost of its
    smallest singular triplets: the :data:`CONFIRM_COUNT` smallest (PARTIAL_COUNT on a partial
    spectrum) with the levels of their own directions; when the largest of them clears GAP x
    the bound of every level (:meth:`Spectrum.max_vector_noise`), so does every uncomputed
    value, which is then not needed. Otherwise every singular value of the same R (full mode)
    with the levels of :meth:`Spectrum.tail_levels`."""
    spec = partial_spectrum(feats, count=PARTIAL_COUNT if partial else CONFIRM_COUNT)
    sv = spec.singular_values
    if sv.shape[0] == spec.size or sv[0] >= GAP * spec.max_vector_noise():
        return spec, sv / spec.vector_noise(spec.vectors)
    if not partial:
        R = spec.triangle
        spec = replace(spec, singular_values=scipy.linalg.svdvals(R, check_finite=False),
                       vectors=None, columns=None, largest=None)
    _, tau, _ = spec.tail_levels()
    return spec, spec.singular_values / tau


def _spectrum(feats: FeatureMatrix, partial: bool) -> Spectrum:
    """Every singular value of F_perp, or (``partial``) the smallest ones (rank.py)."""
    return partial_spectrum(feats) if partial else svd_spectrum(feats)


def _fast_certificate(spec: Spectrum) -> float | None:
    """The fast path's full-rank test: sigma_min > delta, or its per-column form (rank.py)."""
    N = spec.size
    if spec.smallest > spec.tolerance:
        return spec.smallest
    weighted = spec.weighted_smallest()
    return weighted if weighted > np.sqrt(N) * (1.0 + 4 * N * np.finfo(float).eps) else None


def _describe_estimate(est: dict, M: int, N: int) -> str:
    from .injectivity.estimate import format_seconds
    from .resources import format_bytes

    how = (f"streamed, blocks of {est['block_rows']} probes, {est['backend']} backend"
           if est["mode"] == "streamed" else "in memory")
    return (f"estimate: dense test of {N} distributions x {M} probes ({how}): about "
            f"{format_seconds(est['seconds'])} per probe draw, peak memory about "
            f"{format_bytes(est['peak_bytes'])}")


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
                         max_memory: int | None = None) -> dict:
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
        from . import resources
        from .resources import default_max_memory, format_bytes

        limit = default_max_memory() if max_memory is None else int(max_memory)
        held = resources.resident_bytes()
        n = len(dataset) + z.shape[1] + 1
        fit = int((limit - held - CERT_BYTES_PER_SQUARE * n * n - CERT_SCRATCH)
                  // (CERT_BYTES_PER_ENTRY * n))
        need = n + -(-n // 4)
        if fit < min(need, len(z)):
            need_bytes = (CERT_BYTES_PER_ENTRY * need * n + CERT_BYTES_PER_SQUARE * n * n
                          + CERT_SCRATCH)
            return {"certified": False, "method": "rigorous certificate",
                    "reason": f"not attempted: it needs about {format_bytes(need_bytes)} for "
                              f"{need} probe rows, over the {format_bytes(max(limit - held, 0))}"
                              f" the memory limit of {format_bytes(limit)} leaves beside the "
                              f"{format_bytes(held)} already held"}
        if fit < len(z):
            rows = np.arange(fit)
    cert = certify_independence(dataset.distributions, z, centre=feats.centres,
                                row_weights=1.0 / feats.probes.scale, rows=rows)
    out = cert.to_dict()
    out.pop("row_indices", None)  # the probes are reproducible from the seed; keep JSON small
    out["enclosure"] = cert.method
    out["method"] = "rigorous certificate"
    out["complement_probes"] = bool(extra)
    return out


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
    # relations that hold exactly on the float values (structural exact ones, and dense ones
    # re-checked to 1e-25) must be exact relations too; those that hold only up to the rounding
    # of the stored float values may vanish for the exact values the user wrote
    firm = [d for d in numerical.dependencies
            if (d.verification or {}).get("level", "exact") == "exact"]
    rounded_only = numerical.verdict == NOT_INJECTIVE and not firm and ex.injective
    agree = numerical.verdict == INCONCLUSIVE or rounded_only or (
        numerical.verdict == ex.verdict and len(firm) <= nullity)
    if not agree:
        num_k = len(numerical.dependencies)
        message = (f"the exact test ({ex.verdict}, {_count(nullity)}) and the numerical test "
                   f"({numerical.verdict}, {_count(num_k)}) disagree; this is a bug in "
                   "ntkcheck, please report it with the input file")
        return _disagree(numerical, message, info, ex.verdict)
    if numerical.verdict == INCONCLUSIVE:
        note = "; it settles the inconclusive numerical test"
    elif rounded_only:
        note = ("; the numerical relations hold only up to the rounding of the float values, "
                "and the exact values are independent")
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
                      dep.check_residual, exact=True, certificate=dep.certificate(names),
                      verification={"method": "exact symbolic test", "level": "exact",
                                    "passed": True, "check_digits": 50,
                                    "misfit": float(dep.check_residual)})


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
