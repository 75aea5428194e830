"""The fused numba training step (ntkcheck.meanfield.fast) against the numpy reference adjoint:
loss, gradients and 20-step training trajectories for every depth scheme, with padding,
non-uniform weights and both losses; central finite differences; bit-identical results whatever
the thread count; the backend choice and its error messages."""

from __future__ import annotations

import numpy as np
import pytest

from ntkcheck.errors import InputError
from ntkcheck.meanfield import (LossKind, MeanFieldTransformer, RegressionLoss, gradient_flow,
                                loss_and_gradient, loss_value)
from ntkcheck.meanfield import adjoint, fast

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="numba not installed")

SCHEMES = [("euler", 1), ("heun", 1), ("rk4", 1), ("heun", 2)]


def _data(seed: int = 0, N: int = 5, n: int = 6, d: int = 3):
    """Tokens with padding at the end and in the middle of a sequence, non-uniform weights."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, n, d))
    w = rng.uniform(0.2, 1.0, (N, n))
    w[0, 3:] = 0.0
    w[2:3, 1] = 0.0
    w[4:5, 5] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    X[w == 0] = 0.0
    return X, w


def _loss(kind: str, X: np.ndarray, w: np.ndarray, dprime: int = 2, seed: int = 1):
    rng = np.random.default_rng(seed)
    N, n, _ = X.shape
    T = rng.standard_normal((N, n, dprime) if kind == "token" else (N, dprime))
    if kind == "token":
        T[w == 0] = 0.0
    return RegressionLoss(LossKind(kind), T)


def _model(scheme: str, substeps: int, key_dim: int = 2, d: int = 3, seed: int = 2,
           std: float = 0.8):
    return MeanFieldTransformer.init(layers=3, heads=4, key_dim=key_dim, dim=d, init_qk_std=std,
                                     init_v_std=std, seed=seed, scheme=scheme, substeps=substeps)


def _close(fast_g, ref_g, rtol):
    for a, b in ((fast_g.Q, ref_g.Q), (fast_g.K, ref_g.K), (fast_g.V, ref_g.V)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize("kind", ["token", "pooled"])
@pytest.mark.parametrize("scheme,substeps", SCHEMES)
@pytest.mark.parametrize("key_dim", [2, 5])
def test_fast_equals_numpy_reference(kind, scheme, substeps, key_dim):
    """Same discrete adjoint, two implementations: loss and every gradient entry agree to
    round-off. Both sum the same O(L H n^2 d) terms in different orders; with entries O(1),
    1e-12 relative to the largest gradient entry is ~1e3 unit round-offs. key_dim 5 > d = 3
    takes the M = Q^T K factorisation of the scores."""
    X, w = _data(seed=3)
    loss = _loss(kind, X, w, seed=4)
    model = _model(scheme, substeps, key_dim=key_dim, seed=5)
    R_ref, g_ref = loss_and_gradient(model, X, w, loss, backend="numpy")
    R_fast, g_fast = loss_and_gradient(model, X, w, loss, backend="numba")
    assert R_fast == pytest.approx(R_ref, rel=1e-13, abs=0)
    _close(g_fast, g_ref, 1e-12)


@pytest.mark.parametrize("kind", ["token", "pooled"])
@pytest.mark.parametrize("scheme", ["euler", "rk4"])
def test_fast_gradient_matches_central_differences(kind, scheme):
    """<dR/dtheta, D> of the fast path equals the central difference
    (R(theta + eps D) - R(theta - eps D)) / (2 eps) of the numpy forward pass (an independent
    code path) for a random direction D over all heads; eps = 1e-5 gives truncation
    ~eps^2 |R'''| ~ 1e-10 and cancellation ~1e-16 / eps ~ 1e-11, so relative 1e-7 is safe."""
    X, w = _data(seed=6)
    loss = _loss(kind, X, w, seed=7)
    model = _model(scheme, 1, seed=8)
    _, g = loss_and_gradient(model, X, w, loss, backend="numba")
    rng = np.random.default_rng(9)
    D = [rng.standard_normal(a.shape) for a in (model.Q, model.K, model.V)]
    eps = 1e-5

    def R(t: float) -> float:
        return loss_value(model.with_params(model.Q + t * D[0], model.K + t * D[1],
                                            model.V + t * D[2]), X, w, loss)

    fd = (R(eps) - R(-eps)) / (2 * eps)
    exact = float(np.vdot(g.Q, D[0]) + np.vdot(g.K, D[1]) + np.vdot(g.V, D[2]))
    assert abs(fd - exact) <= 1e-7 * abs(exact)


@pytest.mark.parametrize("kind", ["token", "pooled"])
@pytest.mark.parametrize("scheme", ["euler", "heun", "rk4"])
def test_twenty_step_trajectories_agree(kind, scheme, monkeypatch):
    """20 steps of the training flow with either backend (selected through NTKCHECK_BACKEND, as
    ``ntkcheck train`` does) give the same losses and final heads: each step's round-off
    differences (~1e-15) are propagated by a contracting-to-mildly-expanding map, so 1e-10
    relative after 20 steps leaves a wide margin."""
    X, w = _data(seed=10)
    loss = _loss(kind, X, w, seed=11)
    model = _model(scheme, 1, seed=12, std=0.5)
    runs = {}
    for backend in ("numpy", "numba"):
        monkeypatch.setenv("NTKCHECK_BACKEND", backend)
        runs[backend] = gradient_flow(model, X, w, loss, steps=20, step_size=0.05)
    ref, got = runs["numpy"], runs["numba"]
    assert [r.step for r in got.records] == list(range(21))
    np.testing.assert_allclose([r.loss for r in got.records], [r.loss for r in ref.records],
                               rtol=1e-10)
    assert got.records[-1].loss < got.records[0].loss  # the flow does descend
    for a, b in ((got.model.Q, ref.model.Q), (got.model.K, ref.model.K),
                 (got.model.V, ref.model.V)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10 * np.abs(b).max())


@pytest.mark.parametrize("N", [1, 7, 40])
def test_bit_identical_whatever_the_thread_count(N):
    """The sample chunks depend on N only and are reduced in a fixed order, so 1, 2 and 3
    worker threads give bit-identical losses and gradients (N = 40 > CHUNKS exercises chunks
    of unequal size; N = 1 a single chunk)."""
    X, w = _data(seed=13, N=N)
    loss = _loss("token", X, w, seed=14)
    model = _model("heun", 1, seed=15)
    outs = [fast.loss_and_gradient_fast(model, X, w, loss, threads=t) for t in (1, 2, 3)]
    for other in outs[1:]:
        assert other[0] == outs[0][0]
        for a, b in zip(other[1:], outs[0][1:]):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("scheme,substeps", SCHEMES)
def test_kept_attention_equals_recomputed(scheme, substeps, monkeypatch):
    """Keeping the forward pass's stage inputs and attention for the backward pass and
    recomputing them (when they would exceed KEEP_BYTES) run the same compiled code on the same
    inputs, so loss and gradients are bit-identical (here forced with KEEP_BYTES = 0)."""
    X, w = _data(seed=16)
    loss = _loss("token", X, w, seed=17)
    model = _model(scheme, substeps, seed=18)
    kept = fast.loss_and_gradient_fast(model, X, w, loss, threads=1)
    monkeypatch.setattr(fast, "KEEP_BYTES", 0)
    recomputed = fast.loss_and_gradient_fast(model, X, w, loss, threads=2)
    assert kept[0] == recomputed[0]
    for a, b in zip(kept[1:], recomputed[1:]):
        assert np.array_equal(a, b)


def test_chunks_depend_on_the_batch_size_only():
    """chunk_starts covers 0..N in min(N, CHUNKS) non-empty ordered chunks."""
    for N in (1, 5, fast.CHUNKS, 3 * fast.CHUNKS + 1):
        b = fast.chunk_starts(N)
        assert b[0] == 0 and b[-1] == N
        assert len(b) - 1 == min(N, fast.CHUNKS)
        assert np.all(np.diff(b) >= 1)


def test_large_scores_stay_finite_and_match():
    """Scores of order 1e2-1e3 (nearly hard attention): exp is taken after the row-max shift,
    so nothing overflows; both backends agree to 1e-10 relative (the gradients are steeper,
    so the round-off budget is larger than in the O(1) case)."""
    X, w = _data(seed=16)
    loss = _loss("pooled", X, w, seed=17)
    model = _model("euler", 1, seed=18, std=8.0)
    R_ref, g_ref = loss_and_gradient(model, X, w, loss, backend="numpy")
    R_fast, g_fast = loss_and_gradient(model, X, w, loss, backend="numba")
    assert np.isfinite(R_fast) and g_fast.is_finite()
    assert R_fast == pytest.approx(R_ref, rel=1e-10, abs=0)
    _close(g_fast, g_ref, 1e-10)


def test_exp_kernel_matches_numpy():
    """The vectorisable exp of the kernels has relative error <= 4 ulp against numpy's exp on
    [-708, 0], is exactly 1 at 0 and flushes to 0 below -708 and at -inf."""
    rng = np.random.default_rng(19)
    x = np.concatenate([-rng.exponential(5.0, 4000), -rng.uniform(0, 708, 4000),
                        [0.0, -1e-300, -708.5, -1e4, -np.inf]])
    out = np.empty_like(x)
    fast._exp_array(x, out)
    ref = np.exp(x)
    keep = x > -708.0
    assert np.all(np.abs(out[keep] - ref[keep]) <= 4 * np.finfo(float).eps * ref[keep])
    assert out[-5] == 1.0 and np.all(out[-3:] == 0.0)


def test_exp_kernel_error_bound_against_extended_precision():
    """The kernel's exp is within its a-priori bound (6 u = 3 eps relative) of exp computed at
    120 bits (mpmath), at points spread over [-708, 0] and at the ends of the reduced range
    (r = x - k log 2 near +-log(2)/2, where the polynomial's error is largest)."""
    import mpmath

    rng = np.random.default_rng(23)
    half = np.log(2.0) / 2
    k_log2 = rng.integers(0, 1020, 300) * np.log(2.0)
    x = np.concatenate([-rng.uniform(0, 708, 300), -rng.exponential(2.0, 300),
                        -(k_log2 + half * (1 - 1e-9)), -(k_log2 - half * (1 - 1e-9))])
    x = x[(x <= 0) & (x > -708.0)]
    out = np.empty_like(x)
    fast._exp_array(x, out)
    eps = np.finfo(float).eps
    with mpmath.workprec(120):
        worst = max(float(abs(mpmath.mpf(o) / mpmath.exp(mpmath.mpf(t)) - 1))
                    for t, o in zip(x, out))
    assert worst <= 3 * eps


@pytest.mark.parametrize("rows,terms", [(1, 3), (5, 8), (6, 9), (7, 4)])
def test_tiled_sums_match_numpy(rows, terms):
    """The register-tiled sums of the kernels (two rows and four terms a pass, with odd row
    counts and term counts that are not multiples of 4 exercising the remainders) equal
    numpy's products to round-off: an entry summing n products (plus the scale and the
    existing value) in any order is within the classical bound (n + 2) eps sum |terms|."""
    from ntkcheck import _compiled as _fused

    rng = np.random.default_rng(20)
    cols = 40
    coef, M = rng.standard_normal((rows, terms)), rng.standard_normal((terms, cols))
    out0 = rng.standard_normal((rows, cols))
    out = out0.copy()
    _fused._add_combinations(out, coef, rows, terms, M, cols, 0.25)
    eps = np.finfo(float).eps
    bound = (terms + 2) * eps * (np.abs(out0) + 0.25 * np.abs(coef) @ np.abs(M))
    assert np.all(np.abs(out - (out0 + 0.25 * coef @ M)) <= bound)
    X, Y = rng.standard_normal((rows, cols)), rng.standard_normal((terms, cols))
    dots = out0[:, :terms].copy()
    _fused._add_dots(dots, X, Y, rows, terms, cols, 0.5)
    bound = (cols + 2) * eps * (np.abs(out0[:, :terms]) + 0.5 * np.abs(X) @ np.abs(Y).T)
    assert np.all(np.abs(dots - (out0[:, :terms] + 0.5 * X @ Y.T)) <= bound)


def test_backend_choice_and_messages(monkeypatch):
    """auto picks numba when importable and numpy otherwise; asking for numba without it, or
    for an unknown backend, is a one-line InputError naming the fix and the valid choices."""
    monkeypatch.delenv("NTKCHECK_BACKEND", raising=False)
    assert adjoint.resolve_backend() == "numba"
    assert adjoint.resolve_backend("numpy") == "numpy"
    with pytest.raises(InputError, match="valid choices: auto, numba, numpy"):
        adjoint.resolve_backend("cuda")
    monkeypatch.setenv("NTKCHECK_BACKEND", "nope")
    with pytest.raises(InputError, match="NTKCHECK_BACKEND"):
        adjoint.resolve_backend()
    monkeypatch.setattr(fast, "AVAILABLE", False)
    monkeypatch.setenv("NTKCHECK_BACKEND", "auto")
    assert adjoint.resolve_backend() == "numpy"
    with pytest.raises(InputError, match=r"pip install -e '\.\[fast\]' in the ntkcheck clone"):
        adjoint.resolve_backend("numba")


def _train_setup(tmp_path):
    from typer.testing import CliRunner

    from ntkcheck.cli import app

    runner = CliRunner()
    data = tmp_path / "teacher.npz"
    res = runner.invoke(app, ["generate", "teacher", "--out", str(data), "--samples", "5",
                              "--tokens", "4", "--dim", "3", "--layers", "2", "--heads", "4",
                              "--key-dim", "2", "--seed", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "train.toml"
    cfg.write_text('[data]\npath = "teacher.npz"\n[model]\nlayers = 2\nheads = 4\nkey_dim = 2\n'
                   'init_qk_std = 1.0\ninit_v_std = 1.0\nscheme = "heun"\n[flow]\nsteps = 5\n'
                   'step_size = 0.2\n[output]\ncheckpoint_every = 0\n')
    return runner, app, cfg


def _history(run_dir):
    import json

    return [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]


def test_cli_train_backends_agree_and_bad_backend_is_exit_two(tmp_path, monkeypatch):
    """``ntkcheck train`` runs the fast path by default; with NTKCHECK_BACKEND=numpy the same
    history (losses to 1e-12 relative: round-off of 5 steps); an unknown NTKCHECK_BACKEND is a
    one-line error with exit 2."""
    runner, app, cfg = _train_setup(tmp_path)
    losses = {}
    for backend in ("auto", "numpy"):
        monkeypatch.setenv("NTKCHECK_BACKEND", backend)
        res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / backend), "-q"])
        assert res.exit_code == 0, res.output
        losses[backend] = [r["loss"] for r in _history(tmp_path / backend)]
    assert len(losses["auto"]) == 6
    np.testing.assert_allclose(losses["auto"], losses["numpy"], rtol=1e-12)
    monkeypatch.setenv("NTKCHECK_BACKEND", "gpu")
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "bad"), "-q"])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1
    assert lines[0].startswith("ntkcheck: error:") and "NTKCHECK_BACKEND" in lines[0]


def test_cli_train_notes_the_numpy_fallback(tmp_path, monkeypatch):
    """Without numba, ``ntkcheck train`` still trains (numpy reference path) and says so once
    on stderr with the install hint; -q silences it."""
    import ntkcheck.cli.train as cli_train

    runner, app, cfg = _train_setup(tmp_path)
    monkeypatch.delenv("NTKCHECK_BACKEND", raising=False)
    monkeypatch.setattr(fast, "AVAILABLE", False)
    monkeypatch.setattr(cli_train, "fast_available", False)
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    notes = [x for x in res.stderr.splitlines() if x.startswith("ntkcheck: note:")]
    assert len(notes) == 1 and "pip install -e '.[fast]' in the ntkcheck clone" in notes[0]
    res = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "b"), "-q"])
    assert res.exit_code == 0 and res.stderr == ""


def test_blas_limit_scans_the_libraries_once(monkeypatch):
    """The fused step limits BLAS to one thread at every call, but the library scan (a ctypes
    callback, where a Ctrl-C would be printed and dropped) happens once per process: the
    second and later steps create no ThreadpoolController."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import ntkcheck._threads as threads

    made = []
    real = threadpoolctl.ThreadpoolController

    class Counting(real):
        def __init__(self, *a, **k):
            made.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", Counting)
    monkeypatch.setattr(threads, "_CONTROLLER", [])
    for _ in range(3):
        with threads.blas_single_thread():
            pass
    assert len(made) == 1


def test_the_memory_guard_counts_the_kept_attention():
    """resources.train_bytes adds, per thread, one sample's kept inputs, projections and
    attention for the padded kernels' C, counted here from their shapes (when it fits in
    KEEP_BYTES), and nothing beyond it (recomputed)."""
    from ntkcheck.resources import train_bytes

    L, H, k, d, N, n, s, stages = 16, 32, 4, 8, 64, 16, 1, 4
    base = dict(layers=L, heads=H, key_dim=k, dim=d, samples=N, tokens=n,
                depth_states=L * s * stages)
    C = 2 * 4 + d  # key_dim 4 is already a multiple of 4
    kept = 8 * (L * s * stages) * (n * d + n * (C + 1) * H + n * (n + 1) * H)  # one pad row
    assert 0 < kept <= fast.KEEP_BYTES
    assert train_bytes(**base, threads=3) - train_bytes(**base, threads=1) == 2 * kept
    big = dict(base, tokens=2048)  # n^2 H L s stages * 8 bytes far beyond 64 MiB: recomputed
    assert train_bytes(**big, threads=3) == train_bytes(**big, threads=1)
