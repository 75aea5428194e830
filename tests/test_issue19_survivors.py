"""Issue 19, point 5: tests that kill the mutation survivors of the decision and report code.

Each test states one documented property; the reference values are computed independently
(exact rationals, mpmath at 50 digits, or the definition) and never taken from the code under
test. The mutants these tests kill are in tests/mutation/mutants.py (labels ``issue19 ...``).
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest

from ntkcheck import Dataset, Discrete, GaussianMixture, analyze
from ntkcheck.injectivity.dependencies import fit_dependency
from ntkcheck.injectivity.features import feature_matrix
from ntkcheck.injectivity.geometry import NOISE_SAFETY, dataset_geometry, support_rows
from ntkcheck.injectivity.probes import make_probes
from ntkcheck.injectivity.summary import _pair
from ntkcheck.injectivity.verify import affine_part

U = 2.0 ** -53  # unit round-off of binary64


def _lse_mp(dist: Discrete, z) -> mpmath.mpf:
    """log sum_j w_j exp(<z, y_j>) at 50 digits from the stored doubles (taken exactly)."""
    with mpmath.workdps(50):
        return mpmath.log(mpmath.fsum(
            mpmath.mpf(float(w)) * mpmath.exp(mpmath.fsum(mpmath.mpf(float(a)) * mpmath.mpf(float(b))
                                                        for a, b in zip(y, z)))
            for w, y in zip(dist.weights, dist.atoms)))


# ---- screen: classes joined by the numerical pass (survivors 3, 4, 6) ---------------------------

def _joined_classes():
    """Y, Y + b, Y + c: an exact class of three (dyadic atoms, exact shifts); X = fl(Y + s): a
    numerical translate of Y (s = (0.1, 0.3) rounded differently per atom); X + a exact: X's
    exact class of two. The numerical pass joins X's class to Y's (largest first), so X + a
    has parent X, which is not the root Y."""
    Y = np.array([[0.125, 0.25], [0.75, -0.5], [-0.375, 0.625]])
    b, c, s = np.array([1.0, 2.0]), np.array([-3.0, 0.5]), np.array([0.1, 0.3])
    a = np.array([2.0 ** -10, -2.0 ** -9])  # a multiple of every atom's ulp: X + a exact
    X = Y + s
    Xa = X + a
    # preconditions, in exact rationals: X + a - X = a exactly; X - Y is not one exact shift
    assert all(Fraction(float(p)) - Fraction(float(q)) == Fraction(float(t))
               for rp, rq in zip(Xa, X) for p, q, t in zip(rp, rq, a))
    diffs = {tuple(Fraction(float(p)) - Fraction(float(q)) for p, q in zip(rx, ry))
             for rx, ry in zip(X, Y)}
    assert len(diffs) > 1
    names = ("Y", "Yb", "Yc", "X", "Xa")
    return Dataset(names, tuple(Discrete(A) for A in (Y, Y + b, Y + c, X, Xa)))


def test_joined_class_relations_hold_at_random_points():
    """Every structural relation LSE[parent] - LSE[member] = a + <b, z> printed for a class
    that the numerical pass joined holds at random z: evaluated independently with 50-digit
    log-sum-exp of the stored doubles. The member X + a is matched to X (its parent) and X to
    the root Y numerically, so its shift relative to the root is a + s (sign and parent both
    matter). Tolerance: the numerical match leaves the rounding of y + s, a few ulps of the
    atoms (|y| <= 2), times |z| <= 3 per coordinate: 1e-13 absolute."""
    ds = _joined_classes()
    r = analyze(ds, exact="never")
    index = {n: i for i, n in enumerate(ds.names)}
    deps = [d for d in r.dependencies if len(d.coefficients) == 2]
    assert len(deps) == 4, [d.describe() for d in r.dependencies]
    assert {frozenset(d.coefficients) for d in deps} >= {frozenset({"X", "Xa"})}
    rng = np.random.default_rng(7)
    for z in rng.uniform(-3, 3, size=(5, 2)):
        for dep in deps:
            with mpmath.workdps(50):
                lhs = mpmath.fsum(mpmath.mpf(c) * _lse_mp(ds.distributions[index[n]], z)
                                  for n, c in dep.coefficients.items())
                rhs = mpmath.mpf(dep.constant) + mpmath.fsum(
                    mpmath.mpf(float(bl)) * mpmath.mpf(float(zl)) for bl, zl in zip(dep.linear, z))
                assert abs(lhs - rhs) < 1e-13, (dep.describe(), z, float(lhs - rhs))


def test_class_with_a_numerical_member_is_not_called_exact():
    """A class with exact members (Y + b, Y + c, X + a) and one member matched only
    numerically (X) has class evidence ``numerical``, in JSON and in its text line."""
    ds = _joined_classes()
    r = analyze(ds, exact="never")
    classes = [f for f in r.findings if hasattr(f, "class_evidence")]
    assert len(classes) == 1 and set(classes[0].names) == set(ds.names)
    cls = classes[0]
    assert "numerical" in cls.evidence and "exact" in cls.evidence[1:]
    assert cls.to_dict()["class_evidence"] == "numerical"
    assert "[exact]" not in cls.describe()


# ---- partial spectrum: a column zeroed as affine (survivor 2) ----------------------------------

def test_partial_spectrum_with_an_affine_column_is_a_verdict_not_an_error():
    """One law of spread 1e-90 among laws of spread 1: at every probe scale its column is
    affine at round-off level and is zeroed with a zero round-off bound beta_i. The weighted
    certificate sigma_min(F_perp diag(1 / beta)) does not exist then (it is 0, no 1 / 0
    scaling): the partial spectrum, like the full one, ends in a verdict, here
    ``inconclusive`` (the law is not a Dirac mass, so no dependency may be claimed, and the
    probes cannot resolve it, so independence cannot be certified), never an internal error."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 2, 2))
    X[1] *= 1e-90
    ds = Dataset.from_tokens(list(X))
    for mode in ("partial", "full"):
        r = analyze(ds, exact="never", spectrum=mode)
        assert r.verdict == "inconclusive", (mode, r.reason)
        assert not r.dependencies


