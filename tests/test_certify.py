"""Rigorous certificates of independence (ntkcheck.injectivity.certify, SPEC §3a).

Truths are independent of the code under test: every LSE value and every smallest singular
value is recomputed with mpmath at 50 significant digits from the same binary64 parameters and
probes (taken as exact), with the scalings the certificate reports (powers of two, so the scaled
exact matrix is known exactly). mpmath's own error (~1e-48 relative at 50 digits for these
sizes) is covered by the slack ``MP_SLACK``.
"""

from __future__ import annotations

import json

import mpmath as mp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntkcheck.distributions import Discrete, GaussianMixture, UniformBox
from ntkcheck.errors import InputError
from ntkcheck.injectivity.certify import (LIBM_ULPS, certify_independence, feature_enclosure,
                                          sigma_min_lower_bound)

DPS = 50
#: relative error of the 50-digit mpmath truths, far below every radius and bound tested
MP_SLACK = mp.mpf(10) ** -40
METHODS = ("arb", "a-priori")


# --- independent truth (mpmath, 50 digits) -----------------------------------------------------


def _mp(x) -> mp.mpf:
    return mp.mpf(float(x))  # exact: a double is a dyadic rational


def mp_lse(dist, zrow, c) -> mp.mpf:
    """LSE_mu(z) - <z, c> at 50 digits from the exact doubles."""
    with mp.workdps(DPS):
        z = [_mp(v) for v in zrow]
        c = [_mp(v) for v in c]
        if isinstance(dist, UniformBox):
            total = mp.mpf(0)
            for zl, lo, hi, cl in zip(z, dist.low, dist.high, c):
                total += zl * (_mp(lo) - cl)
                h = zl * (_mp(hi) - _mp(lo))
                if h != 0:
                    total += mp.log(mp.expm1(h) / h)
            return total
        if isinstance(dist, Discrete):
            terms = [mp.log(_mp(w)) + mp.fsum(za * (_mp(ya) - ca) for za, ya, ca in zip(z, y, c))
                     for y, w in zip(dist.atoms, dist.weights)]
        else:
            terms = []
            for w, m, S in zip(dist.weights, dist.means, dist.covariances):
                lin = mp.fsum(za * (_mp(ma) - ca) for za, ma, ca in zip(z, m, c))
                quad = mp.fsum(z[a] * _mp(S[a, b]) * z[b] for a in range(len(z))
                               for b in range(len(z)))
                terms.append(mp.log(_mp(w)) + lin + quad / 2)
        top = max(terms)
        return top + mp.log(mp.fsum(mp.exp(t - top) for t in terms))


def mp_matrix(dists, z, centres, cert) -> mp.matrix:
    """The exact scaled matrix diag(2^r) [1, Z, F] diag(2^k) of a certificate."""
    rows = cert.rows
    d = z.shape[1]
    with mp.workdps(DPS):
        A = mp.matrix(len(rows), cert.columns)
        for a, m in enumerate(rows):
            entries = [mp.mpf(1)] + [_mp(v) for v in z[m]] + [
                mp_lse(t, z[m], centres[i]) for i, t in enumerate(dists)]
            for j, v in enumerate(entries):
                A[a, j] = mp.ldexp(v, int(cert.row_exponents[a]) + int(cert.column_exponents[j]))
        assert len(entries) == len(dists) + d + 1
        return A


def mp_sigma_min(A: mp.matrix) -> mp.mpf:
    with mp.workdps(DPS):
        return min(mp.svd_r(A, compute_uv=False))


def true_sigma(dists, z, cert, centre=None):
    d = z.shape[1]
    centres = _centres(centre, len(dists), d)
    return mp_sigma_min(mp_matrix(dists, z, centres, cert))


def _centres(centre, N, d):
    if centre is None:
        return np.zeros((N, d))
    c = np.asarray(centre, float)
    return np.broadcast_to(c, (N, d)) if c.ndim == 1 else c


# --- random data ---------------------------------------------------------------------------


