"""``ntkcheck plot RUN_DIR`` and ``ntkcheck predict RUN_DIR DATA.npz``: after ``train``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from ..errors import InputError
from ..io import atomic_savez, load_token_npz
from ..io.escape import json_text
from ..io.paths import output_target, printable
from ..io.runfiles import run_owned
from ..meanfield.trained import Run, load_run
from .app import app, cli_errors

__all__ = ["plot_command", "predict_command"]


@app.command("plot")
@cli_errors
def plot_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", show_default=False,
                                   help="Output directory of a train run."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default="RUN_DIR/curves.png",
                                       help="Figure file: .png, .svg or .pdf."),
    dpi: int = typer.Option(110, "--dpi", min=10, help="Resolution of PNG output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing."),
) -> None:
    """Draw loss, gradient norm, smallest NTK eigenvalue and PL ratio against the step (log
    scales; needs matplotlib, the plot extra)."""
    from ..plot_training import plot_format, plot_run, require_matplotlib

    target = out if out is not None else run_dir / "curves.png"
    plot_format(target)
    if out is not None:
        output_target(target, "--out")  # the default target is checked once the run is read
    require_matplotlib()  # before reading anything: fail fast, exit 2
    run = load_run(run_dir)
    _check_not_owned(run, target)
    _note_skipped(run, quiet)
    plot_run(run, target, dpi=dpi)
    if not quiet:
        print(f"wrote {printable(target)}: {run.history['step'].size} recorded steps")


def _check_not_owned(run: Run, target: Path, inputs: tuple[Path, ...] = ()) -> None:
    """Refuse an output onto a file the run owns (checkpoints/, history, config, summary, the
    lock), onto the run's data file or onto another input of the command."""
    if run_owned(run.run_dir, target):
        raise InputError(f"is a file of the run in {run.run_dir} (its checkpoints, history, "
                         "config, summary or lock); write the output elsewhere",
                         source=str(target), field="--out")
    output_target(target, "--out", inputs=(run.config.data_path, *inputs))


def _note_skipped(run: Run, quiet: bool) -> None:
    if run.skipped_lines and not quiet:
        lines = run.skipped_lines
        print(f"ntkcheck: note: {printable(run.run_dir / 'history.jsonl')}: skipped "
              f"{len(lines)} torn or corrupt line(s) (line {lines[0]}"
              f"{' ...' if len(lines) > 1 else ''}); `train --resume` removes them",
              file=sys.stderr)


@app.command("predict")
@cli_errors
def predict_command(
    run_dir: Path = typer.Argument(..., metavar="RUN_DIR", show_default=False,
                                   help="Output directory of a train run."),
    data: Path = typer.Argument(..., metavar="DATA", show_default=False,
                                help="Token dataset (.npz: tokens, optional weights/mask/"
                                     "lengths; targets, if present, give the loss)."),
    out: Path = typer.Option(..., "--out", "-o", show_default=False,
                             help="Predictions file (.npz)."),
    step: Optional[int] = typer.Option(None, "--step", show_default="last checkpoint",
                                       help="Checkpoint step of the heads."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing."),
) -> None:
    """Evaluate the trained model on DATA: predictions (N, n, d') for the token loss or
    (N, d') pooled, written to --out with the names and the step."""
    if out.suffix.lower() != ".npz":
        raise InputError("must end in .npz", field="--out")
    output_target(out, "--out", inputs=[data])  # before any work
    run = load_run(run_dir)
    _check_not_owned(run, out, (data,))
    trained = run.model(step)
    tokens = load_token_npz(data)
    pred = trained.predict_arrays(tokens.tokens, tokens.weights)
    summary: dict[str, object] = {"run_dir": str(run_dir), "data": str(data),
                                  "step": trained.step, "loss_kind": trained.loss.value,
                                  "shape": list(pred.shape), "out": str(out)}
    if "targets" in tokens.extra:
        T = np.asarray(tokens.extra["targets"], dtype=np.float64)
        if T.shape != pred.shape:
            raise InputError(f"has shape {T.shape}; predictions have shape {pred.shape}",
                             source=str(data), field="targets")
        if trained.loss.value == "token":
            res = np.where((tokens.weights > 0)[..., None], pred - T, 0.0)
            loss = float(np.sum(tokens.weights[..., None] * res**2)) / (2 * len(pred))
        else:
            loss = float(np.sum((pred - T) ** 2)) / (2 * len(pred))
        summary["loss"] = loss
    atomic_savez(out, predictions=pred, names=np.array(tokens.names), step=np.int64(trained.step),
                 loss_kind=np.str_(trained.loss.value))
    if as_json:
        sys.stdout.write(json_text(summary) + "\n")
    elif not quiet:
        loss_text = f", loss {summary['loss']:.6e}" if "loss" in summary else ""
        print(f"wrote {printable(out)}: predictions {tuple(pred.shape)} from step {trained.step}"
              f"{loss_text}")
