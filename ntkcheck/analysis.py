"""``analyze``: the injectivity verdict for a dataset, with its evidence (SPEC §3, §3a, §4, §7).

The orchestrator: it calls the steps of :mod:`ntkcheck.injectivity` in data-flow order (screen,
geometry, probes, plan, features, spectrum, summary, decide, combine) and assembles the
:class:`~ntkcheck.results.AnalysisResult`. The decision is documented where it is made:
:mod:`ntkcheck.injectivity.decide` (dense test), :mod:`ntkcheck.injectivity.combine` (screen,
exact test).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from . import neardep
from .arrays import as_dataset
from .dataset import Dataset
from .errors import InputError, ResourceError
from .exact import ExactBudget
from .injectivity.combine import (DEFAULT_EXACT_TIMEOUT, EXACT_MODES, exact_mode, screen_and_core,
                                  screen_core_not_run, screen_only, with_exact,
                                  with_input_rounding)
from .injectivity.decide import INCONCLUSIVE, INJECTIVE, NOT_INJECTIVE, Decision, decide_dense
from .injectivity.dependencies import structural_dependencies
from .injectivity.plan import SPECTRUM_MODES, DenseOptions, dense_plan, describe_estimate
from .injectivity.probes import auto_scales, make_probes, make_whitening, probe_settings
from .injectivity.screen import core_dataset
from .injectivity.screen import screen as structural_screen
from .injectivity.spectrum import compute_spectrum
from .injectivity.stream import compute_features
from .injectivity.summary import (MAX_PAIRS, NearOptions, core_near_dependency, gram_summary,
                                  with_structure)
from .progress import Progress, ProgressUpdate
from .results import AnalysisResult

if TYPE_CHECKING:
    from .arrays import DataLike

__all__ = ["AnalysisResult", "analyze", "suggest_drop", "INJECTIVE", "NOT_INJECTIVE",
           "INCONCLUSIVE", "EXACT_MODES", "DEFAULT_EXACT_TIMEOUT", "SPECTRUM_MODES"]


def analyze(data: "DataLike", *, names: Sequence[str] | None = None, weights: Any = None,
            lengths: Any = None, mask: Any = None, probes: int | None = None,
            scales: Sequence[float] | None = None, seed: int = 0,
            whiten: bool = True, exact: str = "auto",
            exact_timeout: float | None = DEFAULT_EXACT_TIMEOUT, exact_engine: str = "auto",
            exact_budget: ExactBudget | None = None,
            progress: Progress | None = None, stream: bool | None = None,
            backend: str = "local", scheduler: str | None = None, client: Any = None,
            max_memory: int | None = None, spectrum: str = "auto",
            embeddings: Any = None, max_pairs: int | None = MAX_PAIRS) -> AnalysisResult:
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
        (:func:`ntkcheck.injectivity.probes.auto_scales`).
    seed : int
        Seed of the first probe draw; the confirmation draw uses seed + 1.
    whiten : bool
        Whiten with the pooled mean and covariance (always reduces to the affine hull).
    exact : "auto" | "always" | "never"
        The exact test of SPEC §4 (:mod:`ntkcheck.injectivity.combine`): ``auto`` runs it when the
        data are rational and within budget, ``always`` also reports why it could not run (and
        raises InputError when a value is not an exact rational), ``never`` skips it.
    exact_timeout : float or None
        Seconds allowed to the exact test (default DEFAULT_EXACT_TIMEOUT); None: no limit.
    exact_engine : "auto" | "flint" | "sympy"
        Engine of the exact test (auto: python-flint when installed).
    exact_budget : ExactBudget, optional
        Size limits of the exact test.
    progress : callable(str), optional
        Receives a short message at the start of each stage, and as long stages advance; the
        messages are :class:`ntkcheck.progress.ProgressUpdate` strings with ``stage``,
        ``done`` / ``total`` (for a fraction and an ETA) and ``kind`` (``"estimate"``: the
        dense test's time and memory estimate, before it starts).
    stream : bool or None
        Streamed dense test with bounded memory (:func:`ntkcheck.injectivity.
        stream.streamed_feature_matrix`): None (default) when the in-memory test would exceed
        ``max_memory`` (:func:`ntkcheck.resources.analysis_bytes`), or forced on / off.
    backend : "local" | "dask"
        Where the streamed probe blocks are computed and folded (``dask`` streams always).
    scheduler : str, optional
        Dask scheduler address (``tcp://host:8786``) for ``backend="dask"``; or pass ``client``;
        with neither, a local cluster sized to the machine runs the test and is closed after.
    max_memory : int, optional
        Refuse (ResourceError) when the dense test's estimated peak exceeds this many bytes
        (default: the ``--max-memory`` default, :func:`ntkcheck.resources.default_max_memory`).
    spectrum : "auto" | "full" | "partial"
        Singular values the dense test computes: ``full`` every one (an N x N
        bidiagonalisation, 8/3 N^3 flops at level-2 BLAS speed), ``partial`` the
        :data:`ntkcheck.injectivity.spectrum.PARTIAL_COUNT` smallest and an estimate of the largest
        (O(N^2) per iteration; the verdict, the relations and the certificate are the same, the Gram
        summary lists only the computed eigenvalues), ``auto`` partial beyond
        :data:`ntkcheck.injectivity.spectrum.FULL_SPECTRUM_MAX_N` columns.
    max_pairs : int or None
        Near pairs listed in ``near_dependency`` (closest first; None: all); every pair is
        counted and in the near ``sets`` whatever the cap (:mod:`ntkcheck.injectivity.summary`).

    embeddings : (V, d) float array or a table file ``FILE[:NAME]``, optional
        The embedding table when ``data`` are token IDs (a list of integer sequences or a
        token-ID file, :func:`ntkcheck.arrays.as_dataset`); the features then cost M (V d + T)
        (:mod:`ntkcheck.vocabulary`).

    Returns
    -------
    AnalysisResult

    Warns
    -----
    NtkcheckWarning
        When the exact and numerical tests disagree (a bug; the verdict is then inconclusive).
    """
    dataset = as_dataset(data, names=names, weights=weights, lengths=lengths, mask=mask,
                         embeddings=embeddings)
    say = progress or (lambda msg: None)
    mode = exact_mode(exact)
    if exact_timeout is not None and not (exact_timeout > 0):
        raise InputError(f"must be a positive number of seconds, got {exact_timeout}",
                         field="exact_timeout")
    near = NearOptions.checked(max_pairs)
    dense = DenseOptions.checked(stream, backend, scheduler, client, max_memory, spectrum,
                                 None if mode == "never" else (dataset, exact_engine, exact_budget))
    with dense.session() as dense:  # a local Dask cluster, if one is needed, closed after
        numerical = _analyze_numerical(dataset, probes, scales, seed, whiten, say, dense, near)
    if mode != "never":
        numerical = with_exact(numerical, dataset, mode, exact_timeout, exact_engine,
                               exact_budget, progress, dense.exact_cost)
    return with_input_rounding(numerical, dataset.rounded_inputs)