def random_dist(rng, family: str, d: int, scale: float):
    if family == "discrete":
        n = int(rng.integers(1, 4)) + 1
        return Discrete(rng.normal(size=(n, d)) * scale, rng.random(n) + 0.1)
    if family == "uniform":
        low = rng.normal(size=d) * scale
        return UniformBox(low, low + (rng.random(d) + 0.2) * scale)
    k = int(rng.integers(1, 3))
    covs = []
    for _ in range(k):
        B = rng.normal(size=(d, d)) * scale
        covs.append(B @ B.T / d + np.eye(d) * scale**2 * 0.1)
    return GaussianMixture(rng.random(k) + 0.1, rng.normal(size=(k, d)) * scale, np.stack(covs))


FAMILIES = ("discrete", "uniform", "gaussian")


def random_case(seed: int, families=FAMILIES, N=3, d=2, extra_rows=4, data_exp=0, probe_exp=0):
    """N distributions at data scale 10^data_exp, probes with |z| ~ 10^probe_exp / scale."""
    rng = np.random.default_rng(seed)
    scale = 10.0**data_exp
    dists = [random_dist(rng, families[i % len(families)], d, scale) for i in range(N)]
    M = N + d + 1 + extra_rows
    z = rng.normal(size=(M, d)) * (10.0**probe_exp / scale)
    return dists, z


# --- the libm assumption of the a-priori path ------------------------------------------------


def test_libm_assumption_holds_on_this_machine():
    """numpy's exp, log and log1p are within LIBM_ULPS ulps of the 50-digit values (the
    documented assumption of the a-priori path), on 600 arguments over their whole range."""
    rng = np.random.default_rng(5)
    cases = {
        np.exp: (lambda x: mp.exp(x), rng.uniform(-700, 700, 200)),
        np.log: (lambda x: mp.log(x), 10.0 ** rng.uniform(-300, 300, 200)),
        np.log1p: (lambda x: mp.log1p(x), np.concatenate([-(10.0 ** rng.uniform(-20, -0.01, 100)),
                                                          10.0 ** rng.uniform(-20, 20, 100)])),
    }
    with mp.workdps(DPS):
        for fn, (ref, xs) in cases.items():
            for x in xs:
                y = float(fn(x))
                exact = ref(_mp(x))
                ulp = np.spacing(abs(y))
                assert abs(_mp(y) - exact) <= LIBM_ULPS * _mp(ulp), (fn.__name__, x)


# --- enclosures ----------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), family=st.sampled_from(FAMILIES),
       data_exp=st.sampled_from([-150, -8, 0, 3, 100]), probe_exp=st.integers(-3, 3),
       shift=st.booleans(), method=st.sampled_from(METHODS))
def test_enclosures_contain_the_50_digit_values(seed, family, data_exp, probe_exp, shift, method):
    """|LSE_i(z_m) - <z_m, c> - mid| <= rad for every entry: all three families, data scales
    from 1e-150 to 1e100 and probes with |z| up to 1e3 times the inverse data scale."""
    dists, z = random_case(seed, (family,), N=2, d=2, extra_rows=0, data_exp=data_exp,
                           probe_exp=probe_exp)
    rng = np.random.default_rng(seed + 1)
    centre = rng.normal(size=2) * 10.0**data_exp if shift else None
    mid, rad = feature_enclosure(dists, z, centre, method=method)
    centres = _centres(centre, len(dists), 2)
    with mp.workdps(DPS):
        for m in range(z.shape[0]):
            for i, dist in enumerate(dists):
                exact = mp_lse(dist, z[m], centres[i])
                assert np.isfinite(rad[m, i])
                assert abs(exact - _mp(mid[m, i])) <= _mp(rad[m, i]) + MP_SLACK * abs(exact)


@pytest.mark.parametrize("method", METHODS)
def test_enclosure_radii_are_near_round_off(method):
    """Radii are small relative to the entries: Arb (128 bits) below 1e-15 |F| plus the
    normalisation of the float weights (at most 2 (n + 3) u with n terms: the enclosure is of
    the laws as written, whose weights sum to 1 exactly), the a-priori bound below 1e-12
    (|z| |y| + |F| + 1): a certificate is not lost to slack."""
    dists, z = random_case(3, N=6, d=3, extra_rows=20)
    mid, rad = feature_enclosure(dists, z, method=method)
    if method == "arb":
        n = np.array([len(getattr(t, "weights", ())) for t in dists])
        assert np.all(rad <= 1e-15 * np.abs(mid) + 2 * (n + 3) * 2.0**-53 + 1e-300)
    else:
        size = np.linalg.norm(z, axis=1)[:, None] * 10 + np.abs(mid) + 1
        assert np.all(rad <= 1e-12 * size)


