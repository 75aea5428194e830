"""The verdict from all the evidence: the structural screen's relations with the dense test on
the core (SPEC §7), then the exact test (SPEC §4).

The structural screen's reductions are dependencies whatever the core does: with any, the
verdict is ``not_injective`` (``exact`` evidence when one holds exactly), and the core's dense
test tells whether they are all the dependencies.

Then the exact test of SPEC §4 (:mod:`ntkcheck.exact`), by ``exact=``:

``auto`` (default)
    run it when the case is within the :class:`~ntkcheck.exact.ExactBudget` and
    ``exact_timeout`` (values are exact: spec decimals as written, floats as their binary64
    values); otherwise keep the numerical result (the JSON ``exact`` field says why it was
    skipped). When the numerical evidence is already ``certified`` and the exact test's own
    estimate (:func:`ntkcheck.exact.estimate_exact`) says it cannot finish within
    ``exact_timeout``, it is not started: ``exact`` is ``{"status": "skipped", "kind":
    "estimate", "reason", "estimate"}`` (it could only confirm a proven verdict, and would
    spend its whole time limit first).
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


Results are merged with :func:`dataclasses.replace`: any frozen result with the fields
``verdict``, ``evidence``, ``reason``, ``dependencies``, ``exact`` and ``disagreement``
(:class:`ntkcheck.results.AnalysisResult`) works.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Callable, TypeVar

from ..dataset import Dataset
from ..errors import InputError, NtkcheckWarning
from ..exact import ExactBudget, ExactCheckFailed, ExactRefused, ExactResult, decide
from ..exact.cost import ExactCost
from ..progress import Progress
from .decide import INCONCLUSIVE, INJECTIVE, NOT_INJECTIVE, Decision
from .dependencies import Dependency
from .findings import ScreenResult

__all__ = ["EXACT_MODES", "DEFAULT_EXACT_TIMEOUT", "exact_mode", "with_exact", "screen_only",
           "screen_core_not_run", "screen_and_core", "with_input_rounding"]

#: Modes of the exact test (see the module docstring).
EXACT_MODES = ("auto", "always", "never")
#: Default time limit of the exact test, seconds.
DEFAULT_EXACT_TIMEOUT = 30.0

R = TypeVar("R")


def screen_only(scr: ScreenResult, structural: tuple[Dependency, ...]) -> Decision:
    """Every distribution is a Dirac mass or a class member: the screen alone decides."""
    return Decision(
        NOT_INJECTIVE, "exact" if scr.exact_reductions else "numerical",
        f"the structural screen finds {_count(scr.reductions)} and every distribution is "
        "a Dirac mass or a member of a class", structural, 0)


def screen_core_not_run(scr: ScreenResult, core_size: int, why: str,
                        structural: tuple[Dependency, ...]) -> Decision:
    """The screen's relations settle the verdict; the core's dense test (which could add more)
    did not fit the memory limit (``why``). The rank is then an upper bound."""
    return Decision(
        NOT_INJECTIVE, "exact" if scr.exact_reductions > 0 else "numerical",
        f"the structural screen finds {_count(scr.reductions)} ({scr.exact_reductions} "
        f"exact); the dense test on the core of {core_size} was not run, so there may be "
        f"more: {why}", structural, core_size)


def screen_and_core(scr: ScreenResult, core_size: int, core: Decision,
                    structural: tuple[Dependency, ...]) -> Decision:
    """The screen's reductions with the verdict of the dense test on the core."""
    if core.verdict == NOT_INJECTIVE:
        tail = f"the dense test on the core adds {_count(len(core.dependencies))}"
    elif core.verdict == INJECTIVE:
        tail = (f"the core of {core_size} is injective ({core.evidence}), so these are all the "
                "dependencies")
    else:
        tail = (f"the dense test on the core of {core_size} is inconclusive ({core.reason}), so "
                "there may be more")
    reason = (f"the structural screen finds {_count(scr.reductions)} ({scr.exact_reductions} "
              f"exact); {tail}")
    return replace(core, verdict=NOT_INJECTIVE,
                   evidence="exact" if scr.exact_reductions > 0 else "numerical", reason=reason,
                   dependencies=tuple(structural) + core.dependencies)


def exact_mode(exact: str) -> str:
    if exact not in EXACT_MODES:
        raise InputError(f"is {exact!r}; choose one of {', '.join(EXACT_MODES)}", field="exact")
    return exact


def with_exact(numerical: R, dataset: Dataset, mode: str, timeout: float | None,
               engine: str, budget: ExactBudget | None, progress: Progress | None,
               cost: Callable[[], ExactCost] | None = None) -> R:
    """Run the exact test and merge it with the numerical result (module docstring); ``cost``
    gives its estimate (for ``auto``'s skip rule)."""
    skip = _skip_reason(numerical, mode, timeout, cost)
    if skip is not None:
        return replace(numerical, exact=skip)
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


def _skip_reason(numerical, mode: str, timeout: float | None,
                 cost: Callable[[], ExactCost] | None) -> dict | None:
    """The ``exact`` record of an ``auto`` test not started (module docstring), or None."""
    if mode != "auto" or timeout is None or cost is None or numerical.evidence != "certified":
        return None
    c = cost()
    if c.refused is not None or not c.seconds > timeout:
        return None  # a budget refusal costs nothing: the test gives its own reason
    how = "at least" if c.lower_bound else "about"
    return {"status": "skipped", "mode": mode, "kind": "estimate",
            "reason": f"the numerical evidence is certified and the exact test would take "
                      f"{how} {c.seconds:.3g} s (estimated from {c.sample} distributions), "
                      f"over its time limit of {timeout:g} s; --exact always runs it (with a "
                      "larger --exact-timeout)",
            "estimate": c.to_dict()}


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


def _disagree(numerical: R, message: str, info: dict, exact_verdict: str) -> R:
    warnings.warn(message, NtkcheckWarning, stacklevel=3)
    record = {"message": message, "exact": exact_verdict, "numerical": numerical.verdict,
              "numerical_evidence": numerical.evidence,
              "numerical_dependencies": len(numerical.dependencies)}
    if info.get("status") == "decided":
        record["exact_dependencies"] = len(info["dependencies"])
    return replace(numerical, verdict=INCONCLUSIVE, evidence=None, reason=message, exact=info,
                   disagreement=record)


def with_input_rounding(result: R, rounded: dict[str, tuple[str, ...]]) -> R:
    """The result, saying which written values are not binary64 numbers (``rounded``: name ->
    fields, :attr:`ntkcheck.Dataset.rounded_inputs`): ``settings["rounded_inputs"]`` and a
    sentence in the reason. The numerical test saw their nearest doubles; every printed relation
    was re-checked on the written values and the certificate encloses them."""
    if not rounded:
        return result
    names = ", ".join(f"{n} ({', '.join(f)})" for n, f in list(rounded.items())[:5])
    more = f" and {len(rounded) - 5} more" if len(rounded) > 5 else ""
    note = (f"; values of {names}{more} are not binary64 numbers: the numerical test used their "
            "nearest doubles, relations are re-checked and certificates hold for the values as "
            "written")
    settings = {**result.settings, "rounded_inputs": {n: list(f) for n, f in rounded.items()}}
    return replace(result, reason=result.reason + note, settings=settings)