def suggest_drop(data: "DataLike", **options: Any) -> neardep.DropSuggestion:
    """:func:`ntkcheck.neardep.suggest_drop` with :func:`analyze` as its analysis (same
    arguments: ``result``, ``margin``, ``max_rounds``, names / weights / lengths / mask and the
    options of :func:`analyze`)."""
    return neardep.suggest_drop(data, analyze=analyze, **options)


def _analyze_numerical(dataset: Dataset, probes: int | None, scales: Sequence[float] | None,
                       seed: int, whiten: bool, say: Progress, dense: DenseOptions = DenseOptions(),
                       near: NearOptions = NearOptions()) -> AnalysisResult:
    """Structural screen, then the dense test on the core (SPEC §7), combined."""
    if seed < 0:
        raise InputError(f"must be a non-negative integer, got {seed}", field="seed")
    say("structural screen")
    scr = structural_screen(dataset, say)
    findings = scr.diracs + scr.classes
    structural = tuple(structural_dependencies(scr, dataset))
    empty = {"probes": 0, "scales": [], "seed": seed, "whitening": whiten}
    cap = near.max_pairs
    if not scr.core:
        return _assemble(dataset, screen_only(scr, structural), findings,
                         {**empty, "core_size": 0, "affine_hull_dim": 0, "probe_law": "gaussian"},
                         **with_structure(None, findings, dataset.names, cap))
    if scr.reductions == 0:
        core = _dense_test(dataset, probes, scales, seed, whiten, say, dense, near)
        return replace(core, findings=findings,
                       settings={**core.settings, "core_size": len(dataset)},
                       **with_structure(core.near_dependency, findings, dataset.names, cap))
    core_ds = core_dataset(dataset, scr)
    n_core = len(core_ds)
    say(f"dense test on the core ({n_core} of {len(dataset)} distributions)")
    try:
        reps = frozenset(dataset.names[c.members[0]] for c in scr.classes)
        core = _dense_test(core_ds, probes, scales, seed, whiten, say, dense,
                           replace(near, representatives=reps))
    except ResourceError as err:
        return _assemble(dataset, screen_core_not_run(scr, n_core, err.reason, structural),
                         findings, {**empty, "core_size": n_core, "core_verdict": "not_run",
                                    "rank_upper_bound": True,
                                    "affine_hull_dim": make_whitening(core_ds, whiten).rank,
                                    "probe_law": "gaussian"},
                         **with_structure(None, findings, dataset.names, cap))
    both = screen_and_core(scr, n_core, Decision(core.verdict, core.evidence, core.reason,
                                                 core.dependencies), structural)
    return replace(core, verdict=both.verdict, evidence=both.evidence, reason=both.reason,
                   names=dataset.names, dependencies=both.dependencies, findings=findings,
                   settings={**core.settings, "core_size": n_core,
                             "core_verdict": core.verdict, "core_evidence": core.evidence},
                   **with_structure(core.near_dependency, findings, dataset.names, cap))