# --- the lower bound is below the truth ------------------------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), fam=st.sampled_from([FAMILIES, ("discrete",), ("uniform",),
                                                        ("gaussian",)]),
       N=st.integers(1, 4), d=st.integers(1, 2), data_exp=st.sampled_from([-100, -3, 0, 2]),
       probe_exp=st.integers(-2, 3), method=st.sampled_from(METHODS))
def test_lower_bound_never_exceeds_the_true_sigma_min(seed, fam, N, d, data_exp, probe_exp,
                                                     method):
    """lower_bound <= sigma_min(exact scaled A) (50-digit SVD), whatever the case: certified
    or not, any family mix, tiny and large scales, |z| up to 1e3 times the data scale."""
    dists, z = random_case(seed, fam, N=N, d=d, extra_rows=3, data_exp=data_exp,
                           probe_exp=probe_exp)
    cert = certify_independence(dists, z, method=method)
    truth = true_sigma(dists, z, cert)
    if np.isfinite(cert.lower_bound):
        assert cert.lower_bound <= truth + MP_SLACK
    assert cert.certified == (cert.lower_bound > 0)


# --- exact dependencies are never certified --------------------------------------------------


def _dyadic(rng, shape):
    return rng.integers(-16, 17, size=shape) / 8.0  # exact doubles, translates stay exact


def dependent_cases():
    rng = np.random.default_rng(11)
    y = _dyadic(rng, (4, 2))
    other = [Discrete(rng.normal(size=(3, 2))), UniformBox([0.0, -1.0], [1.5, 0.25])]
    t = np.array([0.5, -0.25])
    S1, S2 = np.array([[1.0, 0.25], [0.25, 0.5]]), np.array([[0.5, 0.0], [0.0, 0.75]])
    m1, m2 = np.array([0.5, 1.0]), np.array([-1.0, 0.25])
    g = [GaussianMixture([1.0], m[None], S[None]) for m, S in ((m1, S1), (m2, S2))]
    g.append(GaussianMixture([1.0], (m1 + m2)[None], (S1 + S2)[None]))  # LSE3 = LSE1 + LSE2
    return {
        "dyadic translate": [Discrete(y), Discrete(y + t)] + other,
        "duplicate": [Discrete(y), Discrete(y[::-1])] + other,
        "dirac": [Discrete([[0.3, -1.7]])] + other,
        "box translate": [UniformBox([0.0, 0.0], [1.0, 2.0]), UniformBox([0.5, -1.0], [1.5, 1.0]),
                          other[0]],
        "gaussian sum": g + other[:1],
        # d = 1: LSE[Binomial(2, 1/2)] = 2 LSE[Bernoulli(1/2)]
        "binomial": [Discrete([[0.0], [1.0], [2.0]], [0.25, 0.5, 0.25]),
                     Discrete([[0.0], [1.0]], [0.5, 0.5]), Discrete([[0.0], [3.0]], [0.2, 0.8])],
    }


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", sorted(dependent_cases()))
@pytest.mark.parametrize("probe_scale", [0.01, 1.0, 30.0])
def test_exactly_dependent_data_are_never_certified(case, method, probe_scale):
    """A translate by a dyadic shift, a duplicate, a Dirac, a sum of Gaussians and
    Binomial(2, 1/2) with Bernoulli(1/2) are exact dependencies of the stored doubles: the
    exact A is singular, so the lower bound must be <= 0."""
    dists = dependent_cases()[case]
    d = dists[0].dim
    rng = np.random.default_rng(len(case))
    z = rng.normal(size=(3 * (len(dists) + d + 1), d)) * probe_scale
    cert = certify_independence(dists, z, method=method)
    assert not cert.certified
    assert not cert.lower_bound > 0
    assert cert.statement.startswith("Nothing is proved")


