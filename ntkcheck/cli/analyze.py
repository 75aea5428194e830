"""``ntkcheck analyze FILE``: the injectivity verdict, as a rich report or JSON."""

from __future__ import annotations

import json
import sys
import warnings
from contextlib import nullcontext
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..analysis import DEFAULT_EXACT_TIMEOUT, AnalysisResult, analyze
from ..errors import InputError
from ..features import DEFAULT_SCALES
from ..io import atomic_write_text, load_dataset
from ..io.paths import output_target, printable
from ..resources import analysis_bytes, check_memory, probe_count, resolve_max_memory
from .app import (app, cli_errors, closed_stdout_exits, max_memory_option, stderr_console,
                  stdout_console)

__all__ = ["analyze_command", "render_report", "parse_scales", "ExactMode", "MAX_SCALE"]

#: Largest probe scale: whitened tokens are O(1) to O(sqrt(N n)), so larger scales only
#: overflow exp() and add nothing beyond the support function (SPEC §3.2).
MAX_SCALE = 1e6


class ExactMode(str, Enum):
    """``--exact``: when to run the exact test of SPEC §4 (see :mod:`ntkcheck.analysis`)."""

    auto = "auto"
    always = "always"
    never = "never"


def parse_scales(text: str | None) -> tuple[float, ...]:
    """'1,3,10' -> (1.0, 3.0, 10.0), or a one-line InputError naming --scales."""
    if text is None:
        return DEFAULT_SCALES
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"'{text}' is not a comma-separated list of numbers, e.g. 1,3,10,30",
                         field="--scales") from None
    if not values or any(not (v > 0 and v <= MAX_SCALE) for v in values):
        raise InputError(f"needs positive numbers up to {MAX_SCALE:g}, e.g. 1,3,10,30",
                         field="--scales")
    return values


def progress_reporter(quiet: bool):
    """A spinner on stderr when it is a terminal; nothing otherwise."""
    if quiet or not sys.stderr.isatty():
        return nullcontext(None)
    return stderr_console().status("starting")


@app.command("analyze")
@cli_errors
def analyze_command(
    file: Path = typer.Argument(..., help="Token dataset (.npz) or distribution spec (.toml/.json).",
                                show_default=False),
    probes: Optional[int] = typer.Option(None, "--probes", min=1,
                                         help="Number of probe points [default: max(2(N+d+1), 256)]."),
    seed: int = typer.Option(0, "--seed", min=0,
                             help="Seed of the probe draw (the redraw uses seed+1)."),
    scales: Optional[str] = typer.Option(None, "--scales",
                                         help="Comma-separated probe scales [default: 1,3,10,30]."),
    no_whiten: bool = typer.Option(False, "--no-whiten", help="Do not whiten the probes."),
    exact: ExactMode = typer.Option(
        ExactMode.auto, "--exact", case_sensitive=False,
        help="Exact symbolic test for rational data: auto (when rational and within budget), "
        "always (also explain why not; exit 2 if a value is not an exact rational), never."),
    exact_timeout: float = typer.Option(
        DEFAULT_EXACT_TIMEOUT, "--exact-timeout", min=0.001, max=1e7, metavar="SECONDS",
        help="Time limit of the exact test; beyond it the numerical verdict stands."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Also write the JSON document to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; use the exit code."),
    max_memory: Optional[str] = max_memory_option(),
) -> None:
    """Check the injectivity condition: exit 0 injective, 1 not injective, 3 inconclusive."""
    scale_values = parse_scales(scales)
    limit = resolve_max_memory(max_memory)
    if output is not None:
        output_target(output, "--output", inputs=[file])
    dataset = load_dataset(file, limit)
    M = probe_count(probes, len(dataset), dataset.dim)
    check_memory(analysis_bytes(M, len(dataset), dataset.dim), limit,
                 f"the analysis of N = {len(dataset)} distributions with M = {M} probes",
                 "pass fewer --probes or analyse fewer distributions", source=str(file))
    with progress_reporter(quiet) as status:
        callback = (lambda msg: status.update(f"analyze: {msg}")) if status else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = analyze(dataset, probes=probes, scales=scale_values, seed=seed,
                             whiten=not no_whiten, exact=exact.value, exact_timeout=exact_timeout,
                             progress=callback)
    for w in caught:  # even with --quiet: a disagreement between the two tests is a bug
        print(f"ntkcheck: warning: {printable(w.message)}", file=sys.stderr)
    document = result.to_dict()
    document["file"] = str(file)
    if output is not None:
        atomic_write_text(output, json.dumps(document, indent=2) + "\n")
    with closed_stdout_exits(result.exit_code):
        if as_json and not quiet:
            sys.stdout.write(json.dumps(document, indent=2) + "\n")
        elif not quiet:
            render_report(result, str(file))
    raise typer.Exit(result.exit_code)


_STYLE = {"injective": "bold green", "not_injective": "bold red", "inconclusive": "bold yellow"}


def render_report(result: AnalysisResult, source: str) -> None:
    """Verdict first, then the spectrum summary, then dependencies and pre-screen findings."""
    out = stdout_console()
    evidence = f" ({result.evidence} evidence)" if result.evidence else ""
    out.print(f"[{_STYLE[result.verdict]}]{result.verdict}[/]{evidence}: {escape(source)}")
    out.print(f"  {escape(result.reason)}")
    s = result.settings
    out.print(f"data      {result.n_distributions} distributions in R^{result.dim} "
              f"(affine hull dimension {s['affine_hull_dim']})")
    out.print(f"probes    {s['probes']} Gaussian probes, scales "
              f"{', '.join(f'{x:g}' for x in s['scales'])}, seed {s['seed']}, "
              f"whitening {'on' if s['whitening'] else 'off'}")
    sv = result.singular_values
    out.print(f"spectrum  rank {result.rank}/{result.n_distributions}; singular values "
              f"largest {sv[0]:.3g}, smallest {sv[-1]:.3g}; "
              f"round-off level {result.noise:.2g}, certification bound {result.tolerance:.2g}")
    if len(sv) > 1:
        tail = ", ".join(f"{x:.3g}" for x in sv[-min(5, len(sv)):])
        out.print(f"          smallest {min(5, len(sv))}: {tail}")
    _render_gram(out, result.spectrum)
    _render_exact(out, result)
    if result.dependencies:
        out.print(f"dependencies ({len(result.dependencies)}):")
        for j, dep in enumerate(result.dependencies, 1):
            if dep.exact and dep.certificate:
                text = dep.certificate["identity"]
                tag = f"exact; {dep.certificate['check']['digits']}-digit check {dep.residual:.1e}"
            else:
                text = dep.describe()
                tag = "exact" if dep.exact else f"residual {dep.residual:.1e}"
            out.print(f"  {j}. {escape(text)}   [dim]({tag})[/]")
    if result.findings:
        out.print("pre-screen:")
        for f in result.findings:
            out.print(f"  - {escape(f.describe())}")


def _render_gram(out, summary: dict | None, top: int = 4) -> None:
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


def _render_exact(out, result: AnalysisResult) -> None:
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
