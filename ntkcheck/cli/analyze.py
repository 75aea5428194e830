"""``ntkcheck analyze FILE...``: the injectivity verdict for each file, in one output format.

A thin loop: expand the paths (directories recursively), load and analyse each file, collect a
:class:`~ntkcheck.report.FileReport` per file (the result, or the one-line error that made it
unreadable), then print :func:`ntkcheck.report.render` of them. Exit code: the worst over the
files (2 unreadable, 1 not injective, 3 inconclusive, 6 injective but below ``--fail-below``,
0 injective).

``--fail-below MARGIN`` attaches :func:`ntkcheck.neardep.apply_margin` to each result;
``--suggest-drop`` runs :func:`ntkcheck.neardep.suggest_drop` on each file (re-analysing the
reduced data); ``--write-clean OUT`` (one token ``.npz`` or token-ID ``.npz`` / ``.jsonl`` /
``.parquet`` file, OUT of the same kind) also writes the reduced data set when the suggestion is
re-verified injective (:func:`ntkcheck.io.clean.write_subset`).

``--output PATH`` writes the report to PATH instead of stdout and ``--report FORMAT=PATH``
writes more formats of the same run (:mod:`ntkcheck.cli.outputs`); ``--exclude GLOB`` leaves
entries of directory scans out, and files of a scan that are not ntkcheck inputs are skipped
with a note and listed by the machine formats (:func:`ntkcheck.io.inputs.scan_inputs`); in a
scan, ``--embeddings`` applies to the token-ID files only; ``--only-failures`` prints nothing for
the files that pass (the pre-commit hook).
"""

from __future__ import annotations

import os
import sys
import threading
import time
import warnings
from enum import Enum
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from ..analysis import DEFAULT_EXACT_TIMEOUT, analyze
from ..errors import InputError, NtkcheckError
from ..injectivity.probes import DEFAULT_SCALES
from ..io import load_dataset
from ..io.inputs import SCAN_SUFFIXES, _is_dir, _key, holds_token_ids, scan_inputs, \
    unreadable_directory
from ..io.clean import check_clean_target, write_subset
from ..analysis import suggest_drop
from ..injectivity.summary import MAX_PAIRS
from ..neardep import DEFAULT_MAX_ROUNDS, apply_margin
from ..report import FileReport, Skipped, render, worst_exit_code
from ..report.text import render_result
from ..io.paths import output_target, printable
from ..resources import resolve_max_memory
from .app import app, cli_errors, closed_stdout_exits, max_memory_option, stderr_console
from .outputs import report_targets, write_reports

__all__ = ["analyze_command", "render_report", "parse_scales", "ExactMode", "OutputFormat",
           "analyze_file"]


class ExactMode(str, Enum):
    """``--exact``: when to run the exact test of SPEC §4 (see :mod:`ntkcheck.analysis`)."""

    auto = "auto"
    always = "always"
    never = "never"


class Backend(str, Enum):
    """``--backend``: where the streamed dense test runs (:mod:`ntkcheck.backends`)."""

    local = "local"
    dask = "dask"


class SpectrumMode(str, Enum):
    """``--spectrum``: which singular values the dense test computes (``analyze(spectrum=)``)."""

    auto = "auto"
    full = "full"
    partial = "partial"


class OutputFormat(str, Enum):
    """``--output-format``: one renderer of :mod:`ntkcheck.report` each."""

    text = "text"
    json = "json"
    github = "github"
    sarif = "sarif"
    junit = "junit"


#: Largest probe scale accepted on the command line (whitened units): whitened tokens are O(1)
#: to O(sqrt(N n)), so larger scales add nothing beyond the support function; the automatic
#: scales of `analyze` may exceed it for tight clusters (up to features.MAX_SCALE).
MAX_SCALE = 1e6


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


#: Plain progress lines (stderr not a terminal): a stage's first line once it has run this
#: many seconds, then one line every PLAIN_EVERY seconds while it runs.
PLAIN_FIRST = 1.0
PLAIN_EVERY = 5.0