# ---- dense candidates: the affine part of a fitted relation (survivor 5) -----------------------

def test_fitted_relation_affine_part_undoes_the_centring_with_the_right_sign():
    """fit_dependency (whose affine part is printed for candidates that fail the re-check)
    gives, for X and its exact translate X + t away from the origin, LSE[X] - LSE[X + t] =
    -<t, z>: b = -t (the definition: mu_(X+t) = mu_X(. - t)). Tolerance 1e-8: a least-squares
    fit of round-off-level residuals on probes of whitened size ~1."""
    X = np.array([[5.0, 7.0], [6.0, 7.5], [5.5, 9.0], [4.0, 8.0]])
    t = np.array([3.0, -2.0])
    other = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
    ds = Dataset(("X", "Xt", "O"), (Discrete(X), Discrete(X + t), Discrete(other)))
    geo = dataset_geometry(ds)
    probes = make_probes(geo, 64, (0.3, 1.0, 3.0), seed=0)
    feats = feature_matrix(ds, geo, probes)
    dep = fit_dependency(np.array([1.0, -1.0, 0.0]), feats, ds.names)
    assert dep.coefficients == pytest.approx({"X": 1.0, "Xt": -1.0})
    np.testing.assert_allclose(dep.linear, -t, atol=1e-8)
    assert abs(dep.constant) < 1e-8


# ---- near pairs: near translate vs near duplicate (survivor 7) ---------------------------------

def test_a_pair_shifted_in_one_coordinate_is_a_near_translate():
    """Two laws equal but for a shift of 2 in the first coordinate (the second coordinate equal)
    are a near translate (ratio 1, means differ), never a near duplicate."""
    A = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 2.0]])
    ds = Dataset(("a", "b"), (Discrete(A), Discrete(A + np.array([2.0, 0.0]))))
    out = _pair(ds, 0, 1, 1e-9, 1.0)
    assert out["kind"] == "near_translate", out
    # the shift is a difference of float means (|mean| <= 2.5): a few ulps of 4, whatever
    # numpy's summation order (numpy 1.24 gives 2.0000000000000004)
    np.testing.assert_allclose(out["shift"], [2.0, 0.0], rtol=0, atol=8 * np.finfo(float).eps * 4)
    same = Dataset(("a", "b"), (Discrete(A), Discrete(A)))
    assert _pair(same, 0, 1, 1e-9, 1.0)["kind"] == "near_duplicate"


# ---- --fail-below names both sequences of a near pair (survivor 8) ------------------------------

def test_fail_below_names_both_sequences_of_a_near_pair():
    """Two laws that differ by 1e-6 in one atom: each one's score (distance of its unit column
    to the span of the others) is at most the pair distance ||a_i - a_j|| = O(1e-6), far below
    the margin 0.01; the margin lists both (and every sequence whose score is below it)."""
    from ntkcheck.neardep import apply_margin

    rng = np.random.default_rng(4)
    X = [rng.normal(size=(3, 2)) for _ in range(5)]
    X.append(X[0].copy())
    X[5][1, 0] += 1e-6
    ds = Dataset.from_tokens(X)
    r = analyze(ds, exact="never")
    assert r.verdict == "injective", r.reason
    m = apply_margin(r, 0.01).margin
    listed = {s["name"] for s in m["sequences"]}
    assert m["below"] and {ds.names[0], ds.names[5]} <= listed, m
    assert listed == {n for n, s in r.scores.items() if s < 0.01}


