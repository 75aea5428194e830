"""Near-dependency scores, near pairs, --fail-below, suggest_drop / --suggest-drop, --write-clean.

Reference values are independent computations on the same F_perp: the least-squares distance
of each column to the span of the others (numpy lstsq, an SVD-based solver) and numpy's
singular values; the re-verification of a drop suggestion is checked by running ``analyze``
again on the kept sequences.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

import ntkcheck as nk
from ntkcheck.cli import app
from ntkcheck.injectivity.features import feature_matrix
from ntkcheck.injectivity.probes import auto_scales, make_probes, make_whitening, probe_settings
from ntkcheck.results import EXIT_BELOW_MARGIN
from ntkcheck.injectivity.summary import PAIR_LIMIT
from ntkcheck.injectivity.spectrum import svd_spectrum
from ntkcheck.report import json as json_report

jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
# The official OASIS SARIF 2.1.0 schema, vendored unmodified (provenance: tests/schemas/README.md).
SARIF_SCHEMA = json.loads((ROOT / "tests" / "schemas" / "sarif-schema-2.1.0.json").read_text())
ANNOTATION = re.compile(r"^::(error|warning|notice) file=[^,:]+,title=[^,:]+::.+$")


def run(*args):
    return CliRunner().invoke(app, ["analyze", *map(str, args)])


def validate(doc, schema):
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def validate_sarif(log):
    """Validate a SARIF log against the official schema (draft-04, as the schema declares),
    with its ``uri``/``date-time`` formats checked too."""
    v = jsonschema.Draft4Validator(SARIF_SCHEMA, format_checker=jsonschema.FormatChecker())
    errors = sorted(v.iter_errors(log), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def features_of(dataset, seed=0):
    """F_perp of the dense test's first draw (same geometry, scales, probes and seed)."""
    geom = make_whitening(dataset, True)
    scales, M = probe_settings(auto_scales(geom), None, len(dataset), dataset.dim)
    return feature_matrix(dataset, geom, make_probes(geom, M, scales, seed))


def lstsq_distances(A):
    """Distance of each column of A to the span of the others, by least squares (reference)."""
    out = np.empty(A.shape[1])
    for i in range(A.shape[1]):
        others = np.delete(A, i, axis=1)
        x, *_ = np.linalg.lstsq(others, A[:, i], rcond=None)
        out[i] = np.linalg.norm(A[:, i] - others @ x)
    return out


