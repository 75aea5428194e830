"""The streamed dense test (bounded memory), its estimate, progress reporting, and the Dask
backend from the API and the CLI.

References are independent of the streamed code path: the in-memory feature matrix and QR
(``feature_matrix`` + ``svd_spectrum``), closed-form relations (a convolution triple:
LSE_{a * b} = LSE_a + LSE_b exactly), and the trust tests' own assertions.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import ntkcheck.analysis as analysis
import ntkcheck.injectivity.certify as certify
import ntkcheck.injectivity.decide as decide
import ntkcheck.injectivity.features as features
from ntkcheck import Dataset
from ntkcheck.analysis import INJECTIVE, NOT_INJECTIVE, analyze
from ntkcheck.cli import analyze as cli_analyze
from ntkcheck.cli.app import app
from ntkcheck.errors import InputError, ResourceError
from ntkcheck.injectivity.probes import DEFAULT_SCALES, make_probes, make_whitening
from ntkcheck.progress import ProgressUpdate
from ntkcheck.injectivity.features import feature_matrix
from ntkcheck.injectivity.stream import streamed_feature_matrix
from ntkcheck.injectivity.probes import default_probe_count
from ntkcheck.injectivity.spectrum import svd_spectrum
from ntkcheck.resources import analysis_bytes

import test_trust

RTOL = 1e-10  # round-off of two QR factorisations of the same matrix (u N-ish growth, N <= 60)


def convolution_triple(seed: int = 0, N: int = 24, d: int = 3) -> list[np.ndarray]:
    """N generic laws plus c = a * b (all sums a_k + b_l, uniform): LSE_c = LSE_a + LSE_b, a
    relation among three distinct laws that no structural screen sees. Atoms are multiples of
    1/64 below 4, so the sums are exact in binary64 (the relation holds for the stored values)."""
    rng = np.random.default_rng(seed)
    X = [rng.integers(-128, 128, (int(rng.integers(2, 5)), d)) / 64.0 for _ in range(N)]
    a, b = X[0], X[1]
    X.append((a[:, None, :] + b[None, :, :]).reshape(-1, d))
    return X


def _spectra(X, M: int, block_rows: int):
    ds = Dataset.from_tokens(X) if not isinstance(X, Dataset) else X
    geom = make_whitening(ds)
    probes = make_probes(geom, M, DEFAULT_SCALES, 0)
    mem = feature_matrix(ds, geom, probes)
    st = streamed_feature_matrix(ds, geom, probes, block_rows=block_rows)
    return mem, st, svd_spectrum(mem), svd_spectrum(st)


def test_streamed_singular_values_match_in_memory():
    """Generic data: every singular value of the streamed R22 / nu equals the in-memory one to
    relative RTOL, and so do the column norms nu_i and the per-column error estimates (the
    same sums, accumulated per block)."""
    rng = np.random.default_rng(4)
    X = list(rng.standard_normal((50, 5, 3)))
    mem, st, a, b = _spectra(X, 160, 23)
    np.testing.assert_allclose(b.singular_values, a.singular_values, rtol=RTOL)
    np.testing.assert_allclose(st.col_norms, mem.col_norms, rtol=RTOL)
    np.testing.assert_allclose(st.error_bound, mem.error_bound, rtol=RTOL)
    np.testing.assert_allclose(st.error_typical, mem.error_typical, rtol=RTOL)
    assert st.perp is None and st.values is None and st.stream["blocks"] == 7
    vals, perp = st.columns([3, 7])  # recomputed columns equal the in-memory ones
    np.testing.assert_allclose(perp, mem.perp[:, [3, 7]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(vals, mem.values[:, [3, 7]], rtol=1e-13)


def test_streamed_dependent_spectrum_and_relation_match():
    """With a convolution triple: the singular values agree to RTOL relative to the largest
    (the zero one is round-off in both), and analyze finds the same single relation
    (coefficients 1, -1, -1 up to scale) streamed or in memory."""
    X = convolution_triple()
    _, _, a, b = _spectra(X, 128, 40)
    np.testing.assert_allclose(b.singular_values, a.singular_values, rtol=0,
                               atol=RTOL * a.singular_values[0])
    results = [analyze(Dataset.from_tokens(X), exact="never", stream=s) for s in (False, True)]
    assert results[1].settings["estimate"]["mode"] == "streamed"
    for r in results:
        assert r.verdict == NOT_INJECTIVE, r.reason
        (dep,) = r.dependencies
        c = dep.coefficients
        assert sorted(c) == ["seq0", "seq1", "seq24"]
        np.testing.assert_allclose([c["seq0"] / c["seq24"], c["seq1"] / c["seq24"]], [-1, -1],
                                   atol=1e-8)
    assert results[0].rank == results[1].rank


TRUST = ["test_planted_relations_are_found_and_hold",
         "test_duplicate_inside_far_clusters_is_the_only_relation",
         "test_far_dirac_among_small_rational_laws_is_the_only_relation",
         "test_near_dirac_does_not_inflate_the_threshold_of_others",
         "test_exact_dirac_is_a_verified_relation",
         "test_exact_translate_by_dyadic_shift",
         "test_two_one_dimensional_gaussians_are_dependent",
         "test_a_flat_direction_is_dropped_but_a_small_one_is_kept",
         "test_clusters_in_wildly_different_units_are_decided"]


@pytest.mark.parametrize("name", TRUST)
def test_trust_cases_with_stream_forced(name, monkeypatch):
    """The trust tests' verdicts and dependencies hold unchanged with every dense test
    streamed (threshold 0); the streamed path is checked to have run."""
    monkeypatch.setattr(features, "STREAM_THRESHOLD_BYTES", -1)
    used = []
    real = analysis.compute_features

    def spy(dataset, geom, probes, options, say):
        used.append(options is not None)
        return real(dataset, geom, probes, options, say)

    monkeypatch.setattr(analysis, "compute_features", spy)
    monkeypatch.setattr(decide, "compute_features", spy)
    getattr(test_trust, name)()
    assert all(used)


@pytest.mark.parametrize("eps", [1e-6, 1e-12])
def test_near_translates_with_stream_forced(eps, monkeypatch):
    """A near-translate is never called dependent when streamed either."""
    monkeypatch.setattr(features, "STREAM_THRESHOLD_BYTES", -1)
    test_trust.test_near_translate_is_never_called_dependent(eps)


def test_progress_updates_are_strings_with_fractions():
    """Old callbacks receive plain strings; the structured fields give the fraction."""
    seen = []
    rng = np.random.default_rng(2)
    analyze(list(rng.standard_normal((30, 4, 2))), exact="never", stream=True,
            progress=seen.append)
    assert all(isinstance(m, str) for m in seen)
    blocks = [m for m in seen if isinstance(m, ProgressUpdate) and m.fraction is not None]
    assert blocks and blocks[-1].fraction == 1.0
    est = [m for m in seen if getattr(m, "kind", "") == "estimate"]
    assert len(est) == 1 and est[0].data["peak_bytes"] > 0


def test_estimate_recorded_and_refusal(monkeypatch):
    """settings.estimate has the peak bytes and seconds; a limit below the streamed estimate
    is refused with the numbers and the options that help."""
    rng = np.random.default_rng(3)
    X = list(rng.standard_normal((30, 4, 2)))
    r = analyze(X, exact="never", stream=True)
    est = r.settings["estimate"]
    assert est["mode"] == "streamed" and est["peak_bytes"] > 0 and est["seconds"] > 0
    with pytest.raises(ResourceError, match="streamed dense test.*over the memory limit.*"
                       "--backend dask"):
        analyze(X, exact="never", stream=True, max_memory=1000)
    # automatic mode streams instead of refusing when the in-memory test would not fit, and
    # only then: the model of discrete laws (the certificate reuses the features pass's
    # enclosures) decides, to the byte
    Y = list(rng.standard_normal((150, 3, 2)))
    M = default_probe_count(150, 2)
    need = analysis_bytes(M, 150, 2, reuse=True)
    assert need < analysis_bytes(M, 150, 2)
    r2 = analyze(Y, exact="never", max_memory=need - 1)
    assert r2.settings["estimate"]["mode"] == "streamed"
    assert r2.settings["estimate"]["peak_bytes"] < need
    r3 = analyze(Y, exact="never", max_memory=need)
    assert r3.settings["estimate"]["mode"] == "in_memory"
    assert r3.settings["estimate"]["peak_bytes"] == need



def test_streamed_blocks_shrink_to_fit_the_memory_limit():
    """The streamed test's blocks (stream_block_rows: M / 8 rows here) are halved while its
    estimated peak exceeds the memory limit, down to STREAM_MIN_BLOCK_ROWS, before it refuses:
    limits one byte under each plan's peak give fewer parallel folds, then shorter blocks,
    within the limit and with the same verdict; a limit no block height meets is refused, as
    before."""
    from ntkcheck.injectivity.features import STREAM_MIN_BLOCK_ROWS, stream_block_rows
    rng = np.random.default_rng(3)
    Y = list(rng.standard_normal((150, 3, 2)))
    M = 4096
    r = analyze(Y, exact="never", stream=True, probes=M)
    est = r.settings["estimate"]
    assert est["block_rows"] == stream_block_rows(150 + 3, M) == M // 8
    limit = est["peak_bytes"] - 1
    for _ in range(4):  # parallel folds give way first (fewer workers), then the blocks
        r2 = analyze(Y, exact="never", stream=True, probes=M, max_memory=limit)
        est2 = r2.settings["estimate"]
        assert est2["peak_bytes"] <= limit and r2.verdict == r.verdict
        if est2["block_rows"] < est["block_rows"]:
            break
        assert est2["workers"] < est["workers"] or est2["workers"] == 1
        limit = est2["peak_bytes"] - 1
    assert STREAM_MIN_BLOCK_ROWS <= est2["block_rows"] < est["block_rows"]
    floor = analyze(Y, exact="never", stream=True, probes=M,
                    max_memory=est2["peak_bytes"]).settings["estimate"]
    with pytest.raises(ResourceError, match="streamed dense test"):
        analyze(Y, exact="never", stream=True, probes=M, max_memory=1000)
    assert floor["block_rows"] == est2["block_rows"]

@pytest.fixture
def sample(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "t.npz"
    np.savez(path, tokens=rng.standard_normal((40, 4, 2)))
    return path


def test_cli_plain_progress_lines_when_not_a_terminal(sample, monkeypatch):
    """stderr of CliRunner is not a terminal: plain 'ntkcheck: analyze FILE: ...' lines (every
    stage printed here, as the delays are set to 0), the estimate line, and the JSON records
    settings.estimate."""
    monkeypatch.setattr(cli_analyze, "PLAIN_FIRST", 0.0)
    monkeypatch.setattr(cli_analyze, "PLAIN_EVERY", 0.0)
    res = CliRunner().invoke(app, ["analyze", "--stream", "--json", "--exact", "never",
                                   str(sample)])
    assert res.exit_code == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines and all(line.startswith(f"ntkcheck: analyze {sample}: ") for line in lines)
    assert any("estimate: 40 distributions x" in line for line in lines)
    assert any("features and factorisation" in line and "%" in line for line in lines)
    doc = json.loads(res.stdout)
    assert doc["settings"]["estimate"]["peak_bytes"] > 0


def test_cli_quiet_prints_nothing_on_stderr(sample, monkeypatch):
    monkeypatch.setattr(cli_analyze, "PLAIN_FIRST", 0.0)
    monkeypatch.setattr(cli_analyze, "PLAIN_EVERY", 0.0)
    res = CliRunner().invoke(app, ["analyze", "-q", "--stream", "--exact", "never", str(sample)])
    assert res.exit_code == 0 and res.stderr == ""


def test_cli_refuses_streamed_estimate_over_max_memory(sample):
    res = CliRunner().invoke(app, ["analyze", "--stream", "--max-memory", "1M", str(sample)])
    assert res.exit_code == 2
    assert "streamed dense test" in res.stderr and "--backend dask" in res.stderr


def test_dask_backend_missing_is_an_input_error(monkeypatch):
    """Without distributed: a one-line InputError naming the extra."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(InputError, match=r"pip install -e '\.\[dask\]' in the ntkcheck clone"):
        analyze([np.eye(2)], backend="dask", scheduler="tcp://127.0.0.1:1")


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as c:
        yield c


