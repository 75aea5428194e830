"""Every threshold and branch of the decision, with inputs on both sides of it.

The expected values are computed here from the formulas documented in the modules' docstrings
(injectivity/spectrum.py, probes.py, features.py, geometry.py, verify.py), so that changing a
constant or a comparison in the code fails a test.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from ntkcheck import Dataset, Discrete, analyze
from ntkcheck import analysis as analysis_module
from ntkcheck.injectivity import certify as certify_module
from ntkcheck.injectivity import decide as decide_module
from ntkcheck.injectivity import spectrum as spectrum_module
from ntkcheck.analysis import INCONCLUSIVE, INJECTIVE, NOT_INJECTIVE
from ntkcheck.injectivity.probes import auto_scales, default_probe_count
from ntkcheck.injectivity.geometry import Geometry, dataset_geometry
from ntkcheck.injectivity.verify import verify_relation
from ntkcheck.injectivity.spectrum import Spectrum, classify_singular_values

U = np.finfo(float).eps / 2


# ---- spectrum.py: round-off level, grey zone --------------------------------------------------------

@pytest.mark.parametrize("last, k, grey", [
    (0.9e-3, 1, []),        # at the round-off level of its direction (sigma <= tau)
    (1.1e-3, 0, [2]),       # just above it: neither zero nor clearly non-zero (< 100 tau)
    (0.099, 0, [2]),        # still below GAP * tau = 0.1
    (0.101, 0, []),         # clearly non-zero (>= 100 tau)
])
def test_classification_against_tau_and_gap(last, k, grey):
    sv = np.array([1.0, 0.5, last])
    tau = np.full(3, 1e-3)
    assert classify_singular_values(sv, tau) == (k, grey)


def test_only_trailing_values_are_null():
    """A small singular value followed by a larger one at its own level: only the tail counts."""
    sv = np.array([1.0, 1e-4, 1e-5])
    tau = np.array([1e-6, 1e-6, 1e-3])  # v_3 is noisy, v_2 is not
    assert classify_singular_values(sv, tau) == (1, [])
    assert classify_singular_values(sv, np.array([1e-6, 1e-3, 1e-6]))[0] == 0


def test_vector_noise_formula():
    """tau(c) = 10 (sum_i |c_i| eta_i + N u) (spectrum.py docstring)."""
    eta = np.array([1e-12, 1e-6, 0.0])
    spec = Spectrum(np.ones(3), 0.0, 0.0, np.eye(3), eta, eta)
    v = np.array([[0.6], [0.0], [0.8]])
    assert spec.vector_noise(v)[0] == pytest.approx(10 * (0.6e-12 + 3 * U), rel=1e-12, abs=0.0)


def test_fast_certificate_both_sides():
    """sigma_min > delta passes; otherwise the per-column form sigma_min(R diag(1/beta)) must
    exceed sqrt(N) (1 + 4 N eps)."""
    fast = decide_module._fast_certificate
    R = np.diag([1.0, 1e-3])
    assert fast(Spectrum(np.array([1.0, 1e-3]), 0.9e-3, 0.0, R, np.zeros(2), np.ones(2))) is not None
    beta = np.array([1e-6, 1e-3 / (np.sqrt(2) * 1.01)])  # sigma_min(R/beta) = 1.01 sqrt(2)
    assert fast(Spectrum(np.array([1.0, 1e-3]), 2e-3, 0.0, R, np.zeros(2), beta)) is not None
    beta = np.array([1e-6, 1e-3 / (np.sqrt(2) * 0.99)])
    assert fast(Spectrum(np.array([1.0, 1e-3]), 2e-3, 0.0, R, np.zeros(2), beta)) is None



@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_upper_bound_skips_only_a_hopeless_gate(monkeypatch, seed):
    """On a partial spectrum the per-column gate first takes ||R v|| / ||beta v|| (v the smallest
    right vector already computed, plus the rounding of R v): an upper bound of
    sigma_min(R diag(1/beta)) (checked against LAPACK's SVD, for a random and a nearly
    dependent triangle, and for any v). When it is below the gate's bar the gate fails without
    the iteration (weighted_smallest is not called); above it, the iteration decides."""
    rng = np.random.default_rng(seed)
    N = 40
    A = rng.standard_normal((2 * N, N))
    A[:, 5] = A[:, 3] + 2 * A[:, 7] + 1e-13 * rng.standard_normal(2 * N)
    R = np.linalg.qr(A, mode="r")
    beta = 10.0 ** rng.uniform(-14, -10, N)
    exact = np.linalg.svd(R / beta[None, :], compute_uv=False)[-1]
    V = np.linalg.svd(R)[2].T[:, ::-1]
    for v in (V[:, :1], rng.standard_normal((N, 1))):
        bounds = [Spectrum(np.array([1.0]), 0.0, 0.0, Rk, np.zeros(N), beta, vectors=v,
                           columns=N).weighted_upper_bound()
                  for Rk in (np.ascontiguousarray(R), np.asfortranarray(R))]  # both layouts
        assert min(bounds) >= exact  # (R v rounds differently in the two layouts)
    spec = Spectrum(np.array([1e-13]), 1.0, 0.0, R, np.zeros(N), beta, vectors=V[:, :1],
                    columns=N)
    assert spec.weighted_upper_bound() <= np.sqrt(N)
    called = []
    monkeypatch.setattr(Spectrum, "weighted_smallest", lambda self: called.append(1) or 0.0)
    assert decide_module._fast_certificate(spec) is None and not called
    wide = Spectrum(np.array([1e-13]), 1.0, 0.0, R, np.zeros(N), np.full(N, 1e-30),
                    vectors=V[:, :1], columns=N)
    assert wide.weighted_upper_bound() > np.sqrt(N)
    assert decide_module._fast_certificate(wide) is None and called

# ---- probes.py: probe law ---------------------------------------------------------------------

def _geometry_with(spreads):
    return Geometry(np.zeros(1), np.eye(1), 1, True, np.ones(1), np.ones(1), 0.0,
                    np.array(spreads, dtype=float))


def test_auto_scales_add_own_scales_outside_the_band():
    """rho = 0.05: 1/rho = 20 rounded to half-decades is 10^1.5; scales (1, 3, 10, 30) x that."""
    base = (1.0, 3.0, 10.0, 30.0)
    assert auto_scales(_geometry_with([1.0, 0.5, 9.0]), base) == base
    got = auto_scales(_geometry_with([1.0, 0.05]), base)
    own = [float(f"{10 ** 1.5 * f:.3g}") for f in base]
    assert got == tuple(sorted(set(base) | set(own)))
    assert auto_scales(_geometry_with([0.11]), base) == base   # inside [0.1, 10]
    assert auto_scales(_geometry_with([0.09]), base) != base   # outside
    assert auto_scales(_geometry_with([11.0]), base) != base
    wide = auto_scales(_geometry_with([100.0]), base)
    assert min(wide) == pytest.approx(0.01)


def test_auto_scales_are_bounded():
    """Spreads over 40 decades: at most 16 scales (the grid is coarsened)."""
    got = auto_scales(_geometry_with(10.0 ** -np.arange(1, 40)), (1.0, 3.0, 10.0, 30.0))
    assert len(got) <= 16
    assert max(got) >= 1e38


def test_default_probe_count():
    assert default_probe_count(10, 3) == 256
    assert default_probe_count(200, 3) == 2 * 204
    assert default_probe_count(10, 3, 8) == 512


def test_probe_count_guard_both_sides():
    """M < N + r + 1 probes cannot decide (inconclusive); M = N + r + 1 can."""
    X = list(np.random.default_rng(0).normal(size=(12, 5, 2)))
    ds = Dataset.from_tokens(X)
    low = analyze(ds, probes=12 + 2, exact="never")
    assert low.verdict == INCONCLUSIVE and "increase --probes to at least 15" in low.reason
    assert analyze(ds, probes=15 * 8, exact="never").verdict == INJECTIVE


# ---- geometry.py: the affine hull ----------------------------------------------------------------

def _documented_hull_levels(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Singular values and levels 10 (sum_l |v_kl| eps_l + sqrt(d) u ||A||_F) with
    eps_l = (3 + log2 P) u max|y'_l - ref_l|, ref the midpoint of each equilibrated
    coordinate's range, for uniform token weights (geometry.py docstring), computed
    independently (the centred rows in exact rational arithmetic, rounded once)."""
    from fractions import Fraction
    Y = X.reshape(-1, X.shape[-1])
    P, d = Y.shape
    span = Y.max(axis=0) - Y.min(axis=0)
    scale = 2.0 ** np.round(np.log2(span))
    Ye = Y / scale
    ref = Ye.min(axis=0) / 2 + Ye.max(axis=0) / 2
    exact = [[Fraction(v) for v in row] for row in Ye]
    mean = [sum(row[l] for row in exact) / P for l in range(d)]
    A = np.array([[float(row[l] - mean[l]) for l in range(d)] for row in exact]) / np.sqrt(P)
    eps = (3 + np.log2(P)) * U * np.abs(Ye - ref).max(axis=0)
    _, sv, Vt = np.linalg.svd(A, full_matrices=False)
    return sv, 10 * (np.abs(Vt) @ eps + np.sqrt(d) * U * np.linalg.norm(A))