def near_duplicates(seed=5, jitter=1e-9):
    """14 random sequences; seq12 = seq3 + jitter noise (near-duplicate), seq13 = seq7 + t +
    jitter noise (near-translate)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(14, 6, 2))
    X[12] = X[3] + jitter * rng.normal(size=(6, 2))
    X[13] = X[7] + np.array([0.75, -1.5]) + jitter * rng.normal(size=(6, 2))
    return X


# ---------------------------------------------------------------------------------------------
# scores
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_least_squares_distance(seed):
    """Spectrum.scores (triangular inverse of R) equals the least-squares distance of each unit
    column to the span of the others; rtol 1e-9: both are backward stable and F_perp has
    condition number < 1e4 here (error ~ cond * N * u)."""
    X = np.random.default_rng(seed).normal(size=(15, 5, 3))
    feats = features_of(nk.as_dataset(X))
    cs = svd_spectrum(feats).scores()
    assert cs.method == "triangular"
    ref = lstsq_distances(feats.perp)
    np.testing.assert_allclose(cs.distance, ref, rtol=1e-9, atol=0)
    res = nk.analyze(X, exact="never")
    np.testing.assert_allclose([res.scores[f"seq{i}"] for i in range(15)], ref, rtol=1e-9)


def test_scores_bound_the_scaled_smallest_singular_value():
    """sigma_min <= min score <= sqrt(N) sigma_min, with numpy's singular values of F_perp as
    the reference (relative slack 1e-10 for round-off)."""
    for seed in range(4):
        X = np.random.default_rng(10 + seed).normal(size=(12, 4, 2))
        feats = features_of(nk.as_dataset(X))
        sigma = np.linalg.svd(feats.perp, compute_uv=False)[-1]
        res = nk.analyze(X, exact="never")
        low = min(res.scores.values())
        assert sigma * (1 - 1e-10) <= low <= np.sqrt(12) * sigma * (1 + 1e-10)
        assert res.near_dependency["scaled_smallest_singular_value"] == pytest.approx(
            sigma, rel=1e-10, abs=0)


def test_planted_near_duplicates_score_lowest_and_match_lstsq():
    """1e-9 jitter: the four sequences of the two planted pairs score lowest (< 1e-7, the others
    > 1e-3); the SVD path agrees with least squares to 1e-5 relative (condition ~1e9: error
    ~ u / score ~ 1e-7); both pairs are listed with their kind and a distance < 1e-7."""
    X = near_duplicates()
    res = nk.analyze(X, exact="never")
    assert res.verdict == "injective"
    order = sorted(res.scores, key=res.scores.get)
    assert set(order[:4]) == {"seq3", "seq12", "seq7", "seq13"}
    assert all(res.scores[n] < 1e-7 for n in order[:4])
    assert all(res.scores[n] > 1e-3 for n in order[4:])
    feats = features_of(nk.as_dataset(X))
    cs = svd_spectrum(feats).scores()
    assert cs.method == "svd"
    np.testing.assert_allclose(cs.distance, lstsq_distances(feats.perp), rtol=1e-5)
    pairs = {tuple(p["names"]): p for p in res.near_dependency["pairs"]}
    assert pairs[("seq3", "seq12")]["kind"] == "near_duplicate"
    assert pairs[("seq7", "seq13")]["kind"] == "near_translate"
    assert pairs[("seq7", "seq13")]["shift"] == pytest.approx([0.75, -1.5], abs=1e-8)
    assert all(p["distance"] < 1e-7 for p in pairs.values())
    lowest = {d["name"]: d for d in res.near_dependency["lowest"]}
    assert lowest["seq12"]["closest"][0]["name"] == "seq3"
    assert lowest["seq12"]["closest"][0]["coefficient"] == pytest.approx(1.0, abs=1e-6)


def test_pair_distance_is_accurate_where_the_gram_entry_cancels():
    """A pair distance 1e-12 is computed from the columns of R, not from sqrt(2 - 2 G_ij) (which
    rounds to 0 or 1e-8): compared with ||a_i - a_j|| of numpy on F_perp, to 1e-3 relative."""
    X = near_duplicates(seed=8, jitter=1e-12)
    res = nk.analyze(X, exact="never")
    feats = features_of(nk.as_dataset(X))
    ref = np.linalg.norm(feats.perp[:, 3] - feats.perp[:, 12])
    pair = next(p for p in res.near_dependency["pairs"] if p["names"] == ["seq3", "seq12"])
    assert pair["distance"] == pytest.approx(ref, rel=1e-3, abs=0)
    assert 0 < ref < 1e-10


def test_structural_sequences_score_zero():
    """Dirac masses, class members and their representatives score exactly 0; they are
    described by the structure and the near sets, so ``lowest`` lists the lowest-scoring
    sequences outside the structure (LISTED of them); a core sequence keeps a positive score."""
    res = nk.analyze(nk.load_dataset(SAMPLES / "tokens_dependent.npz"))
    structural = {"base", "translated", "other", "permuted"}
    for name in structural:
        assert res.scores[name] == 0.0
    lowest = res.near_dependency["lowest"]
    assert len(lowest) == 10 and not structural & {d["name"] for d in lowest}
    assert all(d["reason"] == "dense" and d["closest"] for d in lowest)
    others = sorted(v for k, v in res.scores.items() if k not in structural)
    assert [d["score"] for d in lowest] == others[:10]
    sets = {frozenset(s["names"]): s["representative"] for s in res.near_dependency["sets"]}
    assert sets == {frozenset({"base", "translated"}): "base",
                    frozenset({"other", "permuted"}): "other"}
    assert min(v for k, v in res.scores.items()
               if k not in ("base", "translated", "other", "permuted")) > 1e-3
    X = np.random.default_rng(4).normal(size=(6, 4, 2))
    X[2] = X[2, 0]  # a Dirac mass
    res = nk.analyze(X, exact="never")
    assert res.scores["seq2"] == 0.0


def test_exact_dependency_in_the_dense_test_scores_zero():
    """Binomial(2, 1/2) = Bernoulli(1/2) * Bernoulli(1/2): LSE_bin = 2 LSE_bern, a dense
    relation (not structural); both score 0 ('dependent'), and the pair is 'proportional' with
    ratio 2 (column norms nu_bin / nu_bern), to 1e-6."""
    dists = [nk.Discrete([[0.0], [1.0], [2.0]], [0.25, 0.5, 0.25]), nk.Discrete([[0.0], [1.0]]),
             nk.Discrete([[-1.0], [0.5], [3.0]], [0.2, 0.3, 0.5])]
    res = nk.analyze(dists, names=["bin", "bern", "other"], exact="never")
    assert res.verdict == "not_injective"
    assert res.scores["bin"] == 0.0 and res.scores["bern"] == 0.0 and res.scores["other"] > 0
    pair = next(p for p in res.near_dependency["pairs"] if set(p["names"]) == {"bin", "bern"})
    assert pair["kind"] == "proportional"
    ratio = pair["ratio"] if pair["names"][0] == "bin" else 1 / pair["ratio"]
    assert ratio == pytest.approx(2.0, rel=1e-6, abs=0)


def test_result_round_trips_with_scores_and_margin():
    """from_dict(to_dict()) keeps scores, near_dependency and margin."""
    res = nk.apply_margin(nk.analyze(near_duplicates(), exact="never"), 1e-6)
    back = nk.AnalysisResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.to_dict() == json.loads(json.dumps(res.to_dict()))
    assert back.exit_code == EXIT_BELOW_MARGIN


# ---------------------------------------------------------------------------------------------
# --fail-below
# ---------------------------------------------------------------------------------------------

def test_fail_below_exit_codes_on_both_sides(tmp_path):
    """tokens_injective has scaled sigma_min ~0.05: --fail-below 0.5 exits 6 (margin below),
    --fail-below 1e-3 exits 0; the JSON margin field says which and validates."""
    doc = json.loads(run(SAMPLES / "tokens_injective.npz", "--json").stdout)
    sigma = doc["near_dependency"]["scaled_smallest_singular_value"]
    assert 1e-3 < sigma < 0.5
    r = run(SAMPLES / "tokens_injective.npz", "--json", "--fail-below", "0.5")
    assert r.exit_code == EXIT_BELOW_MARGIN == 6
    doc = json.loads(r.stdout)
    validate(doc, json_report.schema())
    assert doc["margin"]["below"] is True and doc["margin"]["threshold"] == 0.5
    assert doc["margin"]["sequences"]
    assert all(s["score"] < 0.5 for s in doc["margin"]["sequences"])
    r = run(SAMPLES / "tokens_injective.npz", "--json", "--fail-below", "1e-3")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["margin"]["below"] is False


def test_fail_below_names_the_planted_near_duplicates(tmp_path):
    """Near-duplicates at 1e-9 with --fail-below 1e-6: exit 6, exactly the four planted
    sequences are below; a dependency keeps exit 1; several files exit with the worst code in
    the order 2, 1, 3, 6, 0; a non-positive margin is a usage error (2)."""
    near = tmp_path / "near.npz"
    np.savez(near, tokens=near_duplicates())
    r = run(near, "--json", "--fail-below", "1e-6")
    assert r.exit_code == 6
    doc = json.loads(r.stdout)
    assert {s["name"] for s in doc["margin"]["sequences"]} == {"seq3", "seq12", "seq7", "seq13"}
    assert run(SAMPLES / "tokens_dependent.npz", "--fail-below", "1e-6").exit_code == 1
    good = tmp_path / "good.npz"
    np.savez(good, tokens=np.random.default_rng(1).normal(size=(8, 4, 2)))
    assert run(good, near, "--fail-below", "1e-6", "-q").exit_code == 6
    assert run(good, near, SAMPLES / "tokens_dependent.npz", "--fail-below", "1e-6",
               "-q").exit_code == 1
    r = run(good, "--fail-below", "0")
    assert r.exit_code == 2 and "--fail-below" in r.output


def test_fail_below_in_every_machine_format(tmp_path):
    """github: one near-dependency warning per sequence below; sarif: NTK004 results, valid
    against the official SARIF 2.1.0 schema; junit: a near_dependency failure; text: the margin line."""
    near = tmp_path / "near.npz"
    np.savez(near, tokens=near_duplicates())
    below = {"seq3", "seq12", "seq7", "seq13"}
    gh = run(near, "-f", "github", "--fail-below", "1e-6")
    assert gh.exit_code == 6
    lines = gh.stdout.splitlines()
    assert all(ANNOTATION.match(line) for line in lines)
    warn = [line for line in lines if "title=ntkcheck near-dependency" in line]
    assert len(warn) == 4 and all(line.startswith("::warning") for line in warn)
    assert {re.search(r"sequence (\w+)", w).group(1) for w in warn} == below
    log = json.loads(run(near, "-f", "sarif", "--fail-below", "1e-6").stdout)
    validate_sarif(log)
    res = [x for x in log["runs"][0]["results"] if x["ruleId"] == "NTK004"]
    assert {x["locations"][0]["logicalLocations"][0]["name"] for x in res} == below
    assert all(x["level"] == "warning" for x in res)
    assert "NTK004" in [rule["id"] for rule in log["runs"][0]["tool"]["driver"]["rules"]]
    root = ET.fromstring(run(near, "-f", "junit", "--fail-below", "1e-6").stdout)
    fail = root.find("testsuite").find("testcase").find("failure")
    assert fail.get("type") == "near_dependency" and "seq12" in fail.text
    assert root.get("failures") == "1"
    text = run(near, "--fail-below", "1e-6").stdout
    assert "margin    below" in text and "near pairs" in text


# ---------------------------------------------------------------------------------------------
# suggest_drop
# ---------------------------------------------------------------------------------------------

def planted_tokens():
    """Padded tokens in R^2 with planted dependencies: a permuted duplicate, a translate, a Dirac
    mass, Binomial(2, 1/2) = Bernoulli(1/2) * Bernoulli(1/2) (LSE_bin = 2 LSE_bern) and a
    convolution triple prod = bern * bern2 (LSE_prod = LSE_bern + LSE_bern2), among 8 random
    sequences."""
    rng = np.random.default_rng(7)
    n = 6
    seqs = {f"r{i}": rng.normal(size=(5, 2)) for i in range(8)}
    seqs["dup"] = seqs["r1"][::-1].copy()
    seqs["shifted"] = seqs["r2"] + np.array([1.0, -0.5])
    seqs["dirac"] = np.tile([[0.3, 0.7]], (4, 1))
    e1, e2 = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    seqs["bern"] = np.array([0 * e1, e1])
    seqs["bin"] = np.array([0 * e1, e1, e1, 2 * e1])
    seqs["bern2"] = np.array([0 * e2, e2])
    seqs["prod"] = np.array([0 * e1, e1, e2, e1 + e2])
    names = list(seqs)
    tokens = np.zeros((len(names), n, 2))
    lengths = np.array([len(seqs[k]) for k in names])
    for i, k in enumerate(names):
        tokens[i, :lengths[i]] = seqs[k]
    return tokens, lengths, names


def test_suggest_drop_on_planted_dependencies_is_reverified():
    """The dependency space has dimension 5 (dup, translate, Dirac, binomial, triple): the
    suggestion drops exactly 5 sequences (one per dimension, the minimum), including the
    Dirac mass and the non-representative copies, and the kept data are injective both in the
    suggestion's own re-verification and in a separate analyze run."""
    tokens, lengths, names = planted_tokens()
    s = nk.suggest_drop(tokens, lengths=lengths, names=names, exact="never")
    assert s.before.verdict == "not_injective" and len(s.before.dependencies) == 5
    assert s.success and s.after.verdict == "injective"
    assert len(s.drop) == 5
    assert {"dup", "shifted", "dirac"} <= set(s.drop)
    assert len({"bern", "bin"} & set(s.drop)) >= 1
    assert len({"bern", "bern2", "prod", "bin"} & set(s.drop)) == 2
    assert s.reasons["dirac"].startswith("Dirac mass")
    assert s.reasons["dup"] == "duplicate of r1" and s.reasons["shifted"] == "translate of r2"
    keep = [names.index(k) for k in s.kept]
    again = nk.analyze(tokens[keep], lengths=lengths[keep], names=list(s.kept), exact="never")
    assert again.verdict == "injective"
    assert tuple(keep) == s.kept_indices


