"""The certificate's reuse of the features pass (ntkcheck.injectivity.reuse, SPEC §3a).

Truths are independent of the code under test: LSE values at 50 digits with mpmath from the
binary64 parameters and probes taken as exact (the helpers of test_certify.py), and the
a-priori enclosure of ntkcheck.injectivity.enclosure as the reference form of the same bound.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntkcheck import Dataset
from ntkcheck.distributions import Discrete, GaussianMixture
from ntkcheck.injectivity.certify import certify_independence, feature_enclosure
from ntkcheck.injectivity.enclosure import _written_radius
from ntkcheck.injectivity.features import centred_each
from ntkcheck.injectivity.reuse import column_constants, pass_enclosure, written_weights_radius
from test_certify import DPS, MP_SLACK, _mp, mp_lse, true_sigma


def _case(seed: int, N: int = 5, n: int = 6, d: int = 3, data_scale: float = 1.0,
          probe_scale: float = 1.0, offset: float = 40.0):
    """Discrete laws with non-uniform weights far from the origin (their centring rounds) and
    probes; the features pass's values F on the laws centred at their own means."""
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(n, d)) * data_scale + rng.normal(size=d) * offset for _ in range(N)]
    W = [rng.random(n) + 0.05 for _ in range(N)]
    ds = Dataset.from_tokens(X, weights=W)
    centred, centres = centred_each(ds)
    z = rng.normal(size=(N + d + 1 + 4, d)) * probe_scale
    return ds, centred, centres, z, centred.lse(z)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), data_exp=st.sampled_from([-100, -3, 0, 2]),
       probe_exp=st.integers(-3, 3))
def test_pass_enclosure_contains_the_50_digit_values(seed, data_exp, probe_exp):
    """|LSE_i(z_m) - <z_m, c_i> - F~[m, i]| <= rad[m, i] for the features pass's own values F~
    (the stored laws, not their centred copies): data scales 1e-100 to 1e2, |z| up to 1e3
    times the inverse data scale."""
    scale = 10.0**data_exp
    ds, centred, centres, z, F = _case(seed, N=3, n=4, d=2, data_scale=scale,
                                       probe_scale=10.0**probe_exp / scale, offset=40 * scale)
    assert_pass_enclosure_holds(ds, centred, centres, z, F)


def assert_pass_enclosure_holds(ds, centred, centres, z, F) -> None:
    """|LSE_i(z_m) - <z_m, c_i> - F[m, i]| <= rad[m, i] of :func:`pass_enclosure` for every
    entry, against 50-digit values (also used by test_lse_compiled.py)."""
    rad = pass_enclosure(ds.distributions, centred.distributions, z, centres, F)
    assert rad is not None and np.all(np.isfinite(rad))
    with mp.workdps(DPS):
        for m in range(z.shape[0]):
            for i, dist in enumerate(ds.distributions):
                exact = mp_lse(dist, z[m], centres[i])
                assert abs(exact - _mp(F[m, i])) <= _mp(rad[m, i]) + MP_SLACK * abs(exact)


@pytest.mark.parametrize("probe_scale", [1e-3, 1.0, 30.0])
def test_pass_radius_dominates_the_apriori_radius_of_the_same_algorithm(probe_scale):
    """The features pass ran the a-priori enclosure's algorithm, so its radius must be at least
    that enclosure's (every term of the same form, |log S~| bounded by log n, ||p - w~||_1 by
    2) plus the bound on the re-normalised weights, entry by entry: a dropped term falls
    below it somewhere."""
    ds, centred, centres, z, F = _case(3, N=8, n=6, probe_scale=probe_scale)
    rad = pass_enclosure(ds.distributions, centred.distributions, z, centres, F)
    _, rad_ref = feature_enclosure(ds.distributions, z, centres, method="a-priori")
    dlw = np.array([column_constants(a, b, c)[2] for a, b, c in
                    zip(ds.distributions, centred.distributions, centres)])
    assert np.all(rad >= (rad_ref + dlw) * (1 - 1e-12))


