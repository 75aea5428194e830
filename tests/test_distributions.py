"""Closed forms of SPEC §1 (Discrete, UniformBox, GaussianMixture, Dataset) against independent
references: 50-digit brute force over atoms, numerical integration, finite differences.

Tolerances are float64 round-off budgets (stated per test) or quadrature/finite-difference error
budgets, always well above the reference's own error.
"""

from __future__ import annotations

import warnings

import mpmath as mp
import numpy as np
import pytest
from scipy import integrate

import ntkcheck.dataset as dataset_mod
from ntkcheck import Dataset, Discrete, GaussianMixture, InputError, UniformBox
from ntkcheck.special import uniform_lse

mp.mp.dps = 50
EPS = np.finfo(float).eps


def rand_spd(rng, d, cond=10.0):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    lam = np.exp(rng.uniform(0, np.log(cond), size=d))
    return (q * lam) @ q.T


def make_discrete(rng, n, d, weighted=True):
    w = rng.uniform(0.1, 1.0, size=n) if weighted else None
    return Discrete(rng.normal(size=(n, d)), w)


def make_box(rng, d):
    low = rng.normal(size=d)
    return UniformBox(low, low + rng.uniform(0.2, 2.0, size=d))


def make_mixture(rng, k, d):
    return GaussianMixture(rng.uniform(0.1, 1, size=k), rng.normal(size=(k, d)),
                           np.array([rand_spd(rng, d) for _ in range(k)]) * 0.3)


# ---- discrete: brute force in mpmath ------------------------------------------------------------

def discrete_ref(dist: Discrete, z: np.ndarray):
    """(LSE, tilted mean, tilted cov) at one z from the atoms, in 50-digit arithmetic."""
    ys = [[mp.mpf(float(v)) for v in y] for y in dist.atoms]
    ws = [mp.mpf(float(w)) for w in dist.weights]
    zz = [mp.mpf(float(v)) for v in z]
    s = [mp.log(w) + mp.fsum(a * b for a, b in zip(zz, y)) for w, y in zip(ws, ys)]
    top = max(s)
    e = [mp.exp(v - top) for v in s]
    tot = mp.fsum(e)
    lse = top + mp.log(tot)
    p = [v / tot for v in e]
    d = len(zz)
    mean = [mp.fsum(p[j] * ys[j][a] for j in range(len(p))) for a in range(d)]
    cov = [[mp.fsum(p[j] * (ys[j][a] - mean[a]) * (ys[j][b] - mean[b]) for j in range(len(p)))
            for b in range(d)] for a in range(d)]
    return (float(lse), np.array([float(x) for x in mean]),
            np.array([[float(x) for x in r] for r in cov]))


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 30.0, 1e4])
def test_discrete_matches_brute_force(d, scale):
    """LSE to ~n ulps of the largest score magnitude (scores <z, y_j> + log w_j are rounded once per
    term, the log-sum-exp adds a few ulps); tilted mean and covariance to ~1e-12 of the atom scale
    (the probabilities are relative-accurate to ~eps * |score|, i.e. up to ~1e-12 at |z| = 1e4)."""
    rng = np.random.default_rng(d * 100 + int(np.log10(scale) + 10))
    dist = make_discrete(rng, 7, d)
    z = rng.normal(size=(4, d)) * scale
    lse, mean, cov = dist.lse(z), dist.tilted_mean(z), dist.tilted_cov(z)
    for m in range(4):
        ref_l, ref_m, ref_c = discrete_ref(dist, z[m])
        size = np.abs(z[m]).sum() * np.abs(dist.atoms).max() + np.abs(np.log(dist.weights)).max()
        assert abs(lse[m] - ref_l) <= 32 * EPS * (size + 1)
        tol = 64 * EPS * (size + 1) * np.abs(dist.atoms).max() ** 2 + 1e-15
        assert np.allclose(mean[m], ref_m, rtol=0, atol=tol)
        assert np.allclose(cov[m], ref_c, rtol=0, atol=tol)


# ---- uniform box: quadrature --------------------------------------------------------------------