# --- generic data are certified, tightly ---------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed,fam,data_exp", [(1, FAMILIES, 0), (2, ("discrete",), 0),
                                               (3, ("uniform",), -5), (4, ("gaussian",), 0),
                                               (5, FAMILIES, 150), (6, ("discrete",), -200)])
def test_generic_data_are_certified_tightly(method, seed, fam, data_exp):
    """Generic data with sigma_min far above round-off are certified with
    0.5 sigma_true <= lower_bound <= sigma_true (the bound loses at most a factor 2)."""
    dists, z = random_case(seed, fam, N=4, d=2, extra_rows=6, data_exp=data_exp)
    cert = certify_independence(dists, z, method=method)
    truth = true_sigma(dists, z, cert)
    assert truth > 1e-8  # the case is far from singular
    assert cert.certified, cert.reason
    assert 0.5 * truth <= cert.lower_bound <= truth + MP_SLACK
    assert cert.method == method


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("eps", [1e-6, 1e-9])
def test_near_translate_is_certified_when_resolved(method, eps):
    """A translate with one atom moved by eps: sigma_min of the exact A is of order eps and far
    above the entry radii, so it is certified, with the bound within a factor 2 of the truth."""
    rng = np.random.default_rng(7)
    y = _dyadic(rng, (4, 2))
    moved = y + np.array([0.5, -0.25])
    moved[0, 0] += eps
    dists = [Discrete(y), Discrete(moved), Discrete(rng.normal(size=(3, 2))),
             UniformBox([0.0, -1.0], [1.5, 0.25])]
    z = rng.normal(size=(14, 2)) * 2.0
    cert = certify_independence(dists, z, method=method)
    truth = true_sigma(dists, z, cert)
    assert 1e-3 * eps < truth < 1e3 * eps  # the perturbation sets the scale of sigma_min
    assert cert.certified, cert.reason
    assert 0.5 * truth <= cert.lower_bound <= truth + MP_SLACK


# --- rows, shifts, weights, scaling ----------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_row_subset_bounds_the_full_matrix(method):
    """A certificate on a subset of probe rows is below the true sigma_min of the subset, which
    is below that of all rows (dropping rows lowers singular values)."""
    dists, z = random_case(21, N=3, d=2, extra_rows=10)
    rows = np.array([0, 2, 3, 5, 7, 8, 9, 11, 12])
    cert = certify_independence(dists, z, rows=rows, method=method)
    assert cert.certified and cert.rows.tolist() == rows.tolist()
    sub = true_sigma(dists, z, cert)
    full = certify_independence(dists, z, method=method)
    assert cert.lower_bound <= sub + MP_SLACK
    assert full.certified and full.lower_bound <= true_sigma(dists, z, full) + MP_SLACK


@pytest.mark.parametrize("method", METHODS)
def test_centre_shift_and_row_weights(method):
    """Per-distribution shifts c_i and power-of-two row weights: the certified matrix is the
    one reported (truth recomputed with those c_i and 2^r) and the bound is below its sigma."""
    dists, z = random_case(31, N=3, d=2, extra_rows=8, data_exp=2)
    centres = np.array([t.mean for t in dists])
    weights = np.random.default_rng(1).uniform(0.01, 3.0, size=z.shape[0])
    cert = certify_independence(dists, z, centre=centres, row_weights=weights, method=method)
    _, e = np.frexp(weights)
    assert cert.row_exponents.tolist() == (e - 1).tolist()
    truth = true_sigma(dists, z, cert, centre=centres)
    assert cert.certified and 0.5 * truth <= cert.lower_bound <= truth + MP_SLACK


def test_auto_method_follows_the_budget():
    """method='auto' uses Arb when M' * terms <= budget, the a-priori bound otherwise."""
    dists, z = random_case(41, ("discrete",), N=2, d=2, extra_rows=2)
    assert certify_independence(dists, z).method == "arb"
    assert certify_independence(dists, z, budget=1).method == "a-priori"