def test_suggest_drop_near_duplicates_with_margin():
    """Injective data with 1e-9 near-duplicates: nothing to drop without a margin; with
    margin 1e-6, one sequence of each planted pair is dropped and the reduced data meet it."""
    X = near_duplicates()
    s = nk.suggest_drop(X, exact="never")
    assert s.drop == () and s.success and s.rounds == 0
    s = nk.suggest_drop(X, margin=1e-6, exact="never")
    assert s.success and len(s.drop) == 2
    assert len({"seq3", "seq12"} & set(s.drop)) == 1 and len({"seq7", "seq13"} & set(s.drop)) == 1
    assert s.after.margin["below"] is False
    assert s.after.near_dependency["scaled_smallest_singular_value"] >= 1e-6


def test_suggest_drop_unsuccessful_is_reported_as_such(tmp_path):
    """Too few probes (inconclusive for lack of probes): nothing is dropped, the suggestion is
    not successful and says so; --write-clean then writes nothing and exits 3."""
    X = np.random.default_rng(3).normal(size=(12, 4, 2))
    s = nk.suggest_drop(X, probes=6, exact="never")
    assert s.before.verdict == "inconclusive" and s.drop == () and not s.success
    assert "NOT successful" in s.summary()
    src, out = tmp_path / "x.npz", tmp_path / "clean.npz"
    np.savez(src, tokens=X)
    r = run(src, "--probes", "6", "--exact", "never", "--write-clean", out)
    assert r.exit_code == 3 and not out.exists()
    assert "NOT successful" in r.stdout


