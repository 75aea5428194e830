"""What the exact test (SPEC §4) will cost, before it runs: its time and memory, from a
sample of the data run through the procedure's own stages and its budget.

The procedure reads the distributions one by one (exact rational values, the degree bound of
each law against the budget), factors one polynomial per distribution, then eliminates the
exponent matrix. So:

* a law over the degree budget is refused as soon as it is read: the test costs the laws read
  before it (:func:`~ntkcheck.exact.laws.degree_lower_bound` tells, without factoring);
* otherwise reading the values costs a measured time per exact value (the first
  :data:`SAMPLE` laws are read here, in this process: pure Python, bounded), times the values
  of all N laws; factoring and the rank cost what the same sample costs in a child process
  (the real procedure, stopped after :data:`SAMPLE_SECONDS`), times N / SAMPLE. When the
  sample runs out of time the estimate is a lower bound (``lower_bound``) of at least
  SAMPLE_SECONDS x N / SAMPLE.

The elimination is linear in N when every distribution owns a factor (peeling, the generic
case) and up to cubic in the rows left after peeling; the sample sees the former only, so the
estimate is a lower bound for data with many shared factors. Memory: the exact values
(:data:`VALUE_BYTES` each: a Fraction and its two integers) and the polynomial terms
(:data:`TERM_BYTES` each plus 8 bytes per variable), held by the child process.

The sample is cheap (milliseconds for data refused by the budget, at most SAMPLE_SECONDS plus
a fork otherwise) and is taken once per analysis (:mod:`ntkcheck.analysis` caches it): the
estimate printed before the dense test and the decision to skip the exact test
(:mod:`ntkcheck.injectivity.combine`) use the same numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..dataset import Dataset
from ..distributions import Discrete, GaussianMixture
from .engines import resolve_engine
from .errors import ExactRefused
from .laws import degree_lower_bound, exact_law

__all__ = ["ExactCost", "estimate_exact", "SAMPLE", "SAMPLE_SECONDS", "VALUE_BYTES",
           "TERM_BYTES", "START_SECONDS", "PRELOAD_SECONDS"]

#: Distributions read and factored to time the exact test.
SAMPLE = 8
#: Longest time the sample's factorisation may take (then the estimate is a lower bound).
SAMPLE_SECONDS = 1.0
#: Bytes per exact value (a Fraction with its numerator and denominator, small integers being
#: shared) and per polynomial term (an exponent tuple, its coefficient and the dict slot) in
#: the child process (measured: 61 MiB for 1000 laws of 32 tokens in R^16, small integers).
VALUE_BYTES, TERM_BYTES = 100, 120
#: Time to start the child process and receive its answer (a fork, measured 10-50 ms).
START_SECONDS = 0.05
#: Time to load and warm an engine the first time in a process on an idle machine (python-flint
#: measured 0.4-0.5 s on the test machine at load 6, 0.2 s at load 2; sympy about 3 times
#: that), added until it is loaded, times the machine's load factor.
PRELOAD_SECONDS = {"flint": 0.2, "sympy": 0.7}


@dataclass(frozen=True)
class ExactCost:
    """The estimate of :func:`estimate_exact`.

    Attributes
    ----------
    seconds : expected wall time of the exact test (its engine already loaded)
    peak_bytes : memory the test's child process adds (values, polynomials)
    stages : seconds per stage (keys: :data:`ntkcheck.exact.procedure.STAGES`)
    refused : the budget refusal the test will give (it then costs ``seconds`` to give it),
        or None
    sample : distributions timed
    lower_bound : the sample ran out of time: ``seconds`` is a lower bound
    """

    seconds: float
    peak_bytes: int
    stages: dict = field(default_factory=dict)
    refused: str | None = None
    sample: int = 0
    lower_bound: bool = False

    def to_dict(self) -> dict:
        return {"seconds": self.seconds, "peak_bytes": self.peak_bytes,
                "time": dict(self.stages), "refused": self.refused, "sample": self.sample,
                "lower_bound": self.lower_bound}


def _values(dist) -> int:
    """Exact values of one law: its atoms or means (and covariances) and weights, or a box."""
    if isinstance(dist, Discrete):
        return int(dist.atoms.size + dist.weights.size)
    if isinstance(dist, GaussianMixture):
        return int(dist.means.size + dist.covariances.size + dist.weights.size)
    return int(2 * dist.dim)


def _terms(dist) -> int:
    if isinstance(dist, Discrete):
        return int(dist.atoms.shape[0])
    if isinstance(dist, GaussianMixture):
        return int(dist.means.shape[0])
    return 2 * int(dist.dim)


def estimate_exact(data: Dataset, *, engine: str = "auto", budget=None) -> ExactCost:
    """The time and memory of :func:`ntkcheck.exact.decide` on ``data`` (module docstring).

    Never raises for the data's sake: a law the test cannot read (not rational, unsupported,
    engine missing) is a refusal the test gives at once, estimated as such."""
    from .procedure import _WARM, STAGES, ExactBudget, _decide

    budget = budget or ExactBudget()
    try:
        name = resolve_engine(engine)
    except Exception as err:  # an engine that is not installed: the test refuses at once
        return ExactCost(START_SECONDS, 0, {}, str(err))
    from ..injectivity.estimate import load_factor

    start_cost = START_SECONDS + (0.0 if name in _WARM else
                                  PRELOAD_SECONDS.get(name, 0.5) * load_factor())
    max_deg = budget.max_degree if name == "flint" else budget.max_degree_sympy
    dists, names = data.distributions, data.names
    N = len(dists)
    k = min(N, SAMPLE)
    start = time.perf_counter()
    for i in range(k):
        try:
            law = exact_law(names[i], dists[i])
        except ExactRefused as err:
            return _refused(start, start_cost, err.reason)
        bound, _ = degree_lower_bound(law)
        if bound > max_deg:
            return _refused(start, start_cost,
                            f"'{names[i]}' is over the degree budget of {max_deg}")
    sample_values = sum(_values(d) for d in dists[:k])
    per_value = (time.perf_counter() - start) / max(sample_values, 1)
    values = sum(_values(d) for d in dists)
    terms = sum(_terms(d) for d in dists)
    nvars = data.dim + data.dim * (data.dim + 1) // 2 * any(
        isinstance(d, GaussianMixture) for d in dists)
    stages = {STAGES[0]: per_value * values}
    lower = False
    try:
        from .worker import run_with_deadline

        sample = Dataset(tuple(names[:k]), tuple(dists[:k]))
        result = run_with_deadline(_decide, (sample, name, budget), timeout=SAMPLE_SECONDS)
        scale = N / k
        stages[STAGES[1]] = result.timings.get("factor", 0.0) * scale
        stages[STAGES[2]] = result.timings.get("rank", 0.0) * scale
    except ExactRefused as err:
        if err.kind == "timeout":
            lower = True
            stages[STAGES[1]] = SAMPLE_SECONDS * N / k
        elif err.kind == "budget":  # e.g. too many terms: refused after the values are read
            return ExactCost(start_cost + stages[STAGES[0]], int(VALUE_BYTES * values),
                             stages, err.reason, k)
        else:
            return ExactCost(start_cost, 0, {}, err.reason, k)
    except Exception:  # the sample failed for a reason the real test will report
        pass
    seconds = start_cost + sum(stages.values())
    peak = VALUE_BYTES * values + (TERM_BYTES + 8 * nvars) * terms
    return ExactCost(float(seconds), int(peak), stages, None, k, lower)


def _refused(start: float, start_cost: float, reason: str) -> ExactCost:
    """The test refuses at the first law it cannot use: it costs that law and a start."""
    return ExactCost(start_cost + (time.perf_counter() - start), 0, {}, reason, 1)