@pytest.mark.parametrize("low,high", [(0.0, 1.0), (-1.5, 0.25), (2.0, 5.0), (-0.3, -0.3 + 1e-3)])
@pytest.mark.parametrize("z", [-40.0, -3.0, -1e-7, 0.0, 1e-9, 0.5, 7.0, 40.0])
def test_uniform_1d_matches_quadrature(low, high, z):
    """LSE, tilted mean and variance of U[a, b] against 50-digit Gauss-Legendre quadrature of
    exp(z y), y exp(z y), y^2 exp(z y) over [a, b] (smooth integrand: quadrature error << 1e-30);
    tolerance 1e-13 relative to the value's scale (float64 closed forms, SPEC §1)."""
    box = UniformBox([low], [high])
    a, b, zz = mp.mpf(low), mp.mpf(high), mp.mpf(z)
    shift = max(zz * a, zz * b)  # keep the integrand O(1)
    f0 = mp.quad(lambda y: mp.exp(zz * y - shift), [a, b]) / (b - a)
    f1 = mp.quad(lambda y: y * mp.exp(zz * y - shift), [a, b]) / (b - a)
    f2 = mp.quad(lambda y: y * y * mp.exp(zz * y - shift), [a, b]) / (b - a)
    ref_lse = float(shift + mp.log(f0))
    ref_mean = f1 / f0
    ref_var = float(f2 / f0 - ref_mean**2)
    zarr = np.array([[z]])
    scale = max(abs(low), abs(high), 1.0)
    assert box.lse(zarr)[0] == pytest.approx(ref_lse, rel=1e-13, abs=1e-13 * (1 + abs(z) * scale))
    assert box.tilted_mean(zarr)[0, 0] == pytest.approx(float(ref_mean), abs=1e-13 * scale)
    assert box.tilted_cov(zarr)[0, 0, 0] == pytest.approx(ref_var, rel=1e-10,
                                                          abs=1e-15 * scale**2)


@pytest.mark.parametrize("z", [(0.0, 0.0), (1.0, -2.0), (-5.0, 3.0), (12.0, 0.5)])
def test_uniform_2d_matches_dblquad(z):
    """2-D box: scipy dblquad of exp(<z, y> - h(z)) (h = support function, integrand <= 1) gives the
    LSE and the tilted mean/covariance to ~1e-10 (quadrature epsabs/epsrel 1e-13); the tilted
    covariance of a product law is diagonal."""
    box = UniformBox([-1.0, 0.5], [0.5, 2.5])
    zv = np.array(z)
    hz = float(np.maximum(zv * box.low, zv * box.high).sum())
    area = float(np.prod(box.high - box.low))

    def moment(fn):
        val, _ = integrate.dblquad(lambda y2, y1: fn(y1, y2) * np.exp(zv[0] * y1 + zv[1] * y2 - hz),
                                   box.low[0], box.high[0], box.low[1], box.high[1],
                                   epsabs=1e-13, epsrel=1e-13)
        return val / area

    m0 = moment(lambda a, b: 1.0)
    mean = np.array([moment(lambda a, b: a), moment(lambda a, b: b)]) / m0
    second = np.array([[moment(lambda a, b: a * a), moment(lambda a, b: a * b)],
                       [moment(lambda a, b: a * b), moment(lambda a, b: b * b)]]) / m0
    cov = second - np.outer(mean, mean)
    zz = zv[None]
    assert box.lse(zz)[0] == pytest.approx(hz + np.log(m0), abs=1e-10)
    assert np.allclose(box.tilted_mean(zz)[0], mean, atol=1e-10)
    assert np.allclose(box.tilted_cov(zz)[0], cov, atol=1e-9)


# ---- Gaussian mixtures: quadrature over R, closed form in mpmath --------------------------------

