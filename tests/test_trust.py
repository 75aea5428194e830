"""Verdicts that hold whatever the units, scales, clusters and seeds (SPEC §3a).

Truths come from the construction of the data (planted duplicates, translates, Dirac masses)
and from an independent 50-digit mpmath evaluation written here, never from the code under
test: every dependency the tool prints must hold at fresh random points, with its affine part
solved for at 50 digits by this file's own code.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntkcheck import Dataset, Discrete, GaussianMixture, analyze
from ntkcheck.analysis import INCONCLUSIVE, INJECTIVE, NOT_INJECTIVE

# ---- an independent oracle ---------------------------------------------------------------------


def _mp_lse(dist, z):
    """LSE at a point z (list of mpf) from the stored doubles, at the current mpmath precision."""
    if isinstance(dist, Discrete):
        s = [mpmath.fsum(mpmath.mpf(float(a)) * b for a, b in zip(y, z))
             + mpmath.log(mpmath.mpf(float(w))) for y, w in zip(dist.atoms, dist.weights)]
    else:
        s = []
        for w, m, S in zip(dist.weights, dist.means, dist.covariances):
            lin = mpmath.fsum(mpmath.mpf(float(a)) * b for a, b in zip(m, z))
            quad = mpmath.fsum(z[a] * mpmath.mpf(float(S[a, b])) * z[b]
                               for a in range(len(z)) for b in range(len(z)))
            s.append(mpmath.log(mpmath.mpf(float(w))) + lin + quad / 2)
    top = max(s)
    return top + mpmath.log(mpmath.fsum(mpmath.exp(v - top) for v in s))


def relation_misfit(dataset: Dataset, dep, scale: float, seed: int = 123) -> float:
    """Relative misfit of sum c_i LSE_i - (a + <b, z>) at fresh points, (a, b) solved at 50
    digits from d + 1 points and tested on 6 others (relative to sum |c_i| |LSE_i|)."""
    rng = np.random.default_rng(seed)
    index = {n: i for i, n in enumerate(dataset.names)}
    d = dataset.dim
    with mpmath.workdps(50):
        pts = [[mpmath.mpf(float(x)) for x in rng.normal(size=d) * scale] for _ in range(d + 7)]
        vals, sizes = [], []
        for z in pts:
            terms = [(mpmath.mpf(c), _mp_lse(dataset.distributions[index[n]], z))
                     for n, c in dep.coefficients.items()]
            vals.append(mpmath.fsum(c * v for c, v in terms))
            sizes.append(mpmath.fsum(abs(c * v) for c, v in terms) + 1)
        A = mpmath.matrix([[1] + z for z in pts[: d + 1]])
        ab = mpmath.lu_solve(A, mpmath.matrix(vals[: d + 1]))
        worst = 0.0
        for z, v, s in zip(pts[d + 1:], vals[d + 1:], sizes[d + 1:]):
            fit = ab[0] + mpmath.fsum(ab[l + 1] * z[l] for l in range(d))
            worst = max(worst, float(abs(v - fit) / s))
    return worst


def assert_no_false_relation(dataset: Dataset, result, scales=(0.3, 3.0)) -> None:
    """Every printed relation holds to 1e-12 (float coefficients) at fresh points, both scales
    (in units where the data have spread 1)."""
    for dep in result.dependencies:
        for s in scales:
            assert relation_misfit(dataset, dep, s) < 1e-12, dep.describe()


# ---- data --------------------------------------------------------------------------------------

def tokens(seed: int, N: int = 12, n: int = 5, d: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N, n, d))


def planted(seed: int = 0) -> list[np.ndarray]:
    """12 generic sequences; seq12 = seq0 with its tokens reversed (a duplicate up to order);
    seq13 = seq1 + (0.5, -0.25, 1) computed in floating point (a translate up to rounding)."""
    X = list(tokens(seed))
    X.append(X[0][::-1].copy())
    X.append(X[1] + np.array([0.5, -0.25, 1.0]))
    return X


def check_planted(result, n_deps=2):
    assert result.verdict == NOT_INJECTIVE, result.reason
    assert len(result.dependencies) == n_deps
    supports = sorted(tuple(sorted(d.coefficients)) for d in result.dependencies)
    assert supports == [("seq0", "seq12"), ("seq1", "seq13")]
    assert result.settings["affine_hull_dim"] == 3


# ---- units and scales (issue: mixed units, 1e-200) ---------------------------------------------

def test_planted_relations_are_found_and_hold():
    ds = Dataset.from_tokens(planted())
    r = analyze(ds, exact="never")
    check_planted(r)
    assert_no_false_relation(ds, r)
    for dep in r.dependencies:
        assert dep.verification["passed"] is True
        assert dep.verification["level"] in ("exact", "data_precision")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(axis=st.integers(0, 2), power=st.integers(-8, 8))
def test_rescaling_one_coordinate_changes_nothing(axis, power):
    """y_l -> 10^k y_l (an invertible linear map, SPEC §2): same verdict, dependencies and hull."""
    X = [x.copy() for x in planted()]
    for x in X:
        x[:, axis] *= 10.0 ** power
    check_planted(analyze(Dataset.from_tokens(X), exact="never"))


@pytest.mark.parametrize("power", [-300, -200, -100, -12, 12, 100, 200, 300])
def test_rescaling_the_whole_dataset_changes_nothing(power):
    X = [x * 10.0 ** power for x in planted()]
    check_planted(analyze(Dataset.from_tokens(X), exact="never"))


@pytest.mark.parametrize("power", [-300, -200, 0, 150, 300])
def test_generic_data_stay_injective_at_every_scale(power):
    r = analyze(Dataset.from_tokens(list(tokens(5) * 10.0 ** power)), exact="never")
    assert r.verdict == INJECTIVE, r.reason
    assert r.settings["affine_hull_dim"] == 3


def test_timestamp_in_seconds_next_to_small_features():
    """A timestamp ~1.7e9 s with spread 1e3 s next to features of size 1e-2: the hull is full
    (3-dimensional) and the verdict equals the one in kiloseconds."""
    X = tokens(2, N=20, n=6)
    secs = X.copy()
    secs[..., 0] = 1.7e9 + 1e3 * X[..., 0]
    secs[..., 1:] *= 1e-2
    kilo = secs.copy()
    kilo[..., 0] /= 1e3
    r1 = analyze(Dataset.from_tokens(list(secs)), exact="never")
    r2 = analyze(Dataset.from_tokens(list(kilo)), exact="never")
    assert r1.settings["affine_hull_dim"] == r2.settings["affine_hull_dim"] == 3
    assert r1.verdict == r2.verdict == INJECTIVE, (r1.reason, r2.reason)


def test_a_flat_direction_is_dropped_but_a_small_one_is_kept():
    """Tokens on the plane y_3 = 2 y_1 - y_2 (exact in binary64 for these dyadic values) have a
    2-dimensional hull; adding a variation of relative size 1e-9 (far above round-off) along y_3
    makes it 3-dimensional."""
    rng = np.random.default_rng(4)
    X = rng.integers(-8, 8, size=(10, 5, 3)).astype(float) / 4
    X[..., 2] = 2 * X[..., 0] - X[..., 1]
    flat = analyze(Dataset.from_tokens(list(X)), exact="never")
    assert flat.settings["affine_hull_dim"] == 2
    X[..., 2] += 1e-9 * rng.normal(size=X.shape[:2])
    tilted = analyze(Dataset.from_tokens(list(X)), exact="never")
    assert tilted.settings["affine_hull_dim"] == 3


# ---- clusters, Diracs, near-Diracs -------------------------------------------------------------

@pytest.mark.parametrize("distance", [1e4, 1e5, 1e6])
def test_separated_clusters_are_injective(distance):
    """Sequences of spread 1 with centres `distance` apart: generic, so injective, and never a
    relation (whitening by the pooled covariance alone makes the probes blind to them)."""
    rng = np.random.default_rng(7)
    X = tokens(8, N=16, n=6) + distance * rng.normal(size=(16, 1, 3))
    ds = Dataset.from_tokens(list(X))
    r = analyze(ds, exact="never")
    assert r.verdict == INJECTIVE, r.reason
    assert max(r.settings["scales"]) >= distance / 10


def test_duplicate_inside_far_clusters_is_the_only_relation():
    rng = np.random.default_rng(9)
    X = list(tokens(9, N=16, n=6) + 1e5 * rng.normal(size=(16, 1, 3)))
    X.append(X[3][[2, 0, 1, 5, 4, 3]].copy())
    ds = Dataset.from_tokens(X)
    r = analyze(ds, exact="never")
    assert r.verdict == NOT_INJECTIVE, r.reason
    assert [sorted(d.coefficients) for d in r.dependencies] == [["seq16", "seq3"]]
    assert_no_false_relation(ds, r, scales=(1e-5, 3e-5))


def test_far_dirac_among_small_rational_laws_is_the_only_relation():
    """20 small rational laws and a Dirac mass at 1e5 (the Dirac alone is a dependency)."""
    rng = np.random.default_rng(3)
    laws = [Discrete((rng.integers(0, 5, (4, 1)) + rng.integers(0, 4, (4, 1)) / 4).astype(float))
            for _ in range(20)]
    laws.append(Discrete([[1e5]]))
    names = [f"law{i}" for i in range(20)] + ["far"]
    r = analyze(laws, names=names, exact="never")
    assert r.verdict == NOT_INJECTIVE, r.reason
    assert [list(d.coefficients) for d in r.dependencies] == [["far"]]


def test_near_dirac_does_not_inflate_the_threshold_of_others():
    """A single token repeated with jitter 1e-9 (a near-Dirac, resolved in float64) next to a
    pair that is a translate up to one atom moved by 1e-6 (far above its own round-off): the
    data are generic, hence injective, and no relation is printed."""
    rng = np.random.default_rng(1)
    X = list(tokens(1, N=20, n=6))
    X[3] = X[2] + np.array([0.5, -1.0, 2.0])
    X[3][0, 0] += 1e-6
    X[5] = 0.3 + 1e-9 * rng.normal(size=(6, 3))
    r = analyze(Dataset.from_tokens(X), exact="never")
    assert r.verdict == INJECTIVE, r.reason
    assert r.dependencies == ()


def test_float32_jittered_repeated_token():
    """One token stored through float32 with one-ulp differences between its copies (relative
    jitter ~1e-7): not a Dirac mass; the verdict must not claim one."""
    rng = np.random.default_rng(2)
    X = list(tokens(2, N=15, n=6))
    t = rng.normal(size=3).astype(np.float32)
    copies = np.array([t, t * np.float32(3) / np.float32(3), np.nextafter(t, np.float32(9)),
                       np.nextafter(t, np.float32(-9)), t, t], dtype=np.float32)
    X[4] = copies.astype(np.float64)
    ds = Dataset.from_tokens(X)
    r = analyze(ds, exact="never")
    assert r.verdict == INJECTIVE, r.reason


def test_exact_dirac_is_a_verified_relation():
    X = list(tokens(3, N=10, n=4))
    X[6] = np.repeat(X[6][:1], 4, axis=0)  # one token repeated: exactly a Dirac mass
    ds = Dataset.from_tokens(X)
    r = analyze(ds, exact="never")
    assert r.verdict == NOT_INJECTIVE
    assert [list(d.coefficients) for d in r.dependencies] == [["seq6"]]
    assert r.dependencies[0].verification["level"] == "exact"


# ---- grey zone: near-translates ----------------------------------------------------------------

@pytest.mark.parametrize("eps", [1e-3, 1e-6, 1e-9, 1e-11, 1e-12, 1e-13, 1e-14])
def test_near_translate_is_never_called_dependent(eps):
    """seq1 = seq0 + 1/4 with one atom moved by eps: independent for every eps > 0. The verdict
    is never not_injective, and it is injective whenever the perturbation is resolved (down to
    1e-9 here; the smallest singular value tracks eps)."""
    X = list(tokens(0, N=10, n=5))
    X[1] = X[0] + 0.25
    X[1][2, 1] += eps
    r = analyze(Dataset.from_tokens(X), exact="never")
    assert r.verdict != NOT_INJECTIVE, r.reason
    if eps >= 1e-9:
        assert r.verdict == INJECTIVE, r.reason
        assert r.singular_values[-1] < 1e3 * eps  # the perturbation is what keeps it injective


def test_exact_translate_by_dyadic_shift():
    """Shift by 1/4 of dyadic data with small exponents: y + t is exact in binary64, so the
    relation holds exactly (level exact)."""
    rng = np.random.default_rng(5)
    X = list(rng.integers(-16, 16, size=(9, 5, 2)).astype(float) / 8)
    X.append(X[2] + 0.25)
    ds = Dataset.from_tokens(X)
    r = analyze(ds, exact="never")
    assert r.verdict == NOT_INJECTIVE
    (dep,) = r.dependencies
    assert sorted(dep.coefficients) == ["seq2", "seq9"]
    assert dep.verification["level"] == "exact"
    assert np.allclose(sorted(np.abs(dep.linear)), [0.25, 0.25], rtol=1e-9)


# ---- 1-D Gaussians: irrational-looking coefficients recovered in extended precision -----------

def test_two_one_dimensional_gaussians_are_dependent():
    """LSE = m z + s z^2 / 2, so s2 LSE_1 - s1 LSE_2 is linear: c_2 / c_1 = -s1 / s2 exactly."""
    g1 = GaussianMixture([1.0], [[0.3]], [[[0.3]]])
    g2 = GaussianMixture([1.0], [[-1.1]], [[[0.7]]])
    ds = Dataset(("g1", "g2"), (g1, g2))
    r = analyze(ds, exact="never")
    assert r.verdict == NOT_INJECTIVE
    (dep,) = r.dependencies
    c = dep.coefficients
    assert c["g2"] / c["g1"] == pytest.approx(-0.3 / 0.7, rel=1e-13, abs=0)
    assert dep.verification["level"] == "exact"
    assert_no_false_relation(ds, r)


# ---- seeds -------------------------------------------------------------------------------------

def _cases():
    rng = np.random.default_rng(11)
    near = list(tokens(0, N=10, n=5))
    near[1] = near[0] + 0.25
    near[1][2, 1] += 1e-7
    clusters = list(tokens(8, N=12, n=6) + 1e5 * rng.normal(size=(12, 1, 3)))
    return {"planted": planted(), "near_translate": near, "clusters": clusters,
            "generic": list(tokens(6))}


@pytest.mark.parametrize("case", ["planted", "near_translate", "clusters", "generic"])
def test_verdict_does_not_depend_on_the_seed(case):
    X = _cases()[case]
    verdicts = {(r.verdict, len(r.dependencies)) for r in
                (analyze(Dataset.from_tokens(X), exact="never", seed=s) for s in range(4))}
    assert len(verdicts) == 1, verdicts
    assert verdicts.pop()[0] != INCONCLUSIVE


# ---- samples and seeds -------------------------------------------------------------------------

@pytest.mark.parametrize("sample", ["tokens_injective.npz", "tokens_dependent.npz", "mixed.toml"])
def test_sample_verdicts_do_not_depend_on_the_seed(sample):
    from pathlib import Path

    from ntkcheck import load_dataset
    ds = load_dataset(Path(__file__).resolve().parents[1] / "samples" / sample)
    seen = {(r.verdict, r.evidence, len(r.dependencies)) for r in
            (analyze(ds, exact="never", seed=s) for s in (0, 1, 2, 5))}
    assert len(seen) == 1, seen


def test_clusters_in_wildly_different_units_are_decided():
    """Tight clusters far apart, coordinates in units 1e8, 1e-8 and 1 times 1e170: the error
    estimates are taken coordinate by coordinate (a |z| |y| bound would mix the 1e8 and 1e-8
    coordinates and put every column at its round-off level), so the verdict is injective."""
    rng = np.random.default_rng(12)
    X = tokens(12, N=14, n=5) * 1e-3 + 10.0 ** rng.integers(0, 4, size=(14, 1, 1)) * rng.normal(
        size=(14, 1, 3))
    X *= np.array([1e8, 1e-8, 1.0]) * 1e170
    r = analyze(Dataset.from_tokens(list(X)), exact="never")
    assert r.verdict == INJECTIVE, r.reason