def test_without_python_flint_auto_falls_back_and_arb_is_refused(monkeypatch):
    """Without python-flint (an optional dependency), 'auto' uses the a-priori bound and an
    explicit 'arb' raises an InputError naming the install command."""
    from ntkcheck.injectivity import certify as mod
    from ntkcheck.injectivity import enclosure

    monkeypatch.setattr(mod, "_have_flint", lambda: False)
    monkeypatch.setattr(enclosure, "_have_flint", lambda: False)
    dists, z = random_case(42, ("discrete",), N=2, d=2, extra_rows=2)
    assert certify_independence(dists, z).method == "a-priori"
    with pytest.raises(InputError, match=r"pip install -e '\.\[exact\]' in the ntkcheck clone"):
        certify_independence(dists, z, method="arb")
    with pytest.raises(InputError, match="python-flint"):
        feature_enclosure(dists, z, method="arb")


def test_too_few_rows_and_overflow_are_refused_with_a_reason():
    """Fewer rows than columns, and entries beyond float64 range, give certified=False with the
    reason (never an exception or a false certificate)."""
    dists, z = random_case(51, N=3, d=2, extra_rows=0)
    cert = certify_independence(dists, z, rows=np.arange(4))
    assert not cert.certified and "columns" in cert.reason
    big = [Discrete([[1e300, 0.0], [0.0, 1.0]]), Discrete([[0.0, 0.0], [1.0, 1e300]])]
    zb = np.random.default_rng(0).normal(size=(8, 2)) * 1e10
    for method in METHODS:
        cert = certify_independence(big, zb, method=method)
        assert not cert.certified and "range" in cert.reason


def test_sigma_min_lower_bound_of_float_matrices():
    """For float matrices of condition 1 to 1e12 (truth: a 50-digit SVD of the same doubles) the
    bound is below the truth and within 1e-3 of it (the bound on ||R^-1||_2 carries a relative
    margin of at least 1e-4, the rest is O(n u cond)), along each way of forming Y ~ R^-1:
    Cholesky QR (cond up to ~1e6), Cholesky QR refined once (CholeskyQR2: cond^2 u above
    REFINE_ETA) and Householder QR when the Gram matrix is numerically singular (cond^2 > 1/u);
    an exactly rank-deficient matrix is never bounded away from 0."""
    rng = np.random.default_rng(2)
    seen = set()
    for cond in (1.0, 1e4, 1e7, 1e8, 1e10, 1e12, 1e13):
        U, _ = np.linalg.qr(rng.normal(size=(12, 5)))
        V, _ = np.linalg.qr(rng.normal(size=(5, 5)))
        A = (U * np.geomspace(1.0, 1.0 / cond, 5)) @ V.T
        bound, note = sigma_min_lower_bound(A)
        with mp.workdps(DPS):
            truth = min(mp.svd_r(mp.matrix(A.tolist()), compute_uv=False))
        assert bound <= truth
        assert bound >= truth * (1 - (1e-3 if cond <= 1e12 else 1e-2)), (cond, note)
        seen.add(note.split("by ")[1].split(";")[0])
        if cond == 1.0:
            assert "by Cholesky QR;" in note  # well conditioned: one Gram pass suffices
    assert {"Cholesky QR", "Cholesky QR, refined"} <= seen, seen
    assert any(path.startswith("Householder QR") for path in seen), seen
    A = rng.integers(-9, 10, size=(10, 4)).astype(float)
    A[:, 3] = A[:, 0] + A[:, 1]  # exact in float: small integers
    assert not sigma_min_lower_bound(A)[0] > 0


def test_certificate_serialises_and_states_what_is_proved():
    """to_dict is JSON-serialisable and the statement names the matrix and the conclusion."""
    dists, z = random_case(61, N=2, d=1, extra_rows=3)
    cert = certify_independence(dists, z)
    doc = json.loads(json.dumps(cert.to_dict()))
    assert doc["certified"] is True and doc["method"] == "arb"
    assert doc["rows"] == z.shape[0] and doc["columns"] == 4
    assert "linearly independent modulo affine functions" in cert.statement
    assert cert.seconds >= 0


