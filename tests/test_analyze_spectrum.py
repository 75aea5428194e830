"""The spectrum summary inside `analyze` (feature Gram, SPEC §5) against independent computations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from typer.testing import CliRunner

from ntkcheck import Dataset, Discrete, analyze
from ntkcheck.cli import app
from ntkcheck.injectivity.features import feature_matrix
from ntkcheck.injectivity.probes import make_probes, make_whitening
import ntkcheck.injectivity.spectrum as spectrum_module
from ntkcheck.injectivity.spectrum import Spectrum
from ntkcheck.injectivity.summary import gram_summary

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.mark.parametrize("seed", [0, 1])
def test_gram_summary_matches_direct_eigendecomposition(seed):
    """Eigenvalues are sigma^2 / M of F_perp and the weakest direction is the eigenvector of
    F_perp^T F_perp / M for its smallest eigenvalue, computed here independently by a dense
    SVD of F_perp (numpy). Tolerances: eigenvalues relative 1e-10 (backward-stable SVDs of the
    same matrix); the vector to 1e-6 (its accuracy is u / gap^2 with a relative gap ~0.1)."""
    rng = np.random.default_rng(seed)
    ds = Dataset.from_tokens(list(rng.normal(size=(12, 6, 2))))
    res = analyze(ds, seed=seed, exact="never")
    white = make_whitening(ds)
    M = res.settings["probes"]
    feats = feature_matrix(ds, white, make_probes(white, M, seed=seed))
    _, s, vt = np.linalg.svd(feats.perp, full_matrices=False)
    lam = np.sort(s**2 / M)
    summary = res.spectrum
    assert np.allclose(summary["eigenvalues"], lam, rtol=1e-10, atol=0)
    gap = lam[1] / lam[0]
    assert gap > 1.05, "test needs a separated smallest eigenvalue"
    v = np.array([summary["min_eigenvector"][n] for n in ds.names])
    ref = vt[-1] * np.sign(vt[-1] @ v)
    assert np.linalg.norm(v - ref) < 1e-6
    assert summary["effective_rank"] == pytest.approx(lam.sum() ** 2 / (lam**2).sum(),
                                                     rel=1e-12, abs=0)


def test_weakest_direction_of_a_near_duplicate_pair():
    """With a near duplicate (one atom moved by 1e-6: not a structural match), the Gram's
    smallest eigenvalue is tiny and the weakest direction is (e_a - e_b)/sqrt(2) up to sign and
    O(1e-6); an exact duplicate is removed by the structural screen and the Gram is the core's."""
    rng = np.random.default_rng(3)
    x, y, w = rng.normal(size=(5, 2)), rng.normal(size=(4, 2)), rng.normal(size=(6, 2))
    near = x[::-1].copy()
    near[1, 0] += 1e-6
    res = analyze([Discrete(x), Discrete(y), Discrete(near), Discrete(w)],
                  names=["a", "b", "a_rev", "c"], exact="never")
    s = res.spectrum
    assert s["min_eigenvalue"] < 1e-9 * s["max_eigenvalue"]
    v = s["min_eigenvector"]
    assert abs(abs(v["a"]) - 2**-0.5) < 1e-4 and abs(v["a"] + v["a_rev"]) < 1e-4
    assert abs(v["b"]) < 1e-4 and abs(v["c"]) < 1e-4
    exact = analyze([Discrete(x), Discrete(y), Discrete(x[::-1]), Discrete(w)],
                    names=["a", "b", "a_rev", "c"], exact="never")
    assert exact.settings["core_size"] == 3 and len(exact.spectrum["eigenvalues"]) == 3
    assert [sorted(d.coefficients) for d in exact.dependencies] == [["a", "a_rev"]]


def test_cli_json_and_report_carry_the_spectrum():
    """`analyze --json` holds the summary; the terminal report prints the weakest direction."""
    runner = CliRunner()
    path = str(SAMPLES / "tokens_dependent.npz")
    doc = json.loads(runner.invoke(app, ["analyze", path, "--json"]).stdout)
    assert doc["spectrum"]["kernel"] == "gram"
    assert len(doc["spectrum"]["eigenvalues"]) == doc["settings"]["core_size"]
    assert doc["spectrum"]["eigenvalues"] == sorted(doc["spectrum"]["eigenvalues"])
    text = runner.invoke(app, ["analyze", path]).stdout
    assert "weakest direction" in text


@pytest.mark.parametrize("N, svd", [(8, True), (40, False)])
def test_gram_summary_reports_the_canonical_null_vector(monkeypatch, N, svd):
    """Two exact dependencies (c5 = c3 + 2 c7, c6 = c1 - c2: orthogonal null vectors
    n1 = (e3 + 2 e7 - e5) / sqrt 6 and n2 = (e1 - e2 - e6) / sqrt 3): the summary's
    min_eigenvector is n1 exactly, the space's unit vector closest to its axis of largest
    weight (e7: 4/6), whatever basis of the null space the solver found, by the full SVD
    (N = 8, the iteration's vector count capped below 2) and by the block inverse iteration
    on R (N = 40)."""
    if svd:
        monkeypatch.setattr(spectrum_module, "TAIL_VECTORS_MAX", 1)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((2 * N, N))
    A[:, 5] = A[:, 3] + 2 * A[:, 7]
    A[:, 6] = A[:, 1] - A[:, 2]
    R = np.asfortranarray(scipy.linalg.qr(A, mode="r")[0][:N])
    sv = scipy.linalg.svdvals(R)
    noise = 1e-12 * sv[0]
    spec = Spectrum(sv, noise, noise, R)
    assert spec.null_dim == 2
    names = [f"c{i}" for i in range(N)]
    got = np.array([gram_summary(spec, names, 2 * N)["min_eigenvector"][n] for n in names])
    n1 = np.zeros(N)
    n1[[3, 7, 5]] = np.array([1.0, 2.0, -1.0]) / np.sqrt(6.0)
    np.testing.assert_allclose(got, n1, atol=1e-12)
