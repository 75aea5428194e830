"""Token distributions and their log-sum-exp functions (SPEC §1).

Three families, each a validated frozen dataclass:

========================  ==========================================  ===============================
family                    parameters                                  LSE_mu(z)
========================  ==========================================  ===============================
:class:`Discrete`         atoms y_j (n, d), weights w_j (n,)           logsumexp_j(<z, y_j> + log w_j)
:class:`UniformBox`       low a (d,), high b (d,)                      sum_l a_l z_l + g((b_l - a_l) z_l)
:class:`GaussianMixture`  weights pi_k, means m_k, covariances S_k     logsumexp_k(log pi_k + <m_k, z>
                                                                       + z^T S_k z / 2)
========================  ==========================================  ===============================

with g(h) = log(expm1(h)/h). ``lse`` returns LSE at many probes z (M, d) at once; ``tilted_mean``
its gradient (mean of the tilted law mu_z ∝ exp(<z, y>) mu, the softmax-attention output) and
``tilted_cov`` its Hessian (covariance of mu_z). Everything is float64 and overflow-safe for any
finite z. Evaluation over a whole dataset is vectorised per family in :mod:`ntkcheck.dataset`.

Validation happens once, in the constructors: finite values, weights >= 0 with a positive total
(normalised; zero-weight atoms/components are dropped), low <= high, covariances symmetric and
positive semi-definite up to the relative tolerance :data:`PSD_RTOL` (singular allowed).

Exact values (SPEC §3a): ``rational`` holds the parameters exactly as given, for the exact test
(:mod:`ntkcheck.exact`) and the extended-precision re-check
(:mod:`ntkcheck.injectivity.verify`). A spec passes :class:`~fractions.Fraction` arrays
(``0.49`` in a file is 49/100); otherwise the constructors record the float64 values they were
given *before* normalising the weights or repairing a covariance, and the exact test reads each
float as its exact binary64 value. ``rational`` is None when the attributes are already those
values. A ``rational`` mapping given without weights while float weights are given gets those
weights (before normalisation): exact atoms never pair with the uniform weights by omission.

``rounded_inputs`` names the parameters whose written values are not binary64 numbers (a
decimal ``0.1``, ``"1/3"``, ``"0.500000000000000001"``): the float64 attributes are then their
nearest doubles, and a relation of those doubles need not hold for the values written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .errors import InputError
from .special import logsumexp, uniform_lse, uniform_mean, uniform_var

__all__ = ["Distribution", "Discrete", "UniformBox", "GaussianMixture", "PSD_RTOL"]

#: Relative tolerance for symmetry and positive semi-definiteness of covariances: an asymmetry or
#: a negative eigenvalue up to ``PSD_RTOL * ||S||_2`` is round-off in the input (decimals given to
#: 8+ significant digits) and is removed by symmetrising and clipping the eigenvalues at 0.
PSD_RTOL = 1e-8

#: What the constructors accept for an array parameter: numpy arrays, nested lists, objects with
#: ``__array__``, with float, int, Fraction or Decimal entries. After validation the attribute
#: is always a float64 numpy array.
Values = Any


def _rounded_fields(rational: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Keys of ``rational`` holding a value that is not a binary64 number (module docstring).

    Floats are binary64 values; an int, Fraction or Decimal x is one exactly when
    ``float(x) == x`` (Python compares them exactly)."""
    if not rational:
        return ()
    out = []
    for key, value in rational.items():
        if value is None:
            continue
        arr = value if isinstance(value, np.ndarray) else np.asarray(value, dtype=object)
        if arr.dtype != object:
            continue  # a numeric array: its entries are doubles (or exact small integers)
        for x in arr.ravel():
            if isinstance(x, float):
                continue
            try:
                if float(x) != x:
                    out.append(key)
                    break
            except (OverflowError, TypeError, ValueError):
                out.append(key)
                break
    return tuple(out)