@pytest.mark.parametrize("kwargs,field", [
    ({"z": np.zeros((3, 3))}, "z"),
    ({"z": np.full((3, 2), np.nan)}, "z"),
    ({"rows": [0, 9]}, "rows"),
    ({"rows": [0, 0]}, "rows"),
    ({"centre": np.zeros(3)}, "centre"),
    ({"row_weights": -np.ones(6)}, "row_weights"),
    ({"method": "fast"}, "method"),
])
def test_bad_inputs_raise_input_errors(kwargs, field):
    """Malformed arguments raise InputError naming the field."""
    dists, z = random_case(71, N=2, d=2, extra_rows=1)
    args = {"z": z}
    args.update(kwargs)
    with pytest.raises(InputError, match=field):
        certify_independence(dists, args.pop("z"), **args)
    with pytest.raises(InputError, match="dimensions"):
        certify_independence([Discrete([[0.0]]), Discrete([[0.0, 1.0]])], np.zeros((5, 1)))


@pytest.mark.parametrize("scale_exp", [-1070, -1000, -300, 0, 300, 1000])
def test_norm_bounds_are_upper_bounds_and_tight(scale_exp):
    """The Frobenius and column-norm bounds used in every step are >= the exact norms (50-digit
    sums of exact squares) and within 1e-10 relative of them, from subnormal to huge entries."""
    from ntkcheck.injectivity.certify import _norm_up

    rng = np.random.default_rng(abs(scale_exp))
    x = np.ldexp(rng.normal(size=(7, 5)), scale_exp)
    x[0, 0] = 0.0
    with mp.workdps(DPS):
        exact = mp.sqrt(mp.fsum(_mp(v) ** 2 for v in x.ravel()))
        cols = [mp.sqrt(mp.fsum(_mp(v) ** 2 for v in x[:, j])) for j in range(5)]
        fro = _mp(_norm_up(x))
        assert exact <= fro <= exact * (1 + mp.mpf(1e-10)) + mp.mpf(2.0**-1060)
        for col, bound in zip(cols, _norm_up(x, axis=0)):
            assert col <= _mp(bound) <= col * (1 + mp.mpf(1e-10)) + mp.mpf(2.0**-1060)


def test_apriori_blocks_over_probes_and_distributions(monkeypatch):
    """Splitting the a-priori evaluation into tiny blocks of probes and distributions (only the
    order of float operations changes) still gives enclosures of the 50-digit values, with
    radii within 1% of the unblocked ones."""
    from ntkcheck.injectivity import enclosure as mod

    dists, z = random_case(81, ("discrete", "gaussian"), N=4, d=2, extra_rows=6)
    whole = feature_enclosure(dists, z, method="a-priori")
    monkeypatch.setattr(mod, "_BLOCK", 7)
    mid, rad = feature_enclosure(dists, z, method="a-priori")
    assert np.allclose(rad, whole[1], rtol=1e-2, atol=0)
    with mp.workdps(DPS):
        for m in range(z.shape[0]):
            for i, dist in enumerate(dists):
                exact = mp_lse(dist, z[m], np.zeros(2))
                assert abs(exact - _mp(mid[m, i])) <= _mp(rad[m, i]) + MP_SLACK * abs(exact)


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**9), N=st.integers(1, 6), d=st.integers(1, 3),
       data_exp=st.integers(-150, 150), probe_exp=st.integers(-3, 3),
       extra=st.integers(0, 6), method=st.sampled_from(METHODS))
def test_lower_bound_fuzz(seed, N, d, data_exp, probe_exp, extra, method):
    """Fuzzing (slow): lower_bound <= the 50-digit sigma_min on 300 random mixed cases."""
    dists, z = random_case(seed, FAMILIES, N=N, d=d, extra_rows=extra, data_exp=data_exp,
                           probe_exp=probe_exp)
    cert = certify_independence(dists, z, method=method)
    if np.isfinite(cert.lower_bound):
        assert cert.lower_bound <= true_sigma(dists, z, cert) + MP_SLACK


