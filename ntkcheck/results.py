"""How result objects show themselves: a short ``repr``, an HTML table for notebooks, and
``from_dict`` (the inverse of ``to_dict``) for :class:`~ntkcheck.AnalysisResult` and
:class:`~ntkcheck.KernelSpectrum`.

``from_dict`` reads the JSON document a result wrote (``to_dict()``, or ``analyze --json``
output, whose extra keys ``schema_version`` and ``file`` are ignored) and rebuilds an equal
result: ``type(r).from_dict(r.to_dict()).to_dict() == r.to_dict()``. Keys it does not know are
ignored, so documents written by newer versions still load.
"""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

import numpy as np

from .injectivity.decide import INCONCLUSIVE, INJECTIVE, NOT_INJECTIVE
from .injectivity.dependencies import Dependency

__all__ = ["AnalysisResult", "AnalysisDisplay", "SpectrumDisplay", "dependency_from_dict",
           "INJECTIVE", "NOT_INJECTIVE", "INCONCLUSIVE", "EXIT_BELOW_MARGIN"]

#: Exit code of ``analyze --fail-below`` when the verdict is injective but the margin is not met.
EXIT_BELOW_MARGIN = 6

A = TypeVar("A", bound="AnalysisDisplay")
S = TypeVar("S", bound="SpectrumDisplay")


def _g(x: float) -> str:
    return f"{x:.3g}"


