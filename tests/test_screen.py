"""Structural screen (SPEC §7): every finding is checked here against an independent exact
computation in rational arithmetic (fractions.Fraction on the stored doubles), and the core
reduction against a reference rank computation."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ntkcheck.dataset import Dataset
from ntkcheck.distributions import Discrete, GaussianMixture, UniformBox
from ntkcheck.injectivity.screen import core_dataset, screen

SEEDS = st.integers(0, 2**32 - 1)


def ds(dists, names=None):
    names = names or [f"m{i}" for i in range(len(dists))]
    return Dataset(tuple(names), tuple(dists))


def exact_translate(x: np.ndarray, y: np.ndarray) -> bool:
    """Reference: is the multiset of rows y the rows of x plus one rational shift, exactly?
    (rows compared after lexicographic sort; both without repeated rows)."""
    xs = sorted(tuple(Fraction(float(v)) for v in r) for r in x)
    ys = sorted(tuple(Fraction(float(v)) for v in r) for r in y)
    t = [b - a for a, b in zip(xs[0], ys[0])]
    return all([b - a for a, b in zip(p, q)] == t for p, q in zip(xs, ys))


def class_of(result, i):
    return next((c for c in result.classes if i in c.members), None)


@settings(max_examples=30, deadline=None)
@given(SEEDS, st.integers(1, 12), st.integers(1, 5))
def test_shuffled_tokens_are_exact_duplicates(seed, n, d):
    """A permutation of the tokens is the same law: one exact class, zero shift."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 1, d)) * 10.0 ** rng.integers(-3, 4)
    other = rng.normal(size=(n + 1, d))
    r = screen(ds([Discrete(x), Discrete(x[rng.permutation(n + 1)]), Discrete(other)]))
    assert len(r.classes) == 1 and r.classes[0].members == (0, 1)
    assert r.classes[0].kind == "duplicates" and r.classes[0].class_evidence == "exact"
    assert r.core == (0, 2) and r.reductions == 1 and not r.diracs


@settings(max_examples=30, deadline=None)
@given(SEEDS, st.integers(1, 10), st.integers(1, 4))
def test_shuffled_weighted_tokens_match_with_honest_evidence(seed, n, d):
    """Weighted tokens shuffled together with their weights, and scaled by a factor: a
    duplicate; `exact` exactly when the *stored* weights are proportional as rationals
    (reference: Fractions). The weights are compared as stored, never after the float
    normalisation (which rounds differently when the sum is taken in another order)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 1, d))
    w = rng.uniform(0.1, 1.0, size=n + 1)
    p = rng.permutation(n + 1)
    factor = float(rng.choice([1.0, 3.0, 0.1]))
    a, b = Discrete(x, w), Discrete(x[p], w[p] * factor)
    r = screen(ds([a, b]))
    assert len(r.classes) == 1 and r.classes[0].kind == "duplicates"
    wa = [Fraction(float(v)) for v in w]
    wb = [Fraction(float(v)) for v in (w[p] * factor)[np.argsort(p)]]
    proportional = all(wa[j] * wb[0] == wb[j] * wa[0] for j in range(n + 1))
    assert r.classes[0].evidence[1] == ("exact" if proportional else "numerical")
    if factor == 1.0:
        assert proportional


@settings(max_examples=30, deadline=None)
@given(SEEDS, st.integers(1, 6), st.integers(1, 4))
def test_repeated_atoms_merge(seed, k, d):
    """{a, a, b, ...} uniform equals {a, b, ...} weighted by the multiplicities, whatever they
    are (the stored integer weights, not their normalised doubles, are compared: 3 copies of
    x1 and 7 of x2 against weights 3, 7 is exact); the reference is rational arithmetic."""
    rng = np.random.default_rng(seed)
    atoms = rng.normal(size=(k, d))
    mult = rng.integers(1, 12, size=k)
    repeated = np.repeat(atoms, mult, axis=0)[rng.permutation(mult.sum())]
    r = screen(ds([Discrete(repeated), Discrete(atoms, mult.astype(float))]))
    if k == 1:
        assert [f.evidence for f in r.diracs] == ["exact", "exact"]
        return
    assert len(r.classes) == 1 and r.classes[0].kind == "duplicates"
    assert r.classes[0].class_evidence == "exact"


def test_repeated_atoms_with_general_weights_use_the_rational_fallback():
    """Non-uniform weights and repeated atoms: merged weights are sums of doubles; the exact
    check then runs in Fractions. 0.25 + 0.25 = 0.5 against 0.5, 0.5 is exact."""
    a, b = [0.3, 1.0], [2.0, -1.0]
    r = screen(ds([Discrete([a, a, b], [0.25, 0.25, 0.5]), Discrete([b, a], [0.5, 0.5])]))
    assert r.classes[0].class_evidence == "exact"
    r = screen(ds([Discrete([a, a, b], [0.25, 0.25, 0.5]), Discrete([b, a], [0.5, 0.6])]))
    assert not r.classes


@settings(max_examples=30, deadline=None)
@given(SEEDS, st.integers(1, 10), st.integers(1, 5))
def test_dyadic_translates_are_exact(seed, n, d):
    """Atoms and shift on the grid 2^-10 Z with |values| < 2^20: y + t is exact, the class is
    exact and the reported shift is t exactly."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2**20, 2**20, size=(n + 1, d)) / 1024.0
    t = rng.integers(-2**20, 2**20, size=d) / 1024.0
    r = screen(ds([Discrete(x), Discrete((x + t)[::-1])]))
    assert exact_translate(x, x + t)
    c = r.classes[0]
    assert c.class_evidence == "exact" and np.array_equal(c.shifts[1], t)
    assert r.reductions == 1