@pytest.mark.parametrize("z", [-4.0, 0.0, 1e-8, 1.3])
@pytest.mark.parametrize("case", ["single", "mixture", "degenerate"])
def test_gaussian_1d_matches_quadrature(z, case):
    """LSE, tilted mean and variance of 1-D Gaussian mixtures against mpmath quadrature over R of
    the density times exp(z y) (25 digits, split at the tilted mean m + v z; integrand smooth and
    decaying, quadrature error << 1e-20). A zero-variance component is a Dirac: its contribution
    exp(m z) is added in closed form. Tolerance 1e-12 relative."""
    if case == "single":
        w, m, v = [1.0], [0.7], [2.0]
    elif case == "mixture":
        w, m, v = [0.2, 0.5, 0.3], [-1.0, 0.5, 2.0], [0.3, 1.0, 0.05]
    else:
        w, m, v = [0.4, 0.6], [1.5, -0.5], [0.0, 0.8]
    gm = GaussianMixture(w, np.array(m)[:, None], np.array(v)[:, None, None])
    zz = mp.mpf(z)

    def mom(power):
        total = mp.mpf(0)
        for wk, mk, vk in zip(w, m, v):
            mk, vk = mp.mpf(mk), mp.mpf(vk)
            if vk == 0:
                total += wk * mk**power * mp.exp(zz * mk)
                continue
            dens = lambda y: mp.exp(-(y - mk) ** 2 / (2 * vk)) / mp.sqrt(2 * mp.pi * vk)  # noqa: E731
            total += wk * mp.quad(lambda y: y**power * dens(y) * mp.exp(zz * y),
                                  [-mp.inf, mk + vk * zz, mp.inf])
        return total

    with mp.workdps(25):
        m0, m1, m2 = mom(0), mom(1), mom(2)
    mean = m1 / m0
    zarr = np.array([[z]])
    assert gm.lse(zarr)[0] == pytest.approx(float(mp.log(m0)), rel=1e-12, abs=1e-13)
    assert gm.tilted_mean(zarr)[0, 0] == pytest.approx(float(mean), rel=1e-12, abs=1e-13)
    assert gm.tilted_cov(zarr)[0, 0, 0] == pytest.approx(float(m2 / m0 - mean**2), rel=1e-11,
                                                         abs=1e-13)


def gm_ref_lse(gm: GaussianMixture, z: np.ndarray) -> float:
    zz = [mp.mpf(float(x)) for x in z]
    terms = []
    for w, m, S in zip(gm.weights, gm.means, gm.covariances):
        lin = mp.fsum(a * mp.mpf(float(b)) for a, b in zip(zz, m))
        quad = mp.fsum(zz[a] * mp.mpf(float(S[a, b])) * zz[b]
                       for a in range(len(zz)) for b in range(len(zz))) / 2
        terms.append(mp.log(mp.mpf(float(w))) + lin + quad)
    top = max(terms)
    return float(top + mp.log(mp.fsum(mp.exp(t - top) for t in terms)))


@pytest.mark.parametrize("scale", [1e-3, 1.0, 10.0, 1e4])
@pytest.mark.parametrize("singular", [False, True])
def test_gaussian_2d_closed_form_mpmath(scale, singular):
    """2-D Gaussian mixtures (one singular PSD covariance optional): LSE against the closed form
    evaluated in 50 digits; error budget ~16 ulps of the largest score (|z|^2 |S| + |z||m|)."""
    rng = np.random.default_rng(int(scale * 7) % 1000 + singular)
    covs = np.array([rand_spd(rng, 2), rand_spd(rng, 2), rand_spd(rng, 2)])
    if singular:
        u = np.array([0.6, 0.8])
        covs[1] = 1.7 * np.outer(u, u)
    gm = GaussianMixture([0.3, 0.3, 0.4], rng.normal(size=(3, 2)), covs)
    z = rng.normal(size=(5, 2)) * scale
    got = gm.lse(z)
    for m in range(5):
        size = np.abs(z[m]).sum() ** 2 * np.abs(gm.covariances).max() + np.abs(z[m]).sum() * 3 + 3
        assert abs(got[m] - gm_ref_lse(gm, z[m])) <= 16 * EPS * size


