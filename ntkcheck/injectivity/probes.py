"""The probe law and its scales (SPEC §3, steps 1-2; whitening in SPEC §3a).

Geometry (:mod:`ntkcheck.injectivity.geometry`): coordinates are equilibrated by powers of two,
the affine hull is decided per coordinate's own round-off, and probes are whitened: for an
invertible affine map y -> A (y - m), LSE_{A(mu - m)}(s) = LSE_mu(A^T s) - <A^T s, m>, so probing
the data at z = A^T s is the same as probing the whitened data at s, with no rounding of the
data itself. When the pooled support lies in an r-dimensional affine subspace the probes span
only that subspace (SPEC §2: the test reduces to the affine hull).

Probe law: s ~ N(0, sigma^2 I_r), the probes split evenly (round-robin) over the scales sigma.
With ``scales="auto"`` (default) these are :data:`DEFAULT_SCALES` = (1, 3, 10, 30), which see the
structure of distributions whose internal spread rho_i (whitened RMS radius) is of order 1, plus,
for every distribution much tighter (rho_i < 1/10) or much wider (rho_i > 10) than the pooled
data, the scales (1, 3, 10, 30) / rho_i rounded to half-decades: the LSE of mu_i has its
non-affine structure where sigma rho_i is of order 1 to 30 (below, only its low cumulants are
visible; above, it is close to its support function). That is enough in the following sense:
in exact arithmetic any M >= N + r + 1 generic probes decide the condition (LSE functions are
analytic), and in floating point a column's non-affine part is then O(1) on a fixed share of the
rows instead of buried under round-off. M defaults to max(2 (N + d + 1), 64 x number of scales).
Rows of scale sigma are weighted by 1/sigma so that every scale contributes comparably to the
column norms (a row weighting keeps the rank test exact: it multiplies F and the affine basis
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..dataset import Dataset
from ..errors import InputError
from ..progress import Progress, working
from .geometry import Geometry, dataset_geometry

#: The probe map and centre (an alias kept for the kernels and plots).
Whitening = Geometry

__all__ = ["ProbeSet", "Whitening", "make_whitening", "make_probes", "probe_settings",
           "default_probe_count", "auto_scales", "DEFAULT_SCALES", "OVERSAMPLING",
           "PROBES_PER_SCALE", "MAX_SCALE", "SPREAD_BAND", "MAX_SCALES"]

DEFAULT_SCALES: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
#: Default probe count is ``max(OVERSAMPLING * (N + d + 1), PROBES_PER_SCALE * n_scales)``.
OVERSAMPLING = 2
PROBES_PER_SCALE = 64
#: A distribution whose internal spread rho_i (whitened) lies outside
#: [1 / SPREAD_BAND, SPREAD_BAND] gets probe scales of its own (module docstring).
SPREAD_BAND = 10.0
#: At most this many probe scales (adaptive scales are merged on a coarser grid beyond it).
MAX_SCALES = 16
#: Largest probe scale accepted (whitened units): beyond it exp overflows for any spread.
MAX_SCALE = 1e100


@dataclass(frozen=True)
class ProbeSet:
    """Probe points in whitened coordinates ``s`` (M, r) and data coordinates ``z`` (M, d)."""

    s: np.ndarray
    z: np.ndarray
    scale: np.ndarray  # (M,) the scale each probe was drawn at
    seed: int



def make_whitening(dataset: Dataset, whiten: bool = True,
                   progress: Progress | None = None) -> Geometry:
    """Pooled centre, affine hull and (optionally) whitening map of the dataset (unit-invariant:
    see :mod:`ntkcheck.injectivity.geometry`); ``progress`` hears ``geometry`` with done /
    total in support rows (ticked per row block)."""
    with working(progress, "geometry"):
        return dataset_geometry(dataset, whiten)


def auto_scales(geometry: Geometry, base=DEFAULT_SCALES) -> tuple[float, ...]:
    """``base`` plus (1, 3, 10, 30) / rho_i for distributions much tighter or wider than the pool.

    rho_i is rounded to half-decades so that a thousand clusters of similar spread add one set of
    scales; beyond :data:`MAX_SCALES` scales, evenly spaced bins are kept, always including the
    two extreme ones (module docstring).
    """
    rho = np.asarray(geometry.spreads, dtype=float)
    rho = rho[(rho > 0) & np.isfinite(rho)]
    odd = rho[(rho < 1.0 / SPREAD_BAND) | (rho > SPREAD_BAND)]
    base = tuple(float(s) for s in base)
    if odd.size == 0:
        return base
    bins = np.unique(np.round(-2.0 * np.log10(odd)) / 2.0)
    room = max(1, (MAX_SCALES - len(base)) // 4)
    if len(bins) > room:
        bins = bins[np.unique(np.round(np.linspace(0, len(bins) - 1, room)).astype(int))]
    extra = {float(f"{10.0 ** b * f:.3g}") for b in bins for f in (1.0, 3.0, 10.0, 30.0)}
    # scales no probe law accepts are dropped, never an error about an option not given (the
    # geometry holds spreads within reach; this only guards that contract)
    extra = {s for s in extra if 0 < s <= MAX_SCALE}
    return tuple(sorted(set(base) | extra))


def default_probe_count(n_distributions: int, dim: int, n_scales: int = len(DEFAULT_SCALES)) -> int:
    """max(OVERSAMPLING (N + d + 1), PROBES_PER_SCALE x number of scales)."""
    return max(OVERSAMPLING * (n_distributions + dim + 1), PROBES_PER_SCALE * n_scales)


def probe_settings(scales, probes: int | None, n_distributions: int,
                   dim: int) -> tuple[tuple[float, ...], int]:
    """Validated (scales, M): positive finite scales, M >= 1 (default
    max(2 (N + d + 1), 64 x number of scales))."""
    scales = tuple(float(s) for s in scales)
    if not scales or any(not np.isfinite(s) or s <= 0 or s > MAX_SCALE for s in scales):
        raise InputError(f"must be positive finite numbers <= {MAX_SCALE:g} (whitened units)",
                         field="scales")
    M = (int(probes) if probes is not None
         else default_probe_count(n_distributions, dim, len(scales)))
    if M < 1:
        raise InputError(f"must be >= 1, got {M}", field="probes")
    return scales, M


def make_probes(whitening: Whitening, count: int, scales=DEFAULT_SCALES, seed: int = 0) -> ProbeSet:
    """``count`` Gaussian probes, split evenly (round-robin) over ``scales``."""
    rng = np.random.default_rng(seed)
    scale = np.asarray(scales, dtype=float)[np.arange(count) % len(scales)]
    s = rng.standard_normal((count, whitening.rank)) * scale[:, None]
    z = s @ whitening.transform.T
    return ProbeSet(s, z, scale, seed)
