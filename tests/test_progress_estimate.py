"""Progress of every long stage and the estimate of the whole analysis (issue 21, point 5).

Properties: the rates behind the estimate are measured cheaply once per process; the estimate
names every stage the analysis reports (certificate and exact test included) with its time,
and its total is their sum; the partial spectrum, the rigorous certificate and the exact test
report done / total through the ``progress`` callback without changing their results; the CLI
turns an estimated stage time into a share and an ETA; the exact test's own estimate refuses
at once what its budget refuses, and times the rest from a sample.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from ntkcheck import analyze
from ntkcheck.arrays import as_dataset
from ntkcheck.cli import analyze as cli_analyze
from ntkcheck.exact import decide, estimate_exact
from ntkcheck.exact.procedure import STAGES
from ntkcheck.injectivity import estimate as est
from ntkcheck.injectivity.certify import certify_independence
from ntkcheck.injectivity.spectrum import smallest_singular_triplets
from ntkcheck.progress import ProgressUpdate, Work


def collect():
    seen: list = []
    return seen, seen.append


def test_rates_are_cheap_and_cached():
    """measure_rates times small kernels once per process: well under 2 s even on a loaded
    machine (the old recalibration timed 1536-size folds six times, 8-36 s), every rate
    positive, the second call the cached object."""
    est.measure_rates.cache_clear()
    t0 = time.perf_counter()
    r = est.measure_rates()
    assert time.perf_counter() - t0 < 2.0
    assert min(r.gemm, r.gemm_one, r.tpqrt, r.exp, r.bandwidth) > 0
    assert est.measure_rates() is r


def test_fold_rate_model():
    """Rates given by hand are used flat (the streaming model stays exact for them); measured
    ones rise with N towards FOLD_EFFICIENCY x the one-thread GEMM rate, and threads help."""
    flat = est.Rates(gemm=1e10, tpqrt=5e9, exp=1e9)
    assert est.fold_rate(flat, 100) == est.fold_rate(flat, 10**5) == 5e9
    r = est.Rates(gemm=2e10, tpqrt=3e9, exp=1e8, gemm_one=1e10, bandwidth=5e9)
    small, large = est.fold_rate(r, 256), est.fold_rate(r, 20000)
    assert 3e9 < small < large <= est.FOLD_EFFICIENCY * 1e10
    assert est.fold_rate(r, 4000, threads=2) > est.fold_rate(r, 4000)


@pytest.mark.parametrize("partial", [False, True])
def test_stage_model_names_every_stage(partial):
    """stage_seconds gives every stage of the in-memory test a positive time, the spectrum
    under its progress name (SVD or partial spectrum); the QR grows like M N^2 and the
    certificate with its rows."""
    r = est.Rates(gemm=2e10, tpqrt=3e9, exp=1e8, gemm_one=1e10, bandwidth=5e9)
    t = est.stage_seconds(1000, 16, 2034, 32000, streamed=False, partial=partial, cert_rows=2034,
                          r=r)
    spectrum = "partial spectrum" if partial else "SVD"
    assert list(t) == ["features", "QR", spectrum, "summary", "rigorous certificate"]
    assert all(v > 0 for v in t.values())
    t2 = est.stage_seconds(1000, 16, 4068, 32000, streamed=False, partial=partial,
                           cert_rows=4068, r=r)
    assert t2["QR"] > 1.5 * t["QR"] and t2["rigorous certificate"] > t["rigorous certificate"]


def test_estimate_covers_every_stage_the_analysis_reports():
    """The estimate message (before the dense test) names, with a time, every stage the run
    then reports (features, QR, SVD, summary, rigorous certificate, exact test); its total is
    their sum; the JSON records the same; its line names the stages and the peak memory."""
    X = np.random.default_rng(0).normal(size=(60, 5, 3))
    seen, say = collect()
    r = analyze(X, progress=say)
    (estimate,) = [m for m in seen if getattr(m, "kind", "") == "estimate"]
    times = estimate.data["time"]
    assert {"features", "QR", "SVD", "summary", "rigorous certificate", "exact test"} <= set(times)
    assert estimate.data["seconds"] == pytest.approx(sum(times.values()))
    assert estimate.data["peak_resident_bytes"] >= estimate.data["resident_bytes"] > 0
    after = seen[seen.index(estimate) + 1:]
    reported = {getattr(m, "stage", str(m)) for m in after}
    reported = {("exact test" if s.startswith("exact") else s) for s in reported}
    assert reported - {"estimate"} <= set(times) | {"dependencies", "confirmation draw"}
    assert r.settings["estimate"]["time"] == times
    for stage in times:
        assert stage in str(estimate)
    assert "peak memory about" in str(estimate)


def test_estimate_without_exact_test():
    """exact="never": the estimate has no exact stage (and no exact record)."""
    seen, say = collect()
    analyze(np.random.default_rng(1).normal(size=(20, 4, 2)), exact="never", progress=say)
    (estimate,) = [m for m in seen if getattr(m, "kind", "") == "estimate"]
    assert "exact test" not in estimate.data["time"] and "exact" not in estimate.data


def test_partial_spectrum_progress_changes_nothing():
    """smallest_singular_triplets with a progress callback: updates of stage "partial
    spectrum" with done = 1, 2, ... and done <= total <= max_iter, and bit-identical values
    and vectors to the call without it."""
    rng = np.random.default_rng(2)
    R = np.asfortranarray(np.triu(rng.normal(size=(300, 300))))
    sv0, V0 = smallest_singular_triplets(R.copy(order="F"), 8)
    seen, say = collect()
    sv1, V1 = smallest_singular_triplets(R.copy(order="F"), 8, progress=say)
    assert np.array_equal(sv0, sv1) and np.array_equal(V0, V1)
    assert seen and all(m.stage == "partial spectrum" for m in seen)
    assert [m.done for m in seen] == list(range(1, len(seen) + 1))
    assert all(m.done <= m.total <= 60 for m in seen)


def test_certificate_progress_changes_nothing():
    """certify_independence with progress: "rigorous certificate" updates whose done never
    decreases and reaches total (the steps' flops add up to the model's total), and the same
    certificate as without it."""
    rng = np.random.default_rng(3)
    ds = as_dataset(rng.normal(size=(40, 6, 3)))
    z = rng.normal(size=(200, 3))
    plain = certify_independence(ds.distributions, z, method="a-priori")
    seen, say = collect()
    cert = certify_independence(ds.distributions, z, method="a-priori", progress=say)
    assert cert.lower_bound == plain.lower_bound and cert.certified == plain.certified
    assert seen and {m.stage for m in seen} == {"rigorous certificate"}
    done = [m.done for m in seen]
    assert done == sorted(done) and seen[-1].done == seen[-1].total


def test_work_counter():
    """Work reports integer done / total in its unit, never beyond the total, from any
    thread; without a callback it only counts."""
    seen, say = collect()
    w = Work(say, "stage", 10e6, unit=1e6)
    w.add(4e6)
    w.add(20e6)
    assert [(m.done, m.total) for m in seen] == [(4, 10), (10, 10)]
    quiet = Work(None, "stage", 5)
    quiet.add(2)
    assert quiet.done == 2


def integer_tokens(N: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-2, 3, size=(N, 8, 3)).astype(float)


def test_exact_progress_reports_done_and_total():
    """The exact test (in its child process) sends ProgressUpdates that keep their fields
    through the pipe: the rational parameters and the factoring count done / total."""
    ds = as_dataset(integer_tokens(40))
    seen, say = collect()
    result = decide(ds, timeout=60, progress=say)
    assert result.verdict in ("injective", "not_injective")
    counted = [m for m in seen if isinstance(m, ProgressUpdate) and m.total]
    assert {m.stage for m in counted} >= {STAGES[0], STAGES[1]}
    assert all(0 <= m.done <= m.total for m in counted)


def test_exact_estimate_refuses_what_the_budget_refuses():
    """Dyadic Gaussian tokens (2^-10): the exact test refuses on its degree budget at the first
    law; the estimate says so at once (a refusal, well under a second)."""
    X = np.round(np.random.default_rng(4).normal(size=(50, 8, 3)) * 1024) / 1024
    t0 = time.perf_counter()
    cost = estimate_exact(as_dataset(X))
    assert time.perf_counter() - t0 < 1.0
    assert cost.refused and "degree budget" in cost.refused and cost.seconds < 2.0


def test_exact_estimate_times_a_sample():
    """Small integer tokens: not refused; the estimate times every stage from a sample of
    SAMPLE distributions, counts the memory of the exact values, and is not a lower bound."""
    from ntkcheck.exact.cost import SAMPLE

    cost = estimate_exact(as_dataset(integer_tokens(60)))
    assert cost.refused is None and cost.sample == SAMPLE and not cost.lower_bound
    assert set(cost.stages) == set(STAGES[:3]) and cost.seconds > 0 and cost.peak_bytes > 0
    assert cost.to_dict()["time"] == cost.stages


def test_auto_runs_the_exact_test_when_it_fits():
    """exact="auto" with a certified numerical verdict and an exact test estimated within its
    limit: the test runs and decides (it is skipped only when it cannot finish)."""
    r = analyze(integer_tokens(30, seed=5))
    assert r.exact["status"] == "decided" and r.evidence == "exact"


def test_eta_text_for_estimated_stages():
    """A stage that cannot count its work (one LAPACK call) gets its share of the estimated
    time: '~40% (ETA 6 s, estimated)' after 4 of 10 s; past the estimate, the elapsed time and
    the estimate; counted stages keep their own fraction."""
    qr = ProgressUpdate("QR (100 x 50)", stage="QR")
    assert cli_analyze._eta_text(qr, 0.0, 4.0, 10.0) == "QR ~40% (ETA 6 s, estimated)"
    assert cli_analyze._eta_text(qr, 0.0, 12.0, 10.0) == "QR (12 s; estimated 10 s)"
    counted = ProgressUpdate("x", stage="partial spectrum", done=5, total=20)
    assert cli_analyze._eta_text(counted, 0.0, 5.0, 100.0) == \
        "partial spectrum 25% (ETA 15 s)"


def test_plain_reporter_uses_the_estimate(monkeypatch, capsys):
    """The plain reporter (CI logs) prints the estimate line, then for a stage without a
    count its estimated share and ETA."""
    monkeypatch.setattr(cli_analyze, "PLAIN_FIRST", 0.0)
    monkeypatch.setattr(cli_analyze, "PLAIN_EVERY", 0.0)
    with cli_analyze.ProgressReporter("plain") as rep:
        say = rep.callback("f.npz")
        say(ProgressUpdate("estimate: ...", stage="estimate", kind="estimate",
                           data={"seconds": 100.0, "time": {"QR": 50.0}, "mode": "in_memory"}))
        say(ProgressUpdate("QR (10 x 5)", stage="QR"))
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "ntkcheck: analyze f.npz: estimate: ..."
    assert err[1].startswith("ntkcheck: analyze f.npz: QR ~0% (ETA ") and "estimated" in err[1]