def test_dask_backend_same_verdict_as_local(cluster):
    """Blocks computed and folded on a LocalCluster: same verdict, dependencies and singular
    values (to RTOL relative to the largest) as the local backend."""
    X = convolution_triple(1, N=16)
    local = analyze(X, exact="never", stream=True)
    remote = analyze(X, exact="never", backend="dask", scheduler=cluster.scheduler_address)
    assert remote.settings["stream"]["backend"] == "dask"
    assert remote.verdict == local.verdict == NOT_INJECTIVE
    assert [sorted(d.coefficients) for d in remote.dependencies] == \
        [sorted(d.coefficients) for d in local.dependencies]
    np.testing.assert_allclose(remote.singular_values, local.singular_values, rtol=0,
                               atol=RTOL * local.singular_values[0])


def test_cli_dask_backend(cluster, sample):
    res = CliRunner().invoke(app, ["analyze", "-q", "--json", "--backend", "dask",
                                   "--scheduler", cluster.scheduler_address, "--exact", "never",
                                   str(sample)])
    assert res.exit_code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["verdict"] == INJECTIVE and doc["settings"]["stream"]["backend"] == "dask"


def test_cli_scheduler_needs_dask_backend(sample):
    """--scheduler with the local backend is a usage error naming --scheduler (--backend dask
    without --scheduler starts a local cluster: tests/test_dask_local.py)."""
    res = CliRunner().invoke(app, ["analyze", "--scheduler", "tcp://127.0.0.1:8786",
                                   str(sample)])
    assert res.exit_code == 2 and "--scheduler" in res.stderr