def test_gaussian_2d_matches_dblquad():
    """A 2-D Gaussian N(m, S) tilted by z: dblquad of density * exp(<z, y>) over a box of +-12
    standard deviations around the tilted mean m + S z (truncation < 1e-30) gives the LSE
    <m, z> + z^T S z / 2 to the quadrature tolerance 1e-9."""
    S = np.array([[1.0, 0.4], [0.4, 0.5]])
    m = np.array([0.3, -0.7])
    gm = GaussianMixture([1.0], m[None], S[None])
    z = np.array([0.8, -1.1])
    Si = np.linalg.inv(S)
    norm = 1.0 / (2 * np.pi * np.sqrt(np.linalg.det(S)))
    c = m + S @ z
    shift = float(m @ z + z @ S @ z / 2)
    sd = np.sqrt(np.diag(S))

    def f(y2, y1):
        y = np.array([y1, y2])
        return norm * np.exp(-(y - m) @ Si @ (y - m) / 2 + z @ y - shift)

    val, _ = integrate.dblquad(f, c[0] - 12 * sd[0], c[0] + 12 * sd[0],
                               c[1] - 12 * sd[1], c[1] + 12 * sd[1], epsabs=1e-12, epsrel=1e-12)
    assert gm.lse(z[None])[0] == pytest.approx(shift + np.log(val), abs=1e-9)


# ---- gradients and Hessians by finite differences, all families ---------------------------------

