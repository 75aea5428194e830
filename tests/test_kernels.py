"""Kernels of SPEC §5: structure (symmetric PSD), null spaces against the rank test of SPEC §3 on
the exact families of SPEC §2, a brute-force reference, chunking and the spectrum summaries.

Null spaces are compared as subspaces through their principal angles. The dependency space of
the rank test comes from ``ntkcheck.analysis.analyze`` (an independent computation: SVD of the
LSE values, not of their derivatives). An angle below 1e-6 rad means the spaces agree to about
the square root of the round-off tolerance (eigenvectors of an eigenvalue cluster at ~1e-16
relative are determined to ~sqrt(u) at worst); unrelated subspaces have angles O(1).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from ntkcheck import Dataset, Discrete, GaussianMixture, UniformBox
from ntkcheck.analysis import analyze
from ntkcheck.errors import InputError
from ntkcheck.injectivity.probes import make_probes, make_whitening
from ntkcheck.kernels import Kernel, full_kernel, gram_kernel, parse_kernel, qk_kernel, value_kernel
from ntkcheck.injectivity.summary import null_representative
from ntkcheck.io.load import load_dataset
from ntkcheck.kernel_spectrum import kernel_spectrum, spectrum_summary

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

ANGLE = 1e-6


def _ds(items) -> Dataset:
    return Dataset(tuple(n for n, _ in items), tuple(d for _, d in items))


def bernoulli(x0=0.0, x1=1.0):
    return Discrete(np.array([[x0], [x1]]), [0.5, 0.5])


def family_cases() -> dict[str, Dataset]:
    """The exact families of SPEC §2 (1-D unless stated), each with a generic bystander."""
    generic = ("generic", Discrete(np.array([[-0.7], [0.4], [2.3]]), [0.2, 0.5, 0.3]))
    base = Discrete(np.array([[0.0], [1.0], [3.0]]), [0.2, 0.3, 0.5])
    gauss = [("g1", GaussianMixture([1.0], [[0.3]], [[[0.5]]])),
             ("g2", GaussianMixture([1.0], [[-1.0]], [[[2.0]]])),
             ("g3", GaussianMixture([1.0], [[2.0]], [[[1.0]]]))]
    return {
        "translate": _ds([("base", base), ("shifted", base.affine_image(np.eye(1), [2.5])),
                          generic]),
        "binomial_bernoulli": _ds([("binomial", Discrete(np.array([[0.0], [1.0], [2.0]]),
                                                         [0.25, 0.5, 0.25])),
                                   ("bernoulli", bernoulli()), generic]),
        "uniform_convolution": _ds([("box2", UniformBox([0.0], [2.0])),
                                    ("box1", UniformBox([0.0], [1.0])),
                                    ("coin", bernoulli()), generic]),
        "gaussians_1d": _ds(gauss + [generic]),
        "all_together": _ds([("base", base), ("shifted", base.affine_image(np.eye(1), [-1.5])),
                             ("binomial", Discrete(np.array([[0.0], [1.0], [2.0]]),
                                                   [0.25, 0.5, 0.25])),
                             ("bernoulli", bernoulli()),
                             ("box2", UniformBox([0.0], [2.0])), ("box1", UniformBox([0.0], [1.0])),
                             generic] + gauss[:2]),
        "generic_2d": Dataset.from_tokens(list(np.random.default_rng(3).normal(size=(6, 5, 2)))),
    }


def dependency_space(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) coefficient vectors and (k, d) linear parts b of the rank test's dependencies."""
    result = analyze(ds)
    assert result.verdict in ("injective", "not_injective"), result.reason
    C = np.array([[dep.coefficients.get(n, 0.0) for n in ds.names]
                  for dep in result.dependencies]).reshape(-1, len(ds)).T
    B = np.array([dep.linear for dep in result.dependencies]).reshape(-1, ds.dim)
    return C, B


def max_angle(A: np.ndarray, B: np.ndarray) -> float:
    if A.shape[1] == 0 and B.shape[1] == 0:
        return 0.0
    return float(np.max(scipy.linalg.subspace_angles(A, B)))


@pytest.fixture(scope="module")
def cases():
    return family_cases()