def test_sigma_min_lower_bound_near_the_end_of_double_precision():
    """Matrices of condition 1e14 to 1e16, where fl(A Y) differs from the exact A Y by a
    visible fraction of its size (n u kappa) and the refinement makes the computed C~
    orthonormal while the exact C is not: the bound never exceeds the 50-digit sigma_min (the
    ||C - C~||_F term of the bound is what keeps it below)."""
    for seed in range(12):
        rng = np.random.default_rng(seed)
        for cond in (1e14, 1e15, 1e16):
            U, _ = np.linalg.qr(rng.normal(size=(12, 5)))
            V, _ = np.linalg.qr(rng.normal(size=(5, 5)))
            A = (U * np.geomspace(1.0, 1.0 / cond, 5)) @ V.T
            bound, note = sigma_min_lower_bound(A)
            if bound > 0:
                with mp.workdps(DPS):
                    truth = min(mp.svd_r(mp.matrix(A.tolist()), compute_uv=False))
                assert bound <= truth, (seed, cond, note)


@pytest.mark.parametrize("method", METHODS)
def test_enclosures_hold_for_the_written_weights_up_to_a_constant(method):
    """The certificate is of the laws as written: with integer weights (1, 3, 7) and (2, 5)
    the float weights are their quotients by the sum, rounded. For the exact LSE of the written
    laws (50 digits, weights r / sum r exactly), F_w(z_m) - mid[m] must lie within rad[m] of
    one constant per column (a constant is affine: it changes no rank). With Arb's 128-bit
    radii this fails if the normalisation of the weights is not enclosed."""
    mp.mp.dps = 50
    rng = np.random.default_rng(11)
    written = [np.array([1.0, 3.0, 7.0]), np.array([2.0, 5.0])]
    dists = [Discrete(rng.normal(size=(len(r), 2)), r) for r in written]
    z = rng.normal(size=(12, 2)) * np.array([[0.5], [3.0]] * 6)
    mid, rad = feature_enclosure(dists, z, method=method)
    for i, (dist, r) in enumerate(zip(dists, written)):
        total = sum(mp.mpf(float(x)) for x in r)
        exact = []
        for m in range(len(z)):
            terms = [mp.mpf(float(rj)) / total
                     * mp.exp(sum(mp.mpf(float(z[m, l])) * mp.mpf(float(dist.atoms[j, l]))
                                  for l in range(2))) for j, rj in enumerate(r)]
            exact.append(mp.log(mp.fsum(terms)))
        D = [exact[m] - mp.mpf(float(mid[m, i])) for m in range(len(z))]
        lo = max(D[m] - mp.mpf(float(rad[m, i])) for m in range(len(z)))
        hi = min(D[m] + mp.mpf(float(rad[m, i])) for m in range(len(z)))
        assert lo <= hi, (i, float(lo - hi))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), row_span=st.sampled_from([(-3, 3), (-1030, -1000), (990, 1030),
                                                             (-600, 600)]),
       col_span=st.sampled_from([(-2, 2), (-60, 60), (-1100, -1020), (1000, 1060)]),
       mag=st.sampled_from([0, -300, -1000, 300, 1000]))
def test_power_of_two_scaling_is_ldexp_value_for_value(seed, row_span, col_span, mag):
    """The certificate scales [1, Z, F] by multiplying with the doubles 2^(r_m + k_j) (when
    they exist) instead of calling ldexp: the results are equal bit for bit, including results
    that are subnormal (rounded), zero, or overflow, and exponents outside the double range
    (which take ldexp itself). The certificate's exactness check and radii rest on this."""
    from ntkcheck.injectivity.certify import _times_power_of_two
    rng = np.random.default_rng(seed)
    x = np.ldexp(rng.standard_normal((7, 5)), mag + rng.integers(-20, 20, (7, 5)))
    x[0, 0] = 0.0
    x[1, 1] = 5e-324  # the smallest subnormal
    r = rng.integers(*row_span, 7)
    k = rng.integers(*col_span, 5)
    with np.errstate(over="ignore", under="ignore"):
        got = _times_power_of_two(x, r, k)
        want = np.ldexp(x, r[:, None] + k[None, :])
        got_rows = _times_power_of_two(x, r)
        want_rows = np.ldexp(x, r[:, None])
    np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))
    np.testing.assert_array_equal(got_rows.view(np.int64), want_rows.view(np.int64))
