"""``ntkcheck train CONFIG``: run (or resume) the mean-field transformer's gradient flow."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..meanfield.adjoint import resolve_backend
from ..meanfield.config import load_train_config, load_training_set
from ..meanfield.explain import ntk_explanation
from ..meanfield.fast import AVAILABLE as fast_available, FAST_HINT
from ..meanfield.flow import StepRecord
from ..meanfield.run import TrainResult, train
from ..io.escape import json_text
from ..io.paths import printable
from ..resources import resolve_max_memory
from .app import (EXIT_INTERRUPTED, EXIT_TERMINATED, app, cli_errors, closed_stdout_exits,
                  max_memory_option, stderr_console, stdout_console)

__all__ = ["train_command", "render_summary"]


class _PlainProgress:
    """About ten lines on stderr over the run (not a terminal: logs, CI)."""

    def __init__(self, start: int, total: int):
        self.start, self.total = start, total
        self.every = max(1, (total - start) // 10)

    def __call__(self, record: StepRecord) -> None:
        if (record.step - self.start) % self.every == 0 or record.step >= self.total:
            ntk = "" if record.ntk_min_eig is None else f" ntk_min_eig {record.ntk_min_eig:.3e}"
            print(f"step {record.step}/{self.total} loss {record.loss:.6e} "
                  f"grad_norm_sq {record.grad_norm_sq:.3e}{ntk} time {record.time:.1f}s",
                  file=sys.stderr, flush=True)


def _rich_progress(start: int, total: int) -> tuple[Progress, Callable[[StepRecord], None]]:
    progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(),
                        console=stderr_console(), transient=True)
    task = progress.add_task("train", total=total, completed=start, loss="-")

    def update(record: StepRecord) -> None:
        progress.update(task, completed=record.step, loss=f"{record.loss:.3e}")

    return progress, update


@app.command("train")
@cli_errors
def train_command(
    config_file: Path = typer.Argument(..., metavar="CONFIG", show_default=False,
                                       help="Training configuration (.toml)."),
    steps: Optional[int] = typer.Option(None, "--steps", show_default="from CONFIG", help="Override flow.steps."),
    step_size: Optional[float] = typer.Option(None, "--step-size", show_default="from CONFIG",
                                              help="Override flow.step_size."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default="from CONFIG", help="Override output.dir."),
    ntk_every: Optional[int] = typer.Option(None, "--ntk-every", show_default="from CONFIG", help="Override output.ntk_every."),
    checkpoint_every: Optional[int] = typer.Option(None, "--checkpoint-every", show_default="from CONFIG",
                                                   help="Override output.checkpoint_every."),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue from the last checkpoint in the output dir."),
    overwrite: bool = typer.Option(False, "--overwrite",
                                   help="Start over in an output dir that holds a run."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no text report (--json is still printed); use the exit code."),
    max_memory: Optional[str] = max_memory_option(),
) -> None:
    """Run the gradient flow of CONFIG: exit 0 done, 2 bad input, 4 diverged, 130 interrupted
    (Ctrl-C), 143 terminated (SIGTERM); both leave a checkpoint to --resume from."""
    config = load_train_config(config_file).with_overrides(
        steps=steps, out=out, step_size=step_size, ntk_every=ntk_every,
        checkpoint_every=checkpoint_every)
    limit = resolve_max_memory(max_memory)
    training_set = load_training_set(config)
    if resolve_backend() == "numpy" and not fast_available and not quiet:
        print(f"ntkcheck: note: numba is not installed, training runs on the slower numpy "
              f"reference path; {FAST_HINT}", file=sys.stderr)
    total = config.flow.steps
    run = dict(resume=resume, overwrite=overwrite, training_set=training_set, max_memory=limit)
    if quiet:
        result = train(config, **run)
    elif sys.stderr.isatty():
        bar, update = _rich_progress(0, total)
        with bar:
            result = train(config, progress=update, **run)
    else:
        result = train(config, progress=_PlainProgress(0, total), **run)
    for note in result.notes:
        print(f"ntkcheck: note: {printable(note)}", file=sys.stderr)
    code = 0
    if result.status == "interrupted":
        code = EXIT_TERMINATED if result.signal == "SIGTERM" else EXIT_INTERRUPTED
    with closed_stdout_exits(code):
        if as_json:  # -q never silences a machine format asked for
            sys.stdout.write(json_text(result.to_dict()) + "\n")
        elif not quiet:
            render_summary(result)
    if result.status == "interrupted":
        what = "terminated" if code == EXIT_TERMINATED else "interrupted"
        print(f"ntkcheck: {what} at step {result.step}; checkpoint written, continue with "
              "--resume", file=sys.stderr)
        raise typer.Exit(code)


def _fmt(x: Optional[float], spec: str = ".4e") -> str:
    return "n/a" if x is None else format(x, spec)


def render_summary(result: TrainResult) -> None:
    """Status, losses, time, gradient and NTK figures (stdout)."""
    out = stdout_console()
    style = {"completed": "bold green", "converged": "bold green"}.get(result.status,
                                                                       "bold yellow")
    done = result.step - result.start_step
    resumed = f" (resumed at step {result.start_step})" if result.start_step else ""
    out.print(f"[{style}]{result.status}[/]: {done} steps{resumed}, step {result.step} of "
              f"{result.config.flow.steps}, in {result.time:.2f} s")
    ratio = result.loss_ratio
    out.print(f"loss        initial {_fmt(result.initial_loss)}  final "
              f"{_fmt(result.final_loss)}  ratio {_fmt(ratio, '.3e')}")
    out.print(f"gradient    grad_norm_sq {_fmt(result.grad_norm_sq, '.3e')}  pl_ratio "
              f"{_fmt(result.pl_ratio, '.3e')}")
    if result.ntk_min_eig is not None:
        out.print(f"ntk         smallest eigenvalue {result.ntk_min_eig:.4e} "
                  f"(step {result.ntk_step})")
        at = next((r for r in result.history if r.step == result.ntk_step), None)
        for line in ntk_explanation(result.ntk_min_eig, result.config.flow.step_size,
                                    at.pl_ratio if at else None, at.loss if at else None,
                                    result.ntk_step):
            out.print(f"            [dim]{escape(line)}[/]")
    else:
        out.print("ntk         not computed (set output.ntk_every > 0 or --ntk-every)")
    m = result.config.model
    out.print(f"model       {m.layers} layers x {m.heads} heads, key_dim {m.key_dim}, "
              f"{result.n_params} parameters, scheme {m.scheme} x {m.substeps}")
    out.print(f"run dir     {escape(str(result.run_dir))}")
    if result.checkpoint:
        out.print(f"checkpoint  {escape(str(result.checkpoint))}")


