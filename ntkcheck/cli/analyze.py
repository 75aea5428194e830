"""``ntkcheck analyze FILE...``: the injectivity verdict for each file, in one output format.

A thin loop: expand the paths (directories recursively), load and analyse each file, collect a
:class:`~ntkcheck.report.FileReport` per file (the result, or the one-line error that made it
unreadable), then print :func:`ntkcheck.report.render` of them. Exit code: the worst over the
files (2 unreadable, 1 not injective, 3 inconclusive, 0 injective).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from contextlib import nullcontext
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ContextManager, List, Optional

import typer

from ..analysis import DEFAULT_EXACT_TIMEOUT, analyze
from ..errors import InputError, NtkcheckError
from ..features import DEFAULT_SCALES
from ..io import atomic_write_text, load_dataset
from ..io.inputs import expand_inputs
from ..io.load import SUFFIXES
from ..report import FileReport, render, worst_exit_code
from ..report import json as json_report
from ..report.text import render_result
from .app import app, cli_errors, stderr_console

__all__ = ["analyze_command", "render_report", "parse_scales", "ExactMode", "OutputFormat",
           "analyze_file"]


class ExactMode(str, Enum):
    """``--exact``: when to run the exact test of SPEC §4 (see :mod:`ntkcheck.analysis`)."""

    auto = "auto"
    always = "always"
    never = "never"


class OutputFormat(str, Enum):
    """``--output-format``: one renderer of :mod:`ntkcheck.report` each."""

    text = "text"
    json = "json"
    github = "github"
    sarif = "sarif"
    junit = "junit"


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


def progress_reporter(quiet: bool) -> ContextManager[Any]:
    """A spinner on stderr when it is a terminal; nothing otherwise."""
    if quiet or not sys.stderr.isatty():
        return nullcontext(None)
    return stderr_console().status("starting")


def render_report(result: Any, source: str) -> None:
    """Print the text report of one result on stdout (kept for callers of the old API)."""
    sys.stdout.write(render_result(result, source, color=_color()))


def _color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def analyze_file(path: Path, options: dict[str, Any],
                 say: Callable[[str], None] | None = None) -> FileReport:
    """Load and analyse one file; any library error becomes the report's one-line error.

    Warnings (a disagreement between the exact and numerical tests is a bug) are printed on
    stderr, with the file name, even with ``--quiet``.
    """
    name = str(path)
    try:
        if path.is_dir():
            raise InputError(f"contains no {', '.join(SUFFIXES)} file; give a dataset file or "
                             "a directory that holds some", source=name)
        dataset = load_dataset(path)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = analyze(dataset, progress=say, **options)
    except NtkcheckError as err:
        message = str(err)
        if name not in message:
            message = f"{name}: {message}"
        print(f"ntkcheck: error: {message}", file=sys.stderr)
        return FileReport(name, error=message)
    for w in caught:
        print(f"ntkcheck: warning: {name}: {w.message}", file=sys.stderr)
    return FileReport(name, result)


@app.command("analyze")
@cli_errors
def analyze_command(
    files: List[Path] = typer.Argument(
        ..., metavar="FILE", show_default=False,
        help="Token datasets (.npz), distribution specs (.toml/.json) or directories (searched "
             "recursively for those)."),
    probes: Optional[int] = typer.Option(None, "--probes", min=1,
                                         show_default="max(2 (N + d + 1), 256)",
                                         help="Number of probe points."),
    seed: int = typer.Option(0, "--seed", help="Seed of the probe draw (the redraw uses seed+1)."),
    scales: Optional[str] = typer.Option(
        None, "--scales", show_default="auto: 1,3,10,30 plus (1,3,10,30)/rho for distributions "
        "of internal spread rho < 0.1 or > 10", help="Comma-separated probe scales (whitened units)."),
    no_whiten: bool = typer.Option(False, "--no-whiten", help="Do not whiten the probes."),
    exact: ExactMode = typer.Option(
        ExactMode.auto, "--exact", case_sensitive=False,
        help="Exact symbolic test for rational data: auto (when rational and within budget), "
        "always (also explain why not; exit 2 for an unsupported input), never."),
    exact_timeout: float = typer.Option(
        DEFAULT_EXACT_TIMEOUT, "--exact-timeout", min=0.001, metavar="SECONDS",
        help="Time limit of the exact test; beyond it the numerical verdict stands."),
    output_format: OutputFormat = typer.Option(
        OutputFormat.text, "--output-format", "-f", case_sensitive=False,
        help="text (human report), json (versioned document, see its JSON Schema), github "
             "(workflow annotations), sarif (SARIF 2.1.0), junit (JUnit XML)."),
    as_json: bool = typer.Option(False, "--json", help="Short for --output-format json."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", show_default="none",
                                          help="Also write the JSON document to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="No progress and no text report (machine formats are "
                                    "still printed); use the exit code."),
) -> None:
    """Check the injectivity condition of each FILE: exit 0 injective, 1 not injective, 2 a file
    could not be read, 3 inconclusive (several files: the worst, in that order 2, 1, 3, 0)."""
    if as_json and output_format not in (OutputFormat.text, OutputFormat.json):
        raise InputError(f"--json is short for --output-format json; it cannot be combined "
                         f"with --output-format {output_format.value}", field="--json")
    fmt = OutputFormat.json if as_json else output_format
    options = {"probes": probes, "scales": None if scales is None else parse_scales(scales), "seed": seed,
               "whiten": not no_whiten, "exact": exact.value, "exact_timeout": exact_timeout}
    paths = expand_inputs(files)
    single = len(files) == 1 and not files[0].is_dir()
    reports = []
    with progress_reporter(quiet) as status:
        for path in paths:
            say = (lambda msg, p=path: status.update(f"analyze {p}: {msg}")) if status else None
            reports.append(analyze_file(path, options, say))
    if output is not None:
        payload = json_report.payload(reports, single=single)
        if payload is not None:
            atomic_write_text(output, json.dumps(payload, indent=2) + "\n")
    if fmt is not OutputFormat.text or not quiet:
        sys.stdout.write(render(fmt.value, reports, single=single, color=_color()))
    raise typer.Exit(worst_exit_code(reports))