def test_renormalised_weights_are_bounded():
    """dlw >= max_j |log w'_j - log w_j| (50 digits) for the centred laws' re-normalised
    weights w', on laws where w' != w (checked: the bound is not vacuous)."""
    ds, centred, centres, _, _ = _case(5, N=40, n=7)
    moved = 0
    for a, b, c in zip(ds.distributions, centred.distributions, centres):
        dlw = column_constants(a, b, c)[2]
        with mp.workdps(DPS):
            true = max(abs(mp.log(_mp(w2)) - mp.log(_mp(w))) for w, w2 in zip(a.weights, b.weights))
        assert _mp(dlw) >= true
        moved += bool(true > 0)
    assert moved > 0


def test_written_weights_radius_bounds_the_per_probe_one():
    """The per-column written radius (||p - w~||_1 <= 2) is at least the per-probe one of the
    enclosure module at every probe, and positive for weights that do not sum to 1 exactly."""
    ds, _, centres, z, _ = _case(7, N=6)
    per_probe = _written_radius(ds.distributions, z * 30, centres)
    col = written_weights_radius(ds.distributions)
    assert np.all(col[None, :] >= per_probe) and np.all(col > 0)
    assert np.any(per_probe >= 0.5 * col[None, :])  # large probes: ||p - w~||_1 near 2


def test_laws_the_bound_does_not_cover_get_none():
    """Mixtures (another algorithm) and centred atoms other than fl(y - c) are refused: the
    certificate then encloses the entries itself."""
    ds, centred, centres, z, F = _case(9, N=3)
    g = GaussianMixture([1.0], np.zeros((1, 3)), np.eye(3)[None])
    assert pass_enclosure(list(ds.distributions) + [g], list(centred.distributions) + [g], z,
                          np.vstack([centres, np.zeros(3)]), np.hstack([F, F[:, :1]])) is None
    wrong = [Discrete(b.atoms + 2.0**-30, b.weights) for b in centred.distributions]
    assert pass_enclosure(ds.distributions, wrong, z, centres, F) is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_certificate_from_the_pass_is_below_the_true_sigma_min(seed):
    """The certificate built on the features pass's enclosure certifies generic data, and its
    lower bound is at most sigma_min of the exact scaled matrix (50-digit SVD)."""
    ds, centred, centres, z, F = _case(seed, N=4, n=3, d=2)
    rad = pass_enclosure(ds.distributions, centred.distributions, z, centres, F)
    cert = certify_independence(ds.distributions, z, centre=centres, method="a-priori",
                                enclosure=(F, rad))
    assert cert.certified
    assert cert.lower_bound <= true_sigma(ds.distributions, z, cert, centres) + MP_SLACK


def test_renormalised_weights_term_is_in_the_radius():
    """Near-uniform weights and tiny probes (|log S~| = log n up to 1e-3 log n, so the log-sum
    bound has almost no slack): the pass radius is at least the a-priori radius with its
    per-probe written term replaced by the per-column one, plus dlw, on every law whose
    weights moved when re-normalised (there are some: checked)."""
    rng = np.random.default_rng(12)
    n, d = 5, 2
    X = [rng.normal(size=(n, d)) + 30 for _ in range(30)]
    W = [1 + 1e-3 * rng.random(n) for _ in range(30)]
    ds = Dataset.from_tokens(X, weights=W)
    centred, centres = centred_each(ds)
    z = rng.normal(size=(8, d)) * 1e-9
    F = centred.lse(z)
    rad = pass_enclosure(ds.distributions, centred.distributions, z, centres, F)
    _, rad_ref = feature_enclosure(ds.distributions, z, centres, method="a-priori")
    ref = (rad_ref - _written_radius(ds.distributions, z, centres)
           + written_weights_radius(ds.distributions)[None, :])
    dlw = np.array([column_constants(a, b, c)[2] for a, b, c in
                    zip(ds.distributions, centred.distributions, centres)])
    moved = dlw > 0
    assert moved.any()
    assert np.all(rad[:, moved] >= (ref + dlw)[:, moved] * (1 - 1e-9))