def test_eta_text_and_rich_mode(monkeypatch):
    """ETA = elapsed (1 - f) / f: 40% done after 8 s leaves 12 s; a message without a fraction
    shows the elapsed time; the rich reporter accepts updates from any thread."""
    msg = ProgressUpdate("features 40%", stage="features", done=4, total=10)
    assert cli_analyze._eta_text(msg, 100.0, 108.0) == "features 40% (ETA 12 s)"
    assert cli_analyze._eta_text("SVD", 100.0, 106.0) == "SVD (6 s)"
    import threading

    with cli_analyze.ProgressReporter("rich") as rep:
        say = rep.callback("f.npz")
        t = threading.Thread(target=say, args=(msg,))
        t.start()
        t.join()
        say("SVD")
    assert cli_analyze.ProgressReporter("quiet").callback("f.npz") is None


def test_trailing_triangle_in_place():
    """The trailing block of an F-ordered upper triangle is rebuilt in the same memory (no
    second N x N array), equal to np.triu(R[p:, p:]); other layouts get a copy."""
    from ntkcheck.injectivity.stream import _trailing_triangle

    rng = np.random.default_rng(0)
    for n, p in [(10, 1), (50, 9), (3, 1), (6, 0)]:
        R = np.asfortranarray(np.triu(rng.normal(size=(n, n))))
        ref = np.triu(R[p:, p:])
        out = _trailing_triangle(R, p)
        assert np.array_equal(out, ref) and out.flags.f_contiguous
        assert np.shares_memory(out, R)
    C = np.ascontiguousarray(np.triu(rng.normal(size=(8, 8))))
    out = _trailing_triangle(C, 2)
    assert np.array_equal(out, np.triu(C[2:, 2:])) and not np.shares_memory(out, C)