@pytest.mark.parametrize("case", list(family_cases()))
@pytest.mark.parametrize("kernel", ["qk", "value", "full", "gram"])
def test_kernels_are_symmetric_psd(cases, case, kernel):
    """K = K^T exactly (symmetrised) and lambda_min >= -tolerance (PSD up to round-off, the
    tolerance being the module's round-off level); eigenpairs reproduce K to ~N u ||K||."""
    spec = kernel_spectrum(cases[case], kernel)
    K = spec.matrix
    np.testing.assert_array_equal(K, K.T)
    assert spec.min_eigenvalue >= -spec.tolerance
    assert np.all(np.diff(spec.eigenvalues) >= 0)
    recon = (spec.eigenvectors * spec.eigenvalues) @ spec.eigenvectors.T
    assert np.abs(recon - K).max() <= 1e3 * np.finfo(float).eps * spec.max_eigenvalue
    np.testing.assert_allclose(spec.eigenvectors.T @ spec.eigenvectors, np.eye(len(K)),
                               atol=1e-12)


@pytest.mark.parametrize("case", list(family_cases()))
@pytest.mark.parametrize("kernel", ["qk", "gram"])
def test_qk_and_gram_null_space_is_dependency_space(cases, case, kernel):
    """Null space of the query-key NTK (and of the feature Gram) = the rank test's dependencies:
    same dimension and principal angles < 1e-6 (module docstring)."""
    ds = cases[case]
    C, _ = dependency_space(ds)
    spec = kernel_spectrum(ds, kernel)
    assert spec.null_dim == C.shape[1]
    assert max_angle(spec.null_coefficients(), C) < ANGLE
    if spec.null_dim:  # gap: the next eigenvalue is far above the tolerance
        assert spec.eigenvalues[spec.null_dim] > 1e4 * spec.tolerance


@pytest.mark.parametrize("case", list(family_cases()))
@pytest.mark.parametrize("kernel", ["value", "full"])
def test_value_null_space_is_dependencies_modulo_constants(cases, case, kernel):
    """Null space of the value (and full) NTK = {c in dependency space : b(c) = 0}, the
    relations sum c_i LSE_i = constant; b(c) is linear in c, from analyze's affine fits
    (entries below 1e-8, far above their ~1e-13 fit error, count as zero)."""
    ds = cases[case]
    C, B = dependency_space(ds)
    if C.shape[1]:
        # alpha with B^T alpha = 0, singular values of B^T below 1e-8 (absolute: the
        # coefficients are O(1)) counting as zero
        _, sv, vt = np.linalg.svd(B.T, full_matrices=True)
        rank = int(np.sum(sv > 1e-8))
        expected = C @ vt[rank:].T
    else:
        expected = np.zeros((len(ds), 0))
    spec = kernel_spectrum(ds, kernel)
    assert spec.null_dim == expected.shape[1]
    assert max_angle(spec.null_coefficients(), expected) < ANGLE


def test_translate_pair_in_qk_null_space_not_in_value_null_space(cases):
    """SPEC §5: a translate pair (c = (1, -1), LSE difference <t, z>) is a qk null vector but
    has c^T K^V c = E|t|^2-like > 0; Binomial/Bernoulli (difference exactly 0) is in both."""
    ds = cases["all_together"]
    idx = {n: i for i, n in enumerate(ds.names)}
    white = make_whitening(ds)
    probes = make_probes(white, 512)
    Kq, Kv = qk_kernel(ds, white, probes), value_kernel(ds, white, probes)
    translate = np.zeros(len(ds))
    translate[[idx["base"], idx["shifted"]]] = [1.0, -1.0]
    binom = np.zeros(len(ds))
    binom[[idx["binomial"], idx["bernoulli"]]] = [1.0, -2.0]
    scale_q, scale_v = np.abs(Kq).max(), np.abs(Kv).max()
    assert abs(translate @ Kq @ translate) < 1e-12 * scale_q
    assert abs(binom @ Kq @ binom) < 1e-12 * scale_q
    assert abs(binom @ Kv @ binom) < 1e-12 * scale_v
    # t = -1.5 in whitened units: (T^T t)^2 = t^2 / pooled variance, an O(1) number
    t_white = (white.transform.T @ np.array([-1.5])) ** 2
    np.testing.assert_allclose(translate @ Kv @ translate, t_white.sum(), rtol=1e-10)