# ---- exact test: peeling cascades (survivor 9) -------------------------------------------------

def test_peeling_cascades_until_no_core_row_owns_a_column():
    """E with rows {0, 1}, {1, 2}, {2}: row 0 owns column 0; once it is peeled row 1 owns
    column 1, then row 2 column 2. Peeling repeats (module docstring of exact/matrix.py), so
    all three are peeled, the core is empty (no elimination needed, so a core budget of 0 is
    enough) and rank(E) = 3 (E is triangular with non-zero diagonal)."""
    from ntkcheck.exact.engines import get_engine
    from ntkcheck.exact.matrix import left_null_space

    rows = [{0: 1, 1: 1}, {1: 1, 2: 1}, {2: 1}]
    ns = left_null_space(rows, get_engine("sympy", 1), max_core=0)
    assert ns.rank == 3 and ns.basis == () and ns.core_rows == ()
    assert sorted(i for i, _ in ns.pivots) == [0, 1, 2]


# ---- geometry: support rows of a mixture, the hull level (survivors 1, 10) ----------------------

def test_mixture_support_rows_have_the_mixture_covariance():
    """Support rows (geometry step 1): their weighted second moment is the law's covariance,
    sum_k pi_k (S_k + m_k m_k^T) - m m^T, computed here from the parameters in exact rationals.
    Full-rank covariances (r = 2) make the sqrt(r lambda) factor visible. Tolerance 1e-13
    relative: eigh and the square roots, a few ulps each."""
    pi = [Fraction(1, 4), Fraction(3, 4)]
    means = [[Fraction(1), Fraction(-2)], [Fraction(3, 2), Fraction(1, 2)]]
    covs = [[[Fraction(2), Fraction(1, 2)], [Fraction(1, 2), Fraction(1)]],
            [[Fraction(1, 2), Fraction(0)], [Fraction(0), Fraction(3)]]]
    gm = GaussianMixture(weights=np.array([float(p) for p in pi]),
                         means=np.array([[float(x) for x in m] for m in means]),
                         covariances=np.array([[[float(x) for x in row] for row in S] for S in covs]))
    rows, w, _ = support_rows(Dataset(("g",), (gm,)))
    mean = [sum(p * m[a] for p, m in zip(pi, means)) for a in range(2)]
    cov = np.array([[float(sum(p * (S[a][b] + m[a] * m[b]) for p, m, S in zip(pi, means, covs))
                           - mean[a] * mean[b]) for b in range(2)] for a in range(2)])
    mu = w @ rows
    got = (rows - mu).T @ ((rows - mu) * w[:, None])
    np.testing.assert_allclose(mu, [float(x) for x in mean], rtol=1e-13)
    np.testing.assert_allclose(got, cov, rtol=1e-13)


def test_hull_level_includes_the_factorisation_backward_error():
    """The hull level of direction k is NOISE_SAFETY (sum_l |v_kl| eps_l + sqrt(d) u ||A||_F)
    (geometry step 3). Data: atoms +-a_l e_l (a_l = 2^l) with weights proportional to l + 1.
    After equilibration (y'_l = y_l / 2^(l+1): range exactly 1, ref = 0) the weighted
    centred rows A have orthogonal columns of distinct norms, so the hull directions are the
    coordinate axes and every level is NOISE_SAFETY (eps + sqrt(d) u ||A||_F) with eps =
    (3 + log2 P) u max|y'_l - ref_l| = (3 + log2 P) u / 2, and ||A||_F^2 = sum_p w_p |y'_p|^2
    computed here in exact rationals from the stored weights. The backward-error term is a
    third of the level here. Tolerance 1e-12 relative (the SVD's off-axis |v_kl| ~ u)."""
    d = 6
    atoms = []
    for l in range(d):
        e = np.zeros(d)
        e[l] = 2.0 ** l
        atoms += [e, -e]
    atoms = np.array(atoms)
    weights = np.repeat(np.arange(1, d + 1, dtype=float), 2)
    dist = Discrete(atoms, weights)
    P = len(atoms)
    geo = dataset_geometry(Dataset(("x",), (dist,)))
    assert geo.rank == d
    total = sum(Fraction(float(w)) for w in dist.weights)
    sq = sum(Fraction(float(w)) / total * (Fraction(float(y)) / Fraction(2.0 ** (l + 1))) ** 2
             for w, row in zip(dist.weights, dist.atoms) for l, y in enumerate(row))
    with mpmath.workdps(50):
        norm_a = float(mpmath.sqrt(mpmath.mpf(sq.numerator) / sq.denominator))
    eps = (3.0 + np.log2(P)) * U * 0.5
    expected = NOISE_SAFETY * (eps + np.sqrt(d) * U * norm_a)
    assert geo.hull_tolerance == pytest.approx(expected, rel=1e-12, abs=0.0)