def test_certificate_memory_counts_what_the_process_already_holds(monkeypatch):
    """The certificate of a streamed test fits in the memory limit minus the process's resident
    size (the tokens, their packed copies and the R factor are held while it runs): with k
    rows' worth left it runs on exactly k probe rows (still certified: dropping rows only
    lowers singular values), and with nothing left it is not attempted, the reason giving the
    bytes held, and the confirmation draw decides."""
    import ntkcheck.resources as resources

    rng = np.random.default_rng(5)
    X = list(rng.standard_normal((30, 4, 2)))
    limit = 8 * 2**30
    n = 30 + 2 + 1
    k = n + 10  # at least n + n / 4 rows are needed; M = 2 (N + d + 1) = 66 are drawn
    room = (certify.CERT_BYTES_PER_SQUARE * n * n + certify.CERT_BYTES_PER_ENTRY * n * k
            + certify.SCRATCH_BYTES)
    monkeypatch.setattr(resources, "resident_bytes", lambda: limit - room)
    r = analyze(X, exact="never", stream=True, max_memory=limit)
    assert (r.verdict, r.evidence) == (INJECTIVE, "certified")
    assert r.verification["rows"] == k
    monkeypatch.setattr(resources, "resident_bytes", lambda: limit)
    r = analyze(X, exact="never", stream=True, max_memory=limit)
    assert (r.verdict, r.evidence) == (INJECTIVE, "numerical")
    assert "already held" in r.reason and "not attempted" in r.reason


