"""The human report: verdict first, then data, probes, spectrum, dependencies, structure.

Unreadable files are not part of it: the CLI prints their one-line errors on stderr. Names are
printed with their control characters and ``##[`` escaped, and no line starts with ``::``
(docs/safety.md).
"""

from __future__ import annotations

import numpy as np

import io
from typing import Any, Sequence

from rich.console import Console
from rich.markup import escape as _markup_escape

from ..io.escape import guard_lines
from ..results import AnalysisResult
from ..io.paths import printable
from ..injectivity.spectrum import FULL_SPECTRUM_MAX_N
from .files import FileReport
from .common import dependency_identity, dependency_tag

__all__ = ["render", "render_result"]

_STYLE = {"injective": "bold green", "not_injective": "bold red", "inconclusive": "bold yellow"}


def escape(text: object) -> str:
    """Rich markup escaped and control characters shown as escapes (one terminal line)."""
    return _markup_escape(printable(text))


def render(reports: Sequence[FileReport], *, color: bool = False) -> str:
    """Reports of every readable file, separated by a blank line (ANSI colour when ``color``)."""
    parts = [render_result(r.result, r.file, color=color, suggestion=r.suggestion)
             for r in reports if r.result is not None]
    return guard_lines("\n".join(parts))


def render_result(result: AnalysisResult, source: str, *, color: bool = False,
                  suggestion: Any = None) -> str:
    """The report of one file as text (rich markup rendered, colour only when ``color``);
    ``suggestion`` is the ``--suggest-drop`` outcome, if any."""
    buffer = io.StringIO()
    out = Console(file=buffer, force_terminal=color, no_color=not color, soft_wrap=True,
                  highlight=False, width=100)
    evidence = f" ({result.evidence} evidence)" if result.evidence else ""
    out.print(f"[{_STYLE[result.verdict]}]{result.verdict}[/]{evidence}: {escape(source)}")
    out.print(f"  {escape(result.reason)}")
    s = result.settings
    out.print(f"data      {result.n_distributions} distributions in R^{result.dim} "
              f"(affine hull dimension {s['affine_hull_dim']})")
    core = s.get("core_size", result.n_distributions)
    if core == 0:
        out.print("core      empty: every distribution is a Dirac mass or a member of a class "
                  "(structure below); no dense test")
    elif s.get("core_verdict") == "not_run":
        out.print(f"core      {core} of {result.n_distributions} distributions after the "
                  "structural screen; their dense test was not run (the reason says why): "
                  f"rank at most {result.rank}")
    else:
        out.print(f"probes    {s['probes']} Gaussian probes, scales "
                  f"{', '.join(f'{x:g}' for x in s['scales'])}, seed {s['seed']}, "
                  f"whitening {'on' if s['whitening'] else 'off'}")
        if core != result.n_distributions:
            out.print(f"core      {core} of {result.n_distributions} distributions after the "
                      "structural screen (the dense test runs on these)")
        sv = result.singular_values
        part = s.get("spectrum", {})
        largest = (f"largest about {part['largest_estimate']:.3g} (Krylov iteration), "
                   f"{part['computed']} smallest computed (partial spectrum"
                   + ("" if part.get("requested") == "partial" else
                      f", N > {FULL_SPECTRUM_MAX_N}; --spectrum full for every value")
                   + ")" if part.get("mode") == "partial" else
                   f"largest {sv[0]:.3g}")
        out.print(f"spectrum  rank {result.rank}/{core}; singular values "
                  f"{largest}, smallest {sv[-1]:.3g}; round-off level "
                  f"{result.noise:.2g}, certification bound {result.tolerance:.2g}")
        if len(sv) > 1:
            tail = ", ".join(f"{x:.3g}" for x in sv[-min(5, len(sv)):])
            out.print(f"          smallest {min(5, len(sv))}: {tail}")
    _render_gram(out, result.spectrum)
    _render_scores(out, result)
    _render_margin(out, result)
    _render_exact(out, result)
    if result.dependencies:
        out.print(f"dependencies ({len(result.dependencies)}):")
        for j, dep in enumerate(result.dependencies, 1):
            out.print(f"  {j}. {escape(dependency_identity(dep))}   "
                      f"[dim]({escape(dependency_tag(dep))})[/]")
    if result.findings:
        out.print("structure:")
        for f in result.findings:
            out.print(f"  - {escape(f.describe())}")
    if suggestion is not None:
        _render_suggestion(out, suggestion)
    return guard_lines(buffer.getvalue())


