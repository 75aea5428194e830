"""Notebook display of training runs and models: ``repr`` is one short line with the facts a
user looks for first (not the history arrays or the parameter arrays), ``_repr_html_`` is a
small well-formed table with every string escaped."""

from __future__ import annotations

import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

import ntkcheck as nk

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A short run of samples/train.toml in a directory whose name needs HTML escaping."""
    out = tmp_path_factory.mktemp("repr") / "run <b>&'x'"
    config = nk.load_train_config(SAMPLES / "train.toml").with_overrides(
        steps=8, out=out, ntk_every=4, checkpoint_every=4)
    nk.train(config)
    return out


def test_run_repr_is_one_short_line_with_the_facts(run_dir):
    """repr(load_run(...)) is one line under 300 characters naming the directory, the status,
    the step, the loss from first to last, the model size and the checkpoints."""
    run = nk.load_run(run_dir)
    text = repr(run)
    assert len(text) < 300 and "\n" not in text, text
    assert text.startswith("Run(") and run_dir.name in text
    assert f"{run.summary['status']} at step 8 of 8" in text
    assert f"{run.summary['initial_loss']:.3g} -> {run.summary['final_loss']:.3g}" in text
    assert "2 layers x 32 heads" in text and "checkpoints 3 (last at step 8)" in text


def test_model_repr_is_one_short_line_with_the_shapes(run_dir):
    """repr(run.model()) and repr of its transformer are one line under 300 characters with
    the step, layers, heads, key_dim, d, parameter count and scheme (no parameter values)."""
    model = nk.load_run(run_dir).model()
    for text in (repr(model), repr(model.model)):
        assert len(text) < 300 and "\n" not in text, text
        assert "2 layers x 32 heads" in text and "key_dim 4" in text
        assert f"{model.model.n_params} parameters" in text and "euler x 1" in text
    assert repr(model).startswith("TrainedModel(step 8:")
    assert "token loss" in repr(model)


def test_html_reprs_are_escaped_tables(run_dir):
    """_repr_html_ parses as XML (a table with a caption and one row per fact); the run
    directory's '<b>&' appears escaped, never as markup."""
    run = nk.load_run(run_dir)
    for obj, title in ((run, "Run"), (run.model(), "TrainedModel")):
        text = obj._repr_html_()
        table = ET.fromstring(text)
        assert table.tag == "table" and table.find("caption").find("b").text == title
        rows = {tr.find("th").text: tr.find("td").text for tr in table.iter("tr")}
        assert len(rows) >= 5 and len(text) < 2000
    rows = {tr.find("th").text: tr.find("td").text
            for tr in ET.fromstring(run._repr_html_()).iter("tr")}
    assert rows["run directory"].endswith("run <b>&'x'")
    assert "<b>&" not in run._repr_html_().split("</caption>")[1]


def test_run_without_summary_still_displays(run_dir, tmp_path):
    """A run killed before summary.json was written: the repr says so and takes the step and
    losses from the history."""
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "summary.json").unlink()
    run = nk.load_run(copy)
    text = repr(run)
    assert "no summary.json yet" in text and "at step 8 of 8" in text and len(text) < 300
    ET.fromstring(run._repr_html_())