def test_hull_tolerance_matches_the_documented_formula():
    X = np.random.default_rng(1).normal(size=(8, 4, 3)) * np.array([1e3, 1.0, 1e-4]) + 5.0
    geo = dataset_geometry(Dataset.from_tokens(list(X)))
    sv, level = _documented_hull_levels(X)
    assert geo.rank == 3
    assert geo.hull_tolerance == pytest.approx(level.max(), rel=1e-6, abs=0)
    assert np.allclose(geo.hull_singular_values, sv, rtol=1e-10)


def _noisy_line(noise_ulps: float, seed: int = 2) -> np.ndarray:
    """60 tokens in R^3: coordinates 0 and 1 dyadic (2^-20 grid, |x| < 4), coordinate 2 =
    coordinate 0 + k ulp(8), k = +-noise_ulps: a line in the (0, 2) plane up to a deviation of
    a few ulps of the coordinate's *range* (every value exact, no rounding in the data)."""
    rng = np.random.default_rng(seed)
    X = np.clip(np.round(rng.normal(size=(10, 6, 3)) * 2**20) / 2**20, -3.9, 3.9)
    noise = np.where(rng.random(size=X.shape[:2]) < 0.5, -1.0, 1.0)
    X[..., 2] = X[..., 0] + noise * noise_ulps * np.spacing(8.0)
    return X