def test_suggest_drop_cli_on_the_dependent_sample():
    """The closing-note demonstration: drop translated and permuted, re-verified injective; the
    JSON document carries suggest_drop and validates; the exit code stays that of the data."""
    r = run(SAMPLES / "tokens_dependent.npz", "--suggest-drop")
    assert r.exit_code == 1
    assert ("suggest drop: drop 2: translated, permuted; re-verified injective" in r.stdout)
    r = run(SAMPLES / "tokens_dependent.npz", "--suggest-drop", "--json")
    doc = json.loads(r.stdout)
    validate(doc, json_report.schema())
    assert doc["suggest_drop"]["drop"] == ["translated", "permuted"]
    assert doc["suggest_drop"]["success"] is True
    assert doc["suggest_drop"]["after"]["verdict"] == "injective"


# ---------------------------------------------------------------------------------------------
# --write-clean
# ---------------------------------------------------------------------------------------------

def test_write_clean_round_trips_padded(tmp_path):
    """The reduced .npz holds the kept rows of tokens, lengths, weights and per-sequence extra
    arrays bit for bit, the default names of the kept sequences, and analyses injective."""
    tokens, lengths, names = planted_tokens()
    src = tmp_path / "planted.npz"
    # unnormalised weights, constant within a sequence (the planted relations stay exact)
    w = np.random.default_rng(0).uniform(0.5, 2.0, size=(len(names), 1)) * np.ones(
        tokens.shape[:2])
    targets = np.arange(len(names), dtype=float)
    np.savez(src, tokens=tokens, lengths=lengths, weights=w, targets=targets)
    out = tmp_path / "clean.npz"
    r = run(src, "--write-clean", out, "--exact", "never", "-q")
    assert r.exit_code == 1  # the original data are not injective
    doc = np.load(out)
    keep = [i for i, k in enumerate(names) if f"seq{i}" in set(doc["names"])]
    assert list(doc["names"]) == [f"seq{i}" for i in keep] and len(keep) == len(names) - 5
    np.testing.assert_array_equal(doc["tokens"], tokens[keep])
    np.testing.assert_array_equal(doc["lengths"], lengths[keep])
    np.testing.assert_array_equal(doc["weights"], w[keep])
    np.testing.assert_array_equal(doc["targets"], targets[keep])
    assert run(out, "--exact", "never", "-q").exit_code == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_write_clean_round_trips_ragged(tmp_path):
    """Ragged layout: offsets rebuilt, per-token weights and names of the kept sequences kept;
    loading the reduced file gives the same laws as the kept sequences of the original."""
    rng = np.random.default_rng(2)
    seqs = [rng.normal(size=(k, 2)) for k in (3, 4, 5, 3, 4)]
    seqs.append(seqs[1] + 2.0)  # a translate of seq 1
    flat = np.concatenate(seqs)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    wts = rng.uniform(0.5, 1.5, size=len(flat))
    wts[offsets[5]:] = wts[offsets[1]:offsets[2]]  # same weights: an exact translate
    names = np.array(["a", "b", "c", "d", "e", "b_moved"])
    src = tmp_path / "ragged.npz"
    np.savez(src, tokens=flat, offsets=offsets, weights=wts, names=names)
    out = tmp_path / "clean.npz"
    assert run(src, "--write-clean", out, "--exact", "never", "-q").exit_code == 1
    before = nk.load_token_npz(src)
    after = nk.load_token_npz(out)
    assert after.names == ("a", "b", "c", "d", "e")
    for i in range(5):
        m = after.mask[i]
        np.testing.assert_array_equal(after.tokens[i][m], before.tokens[i][before.mask[i]])
        np.testing.assert_array_equal(after.weights[i][m], before.weights[i][before.mask[i]])


def test_write_clean_refuses_specs_several_files_and_the_input(tmp_path):
    """A spec, several files, or the input file itself as target: exit 2 naming --write-clean."""
    r = run(SAMPLES / "mixed.toml", "--write-clean", tmp_path / "x.npz")
    assert r.exit_code == 2 and "--write-clean" in r.output and "spec" in r.output
    r = run(SAMPLES / "tokens_dependent.npz", SAMPLES / "tokens_injective.npz",
            "--write-clean", tmp_path / "x.npz")
    assert r.exit_code == 2 and "--write-clean" in r.output
    src = tmp_path / "dep.npz"
    src.write_bytes((SAMPLES / "tokens_dependent.npz").read_bytes())
    r = run(src, "--write-clean", src)
    assert r.exit_code == 2 and "is also an input" in r.output
    assert src.read_bytes() == (SAMPLES / "tokens_dependent.npz").read_bytes()


def test_pair_limit_is_documented():
    """The pair limit printed in the report and stored in the JSON is the module constant."""
    doc = json.loads(run(SAMPLES / "tokens_dependent.npz", "--json").stdout)
    assert doc["near_dependency"]["pair_limit"] == PAIR_LIMIT
