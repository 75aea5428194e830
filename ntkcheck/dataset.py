"""A named list of token distributions on one R^d, with vectorised evaluation per family.

:class:`Dataset` validates names and dimensions once; :meth:`Dataset.lse` evaluates every
LSE_{mu_i}(z_m) as an (M, N) matrix, and :meth:`Dataset.tilted_moments` the tilted means and
covariances, with the distributions of one family packed into padded arrays so that the work is a
few BLAS products plus a vectorised logsumexp. Probes are processed in chunks sized so that no
temporary holds more than :data:`CHUNK_ELEMENTS` numbers, whatever M, N and n are.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Iterator, Sequence

import numpy as np

from .distributions import Discrete, Distribution, GaussianMixture, UniformBox
from .errors import InputError
from .special import uniform_lse, uniform_mean, uniform_var

__all__ = ["Dataset", "CHUNK_ELEMENTS"]

#: Largest number of float64 entries in the temporaries alive at once (2^22 entries = 32 MiB).
CHUNK_ELEMENTS = 1 << 22
#: Discrete laws are packed in buckets of lengths within this factor of each other.
LENGTH_BUCKET = 1.25
#: Probes per tile of the discrete laws' scores (:meth:`Dataset.lse`): enough for GEMM speed.
PROBE_TILE = 256
#: Largest tile of a discrete pack's scores (entries; 2^19 = 4 MiB): the tile is read five times
#: (shift, exponential, sum), so one that stays in cache runs faster (N = 4000, n = 32, d = 16,
#: 8034 probes, 2 cores: 1.73 s against 1.94 s with tiles of 2^21 entries; 2^18: 1.84 s).
LSE_TILE_ELEMENTS = 1 << 19
#: Score entries (probes x atoms of the discrete laws, padding included) from which one
#: :meth:`Dataset.lse` call reduces the scores with the compiled kernel
#: (:func:`ntkcheck._compiled.lse_scores`, when numba is installed) instead of numpy: its
#: first use in a process costs about 0.5 s (importing numba, loading the cached machine
#: code), which it saves back from about 4e8 entries (1.2 ns per entry on 2 cores, measured on
#: an AVX2 machine whose numpy exp has no SIMD path); 2^29 keeps small analyses as they were
#: (N = 1000 sequences of 64 tokens at 2066 probes: 1.3e8 entries) and takes N = 4000 x 32
#: tokens at 8034 probes (1.0e9: features 5.4 s with numpy, measured).
COMPILED_LSE_ENTRIES = 1 << 29
#: Threads evaluating chunks of probes concurrently.
WORKERS = max(1, min(4, os.cpu_count() or 1))


def chunks(total: int, per_item: int, budget: int | None = None) -> Iterator[slice]:
    """Slices of range(total) with at most ``max(1, budget // per_item)`` items each
    (``budget`` defaults to the current :data:`CHUNK_ELEMENTS`)."""
    budget = CHUNK_ELEMENTS if budget is None else budget
    step = max(1, budget // max(per_item, 1))
    for start in range(0, total, step):
        yield slice(start, min(total, start + step))


@dataclass(frozen=True)
class _DiscretePack:
    """Discrete laws packed token-major: scores come out as (m, n, Nf), reduced over axis 1
    (elementwise over contiguous slabs, much faster than reducing a short last axis)."""

    index: np.ndarray  # (Nf,) positions in the dataset
    atoms: np.ndarray  # (n, Nf, d), zero padded
    log_weights: np.ndarray  # (n, Nf), -inf padded

    def scores(self, z: np.ndarray) -> np.ndarray:
        n, nf, d = self.atoms.shape
        s = (z @ self.atoms.reshape(n * nf, d).T).reshape(len(z), n, nf)
        s += self.log_weights
        return s

    def lse_tile(self, z: np.ndarray, fs: slice, compiled: bool = False) -> np.ndarray:
        """LSE of the laws ``fs`` at probes z (m, d), shape (len(fs), m): the scores of one
        tile as n batched GEMMs (atoms (nf, d) @ z^T), reduced over the token axis 0 (an
        elementwise pass over contiguous slabs), overflow-safe (max subtracted).

        ``compiled``: the scores as one GEMM of the tile's atoms packed (n f, d), reduced by
        :func:`ntkcheck._compiled.lse_scores` (the same operations in two passes, its own exp):
        half the time (n = 64, f = 32, 256 probes, one core: 2.0 ms against 4.6 ms)."""
        if compiled:
            from ._compiled import lse_scores
            a = np.ascontiguousarray(self.atoms[:, fs, :])
            n, f, d = a.shape
            s = (a.reshape(n * f, d) @ z.T).reshape(n, f, z.shape[0])
            out = np.empty((f, z.shape[0]))
            lse_scores(s, np.ascontiguousarray(self.log_weights[:, fs]), out)
            return out
        s = np.matmul(self.atoms[:, fs, :], z.T)  # (n, f, m)
        s += self.log_weights[:, fs, None]
        mx = s.max(axis=0)
        s -= mx
        np.exp(s, out=s)
        return np.log(s.sum(axis=0)) + mx

    @cached_property
    def centres(self) -> np.ndarray:
        """(Nf, d) untilted means; covariances are computed from atoms centred on them."""
        w = np.exp(self.log_weights)  # 0 at padding
        return np.einsum("jf,jfa->fa", w, self.atoms)

    @cached_property
    def centred(self) -> np.ndarray:
        """(Nf, n, d) atoms minus their distribution's mean (distribution-major for BLAS)."""
        return np.ascontiguousarray(self.atoms.transpose(1, 0, 2)) - self.centres[:, None, :]

    @cached_property
    def outer(self) -> np.ndarray:
        """(Nf, n, d*d) outer products of the centred atoms."""
        c = self.centred
        return (c[..., :, None] * c[..., None, :]).reshape(c.shape[0], c.shape[1], -1)


@dataclass(frozen=True)
class _UniformPack:
    index: np.ndarray
    low: np.ndarray  # (Nf, d)
    high: np.ndarray  # (Nf, d)


@dataclass(frozen=True)
class _MixturePack:
    index: np.ndarray
    log_weights: np.ndarray  # (K, Nf), -inf padded
    means: np.ndarray  # (K, Nf, d)
    covariances: np.ndarray  # (K, Nf, d, d)

    def scores(self, z: np.ndarray) -> np.ndarray:
        """Component scores (m, K, Nf)."""
        quad = np.einsum("ma,kfab,mb->mkf", z, self.covariances, z, optimize=True) / 2.0
        return np.einsum("ma,kfa->mkf", z, self.means, optimize=True) + quad + self.log_weights


@dataclass(frozen=True)
class Dataset:
    """Named token distributions mu_1..mu_N on R^d (SPEC §2).

    Parameters
    ----------
    names : sequence of str, length N
        Unique, non-empty names used in every report.
    distributions : sequence of Distribution, length N
        All of the same dimension d.
    source : str, optional
        Where the data came from (a file name), for messages.
    """

    names: tuple[str, ...]
    distributions: tuple[Distribution, ...]
    source: str | None = None

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        dists = tuple(self.distributions)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "distributions", dists)
        if len(dists) == 0:
            raise InputError("the dataset is empty; give at least one distribution",
                             source=self.source)
        if len(names) != len(dists):
            raise InputError(f"{len(names)} names for {len(dists)} distributions",
                             source=self.source, field="names")
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if not name:
                raise InputError(f"entry {i} is empty; give every distribution a name",
                                 source=self.source, field="names")
            if name in seen:
                raise InputError(f"'{name}' is used twice (entries {seen[name]} and {i}); "
                                 "names must be unique", source=self.source, field="names")
            seen[name] = i
        dims = {d.dim for d in dists}
        if len(dims) != 1:
            first = dists[0].dim
            bad = next(i for i, d in enumerate(dists) if d.dim != first)
            raise InputError(
                f"'{names[bad]}' has dimension {dists[bad].dim} but '{names[0]}' has {first}; "
                "all distributions must live in the same R^d", source=self.source,
                field="distributions")

    @classmethod
    def from_tokens(cls, tokens: Sequence[np.ndarray], weights: Sequence[np.ndarray] | None = None,
                    names: Sequence[str] | None = None, source: str | None = None) -> "Dataset":
        """One :class:`Discrete` law per token sequence (uniform weights unless given)."""
        n = len(tokens)
        names = list(names) if names is not None else [f"seq{i}" for i in range(n)]
        dists = []
        for i, x in enumerate(tokens):
            try:
                dists.append(Discrete(x, None if weights is None else weights[i]))
            except InputError as err:
                raise err.located(source, f"sequence {i}") from None
        return cls(tuple(names), tuple(dists), source)

    def translate(self, shift: np.ndarray) -> "Dataset":
        """The dataset with every distribution translated by ``shift`` (d,)."""
        eye = np.eye(self.dim)
        return Dataset(self.names, tuple(d.affine_image(eye, shift) for d in self.distributions),
                       self.source)

    def __len__(self) -> int:
        return len(self.distributions)

    def select(self, indices) -> "Dataset":
        """The distributions ``indices`` (in that order) with their names, as a Dataset."""
        return Dataset(tuple(self.names[i] for i in indices),
                       tuple(self.distributions[i] for i in indices), self.source)

    @property
    def dim(self) -> int:
        return self.distributions[0].dim

    @property
    def rounded_inputs(self) -> dict[str, tuple[str, ...]]:
        """{name: parameters} for the distributions whose written values are not binary64
        numbers (:attr:`Distribution.rounded_inputs`): the numerical test sees their nearest
        doubles, and a relation of those need not hold for the values as written (SPEC §3a).
        Empty for ``.npz`` data (every stored value is a double)."""
        return {n: d.rounded_inputs for n, d in zip(self.names, self.distributions)
                if d.rounded_inputs}

    @cached_property
    def _packs(self) -> tuple:
        packs = []
        groups: dict[type, list[int]] = {}
        for i, dist in enumerate(self.distributions):
            groups.setdefault(type(dist), []).append(i)
        d = self.dim
        for kind, idx in groups.items():
            members = [self.distributions[i] for i in idx]
            index = np.array(idx)
            if kind is Discrete:
                # one pack per length bucket (lengths within a factor LENGTH_BUCKET): padding
                # to the longest sequence of the whole dataset would waste up to half of the
                # scores' GEMMs and exponentials on real data of mixed lengths
                sizes = np.array([m.atoms.shape[0] for m in members])
                key = np.floor(np.log(sizes) / np.log(LENGTH_BUCKET)).astype(int)
                for k in np.unique(key):
                    sel = np.flatnonzero(key == k)
                    n = int(sizes[sel].max())
                    atoms = np.zeros((n, len(sel), d))
                    logw = np.full((n, len(sel)), -np.inf)
                    for f, j in enumerate(sel):
                        m = members[j]
                        atoms[: len(m.weights), f] = m.atoms
                        logw[: len(m.weights), f] = np.log(m.weights)
                    packs.append(_DiscretePack(index[sel], atoms, logw))
            elif kind is UniformBox:
                packs.append(_UniformPack(index, np.array([m.low for m in members]),
                                          np.array([m.high for m in members])))
            elif kind is GaussianMixture:
                k = max(m.weights.shape[0] for m in members)
                logw = np.full((k, len(idx)), -np.inf)
                means = np.zeros((k, len(idx), d))
                covs = np.zeros((k, len(idx), d, d))
                for f, m in enumerate(members):
                    kk = len(m.weights)
                    logw[:kk, f] = np.log(m.weights)
                    means[:kk, f] = m.means
                    covs[:kk, f] = m.covariances
                packs.append(_MixturePack(index, logw, means, covs))
            else:  # pragma: no cover - custom Distribution subclasses
                raise TypeError(f"unsupported distribution type {kind.__name__}")
        return tuple(packs)

    def _per_probe_cost(self, pack, moments: bool = False) -> int:
        """Entries per probe of the largest temporary for one family pack."""
        d = self.dim
        if isinstance(pack, _DiscretePack):
            return pack.atoms.shape[0] * pack.atoms.shape[1] * (d if moments else 1)
        if isinstance(pack, _MixturePack):
            return pack.means.shape[0] * pack.means.shape[1] * d * (d if moments else 1)
        return pack.low.shape[0] * d * (d if moments else 1)

    def lse(self, z: np.ndarray, progress: Callable[[int, int], None] | None = None
            ) -> np.ndarray:
        """The feature matrix F[m, i] = LSE_{mu_i}(z_m), shape (M, N).

        Chunks of probes run on :data:`WORKERS` threads (numpy releases the GIL in its
        kernels); each chunk writes its own rows of the output. ``progress(done, total)``, if
        given, is called in the calling thread after each chunk, in order (so a caller showing
        progress needs no slicing of z, whose every slice would end on idle workers).
        """
        z = np.asarray(z, dtype=np.float64)
        out = np.empty((z.shape[0], len(self)))
        budget = max(1, CHUNK_ELEMENTS // WORKERS)
        compiled = self._compiled_lse(z.shape[0])
        tasks: list = []
        for pack in self._packs:
            if isinstance(pack, _DiscretePack):
                # tiles of (probes x distributions): a tile of PROBE_TILE probes keeps the
                # scores a GEMM (a chunk of one or two probes against every atom would be a
                # memory-bound GEMV: 20x slower at 1.3 million atoms)
                n, nf, _ = pack.atoms.shape
                m = min(z.shape[0], PROBE_TILE)
                per = max(1, min(budget, LSE_TILE_ELEMENTS) // (n * m))
                tasks += [(pack, sl, slice(f, min(nf, f + per)))
                          for sl in chunks(z.shape[0], 1, m) for f in range(0, nf, per)]
            else:
                tasks += [(pack, sl, None) for sl in chunks(z.shape[0],
                                                            self._per_probe_cost(pack), budget)]

        def work(task) -> None:
            pack, sl, fs = task
            zc = z[sl]
            if isinstance(pack, _UniformPack):
                h = zc[:, None, :] * (pack.high - pack.low)
                out[sl, pack.index] = zc @ pack.low.T + uniform_lse(h).sum(axis=2)
            elif isinstance(pack, _DiscretePack):
                out[sl, pack.index[fs]] = pack.lse_tile(zc, fs, compiled).T
            else:
                out[sl, pack.index] = _logsumexp_axis1(pack.scores(zc))

        if WORKERS > 1 and len(tasks) > 1:
            # our threads each run a GEMM: BLAS on one thread meanwhile (no 2 x 2 threads
            # on 2 cores; oversubscription made this stage 10x slower on a loaded machine)
            from ._threads import blas_single_thread
            with blas_single_thread(), ThreadPoolExecutor(WORKERS) as pool:
                for done, _ in enumerate(pool.map(work, tasks), 1):
                    if progress is not None:
                        progress(done, len(tasks))
        else:
            for done, task in enumerate(tasks, 1):
                work(task)
                if progress is not None:
                    progress(done, len(tasks))
        return out

    def _compiled_lse(self, probes: int) -> bool:
        """Whether :meth:`lse` at ``probes`` probes reduces the discrete laws' scores with the
        compiled kernel: at least :data:`COMPILED_LSE_ENTRIES` score entries, numba installed."""
        atoms = sum(p.atoms.shape[0] * p.atoms.shape[1] for p in self._packs
                    if isinstance(p, _DiscretePack))
        if probes * atoms < COMPILED_LSE_ENTRIES:
            return False
        from ._compiled import AVAILABLE
        return AVAILABLE

    def tilted_moments(self, z: np.ndarray, covariance: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Gradients (M, N, d) and Hessians (M, N, d, d) of every LSE at probes ``z`` (M, d).

        Only for moderate M * N * d^2; :mod:`ntkcheck.kernels` consumes them chunk by chunk
        through :meth:`iter_tilted_moments`.
        """
        means, covs = [], []
        for sl, g, h in self.iter_tilted_moments(z, covariance):
            means.append(g)
            covs.append(h)
        mean = np.concatenate(means, axis=0)
        return mean, (np.concatenate(covs, axis=0) if covariance else None)

    def iter_tilted_moments(self, z: np.ndarray, covariance: bool = True,
                            budget: int | None = None):
        """Yield ``(slice, grad (m, N, d), hess (m, N, d, d) or None)`` over chunks of probes."""
        z = np.asarray(z, dtype=np.float64)
        d, N = self.dim, len(self)
        per_probe = N * d * (d + 1) if covariance else N * d
        per_probe = max(per_probe, max(self._per_probe_cost(p, True) for p in self._packs))
        for sl in chunks(z.shape[0], per_probe, budget):
            zc = z[sl]
            m = zc.shape[0]
            grad = np.empty((m, N, d))
            hess = np.empty((m, N, d, d)) if covariance else None
            for pack in self._packs:
                g, h = _pack_moments(pack, zc, covariance)
                grad[:, pack.index] = g
                if covariance:
                    hess[:, pack.index] = h
            yield sl, grad, hess

    @cached_property
    def pooled_moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the equal-weight mixture (1/N) sum_i mu_i."""
        g, h = _all_moments_at_zero(self)
        mean = g.mean(axis=0)
        centred = g - mean
        cov = h.mean(axis=0) + centred.T @ centred / len(self)
        return mean, (cov + cov.T) / 2.0


def _all_moments_at_zero(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    g, h = ds.tilted_moments(np.zeros((1, ds.dim)))
    return g[0], h[0]


def _pack_moments(pack, z: np.ndarray, covariance: bool):
    """Tilted means (m, Nf, d) and covariances (m, Nf, d, d) of one family pack."""
    if isinstance(pack, _UniformPack):
        width = pack.high - pack.low
        h = z[:, None, :] * width
        mean = pack.low + width * uniform_mean(h)
        if not covariance:
            return mean, None
        var = width**2 * uniform_var(h)
        d = z.shape[1]
        cov = np.zeros(var.shape + (d,))
        idx = np.arange(d)
        cov[..., idx, idx] = var
        return mean, cov
    p = pack.scores(z)  # (m, n, Nf)
    p -= p.max(axis=1)[:, None, :]
    np.exp(p, out=p)
    p /= p.sum(axis=1)[:, None, :]  # softmax weights / responsibilities
    if isinstance(pack, _DiscretePack):
        # batched BLAS over distributions: (Nf, m, n) @ (Nf, n, .); the covariance is
        # E[y y^T] - mu mu^T on atoms centred per distribution, so the difference involves
        # quantities of the size of the spread, not of |y|^2
        pt = np.ascontiguousarray(p.transpose(2, 0, 1))
        mc = pt @ pack.centred  # (Nf, m, d) tilted mean minus the untilted one
        mean = (mc + pack.centres[:, None, :]).transpose(1, 0, 2)
        if not covariance:
            return mean, None
        nf, m, d = mc.shape
        cov = (pt @ pack.outer).reshape(nf, m, d, d)
        cov -= mc[..., :, None] * mc[..., None, :]
        return mean, cov.transpose(1, 0, 2, 3)
    comp_means = pack.means[None] + np.einsum("kfab,mb->mkfa", pack.covariances, z, optimize=True)
    mean = np.einsum("mkf,mkfa->mfa", p, comp_means, optimize=True)
    if not covariance:
        return mean, None
    centred = comp_means - mean[:, None, :, :]
    cov = np.einsum("mkf,kfab->mfab", p, pack.covariances, optimize=True)
    cov += np.einsum("mkf,mkfa,mkfb->mfab", p, centred, centred, optimize=True)
    return mean, cov


def _logsumexp_axis1(s: np.ndarray) -> np.ndarray:
    """log sum_j exp(s[:, j, :]) for scores (m, n, Nf), overwriting ``s``; -inf entries are
    padding. Every (m, f) has a finite entry, so the max is finite."""
    mx = s.max(axis=1)
    s -= mx[:, None, :]
    np.exp(s, out=s)
    return np.log(s.sum(axis=1)) + mx