def test_all_column_constants_equal_the_law_by_law_ones():
    """The grouped constants (laws of one atom count at once, in batches) are the per-law
    :func:`column_constants`, value for value, over laws of several atom counts and weights;
    and a law the bound does not cover (atoms not the float64 image fl(y - c)) makes the
    whole answer None, as law by law."""
    from ntkcheck.injectivity.features import centred_each
    from ntkcheck.injectivity.reuse import all_column_constants
    rng = np.random.default_rng(3)
    laws = [Discrete(rng.normal(size=(n, 3)) * 10.0**rng.integers(-3, 4),
                     rng.uniform(0.1, 1.0, n)) for n in rng.integers(1, 9, 40)]
    data = Dataset([f"x{i}" for i in range(len(laws))], laws)
    centred, centres = centred_each(data)
    got = all_column_constants(data.distributions, centred.distributions, centres)
    want = np.array([column_constants(a, b, c) for a, b, c in
                     zip(data.distributions, centred.distributions, centres)]).T
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    bad = list(centred.distributions)
    bad[7] = Discrete(bad[7].atoms + 1e-3, bad[7].weights)
    assert all_column_constants(data.distributions, bad, centres) is None
    assert column_constants(data.distributions[7], bad[7], centres[7]) is None


@pytest.mark.parametrize("rounded", [False, True])
def test_pass_radii_by_column_blocks_are_the_whole_arrays(rounded):
    """PassRadii.columns(c0, c1) is pass_enclosure's rad[:, c0:c1] bit for bit (the same
    operations entry by entry), with and without the written-value radius of laws whose
    inputs were rounded; and the certificate reading the radii block by block (no M x N array)
    proves the bound it proves from the whole array, with ||Rad||_F, now combined from the
    blocks' upper bounds, still at least the norm of the scaled radii (summed in extended
    precision) and no larger than the whole array's (whose rounding margin gamma_(2 M N + 1)
    covers M N squares at once, the blocks' only their own): within 4 M N u below it."""
    from ntkcheck.injectivity import certify as certify_module
    from ntkcheck.injectivity.reuse import pass_radii

    ds, centred, centres, z, F = _case(3, N=40, n=4, d=2)
    if rounded:
        for dist in ds.distributions[::3]:
            dist.__dict__["_rounded_inputs"] = ("atoms",)
    whole = pass_enclosure(ds.distributions, centred.distributions, z, centres, F)
    radii = pass_radii(ds.distributions, centred.distributions, z, centres, F)
    for c0, c1 in [(0, 40), (0, 7), (7, 23), (39, 40)]:
        assert np.array_equal(radii.columns(c0, c1), whole[:, c0:c1])
    with pytest.MonkeyPatch.context() as mp:  # blocks of 3 columns: many blocks combined
        mp.setattr(certify_module, "_BLOCK_ENTRIES", 3 * z.shape[0])
        lazy = certify_independence(ds.distributions, z, centre=centres, method="a-priori",
                                    enclosure=(F, radii))
    ref = certify_independence(ds.distributions, z, centre=centres, method="a-priori",
                               enclosure=(F, whole.copy()))
    assert lazy.certified and ref.certified
    assert lazy.sigma_float == ref.sigma_float
    assert 1 - 4 * F.size * 2.0**-53 <= lazy.radius_norm / ref.radius_norm <= 1 + 2.0**-52
    scaled = np.ldexp(whole, lazy.row_exponents[:, None]
                      + lazy.column_exponents[None, z.shape[1] + 1:])
    exact = float(np.sqrt(np.sum(np.square(scaled.astype(np.longdouble)))))
    assert lazy.radius_norm >= exact
    assert lazy.lower_bound >= ref.lower_bound
