"""``--plot`` and ntkcheck.plot: valid PNG files for 1-D, 2-D and higher-dimensional data, the
LSE combination modulo affine functions, and a clean failure without matplotlib."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ntkcheck import Dataset
from ntkcheck.cli import app
from ntkcheck.io import load_dataset
from ntkcheck.kernel_spectrum import kernel_spectrum

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
runner = CliRunner()


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


needs_mpl = pytest.mark.skipif(not _has_matplotlib(), reason="matplotlib not installed")


@needs_mpl
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_plot_writes_png(tmp_path, dim):
    """The file starts with the PNG signature for curves (1-D), heatmap (2-D) and spectrum-only
    (3-D) figures; the CLI exit code is still the kernel's verdict."""
    rng = np.random.default_rng(dim)
    path = tmp_path / f"data{dim}.npz"
    np.savez(path, tokens=rng.normal(size=(4, 5, dim)))
    out = tmp_path / "spectrum.png"
    result = runner.invoke(app, ["spectrum", str(path), "--plot", str(out), "--quiet"])
    assert result.exit_code in (0, 3), result.output
    assert out.read_bytes()[:8] == PNG_MAGIC


@needs_mpl
def test_plot_of_a_dependency_sample(tmp_path):
    """samples/mixed.toml (1-D, one dependency): PNG written, exit 3."""
    out = tmp_path / "mixed.png"
    result = runner.invoke(app, ["spectrum", str(SAMPLES / "mixed.toml"), "--plot", str(out)])
    assert result.exit_code == 3
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_combination_modulo_affine_vanishes_on_a_dependency():
    """sum c_i LSE_i modulo affine is ~0 (<= 1e-10 of the individual terms) for the planted
    relation of samples/mixed.toml and O(1) for a perturbed c: the figure shows a dependency."""
    from ntkcheck.plot import combination_modulo_affine

    ds = load_dataset(SAMPLES / "mixed.toml")
    spec = kernel_spectrum(ds, "qk")
    c = np.array([spec.min_coefficients[n] for n in ds.names])
    s = np.linspace(-6, 6, 101)[:, None]
    w = spec.whitening
    terms, total = combination_modulo_affine(ds, c, w.transform, w.centre, s)
    assert np.abs(total).max() <= 1e-10 * np.abs(terms).max()
    c2 = c.copy()
    c2[0] += 0.1
    _, total2 = combination_modulo_affine(ds, c2, w.transform, w.centre, s)
    assert np.abs(total2).max() > 1e-3 * np.abs(terms).max()


def test_missing_matplotlib_is_a_clean_input_error(tmp_path, monkeypatch):
    """With matplotlib unimportable: exit 2, one line naming the extra to install, no file."""
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "x.png"
    result = runner.invoke(app, ["spectrum", str(SAMPLES / "mixed.toml"), "--plot", str(out)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install -e '.[plot]' in the ntkcheck clone" in lines[0]
    assert not out.exists()


def test_plot_function_without_matplotlib_raises(monkeypatch, tmp_path):
    """The library entry point raises PlotUnavailable (an InputError) instead of ImportError."""
    from ntkcheck.errors import InputError
    from ntkcheck.plot import plot_spectrum

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    ds = Dataset.from_tokens([np.eye(2), np.eye(2) * 2])
    with pytest.raises(InputError, match=r"pip install -e '\.\[plot\]' in the ntkcheck clone"):
        plot_spectrum(kernel_spectrum(ds), tmp_path / "y.png", ds)


@needs_mpl
@pytest.mark.parametrize("case", ["mixed.toml", "tokens_dependent.npz"])
def test_clipped_eigenvalues_are_marked_and_legends_stay_off_the_data(case):
    """Eigenvalues with |lambda| below tolerance / 100 (a log axis cannot show them) are drawn
    as triangles at that floor, exactly at their indices, and the legend names them clipped;
    every legend lies outside its axes (window extents do not overlap) and inside the figure
    (1-D data: both panels, spectrum and curves)."""
    from ntkcheck.plot import spectrum_figure

    ds = load_dataset(SAMPLES / case)
    spec = kernel_spectrum(ds)
    fig = spectrum_figure(spec, ds)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    floor = spec.tolerance / 100
    clipped = np.abs(spec.eigenvalues) < floor
    assert clipped.any()
    ax = fig.axes[0]
    marks = [line for line in ax.get_lines() if line.get_marker() == "v"]
    assert len(marks) == 1 and marks[0].get_label().startswith("clipped")
    np.testing.assert_array_equal(marks[0].get_xdata(), np.flatnonzero(clipped) + 1)
    assert np.all(marks[0].get_ydata() == floor)
    others = [x for line in ax.get_lines() if line.get_marker() == "o"
              for x in line.get_xdata()]
    assert not set(others) & set(np.flatnonzero(clipped) + 1)
    legends = [a for a in fig.axes if a.get_legend() is not None]
    assert len(legends) == (2 if case == "mixed.toml" else 1)
    for a in legends:
        box = a.get_legend().get_window_extent(renderer)
        assert not box.overlaps(a.get_window_extent(renderer)), (case, a.get_title())
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 + 0.5
        assert fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1 + 0.5


@needs_mpl
def test_no_clipped_marker_when_nothing_is_clipped():
    """Generic data (positive definite well above the tolerance): no triangle, no 'clipped'
    entry in the legend."""
    from ntkcheck.plot import spectrum_figure

    ds = Dataset.from_tokens(list(np.random.default_rng(1).normal(size=(5, 6, 3))))
    spec = kernel_spectrum(ds)
    assert spec.eigenvalues.min() > spec.tolerance
    fig = spectrum_figure(spec, ds)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert not any("clipped" in t for t in labels)
    assert not [line for line in fig.axes[0].get_lines() if line.get_marker() == "v"]
