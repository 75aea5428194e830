"""Wording shared by the renderers: one sentence per dependency, per finding and per verdict."""

from __future__ import annotations

from ..injectivity.dependencies import Dependency
from ..results import AnalysisResult

__all__ = ["dependency_identity", "dependency_tag", "dependency_evidence", "involved",
           "summary_line"]


def dependency_identity(dep: Dependency) -> str:
    """The relation as text: the exact certificate's identity when proven, else the numerical
    fit (``LSE[b] - LSE[a] = -1/2*z1 + z2``)."""
    if dep.exact and dep.certificate:
        return str(dep.certificate["identity"])
    return dep.describe()


def dependency_tag(dep: Dependency) -> str:
    """How the relation was checked: ``exact; 50-digit check 9.8e-52``, ``exact: structural
    screen``, ``re-checked at fresh points, 50 digits: misfit 3e-52``..."""
    if dep.exact and dep.certificate:
        return f"exact; {dep.certificate['check']['digits']}-digit check {dep.residual:.1e}"
    v = dep.verification or {}
    if v.get("method") == "structural screen":
        return ("exact: structural screen" if v.get("level") == "exact" else
                "structural screen: equal up to the rounding of the stored values")
    if "digits" in v:
        return f"re-checked at fresh points, {v['digits']} digits: misfit {v['misfit']:.1e}"
    return "exact" if dep.exact else f"residual {dep.residual:.1e}"


def dependency_evidence(dep: Dependency) -> str:
    """Evidence of one relation: ``exact`` when proven exactly (symbolic test or exact equality
    of the stored values), else ``numerical``."""
    return "exact" if dep.exact else "numerical"


def involved(dep: Dependency) -> list[str]:
    """Names of the sequences with a non-zero coefficient in ``dep``, in dataset order."""
    return list(dep.coefficients)


def summary_line(result: AnalysisResult) -> str:
    """``not_injective (numerical evidence): 2 dependencies among 30 distributions``."""
    evidence = f" ({result.evidence} evidence)" if result.evidence else ""
    n = result.n_distributions
    if result.verdict == "not_injective":
        k = len(result.dependencies)
        what = f"{k} dependenc{'y' if k == 1 else 'ies'} among {n} distributions"
    elif result.verdict == "injective":
        what = f"the LSE functions of the {n} distributions are independent modulo affine functions"
    else:
        what = result.reason
    return f"{result.verdict}{evidence}: {what}"