def _eta_text(msg: str, started: float, now: float, expected: float | None = None) -> str:
    """The progress line of a stage: ``features 40% (ETA 12 s)`` from a ProgressUpdate's
    done / total; for a stage that cannot count its work (one LAPACK call: ``QR``, ``SVD``)
    the share of the time the estimate gives it, ``QR ~40% (ETA 20 s, estimated)``; else the
    elapsed time, ``SVD (6 s)``."""
    from ..injectivity.estimate import format_seconds

    frac = getattr(msg, "fraction", None)
    elapsed = now - started
    stage = getattr(msg, "stage", str(msg))
    if frac is not None and 0 < frac < 1 and elapsed > 0:
        return f"{stage} {100 * frac:.0f}% (ETA {format_seconds(elapsed * (1 - frac) / frac)})"
    if frac is not None and (frac >= 1 or not expected):
        return str(msg)
    if expected and expected > 0:
        if elapsed < expected:
            return (f"{stage} ~{100 * elapsed / expected:.0f}% (ETA "
                    f"{format_seconds(expected - elapsed)}, estimated)")
        return (f"{stage} ({format_seconds(elapsed)}; estimated {format_seconds(expected)})")
    return f"{msg} ({format_seconds(elapsed)})"


class ProgressReporter:
    """Progress of ``analyze`` on stderr (the library only calls ``progress`` callbacks).

    ``mode``: ``"rich"`` (a terminal: a rich status line updated with the fraction and ETA),
    ``"plain"`` (not a terminal, e.g. CI logs: lines ``ntkcheck: analyze FILE: features 40%
    (ETA 12 s)`` for every stage that runs longer than :data:`PLAIN_FIRST` seconds, every
    :data:`PLAIN_EVERY` seconds; a background thread keeps them coming while one long call
    runs) or ``"quiet"`` (nothing). The analysis' estimate is printed once in both non-quiet
    modes when the test streams or is estimated to take PLAIN_FIRST seconds or more; its time
    per stage gives the stages that cannot count their work a share and an ETA
    (:func:`_eta_text`).
    """

    def __init__(self, mode: str):
        self.mode = mode
        self._lock = threading.Lock()
        self._prefix = ""
        self._msg: str | None = None
        self._stage = None
        self._started = self._printed = 0.0
        self._expected: dict[str, dict[str, float]] = {}
        self._status = None
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self) -> "ProgressReporter":
        if self.mode == "rich":
            self._status = stderr_console().status("starting")
            self._status.__enter__()
        if self.mode in ("rich", "plain"):  # lines (or the ETA) keep coming in a long call
            self._thread = threading.Thread(target=self._tick, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._status is not None:
            self._status.__exit__(*exc)

    def callback(self, path: Path) -> Callable[[str], None] | None:
        """The ``progress`` callback for one file (None when quiet)."""
        if self.mode == "quiet":
            return None
        prefix = f"analyze {printable(str(path))}: "
        return lambda msg: self.update(prefix, msg)

    def update(self, prefix: str, msg: str) -> None:
        now = time.monotonic()
        with self._lock:
            if getattr(msg, "kind", "stage") == "estimate":
                data = getattr(msg, "data", None) or {}
                times = dict(data.get("time") or {})
                times.update((data.get("exact") or {}).get("time") or {})
                self._expected[prefix] = times
                if data.get("mode") == "streamed" or data.get("seconds", 0) >= PLAIN_FIRST:
                    self._emit(f"ntkcheck: {prefix}{msg}")
                return
            stage = (prefix, getattr(msg, "stage", str(msg)))
            if stage != self._stage:
                self._stage, self._started, self._printed = stage, now, 0.0
            self._prefix, self._msg = prefix, msg
            if self.mode == "rich":
                self._status.update(f"{prefix}{self._text(now)}")
            else:
                self._maybe_print(now)

    def _text(self, now: float) -> str:
        stage = getattr(self._msg, "stage", str(self._msg))
        expected = self._expected.get(self._prefix, {}).get(stage)
        return _eta_text(self._msg, self._started, now, expected)

    def _maybe_print(self, now: float) -> None:
        if self._msg is None or now - self._started < PLAIN_FIRST:
            return
        if self._printed and now - self._printed < PLAIN_EVERY:
            return
        self._printed = now
        self._emit(f"ntkcheck: {self._prefix}{self._text(now)}")

    def _emit(self, line: str) -> None:
        if self.mode == "rich":
            stderr_console().print(line, markup=False, highlight=False)
        else:
            print(line, file=sys.stderr, flush=True)

    def _tick(self) -> None:
        while not self._stop.wait(0.25):
            with self._lock:
                if self.mode == "rich":
                    if self._msg is not None:
                        self._status.update(f"{self._prefix}{self._text(time.monotonic())}")
                else:
                    self._maybe_print(time.monotonic())


def progress_reporter(quiet: bool) -> ProgressReporter:
    """A rich status line on stderr when it is a terminal, plain periodic lines otherwise,
    nothing with ``quiet`` (:class:`ProgressReporter`)."""
    if quiet:
        return ProgressReporter("quiet")
    return ProgressReporter("rich" if sys.stderr.isatty() else "plain")


def render_report(result: Any, source: str) -> None:
    """Print the text report of one result on stdout (kept for callers of the old API)."""
    sys.stdout.write(render_result(result, source, color=_color()))


def _color() -> bool:
    return sys.stdout.isatty() and "NO_COLOR" not in os.environ


def _write_clean(report: FileReport, target: Path, quiet: bool) -> None:
    """Write the reduced data of a successful suggestion; explain on stderr otherwise."""
    s = report.suggestion
    if s is None:
        return  # the file could not be read: its error is already on stderr
    if not s.success:
        print(f"ntkcheck: warning: {printable(report.file)}: the reduced data are not "
              f"re-verified injective ({s.after.verdict}); {printable(target)} not written",
              file=sys.stderr)
        return
    kept = write_subset(report.file, target, s.kept_indices)
    if not quiet:
        print(f"ntkcheck: wrote {printable(target)}: {kept} of {len(s.before.names)} sequences "
              f"(dropped {printable(', '.join(s.drop) or 'none')})", file=sys.stderr)


def analyze_file(path: Path, options: dict[str, Any],
                 say: Callable[[str], None] | None = None, *, fail_below: float | None = None,
                 suggest: bool = False, max_rounds: int = DEFAULT_MAX_ROUNDS) -> FileReport:
    """Load and analyse one file; any library error becomes the report's one-line error.

    ``fail_below`` attaches the margin to the result; ``suggest`` also computes the drop
    suggestion (its re-analyses use the same options, at most ``max_rounds`` of them).

    Warnings (a disagreement between the exact and numerical tests is a bug) are printed on
    stderr, with the file name, even with ``--quiet``.
    """
    name = str(path)
    started = time.perf_counter()
    try:
        if _is_dir(path):
            problem = unreadable_directory(path)
            if problem:
                raise InputError(problem, source=name)
            raise InputError(f"contains no ntkcheck input (a {', '.join(SCAN_SUFFIXES)} dataset "
                             "file, not excluded); give a dataset file or a directory that "
                             "holds some", source=name)
        options = dict(options)
        limit = options.pop("max_memory", None)
        dataset = load_dataset(path, limit, embeddings=options.pop("embeddings", None))
        # the dense test checks its own estimate (in memory or streamed, on the core left by
        # the structural screen) against the limit before it allocates
        options["max_memory"] = limit
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # a ResourceWarning is the garbage collector finding some other object unclosed (an
            # event loop or socket a library left behind), whenever it happens to run: not news
            # about this input, so it is not relayed
            warnings.simplefilter("ignore", ResourceWarning)
            result = analyze(dataset, progress=say, **options)
            if fail_below is not None:
                result = apply_margin(result, fail_below)
            suggestion = None
            if suggest:
                if say:
                    say("suggest drop")
                suggestion = suggest_drop(dataset, result=result, margin=fail_below,
                                          max_rounds=max_rounds, **options)
    except NtkcheckError as err:
        message = str(err)
        if name not in message:
            message = f"{name}: {message}"
        print(f"ntkcheck: error: {printable(message)}", file=sys.stderr)
        return FileReport(name, error=message, seconds=time.perf_counter() - started)
    for w in caught:
        print(f"ntkcheck: warning: {printable(name)}: {printable(w.message)}", file=sys.stderr)
    return FileReport(name, result, suggestion=suggestion,
                      seconds=time.perf_counter() - started)


@app.command("analyze")
@cli_errors
def analyze_command(
    files: List[Path] = typer.Argument(
        ..., metavar="FILE", show_default=False,
        help="Token datasets (.npz), distribution specs (.toml/.json), token IDs (.npz with "
             "input_ids, .jsonl, .parquet; with --embeddings) or directories (searched "
             "recursively for .npz/.toml/.json/.jsonl/.parquet)."),
    probes: Optional[int] = typer.Option(None, "--probes", min=1,
                                         show_default="max(2 (N + d + 1), 64 x number of scales)",
                                         help="Number of probe points."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the probe draw (the redraw uses seed+1)."),
    scales: Optional[str] = typer.Option(
        None, "--scales", show_default="auto: 1,3,10,30 plus (1,3,10,30)/rho for distributions "
        "of internal spread rho < 0.1 or > 10", help="Comma-separated probe scales (whitened units)."),
    no_whiten: bool = typer.Option(False, "--no-whiten", help="Do not whiten the probes."),
    exact: ExactMode = typer.Option(
        ExactMode.auto, "--exact", case_sensitive=False,
        help="Exact symbolic test for rational data: auto (when rational and within budget), "
        "always (also explain why not; exit 2 for an unsupported input), never."),
    exact_timeout: float = typer.Option(
        DEFAULT_EXACT_TIMEOUT, "--exact-timeout", min=0.001, max=1e7, metavar="SECONDS",
        help="Time limit of the exact test; beyond it the numerical verdict stands."),
    output_format: OutputFormat = typer.Option(
        OutputFormat.text, "--output-format", "-f", case_sensitive=False,
        help="text (human report), json (versioned document, see its JSON Schema), github "
             "(workflow annotations), sarif (SARIF 2.1.0), junit (JUnit XML)."),
    as_json: bool = typer.Option(False, "--json", help="Short for --output-format json."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", show_default="none",
        help="Write the --output-format report to this file (atomically) instead of stdout."),
    report: List[str] = typer.Option(
        [], "--report", metavar="FORMAT=PATH", show_default="none",
        help="Also write the report of the same run in FORMAT (text, json, github, sarif, "
             "junit) to PATH; repeatable, e.g. -f github --report sarif=r.sarif --report "
             "junit=r.xml."),
    exclude: List[str] = typer.Option(
        [], "--exclude", metavar="GLOB", show_default="none",
        help="Leave out of directory scans the entries whose path relative to the scanned "
             "directory, or whose name, matches GLOB (a directory with all it holds); "
             "repeatable, e.g. --exclude 'cache/*' --exclude '*_embeddings.npz'."),
    only_failures: bool = typer.Option(
        False, "--only-failures",
        help="No progress, and a text report of the files that do not pass only: nothing "
             "is printed when every file passes (the pre-commit hook)."),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="No progress and no text report (machine formats are "
                                    "still printed); use the exit code."),
    fail_below: Optional[float] = typer.Option(
        None, "--fail-below", metavar="MARGIN", show_default="none",
        help="Exit 6 when the verdict is injective but the scaled smallest singular value "
             "(of the core's column-normalised F_perp) is below MARGIN, e.g. 1e-6; the "
             "sequences scoring below it are reported."),
    suggest: bool = typer.Option(
        False, "--suggest-drop",
        help="Suggest sequences to drop so that the data become injective (and meet "
             "--fail-below), re-verified by a full analysis of the reduced data."),
    write_clean: Optional[Path] = typer.Option(
        None, "--write-clean", metavar="OUT", show_default="none",
        help="With one .npz, .jsonl or .parquet FILE: write the data without the suggested "
             "sequences to OUT, a file of the same kind (implies --suggest-drop; written only "
             "when the reduced data are re-verified injective)."),
    max_rounds: int = typer.Option(
        DEFAULT_MAX_ROUNDS, "--max-rounds", min=1, metavar="N",
        help="--suggest-drop: at most N re-analyses (each round drops every near set but one "
             "representative, one sequence per relation, or the lowest score, then "
             "re-analyses in full)."),
    max_pairs: int = typer.Option(
        MAX_PAIRS, "--max-pairs", min=0, metavar="N",
        help="Near pairs listed in the report (closest first); the rest are counted in "
             "pairs_omitted, and every pair joins its near set whatever the cap."),
    max_memory: Optional[str] = max_memory_option(),
    stream: Optional[bool] = typer.Option(
        None, "--stream/--no-stream", show_default=False,
        help="Stream the dense test in probe blocks with bounded memory (about N^2 + block x N "
             "numbers) instead of holding the feature matrix; without either flag it streams "
             "when the in-memory test would exceed the memory limit (--max-memory)."),
    spectrum: SpectrumMode = typer.Option(
        "auto", "--spectrum", case_sensitive=False,
        help="Singular values of the dense test: full (every one; 8/3 N^3 flops at level-2 "
             "BLAS speed, ~12 s at N = 4000 on 2 cores), partial (the 32 smallest and the "
             "largest, O(N^2) per step; same verdict, relations and certificate), auto "
             "(partial beyond N = 3000)."),
    backend: Backend = typer.Option(
        "local", "--backend", case_sensitive=False,
        help="Where the streamed probe blocks are computed and folded: local threads, or a "
             "Dask cluster (needs the dask extra): the one at --scheduler, else a local "
             "cluster with one worker per core, closed afterwards."),
    scheduler: Optional[str] = typer.Option(
        None, "--scheduler", metavar="ADDRESS", show_default="none",
        help="Dask scheduler address for --backend dask, e.g. tcp://host:8786."),
    embeddings: Optional[str] = typer.Option(
        None, "--embeddings", metavar="TABLE[:NAME]", show_default="none",
        help="Embedding table of token-ID files: .npy, .npz[:NAME] or .safetensors[:NAME] "
             "(e.g. emb.safetensors:embed_tokens.weight); row v is the vector of ID v. In a "
             "directory scan it applies to the token-ID files only."),
) -> None:
    """Check the injectivity condition of each FILE: exit 0 injective, 1 not injective, 2 a file
    could not be read, 3 inconclusive, 6 injective but below --fail-below (several files: the
    worst, in that order 2, 1, 3, 6, 0)."""
    if as_json and output_format not in (OutputFormat.text, OutputFormat.json):
        raise InputError(f"--json is short for --output-format json; it cannot be combined "
                         f"with --output-format {output_format.value}", field="--json")
    fmt = OutputFormat.json if as_json else output_format
    options = {"probes": probes, "scales": None if scales is None else parse_scales(scales), "seed": seed,
               "whiten": not no_whiten, "exact": exact.value, "exact_timeout": exact_timeout,
               "stream": stream, "backend": backend.value, "scheduler": scheduler,
               "spectrum": spectrum.value, "max_pairs": max_pairs}
    if backend is Backend.dask:
        from ..backends.dask import _distributed, check_address
        if scheduler:  # without one, a local cluster sized to the machine (closed after)
            check_address(scheduler)
        _distributed()
    elif scheduler:
        raise InputError("is only used with --backend dask", field="--scheduler")
    if fail_below is not None and not (0 < fail_below < float("inf")):
        raise InputError(f"must be a positive number, got {fail_below}", field="--fail-below")
    limit = resolve_max_memory(max_memory)
    scan = scan_inputs(files, exclude)
    paths = scan.files
    single = len(files) == 1 and not _is_dir(files[0])
    # before any work: a refused target costs nothing
    if write_clean is not None:
        output_target(write_clean, "--write-clean", inputs=paths)
    targets = report_targets(output, fmt.value, report, paths,
                             [(write_clean, "--write-clean")] if write_clean is not None else [])
    skipped = [Skipped(str(p), why) for p, why in scan.skipped]
    for item in skipped:
        print(f"ntkcheck: note: skipped {printable(item.file)}: {printable(item.reason)}",
              file=sys.stderr)
    options["max_memory"] = limit
    if write_clean is not None:
        if len(paths) != 1:
            raise InputError(f"writes one reduced data set; give exactly one FILE "
                             f"(got {len(paths)} files)", field="--write-clean")
        check_clean_target(paths[0], write_clean)
        suggest = True
    # a named file gets the table (the loader refuses it for coordinates); a scanned one only
    # when it holds token IDs, so a scan of mixed data needs no --exclude for it
    named = {_key(Path(f)) for f in files if not _is_dir(f)}
    reports = []
    with progress_reporter(quiet or only_failures) as reporter:
        for path in paths:
            say = reporter.callback(path)
            table = embeddings is not None and (_key(path) in named or holds_token_ids(path))
            reports.append(analyze_file(path, dict(options, embeddings=embeddings) if table
                                        else options, say, fail_below=fail_below,
                                        suggest=suggest, max_rounds=max_rounds))
    if write_clean is not None:
        _write_clean(reports[0], write_clean, quiet)
    write_reports(targets, reports, single, skipped)
    code = worst_exit_code(reports)
    shown = [r for r in reports if r.exit_code != 0] if only_failures else reports
    with closed_stdout_exits(code):
        if output is None and (fmt is not OutputFormat.text or not quiet):
            sys.stdout.write(render(fmt.value, reports if fmt is not OutputFormat.text
                                    else shown, single=single, color=_color(),
                                    skipped=skipped))
    raise typer.Exit(code)
