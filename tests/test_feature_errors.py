"""The in-memory feature matrix's per-column error levels (:func:`ntkcheck.injectivity.features
.feature_matrix`): the error-model sums over probe rows, now reduced on several threads, give
the same floats whatever the thread count, and equal a brute-force evaluation of the model's
formula written out here entry by entry (plain Python sums: no code under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ntkcheck.dataset as dataset_module
import ntkcheck.injectivity.features as features
from ntkcheck import Dataset
from ntkcheck.distributions import Discrete
from ntkcheck.injectivity.features import centred_each, feature_matrix
from ntkcheck.injectivity.probes import make_probes, make_whitening

U = np.finfo(float).eps / 2


def _case(seed: int = 0, N: int = 7, n: int = 5, d: int = 3):
    rng = np.random.default_rng(seed)
    dists = [Discrete(rng.normal(size=(n, d)) * (1 + i), rng.dirichlet(np.ones(n)))
             for i in range(N)]
    ds = Dataset([f"s{i}" for i in range(N)], dists)
    whitening = make_whitening(ds)
    probes = make_probes(whitening, 40, seed=seed)
    return ds, whitening, probes


def _run(ds, whitening, probes, monkeypatch, workers: int, chunk: int):
    monkeypatch.setattr(features, "WORKERS", workers)
    monkeypatch.setattr(dataset_module, "CHUNK_ELEMENTS", chunk)
    return feature_matrix(ds, whitening, probes)


@pytest.mark.parametrize("chunk", [7 * 6, 7 * 40, 1 << 22])
def test_error_levels_do_not_depend_on_the_thread_count(monkeypatch, chunk):
    """Row blocks of 6 and 40 probes and one block: one thread and four give bit-identical
    bounds, typical levels and projected features (the block sums are added in block order)."""
    ds, whitening, probes = _case()
    one = _run(ds, whitening, probes, monkeypatch, 1, chunk)
    four = _run(ds, whitening, probes, monkeypatch, 4, chunk)
    assert np.array_equal(one.error_bound, four.error_bound)
    assert np.array_equal(one.error_typical, four.error_typical)
    assert np.array_equal(one.perp, four.perp)


def test_error_bound_is_the_model_formula_evaluated_by_brute_force(monkeypatch):
    """error_bound[i] = u ((d + n_i + 10) ||base_i|| + 2 (d + 1) M ||omega F_i||) / nu_i with
    base[m, i] = omega_m (sum_l |z_ml| R_il + W_i + |F_mi| + 1) (discrete laws: no quadratic
    term), R_il = max over the centred atoms of |y_l|, W_i = max |log w|; every sum written
    out here in math.fsum over the entries, in row blocks of 6 probes on 4 threads."""
    ds, whitening, probes = _case(seed=3)
    fm = _run(ds, whitening, probes, monkeypatch, 4, 7 * 6)
    centred, _ = centred_each(ds)
    z, omega, F = probes.z, 1.0 / probes.scale, fm.values
    M, d = z.shape
    for i, dist in enumerate(centred.distributions):
        R = [max(abs(a[l]) for a in dist.atoms) for l in range(d)]
        W = max(abs(math.log(w)) for w in dist.weights)
        base_sq = math.fsum(
            (omega[m] * (math.fsum(abs(z[m, l]) * R[l] for l in range(d)) + W
                         + abs(F[m, i]) + 1.0)) ** 2 for m in range(M))
        fw = math.sqrt(math.fsum((omega[m] * F[m, i]) ** 2 for m in range(M)))
        terms = d + len(dist.weights) + 10
        expected = U * (terms * math.sqrt(base_sq) + 2 * (d + 1) * M * fw) / fm.col_norms[i]
        assert fm.error_bound[i] == pytest.approx(expected, rel=1e-12, abs=0.0)