def test_certificate_memory_model_bounds_its_measured_peak():
    """The certificate's memory model (CERT_BYTES_PER_ENTRY per entry of its M' x n matrix,
    CERT_BYTES_PER_SQUARE per entry of its n x n factors, plus the enclosure's block scratch),
    which decides how many probe rows it may use, bounds the peak of numpy allocations
    measured by tracemalloc (a-priori enclosure, N = 600 and N = 1500 sequences of 8 tokens
    in R^8, M' = 2 N + 100)."""
    import tracemalloc

    from ntkcheck.distributions import Discrete
    from ntkcheck.injectivity.certify import certify_independence

    rng = np.random.default_rng(11)
    for N, d in ((600, 8), (1500, 8)):
        M = 2 * N + 100
        dists = [Discrete(rng.normal(size=(8, d))) for _ in range(N)]
        z = rng.normal(size=(M, d))
        n = N + d + 1
        tracemalloc.start()
        try:
            cert = certify_independence(dists, z, method="a-priori")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert cert.certified
        model = (certify.CERT_BYTES_PER_ENTRY * M * n + certify.CERT_BYTES_PER_SQUARE * n * n
                 + certify.SCRATCH_BYTES)
        assert peak <= model, (N, peak, model)


def test_screen_verdict_stands_when_the_core_does_not_fit(tmp_path):
    """With exact structural relations found and the core's dense test over --max-memory, the
    verdict is the screen's (not_injective, exact, exit 1) with its relations, the core's rank
    given as an upper bound and the reason naming the refusal; every output format renders it
    (JSON and SARIF valid against their schemas). Without structural relations the refusal
    stays an error (exit 2): no verdict is possible."""
    jsonschema = pytest.importorskip("jsonschema")
    from test_report import validate_sarif

    from ntkcheck.report import json as json_report

    rng = np.random.default_rng(6)
    X = np.round(rng.standard_normal((40, 4, 2)) * 4) / 4
    X[1] = X[0] + 0.5  # an exact dyadic translate
    path = tmp_path / "t.npz"
    np.savez(path, tokens=X)
    args = ["analyze", "--stream", "--max-memory", "1M", "--exact", "never", str(path)]
    res = CliRunner().invoke(app, args + ["--json"])
    assert res.exit_code == 1, res.stderr
    doc = json.loads(res.stdout)
    assert (doc["verdict"], doc["evidence"]) == ("not_injective", "exact")
    assert doc["settings"]["core_verdict"] == "not_run" and doc["settings"]["core_size"] == 39
    assert doc["rank"] == 39 and doc["settings"]["rank_upper_bound"] is True
    assert "not run" in doc["reason"] and "over the memory limit" in doc["reason"]
    assert [set(d["coefficients"]) for d in doc["dependencies"]] == [{"seq0", "seq1"}]
    jsonschema.validate(doc, json_report.schema())
    for fmt in ("text", "github", "junit", "sarif"):
        res = CliRunner().invoke(app, args + ["-f", fmt])
        assert res.exit_code == 1 and "Traceback" not in res.output, (fmt, res.output)
        if fmt == "sarif":
            validate_sarif(json.loads(res.stdout))
    assert "dense test was not run" in CliRunner().invoke(app, args).stdout
    # a translate computed in floating point holds only up to the rounding of the stored
    # values: the same screen-only verdict, with numerical evidence
    Y = rng.standard_normal((40, 4, 2))
    Y[1] = Y[0] + 0.1
    np.savez(path, tokens=Y)
    doc = json.loads(CliRunner().invoke(app, args + ["--json"]).stdout)
    assert (doc["verdict"], doc["evidence"]) == ("not_injective", "numerical")
    assert doc["settings"]["core_verdict"] == "not_run"
    # an empty core (every sequence a Dirac mass): no dense test either, a valid document
    np.savez(path, tokens=np.round(rng.standard_normal((5, 1, 2)) * 4) / 4)
    res = CliRunner().invoke(app, ["analyze", "--json", "--exact", "never", str(path)])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["settings"]["probes"] == 0 and doc["structure"]["core_size"] == 0
    jsonschema.validate(doc, json_report.schema())
    np.savez(path, tokens=rng.standard_normal((40, 4, 2)))
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2 and "over the memory limit" in res.stderr