# ---- rounding: a sum of n terms (survivor 11) --------------------------------------------------

def test_norm_bound_covers_a_sum_whose_small_terms_are_all_lost():
    """_norm_up(x, axis=0) bounds the column 2-norms. Column: 1, then n = 200000 entries x
    with x^2 = 0.9 u / 4. _norm_up scales by 2^-1 (largest entry 1 -> 1/2), so the running
    sum of squares starts at 1/4 and each further square, 0.9 u / 16, is below half an ulp of
    it (u / 4): a left-to-right sum (numpy's reduction over the rows) loses every one. The
    computed sum is short by 0.225 n u relative (5e-12), which only an error term growing with
    n (gamma_(2n+1)) covers. The exact norm: 50-digit mpmath of the stored doubles."""
    from ntkcheck.injectivity.rounding import _norm_up

    n = 200_000
    small = np.sqrt(0.9 * U / 4)
    x = np.full((n + 1, 2), small)
    x[0] = 1.0
    with mpmath.workdps(50):
        exact = mpmath.sqrt(1 + n * mpmath.mpf(float(small)) ** 2)
    bound = _norm_up(x, axis=0)
    assert float(exact) > 1.0 + 1e-12  # the lost part is visible in binary64
    assert np.all(bound >= exact), (bound, exact)


# ---- enclosure: the log-sum-exp summation term (survivor 12) -----------------------------------

def test_apriori_radius_encloses_a_sum_of_many_lost_terms():
    """The a-priori enclosure |LSE - F~| <= rad, against 50-digit mpmath of the stored doubles,
    for a law whose log-sum-exp sum loses many terms: one weight ~1 and n - 1 = 99999 weights
    0.9 2^-53 times it (each below half an ulp of the running sum), at z = 0. The computed sum
    misses about 1e-11 of LSE = log(sum w) ~ 0; only the summation term gamma_(K + 2n + 2)
    of the bound covers it (the score errors are ~400 u)."""
    from ntkcheck.injectivity.enclosure import feature_enclosure

    n = 100_000
    w = np.full(n, 0.9 * 2.0 ** -53)
    w[0] = 1.0
    atoms = np.zeros((n, 1))
    atoms[:, 0] = np.arange(n) / n
    dist = Discrete(atoms, w)
    z = np.zeros((2, 1))
    mid, rad = feature_enclosure([dist], z, method="a-priori")
    with mpmath.workdps(50):
        exact = mpmath.log(mpmath.fsum(mpmath.mpf(float(x)) for x in dist.weights))
    assert abs(mid[0, 0] - float(exact)) > 1e-12  # the lost terms are the dominant error
    for m in range(2):
        assert abs(mpmath.mpf(float(mid[m, 0])) - exact) <= rad[m, 0], (mid[m, 0], exact, rad[m, 0])


# ---- verify: the affine part a = S(0), b_j = S(e_j) - S(0) (survivor 13) -----------------------

def test_affine_part_subtracts_the_constant():
    """A law of three equal atoms at (1, 0) with uniform weights fl(1/3): LSE(z) = log(3 fl(1/3))
    + z1 exactly, with a = log(3 fl(1/3)) ~ -5.6e-17 != 0 (the stored weights sum to 1 - 2^-54).
    affine_part must give a = S(0) and b = (S(e_1) - S(0), S(e_2) - S(0)) = (1, 0) exactly
    (after rounding to binary64)."""
    dist = Discrete(np.array([[1.0, 0.0]] * 3))
    assert dist.rational is None or "weights" not in dist.rational
    with mpmath.workdps(50):
        a_ref = mpmath.log(mpmath.fsum(mpmath.mpf(float(x)) for x in dist.weights))
    assert a_ref != 0
    a, b, _ = affine_part([dist], np.array([1.0]))
    assert a == float(a_ref)
    assert b[0] == 1.0 and b[1] == 0.0, b
