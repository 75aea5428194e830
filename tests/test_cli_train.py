"""``ntkcheck train`` and ``ntkcheck generate teacher`` used like a user would (SPEC §6):
run directory layout, resume equivalence, interruption, bad configurations, divergence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ntkcheck.cli import app
from ntkcheck.io.tokens import load_token_npz
from ntkcheck.meanfield import load_checkpoint, load_train_config, train

runner = CliRunner()

CONFIG = """\
[data]
path = "teacher.npz"

[model]
layers = 2
heads = 8
key_dim = 2
init_qk_std = 1.0
init_v_std = 1.0
seed = 1

[loss]
kind = "token"

[flow]
steps = 30
step_size = 0.25

[output]
dir = "run"
checkpoint_every = 10
ntk_every = 15
"""


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("teacher")
    path = folder / "teacher.npz"
    res = _invoke("generate", "teacher", "--out", path, "--samples", 6, "--tokens", 3, "--dim",
                  3, "--layers", 2, "--heads", 8, "--key-dim", 2, "--scale", 1.0, "--seed", 3,
                  "--quiet")
    assert res.exit_code == 0, res.output
    return path


def _setup(tmp_path: Path, teacher: Path, text: str = CONFIG) -> Path:
    (tmp_path / "teacher.npz").write_bytes(teacher.read_bytes())
    cfg = tmp_path / "train.toml"
    cfg.write_text(text)
    return cfg


def test_generate_teacher_writes_loadable_data(teacher):
    """The teacher file loads with load_token_npz and has token targets (N, n, d') = (6, 3, 3)
    equal to the teacher heads' output (recomputed from the stored heads, exact equality)."""
    from ntkcheck.meanfield import MeanFieldTransformer

    data = load_token_npz(teacher)
    assert data.tokens.shape == (6, 3, 3)
    T = data.extra["targets"]
    assert T.shape == (6, 3, 3)
    m = MeanFieldTransformer(data.extra["teacher_Q"], data.extra["teacher_K"],
                             data.extra["teacher_V"])
    np.testing.assert_array_equal(m.forward(data.tokens, data.weights), T)


def test_generate_teacher_rejects_bad_target_dim(tmp_path):
    """--target-dim > --dim is an input error: exit 2, one line naming the option."""
    res = _invoke("generate", "teacher", "--out", tmp_path / "t.npz", "--dim", 2,
                  "--target-dim", 3)
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "ntkcheck: error: field '--target-dim': must be <= --dim = 2, got 3"]


def test_train_writes_run_directory(tmp_path, teacher):
    """A run writes config.json (absolute paths), history.jsonl (one record per step 0..30 with
    the documented keys, pl_ratio = grad_norm_sq / (2 loss), NTK at steps 0, 15, 30), the
    checkpoints of steps 0, 10, 20, 30 with the documented arrays, and summary.json; --json
    prints the same summary."""
    cfg = _setup(tmp_path, teacher)
    res = _invoke("train", cfg, "--json")
    assert res.exit_code == 0, res.output + res.stderr
    summary = json.loads(res.stdout)
    run = tmp_path / "run"
    assert summary == json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["step"] == 30
    assert summary["final_loss"] < summary["initial_loss"]
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["path"] == str((tmp_path / "teacher.npz").resolve())
    assert config["output"]["dir"] == str(run.resolve())
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == list(range(31))
    for h in history:
        assert set(h) >= {"step", "time", "loss", "grad_norm_sq", "ntk_min_eig", "pl_ratio"}
        assert h["pl_ratio"] == pytest.approx(h["grad_norm_sq"] / (2 * h["loss"]), rel=1e-14, abs=0)
    assert [h["step"] for h in history if h["ntk_min_eig"] is not None] == [0, 15, 30]
    assert summary["ntk_min_eig"] == history[-1]["ntk_min_eig"]
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [f"step_{s:06d}.npz" for s in (0, 10, 20, 30)]
    with np.load(run / "checkpoints" / "step_000030.npz") as z:
        assert z["Q"].shape == (2, 8, 2, 3) and z["K"].shape == (2, 8, 2, 3)
        assert z["V"].shape == (2, 8, 3, 3) and int(z["step"]) == 30


def test_summary_is_rendered_and_progress_is_plain_off_terminal(tmp_path, teacher):
    """Without --json the summary is a readable report on stdout; progress lines go to stderr
    (not a terminal under CliRunner); --quiet prints nothing at all."""
    cfg = _setup(tmp_path, teacher)
    res = _invoke("train", cfg, "--steps", 5)
    assert res.exit_code == 0
    assert res.stdout.startswith("completed: 5 steps")
    assert "loss        initial" in res.stdout and "ntk         smallest eigenvalue" in res.stdout
    assert res.stderr.startswith("step 0/5 loss")
    res = _invoke("train", cfg, "--steps", 5, "--quiet", "--overwrite")
    assert res.exit_code == 0 and res.stdout == "" and res.stderr == ""


