"""Near pairs and near sets (``near_dependency.pairs`` / ``sets``, ``--max-pairs``) and the
one-pass clean-up of ``--suggest-drop`` (``--max-rounds``).

References are independent: every pair distance by brute force on the columns of F (numpy,
not through R), the components by a plain union-find written here, and the reduced data
re-analysed from scratch. The augmented corpus is the one of benchmarks/bench_neardup.py,
small (30 bases x 6 sequences)."""

from __future__ import annotations

import itertools
import json
import re
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ntkcheck as nk
from ntkcheck.cli import app
from ntkcheck.injectivity.pairs import components, near_pairs
from ntkcheck.injectivity.summary import MAX_PAIRS, PAIR_LIMIT
from ntkcheck.neardep import DEFAULT_MAX_ROUNDS, drop_threshold
from ntkcheck.report import json as json_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_neardup  # noqa: E402

jsonschema = pytest.importorskip("jsonschema")


def run(*args):
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def planted_columns(seed=0, M=200, N=90):
    """Unit columns of F: generic ones, plus a chain 3 ~ 5 ~ 50 (1e-9 and 0.02 apart), a pair
    10 ~ 80 at 0.04, a pair 20 ~ 60 just beyond the limit (0.0501) and one just inside
    (30 ~ 70 at 0.0499)."""
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(M, N))
    F /= np.linalg.norm(F, axis=0)

    def near(i, d):
        u = rng.normal(size=M)
        u -= (u @ F[:, i]) * F[:, i]
        u /= np.linalg.norm(u)
        # a unit vector at distance d from F[:, i] (angle 2 asin(d / 2); tiny d survives)
        theta = 2.0 * np.arcsin(d / 2.0)
        return np.cos(theta) * F[:, i] + np.sin(theta) * u

    F[:, 5] = near(3, 1e-9)
    F[:, 50] = near(5, 0.02)
    F[:, 80] = near(10, 0.04)
    F[:, 60] = near(20, 0.0501)
    F[:, 70] = near(30, 0.0499)
    return F


def brute_pairs(F, limit):
    out = {}
    for i, j in itertools.combinations(range(F.shape[1]), 2):
        d = float(np.linalg.norm(F[:, i] - F[:, j]))
        if d <= limit:
            out[(i, j)] = d
    return out


def union_find(n, edges):
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        parent[find(a)] = find(b)
    groups: dict[int, set] = {}
    for x in range(n):
        groups.setdefault(find(x), set()).add(x)
    return {frozenset(g) for g in groups.values() if len(g) > 1}


def sets_of(labels):
    out: dict[int, set] = {}
    for x, lab in enumerate(labels):
        out.setdefault(int(lab), set()).add(x)
    return {frozenset(g) for g in out.values() if len(g) > 1}


# ---------------------------------------------------------------------------------------------
# the pair search
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block_bytes", [8 * 2**20, 4096])
def test_near_pairs_equal_brute_force(block_bytes):
    """Every pair within the limit is found, none beyond (0.0499 in, 0.0501 out), distances
    agree with numpy on F to 1e-12 absolute and 1e-6 relative (the 1e-9 pair included: no
    cancellation), whatever the tile size (4 KiB tiles: many tiles, every code path)."""
    F = planted_columns()
    R = np.linalg.qr(F, mode="r")
    ref = brute_pairs(F, PAIR_LIMIT)
    assert (30, 70) in ref and (20, 60) not in ref
    found = near_pairs(R, limit=PAIR_LIMIT, block_bytes=block_bytes)
    got = {(int(i), int(j)): float(d) for i, j, d in zip(found.first, found.second,
                                                          found.distance)}
    assert set(got) == set(ref) and found.total == len(ref)
    for key, d in ref.items():
        assert got[key] == pytest.approx(d, rel=1e-6, abs=1e-12)
    assert list(found.distance) == sorted(found.distance)


def test_near_pairs_of_a_square_factor_that_is_not_triangular():
    """A square factor with the same column distances but not upper triangular (Q R for a
    random orthogonal Q): the triangle's pruning must not apply, and the pairs are the same."""
    F = planted_columns(seed=3)
    R = np.linalg.qr(F, mode="r")
    Q = np.linalg.qr(np.random.default_rng(9).normal(size=R.shape))[0]
    ref = brute_pairs(F, PAIR_LIMIT)
    found = near_pairs(Q @ R, limit=PAIR_LIMIT, block_bytes=4096)
    assert {(int(i), int(j)) for i, j in zip(found.first, found.second)} == set(ref)


def test_near_pairs_of_a_wide_matrix_and_with_candidates():
    """With fewer rows than columns (F itself, not triangular) the same pairs; a candidate mask
    leaves out exactly the pairs touching the excluded columns."""
    F = planted_columns(seed=1, M=60, N=90)
    ref = brute_pairs(F, PAIR_LIMIT)
    found = near_pairs(F, limit=PAIR_LIMIT)
    assert {(int(i), int(j)) for i, j in zip(found.first, found.second)} == set(ref)
    mask = np.ones(90, dtype=bool)
    mask[[5, 80]] = False
    found = near_pairs(F, limit=PAIR_LIMIT, candidates=mask)
    assert {(int(i), int(j)) for i, j in zip(found.first, found.second)} == {
        k for k in ref if 5 not in k and 80 not in k}