def _render_scores(out: Console, result: AnalysisResult, top: int = 3) -> None:
    """The lowest near-dependency scores outside the structure (distance of a sequence's
    normalised LSE to the span of the others modulo affine functions), one line each; the
    closest near pairs and the near sets, with counts that match the JSON document."""
    near = result.near_dependency
    if not near:
        return
    st = result.structure_dict()
    structural = len(st["diracs"]) + sum(len(c["members"]) for c in st["classes"])
    shown = [item for item in near.get("lowest", []) if item["reason"] != "structural"][:top]
    if shown:
        out.print("scores    lowest (distance to the span of the others, 1 = orthogonal, "
                  "0 = dependent; all in --json)"
                  + (f"; {structural} more at 0 from the structure below" if structural else "")
                  + ":")
    for item in shown:
        partners = ", ".join(f"{escape(p['name'])} {p['coefficient']:+.3g}"
                             for p in item["closest"])
        why = "" if item["reason"] == "dense" else escape(f" [{item['reason']}]")
        out.print(f"          {escape(item['name'])} {item['score']:.3g}{why}"
                  + (f"  closest to {partners}" if partners else ""))
    pairs = near.get("pairs", [])
    total = len(pairs) + near.get("pairs_omitted", 0)
    if pairs:
        linked = sum(len(c["members"]) - 1 for c in st["classes"])
        dense = [p for p in pairs if p["source"] == "dense"]
        listed = (f"all {total} in --json" if total == len(pairs) else
                  f"the closest {len(pairs)} in --json, --max-pairs")
        out.print(f"near pairs {total} closer than {near.get('pair_limit', 0):g} ("
                  + (f"{linked} structural at distance 0; " if linked else "")
                  + f"{listed})" + (", the closest others:" if linked and dense else ":"))
        for p in (dense or pairs)[:top]:
            a, b = (escape(n) for n in p["names"])
            extra = "" if p["source"] == "dense" else " (structural)"
            ratio = (f", ratio {p['ratio']:.4g}" if p["kind"] == "proportional" else "")
            out.print(f"          {a} ~ {b}: distance {p['distance']:.3g}, "
                      f"{p['kind'].replace('_', ' ')}{ratio}{extra}")
    sets = near.get("sets", [])
    if sets:
        size = sum(len(s["names"]) for s in sets)
        out.print(f"near sets {len(sets)} of {size} sequences joined by near pairs (all in "
                  "--json), as representative: others:")
        for s in sets[:top]:
            others = [n for n in s["names"] if n != s["representative"]]
            more = f" (+{len(others) - 6} more)" if len(others) > 6 else ""
            out.print(f"          {escape(s['representative'])}: "
                      f"{escape(', '.join(others[:6]))}{more}")
        if len(sets) > top:
            out.print(f"          ({len(sets) - top} more sets)")


def _render_margin(out: Console, result: AnalysisResult) -> None:
    m = result.margin
    if not m:
        return
    sigma, threshold = m["scaled_smallest_singular_value"], m["threshold"]
    if not m["below"]:
        out.print(f"margin    scaled smallest singular value {sigma:.3g} >= {threshold:g} "
                  "(--fail-below): met")
        return
    names = ", ".join(f"{escape(s['name'])} {s['score']:.3g}" for s in m["sequences"][:5])
    more = len(m["sequences"]) - 5
    style = "bold yellow" if result.verdict == "injective" else "bold red"
    out.print(f"margin    [{style}]below[/]: scaled smallest singular value {sigma:.3g} < "
              f"{threshold:g} (--fail-below); near-dependent: {names}"
              + (f" (+{more} more)" if more > 0 else ""))


def _render_suggestion(out: Console, suggestion: Any) -> None:
    style = "bold green" if suggestion.success else "bold red"
    out.print(f"suggest drop: [{style}]{escape(suggestion.summary())}[/]")
    for name in suggestion.drop:
        out.print(f"  - {escape(name)}: {escape(suggestion.reasons.get(name, ''))}")


def _render_gram(out: Console, summary: dict[str, Any] | None, top: int = 4) -> None:
    """Feature-Gram spectrum: how strongly the condition holds and which direction nearly
    breaks it (entries of the unit eigenvector below 1e-8 are round-off and omitted)."""
    if not summary:
        return
    cond = summary["condition_number"]
    cond_text = cond if isinstance(cond, str) else f"{cond:.3g}"
    out.print(f"gram      smallest eigenvalue {summary['min_eigenvalue']:.3g} (tolerance "
              f"{summary['tolerance']:.2g}), condition number {cond_text}, effective rank "
              f"{summary['effective_rank']:.3g}; [dim]`ntkcheck spectrum` for the NTKs[/]")
    vec = sorted(summary["min_eigenvector"].items(), key=lambda kv: -abs(kv[1]))
    vec = [kv for kv in vec[:top] if abs(kv[1]) > 1e-8] or vec[:1]
    more = f" (largest {len(vec)} of {len(summary['min_eigenvector'])})" if len(
        summary["min_eigenvector"]) > len(vec) else ""
    out.print(f"          weakest direction{more}: "
              + ", ".join(f"{escape(name)} {v:+.3f}" for name, v in vec))


def _render_exact(out: Console, result: AnalysisResult) -> None:
    """One line on the exact test: what it proved, or why it did not run (when that matters)."""
    info = result.exact
    if not info:
        return
    status = info.get("status")
    if status == "decided":
        N, K = info["shape"]
        out.print(f"exact     {info['engine']}, D = {info['denominator']}, variables "
                  f"{escape(', '.join(info['variables']))}; E {N} x {K}, rank {info['rank']}; "
                  f"{info['time']['total']:.2g} s")
        proof = info.get("proof")
        if proof:
            core = len(proof["core"]["rows"])
            text = (f"proof: {proof['peeled']} distribution(s) peeled, each owning a non-affine "
                    "factor that no remaining one has")
            text += f"; the other {core} have full rank by exact elimination" if core else ""
            out.print(f"          {text} (E and the factors: --json)")
        if result.disagreement:
            for dep in info.get("dependencies", []):
                out.print(f"          exact dependency: {escape(dep['identity'])}")
    elif status == "failed" or info.get("mode") == "always" or result.verdict == "inconclusive":
        out.print(f"exact     {status}: {escape(info['reason'])}")