@pytest.mark.parametrize("factor, dim", [(0.3, 2), (3.0, 3)])
def test_hull_keeps_a_direction_just_above_its_tolerance(factor, dim):
    """The direction (e0 - e2) / sqrt 2 varies only by the noise added to coordinate 2; it is
    kept iff its singular value exceeds the documented level, so noise at 0.3x that level is
    round-off of the centring (rank 2) and at 3x it is a direction (rank 3). The level holds
    |v_0| eps_0 + |v_2| eps_2 with v_0 = -v_2: a level built from sum_l v_kl eps_l instead
    (abs dropped from the centring-error magnitude) is ~0 and keeps the round-off direction
    (kills that mutant)."""
    sv1, level1 = _documented_hull_levels(_noisy_line(1.0))
    ulps = np.round(factor * level1[-1] / sv1[-1])  # the noise scales the smallest value
    X = _noisy_line(ulps)
    sv, level = _documented_hull_levels(X)
    assert (sv > level).sum() == dim, (sv, level)
    g = dataset_geometry(Dataset.from_tokens(list(X)))
    assert g.rank == dim, (ulps, g.hull_singular_values, g.hull_tolerance)


@pytest.mark.parametrize("offset", [1000.0, -1000.0, 1e12, -3.5])
def test_a_coordinate_varying_by_a_few_ulps_around_an_offset_is_a_direction(offset):
    """Stored values are the data (SPEC §3a): a coordinate whose values are offset + k ulp,
    |k| <= 3, varies. Centring at the midpoint of its range is exact (Sterbenz), so its
    centring error is relative to its range, not to its offset: the hull keeps it (the
    original code measured the error against |offset| and reported rank 0, "no direction to
    probe", for such data)."""
    rng = np.random.default_rng(1)
    k = rng.integers(-3, 4, size=(5, 3, 1))
    X = offset + k * np.spacing(offset)
    g = dataset_geometry(Dataset.from_tokens(list(X)))
    assert g.rank == 1, (g.hull_singular_values, g.hull_tolerance)
    X2 = np.concatenate([rng.normal(size=(5, 3, 1)), X], axis=2)
    assert dataset_geometry(Dataset.from_tokens(list(X2))).rank == 2


# ---- geometry.py: spreads (probe scales) for skewed weights and tight clusters ------------------

@pytest.mark.parametrize("w", [1e-150, 1e-200, 1e-250, 1e-300])
def test_skewed_weights_get_a_verdict(w):
    """Two-atom laws with weights (1, w), inside the documented 1e300 ratio, no --scales given.
    Their RMS spread is sqrt(w) R (1e-125 R for w = 1e-250) and automatic scales of 1/rho
    exceeded the probe law's limit 1e100 (an InputError on 'scales' the user never gave,
    from w ~ 1e-195 on). The spread is held at R / ((1 + ln(1/w)) sqrt(n)) or above, where the
    light atom shows: six generic laws are then decided injective (pins the floor)."""
    x = np.random.default_rng(0).normal(size=(6, 2, 2))
    ds = Dataset.from_tokens(list(x), weights=[np.array([1.0, w])] * 6)
    geo = dataset_geometry(ds)
    gap = np.linalg.norm((x[:, 1] - x[:, 0]) @ geo.transform, axis=1)  # whitened |y1 - y0|
    rms = np.sqrt(w) / (1 + w) * gap  # sqrt(p0 p1) |y1 - y0|
    radius = gap / (1 + w)  # R: the light atom's distance to the mean, p0 |y1 - y0|
    floor = radius / ((1 + np.log(1 / w)) * np.sqrt(2))
    np.testing.assert_allclose(geo.spreads, np.maximum(rms, floor), rtol=1e-9)
    assert np.all(floor > 1e20 * rms)
    assert max(auto_scales(geo)) <= 1e5
    r = analyze(ds, exact="never")
    assert r.verdict == INJECTIVE, r.reason


def test_spreads_of_equal_weights_are_the_rms_radius_and_the_floor_never_binds():
    """RMS >= R / sqrt(n) for equal weights: the floor R / ((1 + ln 1) sqrt n) never binds."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(9, 7, 2)) * rng.uniform(0.01, 3, size=(9, 1, 1))
    geo = dataset_geometry(Dataset.from_tokens(list(X)))
    white = np.einsum("nkd,dr->nkr", X - X.mean(axis=1, keepdims=True), geo.transform)
    rms = np.sqrt(np.mean(np.sum(white**2, axis=2), axis=1))
    np.testing.assert_allclose(geo.spreads, rms, rtol=1e-9)


@pytest.mark.parametrize("tight", [1e-20, 1e-90, 1e-250])
def test_a_tight_cluster_keeps_its_spread_and_is_never_called_affine(tight):
    """One two-atom law of spread `tight` among laws of spread 1: its spread is computed from
    its rows centred at its own mean (the pooled centring left only round-off, ~1e-17, so the
    probe scales missed it and the dense test reported it as an affine column: a false
    `not_injective` at 1e-90, and 0 or an error at 1e-250). Beyond the probe law's range
    (1e-250) the spread is held at MIN_PROBE_SPREAD and the law listed as unresolved; the
    re-check computes its own spreads, refutes the affine claim, and the verdict is not a
    dependency."""
    from ntkcheck.injectivity.geometry import MIN_PROBE_SPREAD, whitened_spreads

    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 2, 2))
    X[1] *= tight
    ds = Dataset.from_tokens(list(X))
    geo = dataset_geometry(ds)
    dev = (X[1] - X[1].mean(axis=0)) @ geo.transform
    # the root mean square row norm without squaring (dev**2 underflows to 0 at 1e-250):
    # math.hypot scales internally
    own = math.hypot(*dev.ravel()) / math.sqrt(dev.shape[0])
    assert geo.own_spreads[1] == pytest.approx(own, rel=1e-9, abs=0)
    np.testing.assert_allclose(whitened_spreads(ds.distributions, geo.transform),
                               geo.own_spreads, rtol=1e-9)
    if own < MIN_PROBE_SPREAD:
        assert geo.unresolved == (1,) and geo.spreads[1] == MIN_PROBE_SPREAD
    else:
        assert geo.unresolved == () and geo.spreads[1] == geo.own_spreads[1]
    r = analyze(ds, exact="never")
    assert r.verdict != NOT_INJECTIVE, r.reason
    assert not r.dependencies
    if r.verdict == INCONCLUSIVE and geo.unresolved:  # the reason names the unresolved law
        assert "seq1 are tighter than any probe scale" in r.reason, r.reason


def test_recheck_refutes_an_affine_claim_on_an_unresolved_law():
    """The re-check's own spreads (not the test's floored ones) give the fresh points at the
    law's own scale, beyond binary64 range for the test's probes (formed in extended
    precision): the claim LSE[tight] = affine fails."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 2, 2))
    X[1] *= 1e-250
    ds = Dataset.from_tokens(list(X))
    geo = dataset_geometry(ds)
    chk = verify_relation([ds.distributions[1]], np.array([1.0]), geo.transform,
                          geo.spreads[[1]])
    assert chk.passed is False and chk.level == "failed", chk.reason
    assert max(chk.scales) > 1e200