@settings(max_examples=40, deadline=None)
@given(SEEDS, st.integers(1, 10), st.integers(1, 5), st.floats(-6, 6))
def test_float_translates_match_with_honest_evidence(seed, n, d, log_scale):
    """y + t rounded in floating point: always a match; `exact` exactly when the rational
    differences are all equal (reference: Fractions), `numerical` otherwise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 1, d)) * 10.0**log_scale
    t = rng.normal(size=d) * 10.0 ** rng.uniform(-3, 3) * 10.0**log_scale
    y = x + t
    r = screen(ds([Discrete(x), Discrete(y), Discrete(rng.normal(size=(n + 1, d)))]))
    c = class_of(r, 1)
    assert c is not None and c.members == (0, 1)
    assert c.evidence[1] == ("exact" if exact_translate(x, y) else "numerical")
    # the reported shift is t up to the rounding of the coordinates
    tol = 8 * 2.0**-53 * (np.abs(x).max(axis=0) + np.abs(y).max(axis=0))
    assert np.all(np.abs(np.array(c.shifts[1]) - t) <= tol)


@settings(max_examples=40, deadline=None)
@given(SEEDS, st.integers(1, 10), st.integers(1, 5), st.floats(-8, -2))
def test_near_translates_do_not_match(seed, n, d, log_eps):
    """A translate with one coordinate perturbed by 10^log_eps relative (>= 1e-8, i.e. more
    than 10^7 ulps) is not a relation: no class."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n + 2, d))
    y = x + rng.normal(size=d)
    j, l = rng.integers(n + 2), rng.integers(d)
    y[j, l] += 10.0**log_eps * max(1.0, abs(y[j, l]))
    r = screen(ds([Discrete(x), Discrete(y)]))
    assert not r.classes and r.core == (0, 1)


@settings(max_examples=20, deadline=None)
@given(SEEDS, st.integers(2, 40), st.integers(1, 8), st.integers(1, 6))
def test_random_data_has_no_finding(seed, N, n, d):
    """Generic continuous data: no Dirac, no class, the core is everything."""
    rng = np.random.default_rng(seed)
    r = screen(Dataset.from_tokens([rng.normal(size=(n + 1, d)) for _ in range(N)]))
    assert not r.classes and not r.diracs and r.core == tuple(range(N))