def test_existing_run_needs_resume_or_overwrite(tmp_path, teacher):
    """Training into a directory that holds a run is refused (exit 2, names output.dir)."""
    cfg = _setup(tmp_path, teacher)
    assert _invoke("train", cfg, "--steps", 2, "-q").exit_code == 0
    res = _invoke("train", cfg, "--steps", 2)
    assert res.exit_code == 2
    assert "field 'output.dir'" in res.stderr and "--resume" in res.stderr


def _arrays(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in ("Q", "K", "V", "step")}


def test_resume_is_bit_identical(tmp_path, teacher):
    """Run 30 steps at once (dir A) vs 12 steps then --resume up to 30 (dir B): the final heads
    are bit-identical and so are the histories' losses (the flow is deterministic given a
    checkpoint; the resumed history is truncated to the checkpoint step and continued)."""
    cfg = _setup(tmp_path, teacher)
    assert _invoke("train", cfg, "--out", tmp_path / "A", "-q").exit_code == 0
    assert _invoke("train", cfg, "--out", tmp_path / "B", "--steps", 12, "-q").exit_code == 0
    res = _invoke("train", cfg, "--out", tmp_path / "B", "--resume", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["start_step"] == 12
    a = _arrays(tmp_path / "A" / "checkpoints" / "step_000030.npz")
    b = _arrays(tmp_path / "B" / "checkpoints" / "step_000030.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    ha = [json.loads(x) for x in (tmp_path / "A" / "history.jsonl").read_text().splitlines()]
    hb = [json.loads(x) for x in (tmp_path / "B" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hb] == list(range(31))
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]


def test_interrupt_leaves_a_valid_checkpoint_and_resumes(tmp_path, teacher):
    """A KeyboardInterrupt from the progress callback at step 17 (as Ctrl-C would) ends the run
    with status interrupted and a checkpoint of step 17 whose heads reproduce the recorded loss;
    the history holds steps 0..17; resuming reaches step 30 with heads bit-identical to an
    uninterrupted run."""
    cfg = _setup(tmp_path, teacher)
    config = load_train_config(cfg)

    def ctrl_c(record):
        if record.step == 17:
            raise KeyboardInterrupt

    result = train(config, progress=ctrl_c)
    assert result.status == "interrupted" and result.step == 17
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoints" / "step_000017.npz")
    assert ckpt.step == 17
    history = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text()
               .splitlines()]
    assert [h["step"] for h in history] == list(range(18))
    assert ckpt.loss == history[-1]["loss"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "interrupted"
    resumed = train(config, resume=True)
    assert resumed.status == "completed" and resumed.start_step == 17
    straight = train(config.with_overrides(out=tmp_path / "straight"))
    for name in ("Q", "K", "V"):
        np.testing.assert_array_equal(getattr(resumed.model, name),
                                      getattr(straight.model, name))


def test_interrupt_exit_code(tmp_path, teacher, monkeypatch):
    """The CLI reports an interrupted run with exit 130 and a hint to --resume."""
    import ntkcheck.meanfield.flow as flow

    real = flow.loss_and_gradient
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(flow, "loss_and_gradient", flaky)
    cfg = _setup(tmp_path, teacher)
    res = _invoke("train", cfg, "-q")
    assert res.exit_code == 130
    assert "interrupted at step 3" in res.stderr and "--resume" in res.stderr
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "step_000003.npz").step == 3


def test_divergence_exits_4_and_keeps_good_checkpoints(tmp_path, teacher):
    """A huge step size diverges: exit 4, one error line naming the step and the last good
    checkpoint; every checkpoint on disk holds finite heads."""
    cfg = _setup(tmp_path, teacher, CONFIG.replace("step_size = 0.25", "step_size = 1e6")
                 .replace("checkpoint_every = 10", "checkpoint_every = 1"))
    res = _invoke("train", cfg, "--steps", 100)
    assert res.exit_code == 4
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("ntkcheck: error: training diverged at step")
    assert "last good checkpoint" in lines[-1]
    ckpts = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert ckpts
    for p in ckpts:
        z = _arrays(p)
        assert all(np.isfinite(z[k]).all() for k in ("Q", "K", "V"))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


BAD = [
    # (edit of the config text, expected field, expected fragment of the message)
    (lambda t: t + "\n[extra]\nx = 1\n", "extra", "unknown table"),
    (lambda t: t.replace("heads = 8", "head = 8"), "model.head", "did you mean 'heads'"),
    (lambda t: t.replace("heads = 8", "heads = 0"), "model.heads",
     "must be an integer >= 1, got 0"),
    (lambda t: t.replace("heads = 8", 'heads = "8"'), "model.heads", "(a string)"),
    (lambda t: t.replace("layers = 2", "layers = 2.5"), "model.layers", "an integer"),
    (lambda t: t.replace("key_dim = 2", "key_dim = true"), "model.key_dim", "a boolean"),
    (lambda t: t.replace("init_v_std = 1.0", "init_v_std = -1.0"), "model.init_v_std", ">= 0"),
    (lambda t: t.replace("seed = 1", "seed = 1\nscheme = \"rk5\""), "model.scheme", "'rk4'"),
    (lambda t: t.replace("seed = 1", "seed = 1\nsubsteps = 0"), "model.substeps", ">= 1"),
    (lambda t: t.replace('kind = "token"', 'kind = "mse"'), "loss.kind", "'pooled'"),
    (lambda t: t.replace("steps = 30", "steps = -1"), "flow.steps", ">= 0"),
    (lambda t: t.replace("step_size = 0.25", "step_size = 0"), "flow.step_size", "> 0"),
    (lambda t: t.replace("step_size = 0.25", "step_size = 0.25\ntol = 2.0"), "flow.tol",
     "in [0, 1)"),
    (lambda t: t.replace("steps = 30\n", ""), "flow.steps", "missing"),
    (lambda t: t.replace("checkpoint_every = 10", "checkpoint_every = -5"),
     "output.checkpoint_every", ">= 0"),
    (lambda t: t.replace("ntk_every = 15", "ntk_every = 1.5"), "output.ntk_every", "integer"),
    (lambda t: t.replace("dir = \"run\"", "dir = 3"), "output.dir", "must be a string"),
    (lambda t: t.replace("[model]", "model = 3\n[model2]"), "model2", "unknown table"),
    (lambda t: t.replace('path = "teacher.npz"', 'path = "missing.npz"'), "data.path",
     "no such file"),
    (lambda t: t.replace('kind = "token"', 'kind = "pooled"'), "loss.kind",
     "needs targets of shape (N, d')"),
    # an over-long data name was an OSError (ENAMETOOLONG) from is_file(): exit 5
    (lambda t: t.replace('path = "teacher.npz"', f'path = "{"t" * 300}.npz"'), "data.path",
     "name component of 304 bytes, over the 255"),
    (lambda t: t.replace('path = "teacher.npz"', f'path = "{"d/" * 2100}teacher.npz"'),
     "data.path", "has a path too long for the file system; use a shorter path"),
    (lambda t: t.replace('path = "teacher.npz"', 'path = "teacher\\u0000.npz"'), "data.path",
     "contains a NUL character"),
    (lambda t: t.replace('dir = "run"', f'dir = "{"r" * 256}"'), "output.dir",
     "name component of 256 bytes"),
]


@pytest.mark.parametrize("edit,field,fragment", BAD, ids=[b[1] + str(i) for i, b in
                                                          enumerate(BAD)])
def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path, teacher, edit, field,
                                                         fragment):
    """Every bad key (unknown table/key, wrong type, out of range, missing, missing data file,
    targets of the wrong shape for the loss) gives exit 2 and exactly one stderr line
    'ntkcheck: error: <config file>: field '<key>': ...' -- and no run directory."""
    cfg = _setup(tmp_path, teacher, edit(CONFIG))
    res = _invoke("train", cfg)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"ntkcheck: error: {cfg}: field '{field}': "), lines[0]
    assert fragment in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