def test_value_kernel_on_degenerate_hull_keeps_offset():
    """Binomial/Bernoulli on the line y2 = h in R^2: bin - 2 bern = -h z2, affine, so both are
    qk-null; constant only when h = 0, so value-null iff h = 0 (checks the complement term)."""
    for h, value_null in ((0.0, 1), (1.0, 0)):
        ds = _ds([("binomial", Discrete(np.array([[0.0, h], [1.0, h], [2.0, h]]),
                                        [0.25, 0.5, 0.25])),
                  ("bernoulli", Discrete(np.array([[0.0, h], [1.0, h]]))),
                  ("other", Discrete(np.array([[-0.5, h], [0.7, h], [1.9, h]]), [0.3, 0.3, 0.4]))])
        assert kernel_spectrum(ds, "qk").null_dim == 1
        assert kernel_spectrum(ds, "value").null_dim == value_null
        assert kernel_spectrum(ds, "value", whiten=False).null_dim == value_null


def _brute_force(ds: Dataset, transform: np.ndarray, z: np.ndarray):
    """Per-distribution closed forms, whitened explicitly, Frobenius / dot products by einsum."""
    H = np.stack([dist.tilted_cov(z) for dist in ds.distributions], axis=1)  # (M, N, d, d)
    G = np.stack([dist.tilted_mean(z) for dist in ds.distributions], axis=1)  # (M, N, d)
    Hs = np.einsum("ap,mnab,bq->mnpq", transform, H, transform)
    Gs = np.einsum("ap,mna->mnp", transform, G)
    M = len(z)
    return (np.einsum("mipq,mjpq->ij", Hs, Hs) / M, np.einsum("mip,mjp->ij", Gs, Gs) / M)


@pytest.mark.parametrize("whiten", [True, False])
def test_kernels_match_brute_force(whiten):
    """qk / value / full kernels (packed, chunked, upper-triangle trick) = explicit per-probe
    averages of Frobenius and dot products of whitened closed forms, to 1e-12 relative (both
    are sums of the same ~M d^2 products in different orders)."""
    rng = np.random.default_rng(5)
    A = rng.normal(size=(3, 3))
    ds = _ds([("disc", Discrete(rng.normal(size=(4, 3)), [0.1, 0.2, 0.3, 0.4])),
              ("box", UniformBox([-1.0, 0.0, 0.5], [0.0, 2.0, 0.6])),
              ("mix", GaussianMixture([0.4, 0.6], rng.normal(size=(2, 3)),
                                      np.array([A @ A.T / 3, 0.2 * np.eye(3)]))),
              ("tokens", Discrete(rng.normal(size=(6, 3))))])
    white = make_whitening(ds, whiten)
    probes = make_probes(white, 120, seed=2)
    ref_q, ref_v = _brute_force(ds, white.transform, probes.z)
    for got, ref in ((qk_kernel(ds, white, probes, budget=500), ref_q),
                     (value_kernel(ds, white, probes, budget=500), ref_v),
                     (full_kernel(ds, white, probes), ref_q + ref_v)):
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_kernels_under_affine_maps():
    """y -> A y + t on all the data with the probes mapped along (z' = A^-T z, i.e. the same
    whitened s): Hess' = A H A^T, so the qk kernel is unchanged (to 1e-12 relative: a few
    roundings of A and A^-1); grad' = A grad + t, so the value kernel is unchanged for t = 0 and
    changes for t != 0 (it is not translation invariant, SPEC §5). With each dataset's own
    whitening the two qk spectra agree in distribution (20000 probes: Monte-Carlo error ~1%,
    tolerance 5%)."""
    from ntkcheck.injectivity.probes import Whitening

    rng = np.random.default_rng(11)
    ds = Dataset.from_tokens(list(rng.normal(size=(5, 6, 2))))
    A = np.array([[2.0, 0.5], [-0.3, 0.7]])
    white = make_whitening(ds)
    probes = make_probes(white, 400)
    for t, value_same in ((np.array([3.0, -1.0]), False), (np.zeros(2), True)):
        moved = Dataset(ds.names, tuple(d.affine_image(A, t) for d in ds.distributions))
        w2 = Whitening(A @ white.centre + t, np.linalg.solve(A.T, white.transform), white.rank,
                       True)
        p2 = make_probes(w2, 400)
        np.testing.assert_allclose(p2.s, probes.s)
        kq, kq2 = qk_kernel(ds, white, probes), qk_kernel(moved, w2, p2)
        np.testing.assert_allclose(kq2, kq, rtol=1e-12, atol=1e-12 * np.abs(kq).max())
        kv, kv2 = value_kernel(ds, white, probes), value_kernel(moved, w2, p2)
        assert np.allclose(kv2, kv, rtol=1e-12, atol=1e-12 * np.abs(kv).max()) == value_same
    e1 = kernel_spectrum(ds, "qk", probes=20000).eigenvalues
    e2 = kernel_spectrum(moved, "qk", probes=20000, seed=1).eigenvalues
    np.testing.assert_allclose(e1, e2, rtol=0.05)


