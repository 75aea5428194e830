"""Figures of kernel spectra (``ntkcheck spectrum --plot``); needs the ``ntkcheck[plot]`` extra.

One PNG with

* the eigenvalues in ascending order on a log scale, with the round-off tolerance as a line
  (eigenvalues <= tolerance, which a log axis cannot show faithfully, are drawn hollow at
  |lambda|, and those with |lambda| below tolerance / 100, clipped to it, as hollow triangles,
  named so in the legend);
* for data whose affine hull has dimension 1 or 2, the LSE functions modulo affine functions of
  the smallest eigenvector c (in the distributions' own scale, max |c_i| = 1), in whitened
  coordinates s (z = T s): in 1-D the curves c_i (LSE_i - affine fit) of its largest entries and
  their sum; in 2-D a heatmap of sum_i c_i LSE_i minus its least-squares affine fit. For a
  dependency the combination is flat at round-off level.

Legends sit to the right of their axes, never over the data. Only matplotlib's object API with
the Agg canvas is used (no pyplot, no global backend switch);
the file is written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable

import numpy as np

from .dataset import Dataset
from .errors import InputError, install_hint
from .injectivity.probes import make_whitening
from .io import atomic_write
from .kernel_spectrum import KernelSpectrum

__all__ = ["PlotUnavailable", "require_matplotlib", "plot_spectrum", "spectrum_figure",
           "combination_modulo_affine"]

#: Half-width of the plotting window in whitened coordinates (the middle of the probe scales).
WINDOW = 6.0
#: Largest number of individual curves drawn in 1-D.
MAX_CURVES = 6


class PlotUnavailable(InputError):
    """matplotlib is not installed."""


def require_matplotlib() -> Callable[[KernelSpectrum, "str | Path", Dataset | None], None]:
    """Return :func:`plot_spectrum`, or raise PlotUnavailable naming the fix."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib; install it with "
                              + install_hint("plot", "matplotlib")) from None
    return plot_spectrum


def combination_modulo_affine(dataset: Dataset, coefficients: np.ndarray, transform: np.ndarray,
                              centre: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each c_i LSE_i and their sum at z = T s, minus least-squares affine fits in s.

    Parameters
    ----------
    coefficients : (N,) c
    transform : (d, r) T;  centre : (d,) m (the data are centred first: it only changes the
        affine part, which is removed, and keeps the values small)
    s : (G, r) grid points

    Returns
    -------
    terms : (G, N) c_i (LSE_i - fit_i)
    total : (G,) sum_i c_i LSE_i - its fit
    """
    F = dataset.translate(-centre).lse(s @ transform.T) * coefficients
    B = np.column_stack([np.ones(len(s)), s])
    q, _ = np.linalg.qr(B)
    terms = F - q @ (q.T @ F)
    total = F.sum(axis=1)
    total = total - q @ (q.T @ total)
    return terms, total


def plot_spectrum(spectrum: KernelSpectrum, path: "str | Path", dataset: Dataset | None = None,
                  dpi: int = 110) -> None:
    """Draw the spectrum (and, in 1-D / 2-D, the smallest eigenvector's combination) to PNG."""
    fig = spectrum_figure(spectrum, dataset)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))


def spectrum_figure(spectrum: KernelSpectrum, dataset: Dataset | None = None):
    """The matplotlib Figure that :func:`plot_spectrum` writes (Agg canvas, not shown)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    white = spectrum.whitening
    if dataset is not None and white is None:
        white = make_whitening(dataset, bool(spectrum.settings.get("whitening", True)))
    r = white.rank if (dataset is not None and white is not None) else 0
    panels = 2 if r in (1, 2) else 1
    fig = Figure(figsize=(7.4 * panels, 4.0), layout="constrained")  # legends at the right
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, panels, 1)
    _draw_eigenvalues(ax, spectrum)
    if panels == 2:
        ax2 = fig.add_subplot(1, panels, 2)
        c = np.array([spectrum.min_coefficients[n] for n in spectrum.names])
        if r == 1:
            _draw_curves(ax2, spectrum, dataset, white, c)
        else:
            _draw_heatmap(fig, ax2, dataset, white, c)
    return fig


def _legend_outside(ax) -> None:
    """The legend to the right of the axes, off the data (constrained layout makes room)."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)


def _draw_eigenvalues(ax, spectrum: KernelSpectrum) -> None:
    lam = spectrum.eigenvalues
    tol = spectrum.tolerance
    k = np.arange(1, lam.shape[0] + 1)
    floor = tol / 100 if tol > 0 else np.finfo(float).tiny
    shown = np.maximum(np.abs(lam), floor)
    above = lam > tol
    clipped = np.abs(lam) < floor
    within = ~above & ~clipped
    ax.semilogy(k[above], shown[above], "o", ms=4, color="C0", label="eigenvalue")
    if np.any(within):
        ax.semilogy(k[within], shown[within], "o", ms=5, mfc="none", color="C3",
                    label="|eigenvalue| within tolerance of 0")
    if np.any(clipped):
        ax.semilogy(k[clipped], shown[clipped], "v", ms=6, mfc="none", color="C3",
                    label=f"clipped: |eigenvalue| < {floor:.1e}, drawn at it")
    if tol > 0:
        ax.axhline(tol, color="0.4", ls="--", lw=1, label=f"tolerance {tol:.1e}")
    ax.set_xlabel("index (ascending)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("eigenvalue")
    ax.set_title(f"{spectrum.kernel} kernel spectrum")
    _legend_outside(ax)


def _draw_curves(ax, spectrum, dataset, white, c) -> None:
    s = np.linspace(-WINDOW, WINDOW, 401)[:, None]
    terms, total = combination_modulo_affine(dataset, c, white.transform, white.centre, s)
    order = np.argsort(-np.abs(c), kind="stable")[:MAX_CURVES]
    for i in order:
        if abs(c[i]) > 1e-8:  # entries at round-off level of a unit-max vector: not drawn
            ax.plot(s[:, 0], terms[:, i], lw=1.2, label=f"{c[i]:+.3g} {spectrum.names[i]}")
    ax.plot(s[:, 0], total, color="k", lw=2.2, label="sum")
    ax.set_xlabel("s (whitened coordinate)")
    ax.set_ylabel("c_i LSE_i modulo affine")
    ax.set_title("smallest eigenvector")
    _legend_outside(ax)


def _draw_heatmap(fig, ax, dataset, white, c) -> None:
    g = np.linspace(-WINDOW, WINDOW, 121)
    s1, s2 = np.meshgrid(g, g)
    s = np.column_stack([s1.ravel(), s2.ravel()])
    _, total = combination_modulo_affine(dataset, c, white.transform, white.centre, s)
    vmax = float(np.abs(total).max()) or 1.0
    image = ax.pcolormesh(s1, s2, total.reshape(s1.shape), shading="auto", cmap="RdBu_r",
                          vmin=-vmax, vmax=vmax)
    fig.colorbar(image, ax=ax, label="sum_i c_i LSE_i modulo affine")
    ax.set_xlabel("s1 (whitened)")
    ax.set_ylabel("s2 (whitened)")
    ax.set_aspect("equal")
    ax.set_title("smallest eigenvector")
