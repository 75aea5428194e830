"""Exact symbolic test of the injectivity condition for rational data (SPEC §4).

``decide(dataset)`` returns an :class:`ExactResult`: the verdict ``rank(E) = N`` of the exponent
matrix of the non-affine irreducible factors of exp(LSE_i), a reduced-echelon basis of exact
dependencies (each re-checked with mpmath at 50 digits), or the proof of independence. It raises
:class:`ExactRefused` (with ``reason`` and ``kind``) when the case is over the
:class:`ExactBudget`, out of time (the test then runs in a child process killed at the deadline),
or has a value that cannot be used exactly. Modules: :mod:`.laws` (exact parameters: what the user
wrote), :mod:`.engines` (python-flint / sympy), :mod:`.matrix` (rank and null space of E),
:mod:`.verify` (the high-precision re-check), :mod:`.worker` (the child process that enforces the
time limit), :mod:`.procedure` (the decision procedure), :mod:`.cost` (its time and memory,
estimated before it runs).
"""

from .procedure import ExactBudget, ExactDependency, ExactResult, decide
from .cost import ExactCost, estimate_exact
from .engines import ENGINE_ENV, ENGINES
from .errors import REFUSAL_KINDS, ExactCheckFailed, ExactRefused
from .laws import ExactLaw, exact_laws

__all__ = ["decide", "estimate_exact", "ExactCost", "ExactBudget", "ExactDependency", "ExactResult", "ExactRefused",
           "ExactCheckFailed", "ExactLaw", "exact_laws", "ENGINES", "ENGINE_ENV",
           "REFUSAL_KINDS"]