# ---- verify.py: the re-check's two levels --------------------------------------------------------

def _pair(shift_ulps: int):
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(5, 2))
    moved = Y + np.array([0.5, -1.0])  # rounded translate
    moved[2, 0] = moved[2, 0] + shift_ulps * np.spacing(moved[2, 0])
    return [Discrete(Y), Discrete(moved)]


def _check(dists):
    geo = dataset_geometry(Dataset(("a", "b"), tuple(dists)))
    return verify_relation(dists, np.array([1.0, -1.0]), geo.transform, geo.spreads[:2], seed=0)


def test_rounded_translate_is_a_data_precision_relation():
    """y + t computed in floating point: not an exact relation (never printed by the dense test)
    but within what rounding every stored value once explains."""
    chk = _check(_pair(0))
    assert chk.passed is False and chk.level == "data_precision"
    assert 1e-20 < chk.misfit < 1e-14 and chk.data_ratio <= 1


def test_a_few_ulps_more_fails_the_recheck():
    """One atom moved by 128 ulps beyond the rounding: no longer explained by rounding."""
    chk = _check(_pair(128))
    assert chk.passed is False and chk.level == "failed" and chk.data_ratio > 1


def test_a_failure_beyond_float_range_prints_no_infx():
    """Two unrelated laws with atoms far apart (relative to the probe map): at the re-check's
    large scales the tilted laws are point masses, the first-order effect of rounding is
    e^-(huge) and misfit / that overflows float64 (data_ratio = inf). The reason printed
    '...misfit 0.17, infx what the rounding ...'; it now says what the ratio is."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 2, 2))
    g = dataset_geometry(Dataset.from_tokens(list(X)))
    chk = verify_relation([Discrete(X[0] * 50), Discrete(X[1] * 50)], np.array([1.0, -1.0]),
                          g.transform, [0.5, 0.5])
    assert chk.level == "failed" and chk.data_ratio == np.inf
    assert "infx" not in chk.reason and "more than 1e308x" in chk.reason, chk.reason


def test_exact_relation_level():
    Y = np.random.default_rng(4).integers(-8, 8, size=(5, 2)) / 4
    chk = _check([Discrete(Y), Discrete(Y + 0.25)])
    assert chk.passed and chk.level == "exact" and chk.misfit < 1e-40


# ---- decide.py: branches -----------------------------------------------------------------------

def test_uncertified_injective_needs_the_redraw(monkeypatch):
    """Without a certificate, injective needs every singular value >= GAP tau on a redraw made
    with seed + 1; when the redraw fails the gap test the verdict is inconclusive. The redraw
    computes only its CONFIRM_COUNT smallest triplets when they clear GAP x the bound of every
    level, and its smallest ratio then equals the one from every singular vector."""
    monkeypatch.setattr(decide_module, "_fast_certificate", lambda spec: None)
    ds = Dataset.from_tokens(list(np.random.default_rng(5).normal(size=(10, 5, 2))))
    r = analyze(ds, exact="never", seed=7)
    assert r.verdict == INJECTIVE and r.evidence == "numerical"
    assert r.verification["method"] == "confirmation draw" and r.verification["seed"] == 8
    assert r.verification["singular_values_computed"] == decide_module.CONFIRM_COUNT < 10
    # the same redraw with every singular vector (full SVD): the same smallest ratio
    from ntkcheck.injectivity.features import feature_matrix
    from ntkcheck.injectivity.probes import make_probes, make_whitening

    geom = make_whitening(ds, True)
    probes = make_probes(geom, r.settings["probes"], r.settings["scales"], 8)
    full = spectrum_module.svd_spectrum(feature_matrix(ds, geom, probes))
    V = full.right_vectors()
    full_ratio = np.min(full.singular_values / full.vector_noise(V))
    assert r.verification["smallest_ratio_to_noise"] == pytest.approx(full_ratio, rel=1e-6, abs=0)
    calls = []
    real = decide_module.partial_spectrum

    def worse_on_redraw(feats, **kw):
        spec = real(feats, **kw)
        calls.append(feats.probes.seed)
        if feats.probes.seed == 8:  # inflate the redraw's noise: gap lost
            return replace(spec, col_noise=spec.col_noise * 1e12)
        return spec

    monkeypatch.setattr(decide_module, "partial_spectrum", worse_on_redraw)
    r = analyze(ds, exact="never", seed=7)
    assert calls == [8]
    assert r.verdict == INCONCLUSIVE and "redraw" in r.reason
    # the fallback used every singular value of the redraw
    assert r.verification["singular_values_computed"] == 10


def test_grey_zone_is_inconclusive(monkeypatch):
    """A singular value between tau and GAP tau of its direction: inconclusive, with the
    numbers and the names in the reason."""
    monkeypatch.setattr(decide_module, "_fast_certificate", lambda spec: None)
    real = spectrum_module.svd_spectrum

    def noisy(feats, *args):  # svd_spectrum(features, progress)
        spec = real(feats)
        sv = spec.singular_values
        # make the smallest singular value 10x its own level
        eta = np.full_like(spec.col_noise, sv[-1] / 10 / 10)
        return Spectrum(sv, spec.tolerance, spec.noise, spec.triangle, eta, spec.col_bound)

    monkeypatch.setattr(spectrum_module, "svd_spectrum", noisy)
    ds = Dataset.from_tokens(list(np.random.default_rng(6).normal(size=(8, 5, 2))))
    r = analyze(ds, exact="never")
    assert r.verdict == INCONCLUSIVE and "grey zone" in r.reason and "seq" in r.reason


def test_a_grey_value_never_hides_an_exact_relation():
    """A convolution (singular value at round-off level, relation exact on the stored values)
    beside a pair that differs by 1e-11 noise (singular value in the grey zone): the verified
    convolution is reported (not_injective) and the reason says there may be more; without the
    convolution the same data are certified injective (the pair is separated by the
    certificate, which the null direction of the convolution blocks)."""
    rng = np.random.default_rng(3)
    d = 3
    X = [rng.integers(-128, 128, (int(rng.integers(2, 5)), d)) / 64.0 for _ in range(16)]
    conv = (X[0][:, None, :] + X[1][None, :, :]).reshape(-1, d)  # exact sums on a 1/64 grid
    Y = rng.normal(size=(5, d))
    pair = [Y, Y + 1e-11 * rng.normal(size=(5, d))]
    r = analyze(Dataset.from_tokens(X + [conv] + pair), exact="never")
    assert r.verdict == NOT_INJECTIVE and r.evidence == "numerical"
    assert "grey zone" in r.reason and "there may be more" in r.reason
    assert len(r.dependencies) == 1
    dep = r.dependencies[0]
    assert set(dep.coefficients) == {"seq0", "seq1", "seq16"}
    c = dep.coefficients
    assert c["seq0"] == pytest.approx(1.0) and c["seq1"] == pytest.approx(1.0)
    assert c["seq16"] == pytest.approx(-1.0)  # LSE_conv = LSE_a + LSE_b (SPEC §2)
    alone = analyze(Dataset.from_tokens(X + pair), exact="never")
    assert (alone.verdict, alone.evidence) == (INJECTIVE, "certified")


def test_failed_recheck_is_never_printed():
    """A near-translate whose perturbation (1e-13) is below the test's resolution looks like a
    null vector, but its relation fails the extended-precision re-check: not printed,
    verdict inconclusive, and the reason says so."""
    X = list(np.random.default_rng(0).normal(size=(10, 5, 3)))
    X[1] = X[0] + 0.25
    X[1][2, 1] += 1e-13
    r = analyze(Dataset.from_tokens(X), exact="never")
    assert r.verdict == INCONCLUSIVE and r.dependencies == ()
    assert "re-check" in r.reason and "misfit" in r.reason


def test_redraw_gap_threshold(monkeypatch):
    """On the redraw, a smallest ratio sigma / tau of 50 (< GAP = 100) is inconclusive and one
    of 200 is injective."""
    monkeypatch.setattr(decide_module, "_fast_certificate", lambda spec: None)
    real = decide_module.partial_spectrum  # the redraw's smallest triplets
    ds = Dataset.from_tokens(list(np.random.default_rng(5).normal(size=(10, 5, 2))))
    verdicts = {}
    for target in (50.0, 200.0):
        def scaled(feats, target=target, **kw):
            spec = real(feats, **kw)
            assert feats.probes.seed == 8
            ratio = spec.singular_values / spec.vector_noise(spec.vectors)
            # scaling eta by f multiplies every tau by ~f (the floor is negligible here)
            f = ratio.min() / target
            return replace(spec, col_noise=spec.col_noise * f)
        monkeypatch.setattr(decide_module, "partial_spectrum", scaled)
        verdicts[target] = analyze(ds, exact="never", seed=7).verdict
    assert verdicts == {50.0: INCONCLUSIVE, 200.0: INJECTIVE}


def _binomial_bernoulli_plus(extra):
    """Binomial(2, 1/2) = Bernoulli(1/2) * Bernoulli(1/2): LSE[binom] - 2 LSE[bern] = 0, a
    relation only the dense test can find (no two laws are translates)."""
    rng = np.random.default_rng(8)
    laws = [Discrete([[0.0], [1.0], [2.0]], [0.25, 0.5, 0.25]), Discrete([[0.0], [1.0]])]
    laws += [Discrete(rng.normal(size=(4, 1))) for _ in range(4)]
    names = ["binom", "bern", "g0", "g1", "g2", "g3"]
    for k, law in enumerate(extra):
        laws.append(law)
        names.append(f"x{k}")
    return laws, names


def test_dense_relation_is_verified_and_printed():
    laws, names = _binomial_bernoulli_plus([])
    r = analyze(laws, names=names, exact="never")
    assert r.verdict == NOT_INJECTIVE and r.evidence == "numerical"
    (dep,) = r.dependencies
    assert dep.coefficients == pytest.approx({"binom": 1.0, "bern": -2.0}, rel=1e-12, abs=0)
    assert dep.verification["level"] == "exact" and dep.verification["passed"] is True


def test_true_and_false_candidates_together():
    """A true dense relation next to a near-translate below the test's resolution: the true one
    is printed (not_injective), the false one is not, and the reason counts it."""
    rng = np.random.default_rng(9)
    y = rng.normal(size=(5, 1))
    moved = y + 0.25
    moved[2, 0] += 1e-13
    laws, names = _binomial_bernoulli_plus([Discrete(y), Discrete(moved)])
    r = analyze(laws, names=names, exact="never")
    assert r.verdict == NOT_INJECTIVE
    assert [sorted(d.coefficients) for d in r.dependencies] == [["bern", "binom"]]
    assert "did not" in r.reason


def test_unchecked_relation_is_not_printed(monkeypatch):
    """A candidate the re-check cannot afford (work budget) is never printed."""
    from ntkcheck.injectivity import verify
    monkeypatch.setattr(verify, "MAX_WORK", 1)
    laws, names = _binomial_bernoulli_plus([])
    r = analyze(laws, names=names, exact="never")
    assert r.verdict == INCONCLUSIVE and r.dependencies == ()
    assert "not re-checked" in r.reason


@pytest.mark.parametrize("shift, evidence", [(0.25, "exact"), (0.1, None)])
def test_structural_evidence_follows_exact_arithmetic(shift, evidence):
    """x + t is an exact translate when every sum is exact in binary64 (checked here with
    Fractions); otherwise it holds up to rounding and the evidence is numerical."""
    from fractions import Fraction
    rng = np.random.default_rng(10)
    x = rng.integers(-16, 16, size=(5, 2)) / 8 if evidence == "exact" else rng.normal(size=(5, 2))
    moved = x + shift
    exact = all(Fraction(b) - Fraction(a) == Fraction(shift)
                for a, b in zip(x.ravel(), moved.ravel()))
    expected = "exact" if exact else "numerical"
    if evidence is not None:
        assert expected == evidence
    laws = [Discrete(x), Discrete(moved)] + [Discrete(rng.normal(size=(5, 2))) for _ in range(3)]
    r = analyze(laws, exact="never")
    (dep,) = r.dependencies
    assert dep.exact == (expected == "exact")
    assert r.evidence == expected


def test_certified_needs_the_rigorous_certificate(monkeypatch):
    """The fast path's bound alone never prints `certified`: with a failing rigorous certificate
    the verdict falls back to the numerical path (redraw) and says why."""
    from ntkcheck.injectivity.certify import Certificate

    def failing(*args, **kwargs):
        return Certificate(False, float("nan"), "a-priori", np.arange(3), 3, np.zeros(3, int),
                           np.zeros(3, int), 0.0, 0.0, 0.0, 0.0, "forced failure", "nothing")
    ds = Dataset.from_tokens(list(np.random.default_rng(5).normal(size=(10, 5, 2))))
    assert analyze(ds, exact="never").evidence == "certified"
    monkeypatch.setattr(certify_module, "certify_independence", failing)
    r = analyze(ds, exact="never")
    assert r.verdict == INJECTIVE and r.evidence == "numerical"
    assert "forced failure" in r.reason


def test_hull_reduced_data_can_be_certified():
    """Tokens with a constant coordinate: hull of dimension 2 in R^3; the certificate's probes
    get a component off the hull so that [1, Z] has full rank."""
    X = np.random.default_rng(0).normal(size=(15, 5, 3))
    X[..., 2] = 1.0
    r = analyze(Dataset.from_tokens(list(X)), exact="never")
    assert r.settings["affine_hull_dim"] == 2
    assert (r.verdict, r.evidence) == (INJECTIVE, "certified")
    assert r.verification["complement_probes"] is True


def test_spreads_are_the_whitened_rms_radius():
    """rho_i = sqrt(trace(C^-1 S_i)) with C the pooled covariance of all tokens (equal total
    weight per sequence) and S_i the covariance of sequence i: the RMS distance of its tokens
    from their mean in whitened coordinates (computed here with numpy, independently)."""
    rng = np.random.default_rng(13)
    X = rng.normal(size=(7, 6, 3)) * rng.uniform(0.01, 2.0, size=(7, 1, 1)) \
        + 5 * rng.normal(size=(7, 1, 3))
    geo = dataset_geometry(Dataset.from_tokens(list(X)))
    Y = X.reshape(-1, 3)
    C = np.cov(Y.T, bias=True)
    for i in range(7):
        Si = np.cov(X[i].T, bias=True)
        assert geo.spreads[i] == pytest.approx(np.sqrt(np.trace(np.linalg.solve(C, Si))),
                                               rel=1e-9, abs=0)


def test_clusters_at_offsets_beyond_the_double_precision_of_their_spread():
    """Sequences of spread ~1 around centres ~2^47 = 1.4e14 (dyadic tokens, exact): u |y| is
    ~0.03 of the spread, so features computed on the raw tokens lose the structure; each column
    is evaluated on its distribution minus its own mean (exact here by Sterbenz's lemma), and
    the generic data are decided injective."""
    rng = np.random.default_rng(14)
    centres = 2.0**47 + np.round(rng.normal(size=(10, 1, 2)) * 2**40)
    X = centres + rng.integers(-8, 9, size=(10, 5, 2)) / 8.0
    r = analyze(Dataset.from_tokens(list(X)), exact="never")
    assert r.verdict == INJECTIVE, r.reason


def _spectrum_with(sv: np.ndarray, V: np.ndarray, eta: np.ndarray) -> Spectrum:
    """A full Spectrum whose triangle has singular values ``sv`` and right vectors ``V``."""
    rng = np.random.default_rng(0)
    N = len(sv)
    U = np.linalg.qr(rng.normal(size=(2 * N, N)))[0]
    R = np.linalg.qr((U * sv) @ V.T, mode="r")
    return Spectrum(sv, 0.0, 0.0, R, eta, eta)


def test_tail_levels_see_a_grey_value_along_the_noisiest_direction():
    """tau(v) <= max_vector_noise() for every unit v, with equality for v along eta; a singular
    value at 50 tau(v) along that direction (above 10x the bound, below GAP x it) is in the
    grey zone, and the tail levels give it its own level (as the full SVD does)."""
    N = 8
    eta = np.arange(1.0, N + 1) * 1e-14
    spec0 = _spectrum_with(np.ones(N), np.eye(N), eta)
    bound = spec0.max_vector_noise()
    units = np.random.default_rng(1).normal(size=(N, 200))
    units /= np.linalg.norm(units, axis=0)
    assert np.all(spec0.vector_noise(units) <= bound)
    v = eta / np.linalg.norm(eta)
    assert spec0.vector_noise(v[:, None])[0] == pytest.approx(bound, rel=1e-12, abs=0.0)
    # right vectors: an orthonormal basis whose last column is v
    V = np.linalg.qr(np.column_stack([v, np.random.default_rng(2).normal(size=(N, N - 1))]))[0]
    V = np.roll(V * np.sign(V[:, :1].T @ v), -1, axis=1)
    sv = np.array([1.0, 0.7, 0.5, 0.3, 0.2, 0.1, 0.05, 50 * bound])
    spec = _spectrum_with(sv, V, eta)
    Vt, tau, off = spec.tail_levels()
    assert off == N - 1 and Vt.shape == (N, 1)
    assert tau[-1] == pytest.approx(bound, rel=1e-6, abs=0.0)
    assert classify_singular_values(sv, tau) == (0, [N - 1])


def test_null_space_is_the_trailing_block_of_a_wider_tail(monkeypatch):
    """When the tail of vectors holds more than the null block (a larger level bound: more
    values below GAP x it), the relations come from its trailing columns: the same verdict and
    the same four relations as with the default bound (a class of four translates and a
    convolution triple: candidates from other columns would span several relations, which
    refitting on their support cannot separate)."""
    rng = np.random.default_rng(8)
    X = list(np.round(rng.normal(size=(12, 5, 2)) * 8) / 8)  # dyadic: exact relations
    X[1], X[2], X[3] = X[0] + 0.25, X[0] - 0.5, X[0] + 0.125
    a, b = (np.round(rng.normal(size=(k, 2)) * 8) / 8 for k in (2, 3))
    X[4], X[5], X[6] = a, b, (a[:, None] + b[None]).reshape(-1, 2)
    ds = Dataset.from_tokens(X)
    monkeypatch.setattr(analysis_module, "structural_screen", _no_screen)
    base = analyze(ds, exact="never")
    # every singular value below GAP x the bound: the tail is all N right vectors
    monkeypatch.setattr(Spectrum, "max_vector_noise",
                        lambda self: float(self.singular_values[0]))
    wide = analyze(ds, exact="never")
    assert base.verdict == wide.verdict == NOT_INJECTIVE
    assert [d.describe() for d in wide.dependencies] == [d.describe() for d in base.dependencies]
    assert sorted(sorted(d.coefficients) for d in wide.dependencies) == [
        ["seq0", "seq3"], ["seq1", "seq3"], ["seq2", "seq3"], ["seq4", "seq5", "seq6"]]


def _no_screen(dataset, progress=None):
    """A structural screen that finds nothing (so the dense test sees every sequence)."""
    from ntkcheck.injectivity.screen import screen

    empty = screen(Dataset.from_tokens(list(np.random.default_rng(0).normal(size=(2, 3, 2)))))
    return replace(empty, core=tuple(range(len(dataset))))


def test_no_relation_no_not_injective(monkeypatch):
    """A null direction from which no candidate relation can be formed never gives
    not_injective: the verdict is inconclusive and says so."""
    rng = np.random.default_rng(8)
    X = list(np.round(rng.normal(size=(12, 5, 2)) * 8) / 8)
    X[1] = X[0] + 0.25  # exact: dyadic values
    monkeypatch.setattr(analysis_module, "structural_screen", _no_screen)
    monkeypatch.setattr(decide_module, "null_space_basis",
                        lambda V, zero_rtol=None: np.zeros((0, V.shape[0])))
    r = analyze(Dataset.from_tokens(X), exact="never")
    assert r.verdict == INCONCLUSIVE and r.dependencies == ()
    assert "no candidate relation" in r.reason


def test_geometry_in_row_blocks_equals_one_block(monkeypatch):
    """The geometry (hull, whitening, spreads) folded in row blocks of 7 rows, so that blocks
    cut through distributions and some distributions are longer than a block, equals the
    one-block result (memory O(block x d) instead of several P x d copies)."""
    import ntkcheck.injectivity.geometry as geometry

    rng = np.random.default_rng(12)
    X = [rng.normal(size=(int(k), 3)) * s for k, s in zip(rng.integers(1, 12, 30),
                                                           rng.uniform(0.1, 10, 30))]
    ds = Dataset.from_tokens(X)
    whole = dataset_geometry(ds)
    monkeypatch.setattr(geometry, "_ROW_BLOCK", 7)
    blocks = dataset_geometry(ds)
    assert blocks.rank == whole.rank == 3
    np.testing.assert_allclose(blocks.spreads, whole.spreads, rtol=1e-12)
    # whitening directions are defined up to sign: compare T T^T (the whitened inner product)
    np.testing.assert_allclose(blocks.transform @ blocks.transform.T,
                               whole.transform @ whole.transform.T, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(blocks.hull_singular_values, whole.hull_singular_values,
                               rtol=1e-12)


def test_automatic_scales_never_exceed_the_probe_law_limit():
    """A spread far below what any probe scale resolves (1e-150) adds no scale above
    MAX_SCALE (1e100): the automatic scales are always accepted by probe_settings."""
    from types import SimpleNamespace

    from ntkcheck.injectivity.probes import MAX_SCALE, probe_settings

    scales = auto_scales(SimpleNamespace(spreads=np.array([1.0, 1e-150, 1e-60])))
    assert max(scales) <= MAX_SCALE and 1e60 in scales
    probe_settings(scales, None, 3, 2)  # no InputError about 'scales'


# ---- extreme spreads: what an inconclusive reason names (decide.spread_note) -----------------

def test_spread_note_names_the_ratio_beyond_one_over_sqrt_u():
    """The spread ratio is named exactly when u x ratio > sqrt(u) (ratio > 1 / sqrt(u),
    9.49e7): the tightest columns' round-off level, about u x ratio, is then above sqrt(u)."""
    from ntkcheck.injectivity.decide import spread_note

    limit = 1.0 / np.sqrt(np.finfo(float).eps / 2)
    assert spread_note(limit * 1.01, 0.5).startswith("; limited by the spread of the data")
    assert "span a ratio of" in spread_note(limit * 1.01, 0.5)
    assert spread_note(limit * 0.99, 0.5) == ""


def test_spread_note_names_a_thin_direction_below_one_over_the_band():
    """Thickness below 1 / SPREAD_BAND (0.1) is named, with its value down to 1e-8 (float64
    covariances resolve no less) and as 'less than 1e-08' below."""
    from ntkcheck.injectivity.decide import spread_note

    assert spread_note(1.0, 0.099).endswith("(docs/limits.md, extreme spreads)")
    assert "spread 0.099 times" in spread_note(1.0, 0.099)
    assert spread_note(1.0, 0.101) == ""
    assert "spread 1.1e-08 times" in spread_note(1.0, 1.1e-8)
    assert "less than 1e-08 times" in spread_note(1.0, 0.9e-8)
    assert spread_note(1.0, float("nan")) == ""  # token IDs, r < 2


def _one_wide(d, spread, seed=0, n=30):
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(int(rng.integers(2, 5)), d)) for _ in range(n)]
    wide = rng.normal(size=(4, d))
    wide[:, 0] *= spread
    return Dataset.from_tokens(X + [wide])


