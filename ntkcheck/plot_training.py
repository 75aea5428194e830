"""Curves of a training run (``ntkcheck plot RUN_DIR``); needs the ``ntkcheck[plot]`` extra.

Four panels against the step, each on a log value scale: the loss R, the squared gradient norm
(H L) sum |dR/dtheta|^2, the smallest eigenvalue of the empirical NTK (where it was recorded),
and the PL ratio grad_norm_sq / (2 R) with lambda_min drawn on the same axes (the PL bound
says the ratio stays above it). Values <= 0 cannot be shown on a log axis: they are left out
and counted in the panel's title. The format follows the file suffix (.png, .svg, .pdf); the
file is written atomically. Only matplotlib's object API with the Agg canvas is used.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, install_hint
from .io import atomic_write
from .meanfield.trained import Run
from .plot import PlotUnavailable

__all__ = ["plot_run", "FORMATS", "require_matplotlib"]

#: File formats by suffix.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def require_matplotlib() -> None:
    """Raise PlotUnavailable naming the fix when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except ImportError:
        raise PlotUnavailable("plotting needs matplotlib; install it with "
                              + install_hint("plot", "matplotlib")) from None


def plot_format(path: str | Path) -> str:
    """'png' | 'svg' | 'pdf' from the suffix, or an InputError listing them."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"has suffix '{Path(path).suffix or '(none)'}'; use "
                         f"{', '.join(FORMATS)}", field="--out")
    return fmt


def _panel(ax: Any, steps: np.ndarray, values: np.ndarray, title: str, **style: Any) -> None:
    ok = np.isfinite(values) & (values > 0)
    dropped = int(np.sum(np.isfinite(values) & (values <= 0)))
    if ok.any():
        ax.plot(steps[ok], values[ok], **style)
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title + (f" ({dropped} value(s) <= 0 not shown)" if dropped else ""),
                 fontsize=10)
    ax.set_xlabel("step")
    ax.grid(True, which="both", alpha=0.3)


def plot_run(run: Run, path: str | Path, dpi: int = 110) -> None:
    """Draw the four curves of ``run`` to ``path`` (.png, .svg or .pdf)."""
    fmt = plot_format(path)
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h = run.history
    if h["step"].size == 0:
        raise InputError("has no recorded step (empty history.jsonl); train first",
                         source=str(run.run_dir))
    steps = h["step"].astype(np.float64)
    fig = Figure(figsize=(10, 7), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    _panel(axes[0, 0], steps, h["loss"], "loss R", color="C0")
    _panel(axes[0, 1], steps, h["grad_norm_sq"], "grad_norm_sq = r^T K r", color="C1")
    _panel(axes[1, 0], steps, h["ntk_min_eig"], "smallest NTK eigenvalue lambda_min",
           color="C2", marker="o", linestyle="-")
    _panel(axes[1, 1], steps, h["pl_ratio"], "PL ratio grad_norm_sq / (2 R) >= lambda_min",
           color="C3", label="PL ratio")
    lam = h["ntk_min_eig"]
    ok = np.isfinite(lam) & (lam > 0)
    if ok.any():
        axes[1, 1].plot(steps[ok], lam[ok], "o", color="C2", label="lambda_min")
        axes[1, 1].set_yscale("log")
        axes[1, 1].legend(fontsize=9)
    m = run.config.model
    fig.suptitle(f"{run.run_dir.name}: {m.layers} layers x {m.heads} heads, key_dim "
                 f"{m.key_dim}, step_size {run.config.flow.step_size:g}", fontsize=11)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))