def test_cap_keeps_the_closest_and_the_forest_gives_every_threshold():
    """max_pairs keeps the closest pairs and counts all of them; the spanning forest's links
    closer than t give the same sets as union-find over all pairs closer than t, for every t."""
    F = planted_columns(seed=2)
    R = np.linalg.qr(F, mode="r")
    ref = brute_pairs(F, PAIR_LIMIT)
    found = near_pairs(R, limit=PAIR_LIMIT, max_pairs=2, block_bytes=4096)
    # (3, 50) and (5, 50) are equally close up to 1e-9: either may come second
    np.testing.assert_allclose(found.distance, sorted(ref.values())[:2], rtol=1e-6, atol=1e-12)
    for i, j, d in zip(found.first, found.second, found.distance):
        assert ref[(int(i), int(j))] == pytest.approx(d, rel=1e-6, abs=1e-12)
    assert found.total == len(ref)
    a, b, d = found.links
    assert len(a) <= F.shape[1] - 1
    for t in (1e-6, 0.01, 0.03, 0.045, PAIR_LIMIT * 1.0001):
        keep = d < t
        want = union_find(F.shape[1], [k for k, v in ref.items() if v < t])
        assert sets_of(components(F.shape[1], a[keep], b[keep])) == want


def test_pair_search_memory_is_bounded_by_the_tiles():
    """The search holds a few tiles, not an N x N array: its tracemalloc peak on a 1500 x 1500
    factor (18 MB) with 64 KiB panels stays below 2 MB, with every column a candidate and the
    triangle pruning nothing (all columns near one axis)."""
    N = 1500
    R = bench_neardup.synthetic_factor(N, "unpruned")
    tracemalloc.start()
    found = near_pairs(R, limit=PAIR_LIMIT, block_bytes=2**16)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * 2**20, peak
    assert found.total < 50  # columns about 0.07 apart: few pairs, all tiles computed


# ---------------------------------------------------------------------------------------------
# the augmented corpus: sets in the report, one-round clean-up
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("aug") / "corpus.npz"
    np.savez(path, **bench_neardup.augmented_corpus(30))
    return path


@pytest.fixture(scope="module")
def corpus_doc(corpus):
    r = run(corpus, "--json", "--exact", "never", "--fail-below", "1e-4", "--suggest-drop")
    assert r.exit_code == 1, r.output
    return json.loads(r.stdout)


def test_every_jitter_copy_is_in_the_set_of_its_base(corpus_doc):
    """Each base sequence's set holds its 1e-7 jitter copy (a dense near pair), its swap and
    shift copies (structural), with the base as representative; sets are disjoint, in dataset
    order, their links span them (len(names) - 1 links joining them all)."""
    validate = jsonschema.Draft7Validator(json_report.schema())
    assert not list(validate.iter_errors(corpus_doc))
    near = corpus_doc["near_dependency"]
    names = corpus_doc["names"]
    position = {n: k for k, n in enumerate(names)}
    sets = near["sets"]
    seen: set[str] = set()
    for s in sets:
        assert not seen & set(s["names"])
        seen |= set(s["names"])
        assert [position[n] for n in s["names"]] == sorted(position[n] for n in s["names"])
        assert len(s["links"]) == len(s["names"]) - 1
        idx = {n: k for k, n in enumerate(s["names"])}
        labels = components(len(s["names"]), np.array([idx[x["names"][0]] for x in s["links"]]),
                            np.array([idx[x["names"][1]] for x in s["links"]]))
        assert len(set(labels)) == 1
    assert [position[s["names"][0]] for s in sets] == sorted(position[s["names"][0]] for s in sets)
    by_rep = {s["representative"]: set(s["names"]) for s in sets}
    for b in range(30):
        base = f"s{b:03d}"
        assert {base, f"{base}_swap", f"{base}_jit", f"{base}_shift"} <= by_rep[base]


def test_pair_counts_match_between_json_and_text(corpus, corpus_doc):
    """len(pairs) + pairs_omitted is the number of pairs within the limit (structural pairs +
    dense ones), and the text report prints that number, the listed count and the sets."""
    near = corpus_doc["near_dependency"]
    total = len(near["pairs"]) + near["pairs_omitted"]
    assert near["pairs_omitted"] == 0 and near["max_pairs"] == MAX_PAIRS
    structural = sum(len(c["names"]) - 1 for c in corpus_doc["structure"]["classes"])
    assert sum(p["source"] == "structural" for p in near["pairs"]) == structural
    text = run(corpus, "--exact", "never").stdout
    m = re.search(r"near pairs (\d+) closer than 0.05 \((\d+) structural at distance 0; "
                  r"all (\d+) in --json\)", text)
    assert m and int(m.group(1)) == total == int(m.group(3))
    assert int(m.group(2)) == structural
    m = re.search(r"near sets (\d+) of (\d+) sequences", text)
    assert m and int(m.group(1)) == len(near["sets"])
    assert int(m.group(2)) == sum(len(s["names"]) for s in near["sets"])
    assert "more in --json" not in text


