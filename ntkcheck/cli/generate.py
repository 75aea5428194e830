"""``ntkcheck generate teacher``: synthetic data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

import math

from ..errors import InputError
from ..io.atomic import atomic_savez
from ..io.paths import output_target, printable
from ..meanfield.loss import LossKind
from ..meanfield.teacher import teacher_data
from ..resources import check_memory, resolve_max_memory
from .app import app, cli_errors, closed_stdout_exits, max_memory_option

__all__ = ["generate_app", "teacher_command"]

generate_app = typer.Typer(name="generate", help="Generate synthetic data sets.",
                           no_args_is_help=True)
app.add_typer(generate_app, name="generate")


@generate_app.command("teacher")
@cli_errors
def teacher_command(
    out: Path = typer.Option(..., "--out", "-o", help="Output .npz file.", show_default=False),
    samples: int = typer.Option(16, "--samples", min=1, help="Number of sequences N."),
    tokens: int = typer.Option(6, "--tokens", min=1, help="Tokens per sequence n."),
    dim: int = typer.Option(4, "--dim", min=1, help="Token dimension d."),
    layers: int = typer.Option(2, "--layers", min=1, help="Teacher layers L."),
    heads: int = typer.Option(32, "--heads", min=1, help="Teacher heads per layer H."),
    key_dim: int = typer.Option(4, "--key-dim", min=1, help="Teacher key dimension."),
    target_dim: Optional[int] = typer.Option(None, "--target-dim", min=1, show_default="d",
                                             help="Readout dimension d'."),
    loss: LossKind = typer.Option(LossKind.TOKEN, "--loss", help="Targets per token or pooled."),
    scale: float = typer.Option(1.0, "--scale", min=0.0,
                                help="Std of the teacher's Q, K, V entries (small values)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of tokens and teacher."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing."),
    max_memory: Optional[str] = max_memory_option(),
) -> None:
    """Tokens x ~ N(0, I) and targets from a random teacher transformer with small heads."""
    e = dim if target_dim is None else target_dim
    if e > dim:
        raise InputError(f"must be <= --dim = {dim}, got {e}", field="--target-dim")
    if not math.isfinite(scale):
        raise InputError(f"must be a finite number >= 0, got {scale}", field="--scale")
    if out.suffix != ".npz":
        raise InputError("must end in .npz", field="--out")
    output_target(out, "--out")
    # token states of every layer, attention weights of one head, heads and targets
    need = 8 * (samples * tokens * dim * (layers + 4) + 2 * samples * tokens * tokens
                + layers * heads * (2 * key_dim * dim + dim * dim))
    check_memory(need, resolve_max_memory(max_memory),
                 f"a teacher of {layers} x {heads} heads on {samples} x {tokens} tokens",
                 "use fewer --samples, --tokens, --layers or --heads")
    arrays = teacher_data(samples=samples, tokens=tokens, dim=dim, layers=layers, heads=heads,
                          key_dim=key_dim, target_dim=e, loss=loss, scale=scale, seed=seed)
    atomic_savez(out, **arrays)
    if not quiet:
        shape = arrays["targets"].shape
        with closed_stdout_exits(0):
            print(f"wrote {printable(out)}: tokens {arrays['tokens'].shape}, {loss.value} "
                  f"targets {shape}, teacher {layers} layers x {heads} heads (scale "
                  f"{scale:g}, seed {seed})")
