"""After ``train``: load_run, TrainedModel.predict, ``ntkcheck predict`` and ``ntkcheck plot``,
and the summary's explanation of the NTK figure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import ntkcheck as nk
from ntkcheck.cli import app
from ntkcheck.meanfield.config import load_training_set
from ntkcheck.meanfield.explain import ntk_explanation

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A short run of samples/train.toml: 12 steps, checkpoints every 4, NTK every 6."""
    out = tmp_path_factory.mktemp("run") / "run"
    config = nk.load_train_config(SAMPLES / "train.toml").with_overrides(
        steps=12, out=out, ntk_every=6, checkpoint_every=4)
    result = nk.train(config)
    return out, config, result


def test_load_run_reads_config_history_and_checkpoints(run_dir):
    """History columns are numpy arrays equal to history.jsonl; ntk_min_eig is NaN where it was
    not recorded; checkpoints are the steps written; nothing in the directory changes."""
    out, config, result = run_dir
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    run = nk.load_run(out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert run.config.to_dict() == config.to_dict()
    lines = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    np.testing.assert_array_equal(run.history["step"], [r["step"] for r in lines])
    np.testing.assert_array_equal(run.history["loss"], [r["loss"] for r in lines])
    recorded = ~np.isnan(run.history["ntk_min_eig"])
    np.testing.assert_array_equal(run.history["step"][recorded], [0, 6, 12])
    assert run.checkpoints == (0, 4, 8, 12)
    assert run.summary["status"] == result.status


def test_predict_equals_the_training_forward_pass(run_dir):
    """model.predict on the training tokens is the readout of the forward pass at that
    checkpoint, and its loss is the recorded loss of that step (same float computation:
    equal to 1e-12 relative)."""
    out, config, _ = run_dir
    run = nk.load_run(out)
    ts = load_training_set(config)
    for step in (4, 12):
        trained = run.model(step)
        assert trained.step == step
        pred = trained.predict(ts.tokens, ts.weights)
        XL = trained.model.forward(ts.tokens, ts.weights)
        e = ts.loss.target_dim
        np.testing.assert_array_equal(pred, np.where((ts.weights > 0)[..., None],
                                                     XL[..., :e], 0.0))
        loss, _ = ts.loss.value_and_cotangent(XL, ts.weights)
        recorded = run.history["loss"][run.history["step"] == step][0]
        assert loss == pytest.approx(recorded, rel=1e-12, abs=0)
    with pytest.raises(nk.InputError, match="no checkpoint at step 5"):
        run.model(5)


def test_predict_command_writes_predictions(run_dir, tmp_path):
    """`ntkcheck predict RUN_DIR DATA --out` writes the predictions of the last checkpoint and
    reports the loss on DATA's targets, equal to the run's final loss."""
    out, _, result = run_dir
    pred_file = tmp_path / "pred.npz"
    r = CliRunner().invoke(app, ["predict", str(out), str(SAMPLES / "teacher.npz"), "--out",
                                 str(pred_file), "--json"])
    assert r.exit_code == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["step"] == 12 and doc["loss"] == pytest.approx(result.final_loss, rel=1e-12, abs=0)
    with np.load(pred_file) as data:
        pred = data["predictions"]
    expected = nk.load_run(out).model().predict(np.load(SAMPLES / "teacher.npz")["tokens"])
    np.testing.assert_array_equal(pred, expected)
    bad = CliRunner().invoke(app, ["predict", str(out), str(SAMPLES / "teacher.npz"), "--out",
                                   str(tmp_path / "p.txt")])
    assert bad.exit_code == 2 and "--out" in bad.stderr


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"),
                                          (".pdf", b"%PDF")])
def test_plot_command_writes_each_format(run_dir, tmp_path, suffix, magic):
    """`ntkcheck plot RUN_DIR --out F` writes a non-empty file of the suffix's format."""
    pytest.importorskip("matplotlib")
    out, _, _ = run_dir
    target = tmp_path / f"curves{suffix}"
    r = CliRunner().invoke(app, ["plot", str(out), "--out", str(target)])
    assert r.exit_code == 0, r.stdout + r.stderr
    data = target.read_bytes()
    assert len(data) > 1000 and data.startswith(magic)


def test_plot_rejects_unknown_suffix_and_missing_run(tmp_path):
    """Exit 2 with a one-line error: a .jpg target, a directory that is not a run."""
    r = CliRunner().invoke(app, ["plot", str(tmp_path), "--out", str(tmp_path / "x.jpg")])
    assert r.exit_code == 2 and ".png" in r.stderr
    r = CliRunner().invoke(app, ["plot", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "run directory" in r.stderr


def test_ntk_explanation_numbers():
    """The explanation's step count is ln(10) / (2 lambda eta) (PL bound R <= R0 e^{-2 lambda t},
    t = eta steps); a non-positive lambda promises nothing."""
    lines = ntk_explanation(1e-3, 0.5, pl_ratio=0.05, loss=0.01, ntk_step=7)
    steps = np.log(10) / (2 * 1e-3 * 0.5)
    assert f"{steps:.3g} steps" in lines[0]
    assert "0.02 of it" in lines[1]  # 1e-3 / 0.05
    assert any("init_v_std" in line for line in lines)
    assert "promises no decrease" in ntk_explanation(-1e-17, 0.5)[0]
    assert ntk_explanation(None, 0.5) == []


def test_train_summary_explains_the_ntk(tmp_path):
    """The text summary of `train` explains lambda_min right under the NTK line."""
    r = CliRunner().invoke(app, ["train", str(SAMPLES / "train.toml"), "--out",
                                 str(tmp_path / "r"), "--steps", "3", "--ntk-every", "3"])
    assert r.exit_code == 0, r.stdout + r.stderr
    text = r.stdout
    assert "guaranteed decay rate" in text and "what changes lambda_min" in text