def test_max_pairs_caps_the_list_not_the_count_or_the_sets(corpus, corpus_doc):
    """--max-pairs 5: five pairs listed (the closest), pairs_omitted = total - 5, the same sets;
    the text says which part is in --json; --max-pairs -1 is a one-line error (exit 2)."""
    near = corpus_doc["near_dependency"]
    total = len(near["pairs"])
    doc = json.loads(run(corpus, "--json", "--exact", "never", "--max-pairs", "5").stdout)
    capped = doc["near_dependency"]
    assert capped["pairs"] == near["pairs"][:5]
    assert capped["pairs_omitted"] == total - 5 and capped["max_pairs"] == 5
    assert capped["sets"] == near["sets"]
    text = run(corpus, "--exact", "never", "--max-pairs", "5").stdout
    assert f"near pairs {total} closer than 0.05" in text
    assert "the closest 5 in --json, --max-pairs" in text
    r = run(corpus, "--max-pairs", "-1")
    assert r.exit_code == 2 and "--max-pairs" in r.stderr


def test_suggest_drop_cleans_the_corpus_in_one_round(corpus_doc):
    """--fail-below 1e-4 --suggest-drop: one round; every swap, shift and jitter copy dropped
    (the replacement copies that are duplicates too), no base, no deletion; the reduced data
    are re-verified injective with certified evidence and meet the margin."""
    s = corpus_doc["suggest_drop"]
    assert s["success"] and s["rounds"] == 1 and s["max_rounds"] == DEFAULT_MAX_ROUNDS
    drop = set(s["drop"])
    for b in range(30):
        base = f"s{b:03d}"
        assert {f"{base}_swap", f"{base}_jit", f"{base}_shift"} <= drop
        assert base not in drop and f"{base}_del" not in drop
    assert s["after"]["verdict"] == "injective" and s["after"]["evidence"] == "certified"
    assert s["after"]["margin"]["below"] is False
    jit = [n for n in drop if n.endswith("_jit")]
    assert all(s["reasons"][n].startswith("near set of") for n in jit)


def test_write_clean_output_is_certified(corpus, tmp_path):
    """The file written by --write-clean analyses injective (certified), exit 0, and holds
    exactly the kept sequences."""
    out = tmp_path / "clean.npz"
    r = run(corpus, "--exact", "never", "--fail-below", "1e-4", "--write-clean", out, "-q")
    assert r.exit_code == 1 and out.exists()
    doc = json.loads(run(out, "--json", "--exact", "never", "--fail-below", "1e-4").stdout)
    assert doc["verdict"] == "injective" and doc["evidence"] == "certified"
    assert not any(n.endswith(("_swap", "_jit", "_shift")) for n in doc["names"])


def test_drop_threshold_breaks_every_pair_that_forces_the_margin():
    """A near pair at distance d puts sigma_min <= d / sqrt(2); the threshold is sqrt(2) x the
    margin (or GAP x the round-off level), capped at the pair limit."""
    X = np.random.default_rng(5).normal(size=(14, 6, 2))
    X[12] = X[3] + 1e-9 * np.random.default_rng(6).normal(size=(6, 2))
    res = nk.analyze(X, exact="never")
    assert drop_threshold(res, 1e-4) == pytest.approx(np.sqrt(2) * 1e-4)
    assert drop_threshold(res, 1.0) == PAIR_LIMIT
    assert 0 < drop_threshold(res) < 1e-8
    pair = res.near_dependency["pairs"][0]
    assert pair["names"] == ["seq3", "seq12"]
    assert res.near_dependency["scaled_smallest_singular_value"] <= pair["distance"] / np.sqrt(2)


def test_max_rounds_is_explicit_and_reported():
    """max_rounds is validated (an integer >= 1), and a suggestion stopped by it says so; the
    CLI option --max-rounds 0 is a one-line error."""
    X = np.random.default_rng(3).normal(size=(10, 4, 2))
    with pytest.raises(nk.InputError, match="max_rounds"):
        nk.suggest_drop(X, max_rounds=0, exact="never")
    s = nk.suggest_drop(X, margin=0.9, max_rounds=1, exact="never")
    assert s.rounds == 1 and not s.success
    assert "stopped after max_rounds = 1" in s.summary()
    assert s.to_dict()["max_rounds"] == 1
    r = run(bench_neardup.__file__, "--max-rounds", "0")
    assert r.exit_code == 2 and "--max-rounds" in r.stderr


def test_analyze_rejects_a_bad_max_pairs():
    """max_pairs must be a non-negative integer or None (InputError naming it)."""
    X = np.random.default_rng(0).normal(size=(5, 3, 2))
    for bad in (-1, 2.5, True):
        with pytest.raises(nk.InputError, match="max_pairs"):
            nk.analyze(X, exact="never", max_pairs=bad)
    assert nk.analyze(X, exact="never", max_pairs=None).near_dependency["max_pairs"] is None