def _table(title: str, rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                   f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table><caption>{html.escape(title)}</caption>{body}</table>"


def dependency_from_dict(doc: Mapping[str, Any]) -> "Dependency":
    """A :class:`~ntkcheck.Dependency` from its ``to_dict()`` (``affine`` unpacked)."""

    values: dict[str, Any] = {}
    for f in dataclasses.fields(Dependency):
        if f.name == "constant":
            values[f.name] = float(doc["affine"]["constant"])
        elif f.name == "linear":
            values[f.name] = tuple(float(x) for x in doc["affine"]["linear"])
        elif f.name == "affine_tolerance":
            values[f.name] = float(doc["affine"].get("tolerance", 0.0))
        elif f.name == "coefficients":
            values[f.name] = {str(k): float(v) for k, v in doc["coefficients"].items()}
        elif f.name in doc:
            values[f.name] = doc[f.name]
    return Dependency(**values)


def _largest(r: Any) -> str:
    """The largest singular value, or its estimate on a partial spectrum (settings)."""
    part = (r.settings or {}).get("spectrum", {})
    if part.get("mode") == "partial":
        return (f"about {_g(float(part['largest_estimate']))} (partial spectrum: "
                f"{part['computed']} smallest computed)")
    return _g(float(r.singular_values[0]))


class AnalysisDisplay:
    """repr / HTML / from_dict of :class:`~ntkcheck.AnalysisResult`."""

    def __repr__(self) -> str:
        r: Any = self
        evidence = f", {r.evidence} evidence" if r.evidence else ""
        deps = len(r.dependencies)
        text = (f"AnalysisResult({r.verdict}{evidence}: {r.n_distributions} distributions in "
                f"R^{r.dim}, rank {r.rank}, smallest singular value "
                f"{_g(float(r.singular_values[-1])) if r.singular_values.size else 'n/a'}")
        if deps:
            first = r.dependencies[0].describe()
            text += f", {deps} dependenc{'y' if deps == 1 else 'ies'}: {first}"
            text += ", ..." if deps > 1 else ""
        return text + ")"

    def _repr_html_(self) -> str:
        r: Any = self
        rows = [("verdict", r.verdict + (f" ({r.evidence} evidence)" if r.evidence else "")),
                ("reason", r.reason),
                ("data", f"{r.n_distributions} distributions in R^{r.dim}"),
                ("rank", f"{r.rank}/{r.n_distributions}"),
                ("singular values", f"largest {_largest(r)}, smallest "
                                    f"{_g(float(r.singular_values[-1]))}"
                 if r.singular_values.size else "none (empty core)"),
                ("round-off", f"level {_g(r.noise)}, certification bound {_g(r.tolerance)}")]
        rows += [(f"dependency {j}", d.describe()) for j, d in enumerate(r.dependencies, 1)]
        rows += [("structure", f.describe()) for f in r.findings]
        return _table("ntkcheck.analyze", rows)

    @classmethod
    def from_dict(cls: type[A], doc: Mapping[str, Any]) -> A:
        """The result that wrote ``doc`` (see the module docstring)."""
        from .injectivity.findings import DiracFinding, TranslateClass

        renamed = {"redraw_singular_values": "redraw", "structure": "findings"}
        values: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        for key, value in doc.items():
            name = renamed.get(key, key)
            if name not in names:
                continue
            if name in ("singular_values", "redraw"):
                value = None if value is None else np.asarray(value, dtype=np.float64)
            elif name == "names":
                value = tuple(value)
            elif name == "dependencies":
                value = tuple(dependency_from_dict(d) for d in value)
            elif name == "findings":
                diracs = tuple(DiracFinding(f["index"], f["name"], tuple(f["point"]),
                                            f["evidence"]) for f in value["diracs"])
                classes = tuple(TranslateClass(tuple(c["members"]), tuple(c["names"]),
                                               tuple(tuple(t) for t in c["shifts"]),
                                               tuple(c["parents"]), tuple(c["evidence"]),
                                               c["family"]) for c in value["classes"])
                value = diracs + classes
            elif name == "settings":
                value = dict(value)
            values[name] = value
        return cls(**values)


class SpectrumDisplay:
    """repr / HTML / from_dict of :class:`~ntkcheck.KernelSpectrum`."""

    def __repr__(self) -> str:
        s: Any = self
        cond = s.condition_number
        return (f"KernelSpectrum({s.kernel}: {len(s.names)} eigenvalues, smallest "
                f"{_g(s.min_eigenvalue)}, largest {_g(s.max_eigenvalue)}, condition number "
                f"{_g(cond) if np.isfinite(cond) else 'inf'}, numerical rank "
                f"{s.numerical_rank}/{len(s.names)})")

    def _repr_html_(self) -> str:
        s: Any = self
        vec = sorted(s.min_eigenvector.items(), key=lambda kv: -abs(kv[1]))[:5]
        rows = [("kernel", s.kernel),
                ("eigenvalues", f"{len(s.names)}, smallest {_g(s.min_eigenvalue)}, largest "
                                f"{_g(s.max_eigenvalue)}"),
                ("tolerance", _g(s.tolerance)),
                ("condition number", _g(s.condition_number)),
                ("effective rank", _g(s.effective_rank)),
                ("numerical rank", f"{s.numerical_rank}/{len(s.names)}"),
                ("weakest direction", ", ".join(f"{n} {v:+.3f}" for n, v in vec))]
        return _table("ntkcheck.kernel_spectrum", rows)

    @classmethod
    def from_dict(cls: type[S], doc: Mapping[str, Any]) -> S:
        """The spectrum that wrote ``doc = spectrum.to_dict(arrays=True)`` (the matrix and the
        eigenvectors are needed; the default ``to_dict()`` omits them)."""
        missing = [k for k in ("matrix", "eigenvectors", "coefficient_scale") if k not in doc]
        if missing:
            raise ValueError(f"the document has no {', '.join(missing)}; write it with "
                             "to_dict(arrays=True)")
        return cls(kernel=doc["kernel"], names=tuple(doc["names"]),  # type: ignore[call-arg]
                   matrix=np.asarray(doc["matrix"], dtype=np.float64),
                   eigenvalues=np.asarray(doc["eigenvalues"], dtype=np.float64),
                   eigenvectors=np.asarray(doc["eigenvectors"], dtype=np.float64),
                   tolerance=float(doc["tolerance"]),
                   coefficient_scale=np.asarray(doc["coefficient_scale"], dtype=np.float64),
                   settings=dict(doc["settings"]))


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
        span of the others modulo affine functions (0 = dependent;
        :mod:`ntkcheck.injectivity.summary`)
    near_dependency : the lowest scores with the sequences they are closest to, near pairs,
        the scaled smallest singular value (:mod:`ntkcheck.injectivity.summary`)
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
        """JSON-ready dictionary (the ``--json`` schema, docs/json.md)."""
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
