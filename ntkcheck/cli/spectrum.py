"""``ntkcheck spectrum FILE``: eigenvalues of the NTKs / feature Gram (SPEC §5).

Exit codes: 0 the kernel is positive definite beyond its round-off tolerance; 3 the smallest
eigenvalue is within the tolerance of 0 (singular to working precision: a dependency, or an
ill-conditioning these probes cannot resolve; ``analyze`` decides); 2 usage or input error
(including ``--plot`` without matplotlib).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from ..errors import InputError
from ..io import atomic_savez, load_dataset
from ..io.load import check_units, dataset_points, max_magnitude
from ..io.escape import json_text
from ..io.paths import output_target, same_file
from ..resources import check_memory, probe_count, resolve_max_memory, spectrum_bytes
from ..kernel_spectrum import KernelSpectrum, kernel_spectrum
from ..kernels import KERNEL_DESCRIPTIONS, Kernel, parse_kernel
from .analyze import parse_scales
from .app import (app, cli_errors, closed_stdout_exits, max_memory_option, stderr_console,
                  stdout_console)

__all__ = ["spectrum_command", "render_spectrum", "spectrum_lines", "MAX_VALUE_KERNEL_MAGNITUDE"]

#: Largest |token coordinate| for the value and full kernels, which use uncentred tilted means:
#: measured, their smallest eigenvalue drifts from 1e15 on (12 random tokens scaled by 10^k)
#: while qk and gram stay exact up to the general bound of 1e100; 1e12 keeps a 1000x margin.
MAX_VALUE_KERNEL_MAGNITUDE = 1e12


def spectrum_lines(spectrum: KernelSpectrum, top: int = 5) -> list[str]:
    """The report as rich-markup lines (for ``spectrum`` and for embedding in ``analyze``)."""
    lam = spectrum.eigenvalues
    N = lam.shape[0]
    cond = spectrum.condition_number
    cond_text = f"{cond:.3g}" if np.isfinite(cond) else "inf"
    state = ("[bold green]positive definite[/]" if spectrum.positive_definite
             else "[bold yellow]singular to working precision[/]")
    lines = [
        f"kernel    {spectrum.kernel}: {escape(KERNEL_DESCRIPTIONS[Kernel(spectrum.kernel)])}",
        f"          {state}: smallest eigenvalue {spectrum.min_eigenvalue:.3g}, "
        f"tolerance {spectrum.tolerance:.2g}",
        f"spectrum  {N} eigenvalues, largest {spectrum.max_eigenvalue:.3g}; condition number "
        f"{cond_text}; effective rank {spectrum.effective_rank:.3g}; numerical rank "
        f"{spectrum.numerical_rank}/{N}",
    ]
    if N > 1:
        head = ", ".join(f"{x:.3g}" for x in lam[: min(5, N)])
        lines.append(f"          smallest {min(5, N)} (ascending): {head}")
    if spectrum.null_dim > 1:
        lines.append(f"          {spectrum.null_dim} eigenvalues within tolerance of 0")
    v = spectrum.min_vector
    order = np.argsort(-np.abs(v), kind="stable")[:top]
    # entries at round-off level of a unit vector are noise, not part of the relation
    order = [i for i in order if abs(v[i]) > 1e-8] or list(order[:1])
    entries = ", ".join(f"{escape(spectrum.names[i])} {v[i]:+.4f}" for i in order)
    more = f" (largest {len(order)} of {N} entries)" if N > len(order) else ""
    lines.append(f"eigenvector of the smallest eigenvalue{more}: {entries}")
    if spectrum.null_dim > 1:
        lines.append(f"          (one vector of a {spectrum.null_dim}-dimensional null space; "
                     "`ntkcheck analyze` gives a sparse basis)")
    if spectrum.kernel == Kernel.GRAM.value:
        c = spectrum.min_coefficients
        coef = ", ".join(f"{escape(spectrum.names[i])} {c[spectrum.names[i]]:+.4g}" for i in order)
        lines.append(f"          as LSE coefficients (max 1): {coef}")
    return lines


def render_spectrum(spectrum: KernelSpectrum, source: str | None = None,
                    console: Console | None = None, top: int = 5) -> None:
    """Print the rich report of one kernel spectrum on ``console`` (default stdout)."""
    out = console or stdout_console()
    s = spectrum.settings
    if source is not None:
        out.print(f"spectrum of {escape(source)}")
    out.print(f"probes    {s['probes']} Gaussian probes, scales "
              f"{', '.join(f'{x:g}' for x in s['scales'])}, seed {s['seed']}, "
              f"whitening {'on' if s['whitening'] else 'off'} "
              f"(affine hull dimension {s['affine_hull_dim']})")
    for line in spectrum_lines(spectrum, top):
        out.print(line)


class _PlainProbeProgress:
    """One line on stderr at most every ``every`` seconds (not a terminal: logs, CI); nothing
    for runs shorter than that."""

    def __init__(self, label: str, every: float = 10.0, clock=time.monotonic):
        self.label, self.every, self.clock = label, every, clock
        self.t0 = clock()
        self.last = self.t0

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if now - self.last < self.every or done >= total:
            return
        self.last = now
        elapsed = now - self.t0
        eta = elapsed * (total - done) / max(done, 1)
        print(f"{self.label}: {done}/{total} probes ({100 * done / max(total, 1):.0f}%), "
              f"elapsed {elapsed:.0f} s, ETA {eta:.0f} s", file=sys.stderr, flush=True)


@contextmanager
def probe_progress(quiet: bool, label: str):
    """A ``progress(done, total)`` callback for the kernels: a rich bar with an ETA on a
    terminal, periodic plain lines otherwise, None with --quiet."""
    if quiet:
        yield None
        return
    if not sys.stderr.isatty():
        yield _PlainProbeProgress(label)
        return
    bar = Progress(TextColumn(escape(label)), BarColumn(), MofNCompleteColumn(),
                   TextColumn("probes"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), console=stderr_console(), transient=True)
    task = bar.add_task(label, total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


@app.command("spectrum")
@cli_errors
def spectrum_command(
    file: Path = typer.Argument(..., show_default=False,
                                help="Token dataset (.npz), distribution spec (.toml/.json) or "
                                     "token IDs (.npz with input_ids, .jsonl, .parquet; with "
                                     "--embeddings)."),
    kernel: str = typer.Option("qk", "--kernel", "-k",
                               help="Kernel: qk (query-key NTK), value (value NTK), full "
                                    "(qk + value) or gram (feature Gram)."),
    probes: Optional[int] = typer.Option(
        None, "--probes", min=1, show_default="max(2 (N + d + 1), 256)",
        help="Number of probe points."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the probe draw."),
    scales: Optional[str] = typer.Option(None, "--scales", show_default="1,3,10,30",
                                         help="Comma-separated probe scales."),
    no_whiten: bool = typer.Option(False, "--no-whiten", help="Do not whiten the probes."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    save: Optional[Path] = typer.Option(None, "--save", show_default="none",
                                        help="Write the kernel matrix and its eigendecomposition "
                                             "to this .npz file."),
    plot: Optional[Path] = typer.Option(None, "--plot", show_default="none",
                                        help="Draw the spectrum (and, in 1-D/2-D, the smallest "
                                             "eigenvector's LSE combination) to this PNG file "
                                             "(needs matplotlib, the plot extra)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no text report (--json is still printed); use the exit code."),
    max_memory: Optional[str] = max_memory_option(),
    embeddings: Optional[str] = typer.Option(
        None, "--embeddings", metavar="TABLE[:NAME]", show_default="none",
        help="Embedding table of a token-ID file: .npy, .npz[:NAME] or .safetensors[:NAME]."),
) -> None:
    """Kernel spectrum (SPEC §5): exit 0 positive definite, 3 singular to working precision."""
    kind = parse_kernel(kernel)
    scale_values = parse_scales(scales)
    limit = resolve_max_memory(max_memory)
    if save is not None and save.suffix.lower() != ".npz":
        raise InputError("must end in .npz", field="--save")
    for target, option in ((save, "--save"), (plot, "--plot")):
        if target is not None:
            output_target(target, option, inputs=[file])
    if save is not None and plot is not None and same_file(save, plot):
        raise InputError("is also the --save file; give two different files", field="--plot")
    plotter = None
    if plot is not None:
        from ..plot import require_matplotlib

        plotter = require_matplotlib()  # before the computation: fail fast, exit 2
    dataset = load_dataset(file, limit, embeddings=embeddings)
    check_units(dataset_points(dataset), str(file), "tokens", "spectrum")
    peak = max_magnitude(dataset)
    if kind in (Kernel.VALUE, Kernel.FULL) and peak > MAX_VALUE_KERNEL_MAGNITUDE:
        raise InputError(f"'{kind.value}' supports token coordinates up to "
                         f"{MAX_VALUE_KERNEL_MAGNITUDE:g}, the data reach {peak:.3g}; rescale the "
                         "data or use --kernel qk or gram", source=str(file), field="--kernel")
    M = probe_count(probes, len(dataset), dataset.dim)
    check_memory(spectrum_bytes(M, len(dataset), dataset.dim), limit,
                 f"the {kind.value} kernel of N = {len(dataset)} distributions with M = {M} "
                 "probes", "pass fewer --probes or use fewer distributions", source=str(file))
    with probe_progress(quiet, f"spectrum: {kind.value} kernel") as report:
        spectrum = kernel_spectrum(dataset, kind, probes=probes, scales=scale_values, seed=seed,
                                   whiten=not no_whiten, progress=report)
    if save is not None:
        atomic_savez(save, kernel=np.array(spectrum.kernel), names=np.array(spectrum.names),
                     matrix=spectrum.matrix, eigenvalues=spectrum.eigenvalues,
                     eigenvectors=spectrum.eigenvectors, tolerance=np.array(spectrum.tolerance),
                     coefficient_scale=spectrum.coefficient_scale,
                     settings=np.array(json.dumps(spectrum.settings)))
    if plotter is not None:
        plotter(spectrum, plot, dataset)
    with closed_stdout_exits(spectrum.exit_code):
        if as_json:  # -q never silences a machine format asked for
            document = spectrum.to_dict()
            document["file"] = str(file)
            sys.stdout.write(json_text(document) + "\n")
        elif not quiet:
            render_spectrum(spectrum, str(file))
    raise typer.Exit(spectrum.exit_code)