def _dense_test(dataset: Dataset, probes: int | None, scales: Sequence[float] | None,
                seed: int, whiten: bool, say: Progress, dense: DenseOptions = DenseOptions(),
                near_options: NearOptions = NearOptions()) -> AnalysisResult:
    """The rank / SVD decision of SPEC §3 and §3a on one dataset (no screen)."""
    N, d = len(dataset), dataset.dim
    say("geometry")
    geom = make_whitening(dataset, whiten, say)
    mode = "auto" if scales is None else "given"
    scales, M = probe_settings(auto_scales(geom) if scales is None else scales, probes, N, d)
    settings = {"probes": M, "scales": list(scales), "scales_mode": mode, "seed": seed,
                "whitening": whiten, "affine_hull_dim": geom.rank, "probe_law": "gaussian",
                "hull_tolerance": geom.hull_tolerance,
                "equilibration": [int(np.frexp(s)[1] - 1) for s in geom.scaling]}

    estimate, stream_options, redraw_options = dense_plan(dataset, geom, M, dense)
    settings["estimate"] = estimate
    say(ProgressUpdate(describe_estimate(estimate, M, N), stage="estimate", kind="estimate",
                       data=estimate))
    say(ProgressUpdate(f"features ({M} probes x {N} distributions"
                       + (", streamed)" if stream_options else ")"), stage="features"))
    feats = compute_features(dataset, geom, make_probes(geom, M, scales, seed), stream_options,
                             say)
    if feats.stream is not None:
        settings["stream"] = {k: (float(v) if isinstance(v, float) else v)
                              for k, v in feats.stream.items()
                              if k != "timings" and not (isinstance(v, float) and np.isnan(v))}
    partial = dense.partial(N, M)
    say("partial spectrum" if partial else "SVD")
    spec = compute_spectrum(feats, partial, say)
    sv = spec.singular_values
    if partial:
        settings["spectrum"] = {"mode": "partial", "requested": dense.spectrum,
                                "computed": int(sv.shape[0]),
                                "largest_estimate": float(spec.largest or 0.0)}
    say("summary")
    summary = gram_summary(spec, dataset.names, M)
    # scores (when the spectrum gives them), near pairs and their sets
    near = core_near_dependency(spec, feats, dataset, near_options)
    dec = decide_dense(dataset, geom, feats, spec, M=M, scales=scales, seed=seed,
                       stream_options=redraw_options, partial=partial,
                       max_memory=dense.max_memory, say=say)
    return AnalysisResult(dec.verdict, dec.evidence, dec.reason, dataset.names, d, dec.rank, sv,
                          spec.tolerance, spec.noise, dec.dependencies, (), settings, dec.redraw,
                          spectrum=summary, verification=dec.verification,
                          near_dependency=near)


def _assemble(dataset: Dataset, dec: Decision, findings: tuple, settings: dict,
              **near: Any) -> AnalysisResult:
    """The result of a verdict reached without a dense test (no singular values)."""
    return AnalysisResult(dec.verdict, dec.evidence, dec.reason, dataset.names, dataset.dim,
                          dec.rank, np.zeros(0), 0.0, 0.0, dec.dependencies, findings, settings,
                          **near)