@pytest.mark.parametrize("spread", [1e6, 1e11])
def test_thinnest_direction_of_one_wide_axis(spread):
    """30 generic sequences and one 'spread' times wider along axis 0: the whitening is set by
    the wide one there, so the others' relative thickness is about sqrt(N)/spread (3e-5 /
    6e-11 here); within a factor 100 of that, or below 1e-8 (float64 floor), while isotropic
    data (spread 1) stay above 1 / SPREAD_BAND. The first eigenvector alone (without the
    refit on the thinner half) is tilted by the wide law, giving ~1e-3 instead."""
    from ntkcheck.injectivity.geometry import thinnest_direction

    ds = _one_wide(2, spread)
    t = thinnest_direction(ds, dataset_geometry(ds).transform)
    want = np.sqrt(31) / spread
    assert want / 100 <= t <= 100 * want or t <= 1e-8, t
    iso = _one_wide(2, 1.0)
    assert thinnest_direction(iso, dataset_geometry(iso).transform) > 0.1


def test_thinnest_direction_is_invariant_under_an_affine_map():
    """t lives in whitened coordinates: an invertible affine map of the data changes it by
    round-off only (reference: the same construction, mapped)."""
    from ntkcheck.injectivity.geometry import thinnest_direction

    ds = _one_wide(2, 1e4)
    A = np.array([[3.0, 1.0], [-2.0, 5.0]])
    mapped = Dataset.from_tokens([d.atoms @ A.T + 7.0 for d in ds.distributions])
    t1 = thinnest_direction(ds, dataset_geometry(ds).transform)
    t2 = thinnest_direction(mapped, dataset_geometry(mapped).transform)
    assert t1 < 0.01 and abs(t1 - t2) <= 1e-3 * t1, (t1, t2)