def _families(rng, d):
    return [make_discrete(rng, 6, d), make_box(rng, d), make_mixture(rng, 3, d),
            GaussianMixture([1.0], rng.normal(size=(1, d)), rand_spd(rng, d)[None])]


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_tilted_moments_are_derivatives_of_lse(d, seed):
    """tilted_mean = grad LSE and tilted_cov = Hess LSE (SPEC §1), checked by central differences:
    step 1e-4 for the gradient (truncation ~1e-8 |D^3 LSE|, round-off ~eps |LSE| / 1e-4 ~ 1e-12)
    and 1e-5 on tilted_mean for the Hessian; tolerance 1e-6 relative to the moment's size."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(3, d)) * 1.5
    for dist in _families(rng, d):
        grad, hess = dist.tilted_mean(z), dist.tilted_cov(z)
        for a in range(d):
            e = np.zeros(d)
            e[a] = 1e-4
            fd = (dist.lse(z + e) - dist.lse(z - e)) / 2e-4
            assert np.allclose(grad[:, a], fd, rtol=1e-6, atol=1e-6), type(dist).__name__
            e[a] = 1e-5
            fdh = (dist.tilted_mean(z + e) - dist.tilted_mean(z - e)) / 2e-5
            assert np.allclose(hess[:, :, a], fdh, rtol=1e-6, atol=1e-6), type(dist).__name__
        assert np.allclose(hess, hess.transpose(0, 2, 1), rtol=0, atol=1e-14)


def test_mean_and_cov_properties_at_zero():
    """At z = 0 the tilted law is mu itself: mean and covariance equal the direct formulas
    (round-off tolerance 1e-13)."""
    rng = np.random.default_rng(5)
    disc = make_discrete(rng, 5, 2)
    mu = disc.weights @ disc.atoms
    assert np.allclose(disc.mean, mu, atol=1e-13)
    c = disc.atoms - mu
    assert np.allclose(disc.cov, (disc.weights[:, None] * c).T @ c, atol=1e-13)
    box = UniformBox([0.0, -1.0], [2.0, 3.0])
    assert np.allclose(box.mean, [1.0, 1.0], atol=1e-15)
    assert np.allclose(box.cov, np.diag([4 / 12, 16 / 12]), atol=1e-15)
    gm = make_mixture(rng, 2, 2)
    mean = gm.weights @ gm.means
    cov = np.einsum("k,kab->ab", gm.weights, gm.covariances) + np.einsum(
        "k,ka,kb->ab", gm.weights, gm.means - mean, gm.means - mean)
    assert np.allclose(gm.mean, mean, atol=1e-13)
    assert np.allclose(gm.cov, cov, atol=1e-13)


# ---- stability for large |z| --------------------------------------------------------------------

@pytest.mark.parametrize("t", [1e2, 1e3, 1e4])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_large_z_asymptotics(t, d):
    """For |z| up to 1e4 (no warnings: pytest turns them into errors):
    - discrete: LSE(z) = max_j(<z, y_j> + log w_j) + log(1 + O(e^{-gap})), and the gap of random
      atoms at t >= 100 makes the correction < 1e-30, so the difference is round-off (~16 ulps of the
      max);
    - box: LSE(z) = h(z) - sum_l log(w_l |z_l|) + O(e^{-w|z|}) with h the support function;
    - mixtures: finite, at least the largest component score;
    - tilted means in the convex hull of the support (discrete, box); covariances finite PSD."""
    rng = np.random.default_rng(int(t) + d)
    u = rng.normal(size=(6, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    z = t * u
    disc = make_discrete(rng, 5, d)
    scores = z @ disc.atoms.T + np.log(disc.weights)
    top = scores.max(axis=1)
    gaps = np.sort(scores, axis=1)[:, -1] - np.sort(scores, axis=1)[:, -2]
    ok = gaps > 80  # e^-80 < 1e-34: the asymptotic form is exact in float64
    got = disc.lse(z)
    assert np.all(np.isfinite(got))
    assert np.all(got >= top - 16 * EPS * np.abs(top))
    assert np.all(got <= top + np.log(5) + 16 * EPS * np.abs(top))
    assert np.allclose(got[ok], top[ok], rtol=16 * EPS, atol=0)
    tm = disc.tilted_mean(z)
    assert np.all(tm >= disc.atoms.min(axis=0) - 1e-12) and np.all(tm <= disc.atoms.max(axis=0) + 1e-12)

    box = make_box(rng, d)
    w = box.high - box.low
    h = np.maximum(z * box.low, z * box.high).sum(axis=1)
    asym = h - np.log(w * np.abs(z)).sum(axis=1)
    big = np.all(np.abs(z) * w > 80, axis=1)
    got = box.lse(z)
    assert np.all(np.isfinite(got))
    assert np.all(got <= h + 8 * EPS * np.abs(h))  # LSE <= support function
    assert np.allclose(got[big], asym[big], rtol=0, atol=64 * EPS * t * np.abs(box.high).max() + 1e-12)
    bm = box.tilted_mean(z)
    assert np.all(bm >= box.low) and np.all(bm <= box.high)
    bc = box.tilted_cov(z)
    assert np.all(np.isfinite(bc)) and np.all(np.diagonal(bc, axis1=1, axis2=2) >= 0)

    gm = make_mixture(rng, 3, d)
    got = gm.lse(z)
    comp = (np.log(gm.weights) + z @ gm.means.T
            + np.einsum("ma,kab,mb->mk", z, gm.covariances, z) / 2).max(axis=1)
    assert np.all(np.isfinite(got)) and np.all(got >= comp - 16 * EPS * np.abs(comp))
    for dist in (disc, box, gm):
        c = dist.tilted_cov(z)
        assert np.all(np.isfinite(c))
        assert np.all(np.linalg.eigvalsh((c + c.transpose(0, 2, 1)) / 2).min(axis=1)
                      >= -1e-9 * (1 + np.abs(c).max()))


def test_large_z_raises_no_warning():
    """Explicitly: evaluation at |z| = 1e4 in every family emits no warning at all."""
    rng = np.random.default_rng(9)
    z = np.array([[1e4, -1e4], [-1e4, 3e3], [0.0, 1e4], [1e4, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for dist in (make_discrete(rng, 4, 2), make_box(rng, 2), make_mixture(rng, 2, 2),
                     UniformBox([0.0, 1.0], [0.0, 1.0])):
            for fn in (dist.lse, dist.tilted_mean, dist.tilted_cov):
                assert np.all(np.isfinite(fn(z)))


# ---- affine images --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_affine_image_changes_lse_by_change_of_variable(seed):
    """LSE_{A mu + t}(z) = LSE_mu(A^T z) + <t, z> (SPEC §2); float64 round-off of O(|z||y|)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(2, 2)) + 2 * np.eye(2)
    t = rng.normal(size=2)
    z = rng.normal(size=(6, 2)) * 3
    for dist in (make_discrete(rng, 5, 2), make_mixture(rng, 3, 2)):
        img = dist.affine_image(A, t)
        assert np.allclose(img.lse(z), dist.lse(z @ A) + z @ t, rtol=1e-12, atol=1e-12)
    D = np.diag([2.0, -0.5])
    box = make_box(rng, 2)
    img = box.affine_image(D, t)
    assert np.all(img.low <= img.high)
    assert np.allclose(img.lse(z), box.lse(z @ D) + z @ t, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        box.affine_image(A, t)


def test_zero_weight_atoms_and_components_are_dropped():
    """A weight of 0 removes the atom/component: same LSE as without it, exactly."""
    z = np.random.default_rng(0).normal(size=(5, 1)) * 4
    a = Discrete([[0.0], [1.0], [5.0]], [1.0, 1.0, 0.0])
    b = Discrete([[0.0], [1.0]])
    assert a.atoms.shape == (2, 1)
    assert np.allclose(a.lse(z), b.lse(z), rtol=0, atol=4 * EPS * 5)
    g = GaussianMixture([0.0, 2.0], [[3.0], [1.0]], [[[1.0]], [[0.5]]])
    assert g.weights.shape == (1,) and g.weights[0] == 1.0


def test_singular_and_nearly_symmetric_covariances_accepted():
    """Singular PSD covariances are allowed (SPEC §1); an asymmetry or negative eigenvalue below
    PSD_RTOL * |S| is round-off in the input: it is removed (result symmetric PSD)."""
    GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 1.0], [1.0, 1.0]]])
    GaussianMixture([1.0], [[0.0, 0.0]], [np.zeros((2, 2))])
    S = np.array([[1.0, 1.0 + 1e-12], [1.0, 1.0 - 1e-12]])
    g = GaussianMixture([1.0], [[0.0, 0.0]], [S])
    C = g.covariances[0]
    assert np.array_equal(C, C.T)
    assert np.linalg.eigvalsh(C).min() >= -1e-15