def test_gram_eigenvalues_are_squared_singular_values():
    """Gram eigenvalues = sigma_k^2 / M of the column-normalised F_perp (SPEC §5), compared with
    numpy's SVD of the same matrix; and the matrix equals F_perp^T F_perp / M."""
    from ntkcheck.injectivity.features import feature_matrix

    ds = family_cases()["uniform_convolution"]
    spec = kernel_spectrum(ds, "gram", probes=300)
    white = make_whitening(ds)
    probes = make_probes(white, 300)
    perp = feature_matrix(ds, white, probes).perp
    sv = np.linalg.svd(perp, compute_uv=False)
    np.testing.assert_allclose(spec.eigenvalues[1:], np.sort(sv**2 / 300)[1:], rtol=1e-10)
    assert spec.eigenvalues[0] < 1e-25
    np.testing.assert_allclose(spec.matrix, gram_kernel(ds, white, probes), rtol=1e-14)


def test_gram_with_fewer_probes_than_distributions():
    """M < N: the Gram has N - M exact zero eigenvalues and still a full orthonormal basis."""
    ds = Dataset.from_tokens(list(np.random.default_rng(1).normal(size=(12, 4, 1))))
    spec = kernel_spectrum(ds, "gram", probes=8)
    assert spec.null_dim >= 12 - 8
    np.testing.assert_allclose(spec.eigenvectors.T @ spec.eigenvectors, np.eye(12), atol=1e-12)


def test_chunking_does_not_change_the_kernel_and_bounds_memory():
    """Budgets of 1 probe per chunk and of all probes at once give the same kernel (to 1e-13,
    summation order only); with a small budget the peak traced memory stays far below the
    (M, N, d, d) array an unchunked computation would need (here 8 MiB versus < 3 MiB)."""
    import tracemalloc

    ds = Dataset.from_tokens(list(np.random.default_rng(2).normal(size=(40, 6, 4))))
    white = make_whitening(ds)
    probes = make_probes(white, 1600)
    k_all = qk_kernel(ds, white, probes, budget=1 << 26)
    k_one = qk_kernel(ds, white, probes, budget=1)
    np.testing.assert_allclose(k_one, k_all, rtol=1e-13, atol=1e-13 * np.abs(k_all).max())
    tracemalloc.start()
    qk_kernel(ds, white, probes, budget=1 << 14)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    full = 1600 * 40 * 4 * 4 * 8  # bytes of the (M, N, d, d) Hessians
    assert peak < 3 * 2**20 < full


def test_parse_kernel_names_the_option_and_the_choices():
    """Invalid kernel names raise InputError naming 'kernel' and listing every choice."""
    assert parse_kernel("QK") is Kernel.QK
    assert parse_kernel(Kernel.GRAM) is Kernel.GRAM
    with pytest.raises(InputError) as info:
        parse_kernel("ntk")
    message = str(info.value)
    assert "kernel" in message and all(k.value in message for k in Kernel)
    with pytest.raises(InputError, match="probes"):
        kernel_spectrum(family_cases()["translate"], "qk", probes=0)
    with pytest.raises(InputError, match="scales"):
        kernel_spectrum(family_cases()["translate"], "qk", scales=(1.0, -2.0))