@pytest.mark.parametrize("room", ["redraw", "first draw only"])
def test_confirmation_draw_streams_when_both_draws_would_not_fit(room, monkeypatch):
    """With room for the in-memory test but not for a confirmation draw beside it
    (analysis_bytes <= limit < redraw_bytes), the first draw runs in memory and the draw made
    after a failed certificate streams (settings.estimate.confirmation_mode); with room for
    both, both run in memory. The verdict is the same either way."""
    from ntkcheck.resources import redraw_bytes

    rng = np.random.default_rng(8)
    Y = list(rng.standard_normal((150, 3, 2)))
    M = default_probe_count(150, 2)
    need, both = analysis_bytes(M, 150, 2, reuse=True), redraw_bytes(M, 150, 2)
    assert need < both
    limit = both if room == "redraw" else need
    monkeypatch.setattr(decide, "rigorous_certificate",  # the certificate fails: a redraw
                        lambda *a, **k: {"certified": False, "reason": "failed for the test"})
    used = []
    real = decide.compute_features
    monkeypatch.setattr(decide, "compute_features",
                        lambda ds, geom, probes, options, say: used.append(options)
                        or real(ds, geom, probes, options, say))
    r = analyze(Y, exact="never", max_memory=limit)
    est = r.settings["estimate"]
    assert est["mode"] == "in_memory"
    assert est["confirmation_mode"] == ("in_memory" if room == "redraw" else "streamed")
    assert len(used) == 1 and (used[0] is None) == (room == "redraw")
    assert (r.verdict, r.evidence) == (INJECTIVE, "numerical")
