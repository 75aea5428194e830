"""``ntkcheck generate teacher``: synthetic data sets."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..errors import InputError
from ..io.atomic import atomic_savez
from ..meanfield.loss import LossKind
from ..meanfield.teacher import teacher_data
from .app import app, cli_errors

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
) -> None:
    """Tokens x ~ N(0, I) and targets from a random teacher transformer with small heads."""
    e = dim if target_dim is None else target_dim
    if e > dim:
        raise InputError(f"must be <= --dim = {dim}, got {e}", field="--target-dim")
    if out.suffix != ".npz":
        raise InputError("must end in .npz", field="--out")
    arrays = teacher_data(samples=samples, tokens=tokens, dim=dim, layers=layers, heads=heads,
                          key_dim=key_dim, target_dim=e, loss=loss, scale=scale, seed=seed)
    atomic_savez(out, **arrays)
    if not quiet:
        shape = arrays["targets"].shape
        print(f"wrote {out}: tokens {arrays['tokens'].shape}, {loss.value} targets {shape}, "
              f"teacher {layers} layers x {heads} heads (scale {scale:g}, seed {seed})")