def test_spectrum_summaries_on_a_known_matrix(cases):
    """condition_number, effective_rank, min_eigenvector and to_dict on a case with a known
    null vector: binomial - 2 bernoulli (normalised) is the smallest eigenvector (to 1e-8)."""
    ds = cases["binomial_bernoulli"]
    spec = kernel_spectrum(ds, "qk")
    assert spec.null_dim == 1 and not spec.positive_definite and spec.exit_code == 3
    assert spec.condition_number == float("inf")
    v = spec.min_eigenvector
    expected = np.array([1.0, -2.0, 0.0]) / np.sqrt(5.0)
    np.testing.assert_allclose([v[n] for n in ds.names], expected * np.sign(v["bernoulli"]) * -1,
                               atol=1e-8)
    c = spec.min_coefficients
    np.testing.assert_allclose([c["binomial"], c["bernoulli"]], [-0.5, 1.0], atol=1e-8)
    lam = np.maximum(spec.eigenvalues, 0)
    assert spec.effective_rank == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-12, abs=0)
    assert 1.0 <= spec.effective_rank <= spec.numerical_rank
    doc = json.loads(json.dumps(spec.to_dict()))
    assert doc["condition_number"] == "inf" and doc["kernel"] == "qk"
    assert doc["names"] == list(ds.names) and len(doc["eigenvalues"]) == 3
    summary = spectrum_summary(spec, top=2)
    assert list(summary["min_eigenvector_top"]) == ["bernoulli", "binomial"]
    generic = kernel_spectrum(cases["generic_2d"], "value")
    assert generic.positive_definite and generic.exit_code == 0
    assert generic.condition_number == pytest.approx(generic.max_eigenvalue
                                                     / generic.min_eigenvalue)


def test_identity_like_kernel_effective_rank():
    """Effective rank of the participation ratio: a dataset whose kernel is a multiple of the
    identity has effective rank N. Single Dirac masses at distinct points have equal constant
    gradients; in 1-D with no whitening K^V_ij = y_i y_j is rank one (effective rank 1)."""
    ds = _ds([(f"d{i}", Discrete(np.array([[float(i + 1)]]))) for i in range(3)])
    spec = kernel_spectrum(ds, "value", whiten=False)
    assert spec.effective_rank == pytest.approx(1.0, abs=1e-12)
    assert spec.null_dim == 2
    q = kernel_spectrum(ds, "qk")  # Diracs: every Hessian vanishes, K = 0
    assert q.effective_rank == 0.0 and q.null_dim == 3 and q.max_eigenvalue == 0.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 12), k=st.integers(1, 3))
def test_null_representative_depends_on_the_space_only(seed, n, k):
    """The representative of span(V) is the same unit vector for any orthonormal basis of the
    space (V Q, Q orthogonal: what another eigensolver may return), lies in the space, has its
    entry i* positive; for k = 1 it is +-v."""
    rng = np.random.default_rng(seed)
    V = np.linalg.qr(rng.standard_normal((n, k)))[0]
    Q = np.linalg.qr(rng.standard_normal((k, k)))[0]
    x, y = null_representative(V), null_representative(V @ Q)
    np.testing.assert_allclose(x, y, atol=1e-12)
    assert abs(np.linalg.norm(x) - 1.0) < 1e-14
    np.testing.assert_allclose(V @ (V.T @ x), x, atol=1e-14)  # in the space
    if k == 1:
        np.testing.assert_allclose(np.abs(x), np.abs(V[:, 0]), atol=1e-15)
        assert x[np.argmax(np.abs(x))] > 0


def test_multiple_null_space_reports_one_relation_whatever_the_basis():
    """tokens_dependent's query-key kernel has two round-off eigenvalues (the translate pair
    base / translated and the permuted duplicate other / permuted: SPEC's known dependencies).
    The reported vector is (base - translated) / sqrt 2 exactly, the axis of largest weight (1/2,
    tied with three others: the first in name order), also after rotating the eigenvectors of
    the null space among themselves."""
    spec = kernel_spectrum(load_dataset(SAMPLES / "tokens_dependent.npz"), "qk")
    assert spec.null_dim == 2
    v = dict(zip(spec.names, spec.min_vector))
    assert v["base"] == pytest.approx(2 ** -0.5, abs=1e-12)
    assert v["translated"] == pytest.approx(-(2 ** -0.5), abs=1e-12)
    rest = [abs(x) for n, x in v.items() if n not in ("base", "translated")]
    assert max(rest) < 1e-12
    c, s = np.cos(0.7), np.sin(0.7)
    E = spec.eigenvectors.copy()
    E[:, :2] = E[:, :2] @ np.array([[c, -s], [s, c]])
    rotated = dataclasses.replace(spec, eigenvectors=E)
    np.testing.assert_allclose(rotated.min_vector, spec.min_vector, atol=1e-13)