def test_a_verified_relation_is_printed_once():
    """_repeats: coefficients within sqrt(u) (relative) of the span of the printed relations
    repeat them (verified coefficients are exact to 50 digits, then rounded: ~u apart); 1e-6
    apart they are a new relation. Reference: the span is built here by hand."""
    from types import SimpleNamespace

    from ntkcheck.injectivity.decide import _repeats

    index = {n: i for i, n in enumerate("abcde")}
    printed = [SimpleNamespace(coefficients={"a": 1.0, "b": 1.0, "c": -1.0}),
               SimpleNamespace(coefficients={"d": 2.0, "e": -1.0})]
    same = {"a": 3.0 * (1 + 1e-15), "b": 3.0, "c": -3.0, "d": 2.0, "e": -1.0}
    assert _repeats(same, printed, index)
    assert not _repeats({"a": 1.0, "b": 1.0 + 1e-6, "c": -1.0}, printed, index)
    assert not _repeats({"a": 1.0, "b": 1.0, "c": -1.0}, [], index)
    assert _repeats({"a": 1.0, "b": 1.0, "c": -1.0 - 2e-9}, printed, index)  # below sqrt(u)
    assert not _repeats({"a": 1.0, "b": 1.0, "c": -1.0 - 2e-7}, printed, index)