def test_dirac_masses_and_grouped_class():
    """Repeated atoms at one point, a degenerate box and a zero-covariance mixture with equal
    means are exact Diracs; atoms one ulp apart are a numerical Dirac; 40 duplicates are one
    class with 39 relations and one report line."""
    rng = np.random.default_rng(1)
    p = np.array([0.1, 2.0])
    base = rng.normal(size=(5, 2))
    dists = [Discrete([p, p, p]), UniformBox(p, p),
             GaussianMixture([0.3, 0.7], [p, p], np.zeros((2, 2, 2))),
             Discrete([p, np.nextafter(p, 1.0)])]
    dists += [Discrete(base[rng.permutation(5)]) for _ in range(40)]
    r = screen(ds(dists))
    assert [f.evidence for f in r.diracs] == ["exact"] * 3 + ["numerical"]
    assert len(r.classes) == 1 and r.classes[0].size == 40
    assert r.reductions == 4 + 39 == r.exact_reductions + 1
    assert len(r.describe()) == 5 and "(+36 more)" in r.describe()[-1]
    assert r.core == (4,)
    assert r.to_dict()["classes"][0]["relations"] == 39


def test_boxes_and_mixtures():
    """Boxes: exact translate (dyadic), float translate (numerical or exact by the reference),
    not a near-translate. Mixtures: duplicates up to component order; a zero-covariance mixture
    equals the discrete law of its means."""
    low, high = np.array([0.0, 0.5]), np.array([1.0, 0.75])
    t = np.array([0.1, -3.7])
    S = np.stack([np.eye(2), [[2.0, 0.5], [0.5, 1.0]]])
    m = np.array([[0.0, 1.0], [2.0, 3.0]])
    dists = [UniformBox(low, high), UniformBox(low + 0.25, high + 0.25),
             UniformBox(low + t, high + t), UniformBox(low, high * (1 + 1e-9)),
             GaussianMixture([0.25, 0.75], m, S), GaussianMixture([0.75, 0.25], m[::-1], S[::-1]),
             GaussianMixture([0.5, 0.5], m, np.zeros((2, 2, 2))), Discrete(m[::-1])]
    r = screen(ds(dists))
    box = class_of(r, 0)
    assert box.members == (0, 1, 2) and box.evidence[1] == "exact"
    corners = np.stack([low, high])
    assert box.evidence[2] == ("exact" if exact_translate(corners, corners + t) else "numerical")
    assert class_of(r, 3) is None
    assert class_of(r, 4).members == (4, 5) and class_of(r, 4).class_evidence == "exact"
    assert class_of(r, 6).members == (6, 7) and class_of(r, 6).class_evidence == "exact"


def test_exact_subclass_kept_exact_under_a_numerical_link():
    """Three exact copies of a law and two exact copies of its float translate: the class
    root is the larger exact subclass, so 3 of the 4 relations are exact."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 3))
    y = x + np.array([0.1, 0.2, 0.3])
    assert not exact_translate(x, y)
    r = screen(ds([Discrete(y), Discrete(x), Discrete(x[::-1]), Discrete(y[::-1]), Discrete(x)]))
    c = r.classes[0]
    assert c.members[0] == 1 and c.size == 5 and c.exact_relations == 3


def _nullity(dataset: Dataset, seed: int = 0) -> int:
    """Reference: number of dependencies from the SVD of the affine-projected LSE matrix on
    many multi-scale probes (relative threshold 1e-9, far from both round-off ~1e-14 and the
    smallest genuine singular value of these small well-separated sets)."""
    rng = np.random.default_rng(seed)
    z = np.concatenate([rng.normal(size=(200, dataset.dim)) * s for s in (0.5, 1.0, 2.0)])
    F = dataset.lse(z)
    B = np.column_stack([np.ones(len(z)), z])
    Q, _ = np.linalg.qr(B)
    P = F - Q @ (Q.T @ F)
    P /= np.linalg.norm(F, axis=0)
    s = np.linalg.svd(P, compute_uv=False)
    return int(np.sum(s <= 1e-9 * max(s.max(), 1e-300))) if s.size else 0


def test_nullity_adds_up():
    """dim dep(all) = reductions + dim dep(core) (module docstring), on a set with exact
    duplicates, translates, Diracs and a convolution triple the screen cannot see
    (Binomial(2, 1/2) = Bernoulli(1/2) * Bernoulli(1/2) shifted)."""
    rng = np.random.default_rng(5)
    base = [rng.normal(size=(4, 2)) for _ in range(4)]
    bern = np.array([[0.0, 0.0], [1.0, 0.0]])
    binom = Discrete([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], [0.25, 0.5, 0.25])
    dists = [Discrete(b) for b in base] + [Discrete(bern), binom]
    dists += [Discrete(base[0][::-1]), Discrete(base[1] + 0.5), Discrete(base[1] + 1.25),
              Discrete([[1.0, 1.0]] * 3), Discrete(bern + 2.0)]
    full = ds(dists)
    r = screen(full)
    core = core_dataset(full, r)
    assert core.names == tuple(full.names[i] for i in r.core)
    assert r.reductions == 5
    assert _nullity(full) == r.reductions + _nullity(core) == 5 + 1


def test_order_of_distributions_does_not_change_the_reduction():
    """Shuffling the distributions permutes the findings but keeps their number and sizes."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(5, 3))
    dists = [Discrete(x), Discrete(x + 1.0), Discrete(x[::-1]), Discrete(np.ones((2, 3))),
             Discrete(rng.normal(size=(5, 3))), Discrete(x * 2.0), Discrete(x * 2.0 + 0.5)]
    r0 = screen(ds(dists))
    perm = rng.permutation(len(dists))
    r1 = screen(ds([dists[i] for i in perm]))
    assert r0.reductions == r1.reductions == 4
    assert sorted(c.size for c in r0.classes) == sorted(c.size for c in r1.classes)