# ---- validation -----------------------------------------------------------------------------------

GOOD_S = [[[1.0, 0.0], [0.0, 1.0]]]
BAD_INPUTS = [
    ("atoms", lambda: Discrete([[0.0], [np.nan]])),
    ("atoms", lambda: Discrete([[0.0], [np.inf]])),
    ("atoms", lambda: Discrete([0.0, 1.0])),
    ("atoms", lambda: Discrete(np.zeros((0, 2)))),
    ("atoms", lambda: Discrete([["a"], ["b"]])),
    ("weights", lambda: Discrete([[0.0], [1.0]], [np.nan, 1.0])),
    ("weights", lambda: Discrete([[0.0], [1.0]], [-0.5, 1.5])),
    ("weights", lambda: Discrete([[0.0], [1.0]], [0.0, 0.0])),
    ("weights", lambda: Discrete([[0.0], [1.0]], [1.0, 1.0, 1.0])),
    ("weights", lambda: Discrete([[0.0], [1.0]], [[0.5, 0.5]])),
    ("low", lambda: UniformBox([1.0], [0.0])),
    ("low", lambda: UniformBox([np.nan], [0.0])),
    ("high", lambda: UniformBox([0.0], [np.inf])),
    ("high", lambda: UniformBox([0.0, 0.0], [1.0])),
    ("low", lambda: UniformBox([[0.0]], [[1.0]])),
    ("low", lambda: UniformBox([], [])),
    ("weights", lambda: GaussianMixture([-1.0, 2.0], [[0.0, 0.0], [1.0, 1.0]], GOOD_S * 2)),
    ("weights", lambda: GaussianMixture([0.0], [[0.0, 0.0]], GOOD_S)),
    ("weights", lambda: GaussianMixture([1.0, 1.0], [[0.0, 0.0]], GOOD_S)),
    ("means", lambda: GaussianMixture([1.0], [[np.nan, 0.0]], GOOD_S)),
    ("means", lambda: GaussianMixture([1.0], [0.0, 0.0], GOOD_S)),
    ("covariances", lambda: GaussianMixture([1.0], [[0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]])),
    ("covariances", lambda: GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0]]])),
    ("covariances", lambda: GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, np.inf], [0.0, 1.0]]])),
    ("covariances[0]", lambda: GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.0, 1.0]]])),
    ("covariances[1]", lambda: GaussianMixture([0.5, 0.5], [[0.0, 0.0], [1.0, 0.0]],
                                               [np.eye(2), [[1.0, 2.0], [2.0, 1.0]]])),
    ("covariances[0]", lambda: GaussianMixture([1.0], [[0.0, 0.0]], [-np.eye(2)])),
]


@pytest.mark.parametrize("field,make", BAD_INPUTS, ids=[f"{f}-{i}" for i, (f, _) in
                                                        enumerate(BAD_INPUTS)])
