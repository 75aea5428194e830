"""``ntkcheck analyze FILE``: the injectivity verdict, as a rich report or JSON."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..analysis import AnalysisResult, analyze
from ..errors import InputError
from ..features import DEFAULT_SCALES
from ..io import atomic_write_text, load_dataset
from .app import app, cli_errors, stderr_console, stdout_console

__all__ = ["analyze_command", "render_report", "parse_scales"]


def parse_scales(text: str | None) -> tuple[float, ...]:
    """'1,3,10' -> (1.0, 3.0, 10.0), or a one-line InputError naming --scales."""
    if text is None:
        return DEFAULT_SCALES
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise InputError(f"'{text}' is not a comma-separated list of numbers, e.g. 1,3,10,30",
                         field="--scales") from None
    if not values or any(not (v > 0 and v < float("inf")) for v in values):
        raise InputError("needs positive finite numbers, e.g. 1,3,10,30", field="--scales")
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
    seed: int = typer.Option(0, "--seed", help="Seed of the probe draw (the redraw uses seed+1)."),
    scales: Optional[str] = typer.Option(None, "--scales",
                                         help="Comma-separated probe scales [default: 1,3,10,30]."),
    no_whiten: bool = typer.Option(False, "--no-whiten", help="Do not whiten the probes."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    output: Optional[Path] = typer.Option(None, "--output", "-o",
                                          help="Also write the JSON document to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; use the exit code."),
) -> None:
    """Check the injectivity condition: exit 0 injective, 1 not injective, 3 inconclusive."""
    scale_values = parse_scales(scales)
    dataset = load_dataset(file)
    with progress_reporter(quiet) as status:
        callback = (lambda msg: status.update(f"analyze: {msg}")) if status else None
        result = analyze(dataset, probes=probes, scales=scale_values, seed=seed,
                         whiten=not no_whiten, progress=callback)
    document = result.to_dict()
    document["file"] = str(file)
    if output is not None:
        atomic_write_text(output, json.dumps(document, indent=2) + "\n")
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
    if result.dependencies:
        out.print(f"dependencies ({len(result.dependencies)}):")
        for j, dep in enumerate(result.dependencies, 1):
            tag = "exact" if dep.exact else f"residual {dep.residual:.1e}"
            out.print(f"  {j}. {escape(dep.describe())}   [dim]({tag})[/]")
    if result.findings:
        out.print("pre-screen:")
        for f in result.findings:
            out.print(f"  - {escape(f.describe())}")