def test_chunked_verification_gives_the_same_result(monkeypatch):
    """Verification in chunks of a few entries (many chunks) finds the same classes."""
    import ntkcheck.injectivity.screen as module
    rng = np.random.default_rng(11)
    x = rng.normal(size=(6, 3))
    dists = [Discrete(x + k) for k in range(5)] + [Discrete(x[::-1]), Discrete(x * 3.0)]
    whole = screen(ds(dists)).to_dict()
    monkeypatch.setattr(module, "CHUNK", 7)
    assert screen(ds(dists)).to_dict() == whole


def test_coordinates_near_overflow():
    """Atoms near the largest double: differences between atoms overflow in floating point,
    yet an exact translate is found exactly and a sign flip is no relation."""
    x = np.array([[1.5e308, 0.0], [-1.5e308, 1.0], [0.0, 2.0]])
    t = np.array([0.0, 0.5])
    r = screen(ds([Discrete(x), Discrete(x + t), Discrete(-x)]))
    assert [c.members for c in r.classes] == [(0, 1)]
    assert r.classes[0].class_evidence == "exact"


def test_overflowing_pair_differences_go_to_the_rational_check():
    """Candidate pairs whose coordinate differences overflow are decided in Fractions: a
    translate by t = -2.5 * 2^1023 (itself beyond the largest double) is exact; the same with
    one coordinate changed is rejected; no floating-point warning escapes."""
    from ntkcheck.injectivity.screen import _families, _verify
    h = 2.0**1023
    x = np.array([[1.5 * h, 0.0], [h, 1.0]])
    y = np.array([[-h, 0.0], [-1.5 * h, 1.0]])  # x + t exactly, t = (-2.5 h, 0)
    z = np.array([[-h, 0.0], [-1.5 * h, 3.0]])
    fam = _families(ds([Discrete(x), Discrete(y), Discrete(z)]))[0]
    v = _verify(fam, np.array([1, 2]), np.array([0, 0]))
    assert v.exact.tolist() == [True, False] and v.numerical.tolist() == [True, False]


# ---- issue 19: multiplicities, stored weights, written values, numerical matches --------------

def test_repeated_atoms_against_integer_weights_from_a_file_are_exact(tmp_path):
    """3 copies of x1 and 7 of x2 (uniform) against atoms x1, x2 with stored weights 3, 7 in
    an .npz: the law is the same, exactly (3 * 7 == 7 * 3 on the stored weights). The file
    loader normalises weights in floating point (3 * fl(7/10) != 7 * fl(3/10)), so the screen
    must read the stored weights (Discrete.rational); with the normalised ones it said
    `numerical`. Through analyze: one exact duplicate, exact evidence."""
    from ntkcheck import analyze, load_dataset

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3))
    other = rng.normal(size=(10, 3))
    tokens = np.zeros((3, 10, 3))
    weights = np.zeros((3, 10))
    tokens[0] = np.repeat(x, [3, 7], axis=0)[rng.permutation(10)]
    weights[0] = 1.0
    tokens[1, :2] = x
    weights[1, :2] = [3.0, 7.0]
    tokens[2] = other
    weights[2] = 1.0
    np.savez(tmp_path / "m.npz", tokens=tokens, weights=weights)
    data = load_dataset(tmp_path / "m.npz")
    r = screen(data)
    assert len(r.classes) == 1 and r.classes[0].members == (0, 1)
    assert r.classes[0].kind == "duplicates" and r.classes[0].class_evidence == "exact"
    res = analyze(data, exact="never")
    assert res.verdict == "not_injective" and res.evidence == "exact", res.reason
    assert res.dependencies[0].exact