def test_validation_errors_name_the_field(field, make):
    """Every malformed parameter raises InputError (a ValueError) with ``field`` set and the field
    quoted in the message (SPEC practice 5: validate once, at the boundary, name the field)."""
    with pytest.raises(InputError) as info:
        make()
    assert info.value.field == field
    assert f"'{field}'" in str(info.value)


# ---- Dataset: batched, padded, chunked evaluation ------------------------------------------------

def mixed_dataset(rng, d=2):
    """Three families, unequal atom and component counts (so the packs are padded)."""
    dists = [make_discrete(rng, 3, d), make_box(rng, d), make_mixture(rng, 1, d),
             make_discrete(rng, 9, d, weighted=False), make_mixture(rng, 4, d), make_box(rng, d),
             Discrete(rng.normal(size=(1, d))), make_discrete(rng, 5, d)]
    return Dataset(tuple(f"mu{i}" for i in range(len(dists))), tuple(dists))


@pytest.mark.parametrize("d", [1, 2, 3])
def test_dataset_lse_equals_per_distribution(d):
    """Dataset.lse (M, N), packed per family with -inf/zero padding, equals each distribution's own
    lse: same arithmetic up to summation order, so ~8 ulps of the score size."""
    rng = np.random.default_rng(d)
    ds = mixed_dataset(rng, d)
    z = rng.normal(size=(50, d)) * np.array([0.1, 1, 10, 100, 1e4]).repeat(10)[:, None]
    F = ds.lse(z)
    assert F.shape == (50, len(ds))
    for i, dist in enumerate(ds.distributions):
        ref = dist.lse(z)
        assert np.allclose(F[:, i], ref, rtol=32 * EPS, atol=32 * EPS), ds.names[i]


@pytest.mark.parametrize("d", [1, 3])
def test_dataset_tilted_moments_equal_per_distribution(d):
    """Dataset.tilted_moments gives every distribution's tilted mean and covariance (round-off)."""
    rng = np.random.default_rng(10 + d)
    ds = mixed_dataset(rng, d)
    z = rng.normal(size=(20, d)) * 3
    g, h = ds.tilted_moments(z)
    assert g.shape == (20, len(ds), d) and h.shape == (20, len(ds), d, d)
    for i, dist in enumerate(ds.distributions):
        assert np.allclose(g[:, i], dist.tilted_mean(z), rtol=1e-12, atol=1e-12)
        assert np.allclose(h[:, i], dist.tilted_cov(z), rtol=1e-11, atol=1e-12)
    g2, h2 = ds.tilted_moments(z, covariance=False)
    assert h2 is None and np.allclose(g2, g, rtol=0, atol=1e-15)


@pytest.mark.parametrize("budget", [1, 7, 100])
def test_dataset_independent_of_chunk_budget(budget, monkeypatch):
    """Results do not depend on how probes are chunked: with a tiny budget (one or a few probes
    per chunk) lse and tilted moments agree with the unchunked ones to the last ulp (chunks only
    slice rows; per-row arithmetic is identical). The budget is forced through ``chunks``' default
    (the function that sizes every chunk) and through ``iter_tilted_moments(budget=...)``."""
    rng = np.random.default_rng(budget)
    ds = mixed_dataset(rng)
    z = rng.normal(size=(37, 2)) * 5
    F_ref = ds.lse(z)
    g_ref, h_ref = ds.tilted_moments(z)
    calls = []
    orig = dataset_mod.chunks

    def small_chunks(total, per_item, budget_=budget):
        out = list(orig(total, per_item, budget))
        calls.append(len(out))
        return iter(out)

    monkeypatch.setattr(dataset_mod, "CHUNK_ELEMENTS", budget)
    monkeypatch.setattr(dataset_mod, "chunks", small_chunks)
    ds2 = mixed_dataset(np.random.default_rng(budget))
    F = ds2.lse(z)
    assert max(calls) > 1  # chunking really happened
    assert np.allclose(F, F_ref, rtol=4 * EPS, atol=4 * EPS)
    parts = list(ds2.iter_tilted_moments(z, budget=budget))
    assert len(parts) > 1
    g = np.concatenate([p[1] for p in parts])
    h = np.concatenate([p[2] for p in parts])
    assert np.allclose(g, g_ref, rtol=1e-14, atol=1e-14)
    assert np.allclose(h, h_ref, rtol=1e-13, atol=1e-14)