def _finite_array(value: Any, field_name: str, ndim: int) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("must be an array of real numbers", field=field_name) from None
    if arr.ndim != ndim:
        raise InputError(
            f"must have {ndim} dimension(s), got shape {arr.shape}", field=field_name
        )
    if not np.all(np.isfinite(arr)):
        raise InputError("contains NaN or Inf; remove or replace those values", field=field_name)
    return arr


def _weights(value: Any, size: int, field_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(the weights as given, the weights normalised to sum 1)."""
    w = _finite_array(value, field_name, 1)
    if w.shape[0] != size:
        raise InputError(f"has {w.shape[0]} entries, expected {size}", field=field_name)
    if np.any(w < 0):
        raise InputError("has negative entries; weights must be >= 0", field=field_name)
    total = w.sum()
    if not total > 0:
        raise InputError("sum to zero; give at least one positive weight", field=field_name)
    return w, w / total


class Distribution:
    """Interface shared by the three families (SPEC §1)."""

    dim: int
    rational: Mapping[str, Any] | None

    @property
    def rounded_inputs(self) -> tuple[str, ...]:
        """Parameters whose written values are not binary64 numbers (module docstring),
        e.g. ``("covariances",)``; empty when the float64 attributes are the written values
        (up to the normalisation of the weights, which is exact in the re-checks)."""
        cached = self.__dict__.get("_rounded_inputs")
        if cached is None:
            cached = _rounded_fields(self.rational)
            self.__dict__["_rounded_inputs"] = cached
        return cached

    def lse(self, z: np.ndarray) -> np.ndarray:
        """LSE_mu(z) at probes ``z`` of shape (M, d); returns (M,)."""
        raise NotImplementedError

    def tilted_mean(self, z: np.ndarray) -> np.ndarray:
        """grad LSE_mu(z), the mean of the tilted law, shape (M, d)."""
        raise NotImplementedError

    def tilted_cov(self, z: np.ndarray) -> np.ndarray:
        """Hess LSE_mu(z), the covariance of the tilted law, shape (M, d, d)."""
        raise NotImplementedError

    @property
    def mean(self) -> np.ndarray:
        """Mean of mu (the tilted mean at z = 0)."""
        return self.tilted_mean(np.zeros((1, self.dim)))[0]

    @property
    def cov(self) -> np.ndarray:
        """Covariance of mu (the tilted covariance at z = 0)."""
        return self.tilted_cov(np.zeros((1, self.dim)))[0]

    def affine_image(self, A: np.ndarray, t: np.ndarray) -> "Distribution":
        """The law of A y + t for y ~ mu."""
        raise NotImplementedError


def _as_probes(z: np.ndarray, dim: int) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[None, :]
    if z.ndim != 2 or z.shape[1] != dim:
        raise ValueError(f"probes must have shape (M, {dim}), got {z.shape}")
    return z


@dataclass(frozen=True, eq=False)
class Discrete(Distribution):
    """Discrete law sum_j w_j delta_{y_j}; one token sequence is one such law.

    Parameters
    ----------
    atoms : array (n, d)
        Support points y_j.
    weights : array (n,), optional
        Non-negative weights with a positive sum; uniform when omitted. Normalised; atoms of
        weight 0 are dropped.
    rational : mapping, optional
        The exact parameters ``atoms`` and ``weights`` as given (Fraction arrays, e.g. from a
        spec), for the exact test. When omitted and ``weights`` are given, the float64 weights
        before normalisation are recorded (with the kept atoms): the exact test normalises
        their binary64 values exactly.
    """

    atoms: Values
    weights: Values | None = None
    rational: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.rational is None:  # Fraction / Decimal inputs stay exact for the exact test
            from .exact_values import exact_entries

            exact = {"atoms": exact_entries(self.atoms), "weights": exact_entries(self.weights)}
            if any(v is not None for v in exact.values()):
                if exact["atoms"] is None:
                    exact["atoms"] = np.asarray(np.asarray(self.atoms).tolist(), dtype=object)
                object.__setattr__(self, "rational", exact)
        atoms = _finite_array(self.atoms, "atoms", 2)
        if atoms.shape[0] == 0:
            raise InputError("is empty; a distribution needs at least one atom", field="atoms")
        if self.weights is None:
            raw, w = None, np.full(atoms.shape[0], 1.0 / atoms.shape[0])
        else:
            raw, w = _weights(self.weights, atoms.shape[0], "weights")
        keep = w > 0
        object.__setattr__(self, "atoms", np.ascontiguousarray(atoms[keep]))
        object.__setattr__(self, "weights", w[keep])
        if self.rational is None and raw is not None:
            object.__setattr__(self, "rational", {"atoms": self.atoms, "weights": raw[keep]})
        elif self.rational is not None and raw is not None and \
                self.rational.get("weights") is None:
            # exact atoms with float weights: the weights as given, every atom kept (the
            # exact atoms include the zero-weight ones)
            object.__setattr__(self, "rational", {**self.rational, "weights": raw})

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.atoms.shape[1]

    def _scores(self, z: np.ndarray) -> np.ndarray:
        return _as_probes(z, self.dim) @ self.atoms.T + np.log(self.weights)

    def lse(self, z: np.ndarray) -> np.ndarray:
        return logsumexp(self._scores(z))

    def _probs(self, z: np.ndarray) -> np.ndarray:
        s = self._scores(z)
        return np.exp(s - logsumexp(s)[:, None])

    def tilted_mean(self, z: np.ndarray) -> np.ndarray:
        return self._probs(z) @ self.atoms

    def tilted_cov(self, z: np.ndarray) -> np.ndarray:
        p = self._probs(z)
        centred = self.atoms[None, :, :] - (p @ self.atoms)[:, None, :]
        return np.einsum("mj,mja,mjb->mab", p, centred, centred)

    def affine_image(self, A: np.ndarray, t: np.ndarray) -> "Discrete":
        return Discrete(self.atoms @ np.asarray(A, float).T + t, self.weights)


@dataclass(frozen=True, eq=False)
class UniformBox(Distribution):
    """Uniform law on the box prod_l [low_l, high_l] (degenerate sides allowed).

    LSE(z) = sum_l low_l z_l + g((high_l - low_l) z_l), g(h) = log(expm1(h)/h).
    """

    low: Values
    high: Values
    rational: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        low = _finite_array(self.low, "low", 1)
        high = _finite_array(self.high, "high", 1)
        if low.shape != high.shape:
            raise InputError(
                f"has shape {high.shape} but low has {low.shape}; give one bound per dimension",
                field="high",
            )
        if low.shape[0] == 0:
            raise InputError("is empty; give one bound per dimension", field="low")
        if np.any(low > high):
            raise InputError("exceeds high in some coordinate; need low <= high", field="low")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.low.shape[0]

    def lse(self, z: np.ndarray) -> np.ndarray:
        z = _as_probes(z, self.dim)
        return z @ self.low + uniform_lse(z * (self.high - self.low)).sum(axis=1)

    def tilted_mean(self, z: np.ndarray) -> np.ndarray:
        z = _as_probes(z, self.dim)
        width = self.high - self.low
        return self.low + width * uniform_mean(z * width)

    def tilted_cov(self, z: np.ndarray) -> np.ndarray:
        z = _as_probes(z, self.dim)
        width = self.high - self.low
        var = width**2 * uniform_var(z * width)
        out = np.zeros((z.shape[0], self.dim, self.dim))
        idx = np.arange(self.dim)
        out[:, idx, idx] = var
        return out

    def affine_image(self, A: np.ndarray, t: np.ndarray) -> "UniformBox":
        A = np.asarray(A, float)
        if not np.allclose(A, np.diag(np.diag(A)), rtol=0, atol=0):
            raise ValueError("the image of a box is a box only under a diagonal map")
        a = np.diag(A) * self.low + t
        b = np.diag(A) * self.high + t
        return UniformBox(np.minimum(a, b), np.maximum(a, b))


@dataclass(frozen=True, eq=False)
class GaussianMixture(Distribution):
    """Mixture sum_k pi_k N(m_k, S_k) with PSD (possibly singular) covariances.

    LSE(z) = logsumexp_k(log pi_k + <m_k, z> + z^T S_k z / 2).

    ``rational`` (optional): the exact ``weights``, ``means`` and ``covariances`` as given; when
    omitted, the float64 values before normalising the weights and symmetrising/clipping the
    covariances are recorded (kept components only), for the exact test.
    """

    weights: Values
    means: Values
    covariances: Values
    rational: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        means = _finite_array(self.means, "means", 2)
        k, d = means.shape
        if k == 0 or d == 0:
            raise InputError("is empty; give at least one component mean", field="means")
        raw, w = _weights(self.weights, k, "weights")
        given = _finite_array(self.covariances, "covariances", 3)
        if given.shape != (k, d, d):
            raise InputError(
                f"has shape {given.shape}, expected ({k}, {d}, {d}): one d x d matrix per component",
                field="covariances",
            )
        covs = np.array([_psd(S, i) for i, S in enumerate(given)]).reshape(k, d, d)
        keep = w > 0
        object.__setattr__(self, "weights", w[keep])
        object.__setattr__(self, "means", means[keep])
        object.__setattr__(self, "covariances", covs[keep])
        if self.rational is None:
            object.__setattr__(self, "rational", {"weights": raw[keep], "means": self.means,
                                                  "covariances": given[keep]})

    @property
    def dim(self) -> int:  # type: ignore[override]
        return self.means.shape[1]

    def _component_scores(self, z: np.ndarray) -> np.ndarray:
        z = _as_probes(z, self.dim)
        quad = np.einsum("ma,kab,mb->mk", z, self.covariances, z) / 2.0
        return np.log(self.weights) + z @ self.means.T + quad

    def lse(self, z: np.ndarray) -> np.ndarray:
        return logsumexp(self._component_scores(z))

    def _moments(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = _as_probes(z, self.dim)
        s = self._component_scores(z)
        r = np.exp(s - logsumexp(s)[:, None])  # responsibilities (M, K)
        comp_means = self.means[None] + np.einsum("kab,mb->mka", self.covariances, z)
        mean = np.einsum("mk,mka->ma", r, comp_means)
        return r, comp_means, mean

    def tilted_mean(self, z: np.ndarray) -> np.ndarray:
        return self._moments(z)[2]

    def tilted_cov(self, z: np.ndarray) -> np.ndarray:
        r, comp_means, mean = self._moments(z)
        centred = comp_means - mean[:, None, :]
        within = np.einsum("mk,kab->mab", r, self.covariances)
        return within + np.einsum("mk,mka,mkb->mab", r, centred, centred)

    def affine_image(self, A: np.ndarray, t: np.ndarray) -> "GaussianMixture":
        A = np.asarray(A, float)
        covs = np.einsum("ab,kbc,dc->kad", A, self.covariances, A)
        return GaussianMixture(self.weights, self.means @ A.T + t, (covs + covs.transpose(0, 2, 1)) / 2)


def _psd(S: np.ndarray, index: int) -> np.ndarray:
    """Symmetrise S and clip round-off negative eigenvalues, or raise if S is not PSD."""
    fld = f"covariances[{index}]"
    scale = max(float(np.abs(S).max()), np.finfo(float).tiny)
    if np.abs(S - S.T).max() > PSD_RTOL * scale:
        raise InputError("is not symmetric; give a symmetric matrix", field=fld)
    S = (S + S.T) / 2.0
    lam, U = np.linalg.eigh(S)
    if lam.min() < -PSD_RTOL * max(abs(lam).max(), np.finfo(float).tiny):
        raise InputError(
            f"is not positive semi-definite (smallest eigenvalue {lam.min():.3g}); "
            "give a PSD covariance",
            field=fld,
        )
    if lam.min() < 0:
        S = (U * np.maximum(lam, 0.0)) @ U.T
        S = (S + S.T) / 2.0
    return S