@pytest.mark.parametrize("rel", [1e-12, -1e-12, 1e-9])
def test_a_weight_off_by_1e12_relative_is_no_duplicate(rel):
    """The numerical match compares the weights too (within ULPS (n + n') u ~ 1e-15
    relative): the same atoms with one weight changed by 1e-12 relative are not duplicates,
    and analyze must not call them dependent (kills the mutant that drops the weight test
    from the numerical match: a false `not_injective` duplicate)."""
    from ntkcheck import analyze

    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 2))
    w = rng.uniform(0.5, 1.0, size=4)
    w2 = w.copy()
    w2[2] *= 1.0 + rel
    others = [Discrete(rng.normal(size=(4, 2))) for _ in range(4)]
    data = ds([Discrete(x, w), Discrete(x[[3, 1, 0, 2]], w2[[3, 1, 0, 2]])] + others)
    r = screen(data)
    assert not r.classes and not r.diracs
    res = analyze(data, exact="never")
    assert res.verdict != "not_injective", res.reason


def test_numerically_screened_data_never_get_exact_evidence():
    """Every distribution screened out, but only numerically (atoms 1 ulp apart: Dirac masses
    only up to the rounding of the stored values): the evidence is not `exact` (kills the
    mutant that reports `exact` for a screen-only verdict without an exact reduction)."""
    from ntkcheck import analyze

    one = np.spacing(1.0)
    data = ds([Discrete([[1.0], [1.0 + one]]), Discrete([[3.0], [3.0 + 2 * np.spacing(3.0)]])])
    r = screen(data)
    assert [f.evidence for f in r.diracs] == ["numerical", "numerical"] and not r.core
    res = analyze(data, exact="never")
    assert not (res.verdict == "not_injective" and res.evidence == "exact"), res.reason
    assert not any(dep.exact for dep in res.dependencies)


def test_written_values_decide_the_screen_evidence():
    """Spec decimals that are not binary64 numbers: "0.500000000000000001" and 0.5 round to
    the same double, so the doubles are exact duplicates, but the written values differ by
    1e-18: no class (a near-dependency at the precision of the input, never a dependency of
    the data as written), both stay in the core for the dense test. Written values that are
    equal (0.1 and "1/10") are an `exact` duplicate although 0.1 is not a binary64 number; a
    written Dirac (all atoms "0.1") is exact, atoms 0.1 and "0.1000000000000000001" are not a
    Dirac as written and go back to the core."""
    from ntkcheck.io import parse_spec

    def spec(*entries):
        return parse_spec({"distribution": [
            {"name": f"d{i}", "kind": "discrete", "atoms": a, **({"weights": w} if w else {})}
            for i, (a, w) in enumerate(entries)]})

    g = [[1, 2], [-1, 3]]
    data = spec(([[0, "0.500000000000000001"]] + g, None), ([[0, "0.5"]] + g, None))
    assert data.distributions[0].rounded_inputs == ("atoms",)
    assert data.distributions[1].rounded_inputs == ()
    r = screen(data)
    assert not r.classes and r.core == (0, 1)
    data = spec(([["0.1", 2], [3, 4]], ["1/3", "2/3"]), ([["1/10", 2], [3, 4]], [1, 2]))
    r = screen(data)
    assert len(r.classes) == 1 and r.classes[0].class_evidence == "exact"
    data = spec(([["0.1"], ["0.1"]], None), ([["0.1"], ["0.1000000000000000001"]], None),
                ([[1], [2]], None))
    r = screen(data)
    assert [(f.index, f.evidence) for f in r.diracs] == [(0, "exact")] and r.core == (1, 2)