def test_chunk_elements_constant_controls_chunking(monkeypatch):
    """CHUNK_ELEMENTS is documented as the largest temporary; lowering it must shrink chunks."""
    monkeypatch.setattr(dataset_mod, "CHUNK_ELEMENTS", 4)
    assert len(list(dataset_mod.chunks(10, 2))) == 5


def test_dataset_translate_shifts_every_lse():
    """translate(t): LSE_i(z) + <t, z> for every family (SPEC §2 translates)."""
    rng = np.random.default_rng(21)
    ds = mixed_dataset(rng)
    t = np.array([0.7, -1.2])
    z = rng.normal(size=(10, 2)) * 4
    assert np.allclose(ds.translate(t).lse(z), ds.lse(z) + (z @ t)[:, None], rtol=1e-12,
                       atol=1e-12)
    assert ds.translate(t).names == ds.names


def test_dataset_from_tokens_and_pooled_moments():
    """from_tokens: one uniform-weight discrete law per sequence, default names seq0..; pooled
    moments are the mean/covariance of the equal-weight mixture (computed directly)."""
    rng = np.random.default_rng(22)
    toks = [rng.normal(size=(n, 2)) for n in (3, 5, 4)]
    ds = Dataset.from_tokens(toks)
    assert ds.names == ("seq0", "seq1", "seq2")
    assert np.allclose(ds.distributions[1].weights, 0.2)
    pooled = np.concatenate(toks)
    w = np.concatenate([np.full(len(x), 1 / (3 * len(x))) for x in toks])
    mean = w @ pooled
    cov = (w[:, None] * (pooled - mean)).T @ (pooled - mean)
    m, c = ds.pooled_moments
    assert np.allclose(m, mean, atol=1e-14) and np.allclose(c, cov, atol=1e-13)
    assert np.array_equal(c, c.T)


@pytest.mark.parametrize("kwargs,field", [
    (dict(names=("a", "a"), distributions=(Discrete([[0.0]]), Discrete([[1.0]]))), "names"),
    (dict(names=("a", ""), distributions=(Discrete([[0.0]]), Discrete([[1.0]]))), "names"),
    (dict(names=("a",), distributions=(Discrete([[0.0]]), Discrete([[1.0]]))), "names"),
    (dict(names=("a", "b"), distributions=(Discrete([[0.0]]), Discrete([[1.0, 2.0]]))),
     "distributions"),
    (dict(names=(), distributions=()), None),
])
def test_dataset_validation(kwargs, field):
    """Dataset rejects duplicate/empty names, count mismatches, mixed dimensions, emptiness."""
    with pytest.raises(InputError) as info:
        Dataset(**kwargs)
    assert info.value.field == field


def test_from_tokens_locates_bad_sequence():
    """A bad sequence is reported with its index and the offending field."""
    with pytest.raises(InputError) as info:
        Dataset.from_tokens([np.zeros((2, 1)), np.array([[np.nan]])], source="x.npz")
    assert "x.npz" in str(info.value) and "sequence 1" in str(info.value)
    assert "atoms" in str(info.value)


def test_lse_of_ragged_sequences_matches_brute_force():
    """Dataset.lse over sequences of very different lengths (packed in length buckets, tiled
    over probes and laws) equals scipy's logsumexp of each law's own scores, to round-off, and
    the column order is the dataset's."""
    import numpy as np
    from scipy.special import logsumexp

    from ntkcheck import Dataset

    rng = np.random.default_rng(11)
    lengths = [1, 2, 3, 7, 8, 9, 30, 64, 65, 200, 5, 1]
    X = [rng.normal(size=(k, 3)) for k in lengths]
    W = [rng.uniform(0.1, 1.0, size=k) for k in lengths]
    ds = Dataset.from_tokens(X, weights=W)
    z = rng.normal(size=(300, 3)) * 3.0
    F = ds.lse(z)
    for i, (x, w) in enumerate(zip(X, W)):
        ref = logsumexp(z @ x.T, axis=1, b=w / w.sum())
        np.testing.assert_allclose(F[:, i], ref, rtol=1e-13, atol=1e-13)