def test_invalid_toml_and_missing_config(tmp_path):
    """A syntax error or a missing config file is a one-line error naming the file (exit 2)."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[model\nlayers = 2\n")
    res = _invoke("train", cfg)
    assert res.exit_code == 2 and "is not valid TOML" in res.stderr
    res = _invoke("train", tmp_path / "nope.toml")
    assert res.exit_code == 2 and res.stderr.strip() == (
        f"ntkcheck: error: {tmp_path / 'nope.toml'}: no such file; check the path")


def test_resume_without_checkpoint_and_with_changed_config(tmp_path, teacher):
    """--resume with no checkpoint, or with a config whose flow definition changed (here
    model.heads), is refused with exit 2 and a message saying what differs."""
    cfg = _setup(tmp_path, teacher)
    res = _invoke("train", cfg, "--resume")
    assert res.exit_code == 2 and "no checkpoint" in res.stderr
    assert _invoke("train", cfg, "--steps", 3, "-q").exit_code == 0
    cfg.write_text(CONFIG.replace("heads = 8", "heads = 4"))
    res = _invoke("train", cfg, "--resume")
    assert res.exit_code == 2 and "model.heads" in res.stderr


@pytest.mark.parametrize("args", [["train", "--help"], ["generate", "teacher", "--help"]])
def test_commands_have_help(args):
    """Every new command documents itself (exit 0, usage line)."""
    res = _invoke(*args)
    assert res.exit_code == 0 and "Usage" in res.stdout
