"""A training run on disk: resolved config, history, checkpoints, summary; resume and interrupt.

Layout of ``output.dir``::

    config.json                     resolved configuration (absolute paths)
    history.jsonl                   one JSON object per recorded step
    checkpoints/step_NNNNNN.npz     Q, K, V, step, elapsed, initial_loss, loss, fingerprint, ...
    summary.json                    status, losses, time, NTK smallest eigenvalue, ...

Every file is written atomically (history.jsonl is appended line by line and rewritten
atomically when a resume truncates it to the checkpoint's step). The flow is deterministic given
a checkpoint, so an interrupted and resumed run ends with bit-identical heads.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import ConfigError, InputError, NumericalError
from ..io.atomic import atomic_savez, atomic_write_text
from ..io.tokens import read_npz
from .config import TrainConfig, TrainingSet, load_training_set
from .flow import FlowDiverged, StepRecord, gradient_flow
from .model import MeanFieldTransformer
from .ntk import MAX_BYTES, ntk_bytes, ntk_size
from .schemes import get_scheme

__all__ = ["TrainResult", "Checkpoint", "train", "load_checkpoint", "list_checkpoints",
           "checkpoint_path"]

_CKPT = re.compile(r"^step_(\d{6,})\.npz$")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """Heads at ``step`` and what a resume needs."""

    model: MeanFieldTransformer
    step: int
    elapsed: float
    initial_loss: float
    loss: float
    fingerprint: dict
    path: Path


@dataclass(frozen=True, eq=False)
class TrainResult:
    """Outcome of :func:`train` (serialised as ``summary.json``)."""

    status: str                     # completed | converged | interrupted | diverged
    run_dir: Path
    start_step: int                 # 0, or the checkpoint step a resume started from
    step: int                       # last step reached (heads saved in ``checkpoint``)
    initial_loss: Optional[float]
    final_loss: Optional[float]
    grad_norm_sq: Optional[float]
    pl_ratio: Optional[float]
    time: float
    ntk_min_eig: Optional[float]
    ntk_step: Optional[int]
    n_params: int
    checkpoint: Optional[Path]
    model: MeanFieldTransformer
    config: TrainConfig
    history: tuple[StepRecord, ...] = field(default=())
    error: Optional[str] = None

    @property
    def loss_ratio(self) -> Optional[float]:
        if self.initial_loss and self.final_loss is not None:
            return self.final_loss / self.initial_loss
        return None

    def to_dict(self) -> dict:
        return {
            "status": self.status, "run_dir": str(self.run_dir), "start_step": self.start_step,
            "step": self.step, "initial_loss": self.initial_loss, "final_loss": self.final_loss,
            "loss_ratio": self.loss_ratio, "grad_norm_sq": self.grad_norm_sq,
            "pl_ratio": self.pl_ratio, "time": self.time, "ntk_min_eig": self.ntk_min_eig,
            "ntk_step": self.ntk_step, "n_params": self.n_params,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "error": self.error, "config": self.config.to_dict(),
        }


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}.npz"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint, ascending."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CKPT.match(p.name))]
    return sorted(found)


def _fingerprint(config: TrainConfig) -> dict:
    """What must not change between a checkpoint and its resume (the flow's definition)."""
    digest = hashlib.sha256(config.data_path.read_bytes()).hexdigest()
    m = config.model
    return {"data.sha256": digest, "model.layers": m.layers, "model.heads": m.heads,
            "model.key_dim": m.key_dim, "model.scheme": get_scheme(m.scheme).name,
            "model.substeps": m.substeps, "loss.kind": config.loss.value,
            "flow.step_size": config.flow.step_size, "flow.tol": config.flow.tol}


def _save_checkpoint(run_dir: Path, model: MeanFieldTransformer, record: StepRecord,
                     initial_loss: float, fingerprint: dict) -> Path:
    path = checkpoint_path(run_dir, record.step)
    atomic_savez(path, Q=model.Q, K=model.K, V=model.V, step=np.int64(record.step),
                 elapsed=np.float64(record.time), initial_loss=np.float64(initial_loss),
                 loss=np.float64(record.loss), scheme=np.str_(model.scheme.name),
                 substeps=np.int64(model.substeps), fingerprint=np.str_(json.dumps(fingerprint)))
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`train`."""
    arrays = read_npz(path)
    need = {"Q", "K", "V", "step", "elapsed", "initial_loss", "loss", "scheme", "substeps",
            "fingerprint"}
    missing = sorted(need - set(arrays))
    if missing:
        raise InputError(f"is not an ntkcheck checkpoint (missing {', '.join(missing)})",
                         source=str(path))
    model = MeanFieldTransformer(arrays["Q"], arrays["K"], arrays["V"],
                                 get_scheme(str(arrays["scheme"])), int(arrays["substeps"]))
    return Checkpoint(model, int(arrays["step"]), float(arrays["elapsed"]),
                      float(arrays["initial_loss"]), float(arrays["loss"]),
                      json.loads(str(arrays["fingerprint"])), Path(path))


def _read_history(path: Path) -> list[dict]:
    """Complete JSON lines of history.jsonl (a torn last line from a crash is dropped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out


def _lines(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _prepare_new(run_dir: Path, overwrite: bool) -> None:
    ours = [run_dir / "history.jsonl", run_dir / "summary.json", run_dir / "config.json"]
    ckpts = [p for _, p in list_checkpoints(run_dir)]
    if not overwrite and (ckpts or (run_dir / "history.jsonl").exists()):
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, "
                          "--overwrite to start over, or choose another --out",
                          field="output.dir")
    for p in ours + ckpts:
        if p.exists():
            p.unlink()


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          progress: Optional[Callable[[StepRecord], None]] = None,
          training_set: Optional[TrainingSet] = None) -> TrainResult:
    """Run (or resume) the gradient flow of ``config`` and write its run directory.

    Parameters
    ----------
    resume : continue from the last checkpoint in ``output.dir`` (history truncated to it).
    overwrite : start over in a directory that already holds a run (our files only).
    progress : called with every record; may raise KeyboardInterrupt to stop cleanly.
    training_set : the loaded data (default: :func:`load_training_set`).

    Returns
    -------
    TrainResult; status ``interrupted`` after a KeyboardInterrupt (checkpoint written).

    Raises
    ------
    ConfigError, InputError on bad configuration or data; NumericalError if the flow diverges
    (summary.json written with status ``diverged``; earlier checkpoints kept).
    """
    ts = training_set if training_set is not None else load_training_set(config)
    m = config.model
    if config.output.ntk_every > 0:
        M = ntk_size(ts.weights, ts.loss)
        d = ts.tokens.shape[2]
        P = m.layers * m.heads * (2 * m.key_dim * d + d * d)
        need = ntk_bytes(M, P)
        if need > MAX_BYTES:
            raise ConfigError(f"the empirical NTK would need {need / 2**30:.1f} GiB (M = {M} "
                              f"residual entries, {P} parameters); set ntk_every = 0 or use less "
                              "data", source=config.source, field="output.ntk_every")
    run_dir = config.output.dir
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {run_dir} ({err.strerror})", source=config.source,
                          field="output.dir") from None
    fingerprint = _fingerprint(config)
    history_path = run_dir / "history.jsonl"
    if resume:
        ckpts = list_checkpoints(run_dir)
        if not ckpts:
            raise InputError(f"no checkpoint in {run_dir / 'checkpoints'}; run without --resume",
                             field="--resume")
        ckpt = load_checkpoint(ckpts[-1][1])
        changed = [k for k in fingerprint if ckpt.fingerprint.get(k) != fingerprint[k]]
        if changed:
            k = changed[0]
            raise InputError(f"{ckpt.path} was made with {k} = {ckpt.fingerprint.get(k)!r}, the "
                             f"config has {fingerprint[k]!r}; resume with the original config "
                             "or start a new run with --out", field="--resume")
        model, start, offset = ckpt.model, ckpt.step, ckpt.elapsed
        initial = ckpt.initial_loss if np.isfinite(ckpt.initial_loss) else None
        kept = [r for r in _read_history(history_path) if r.get("step", -1) < start]
        atomic_write_text(history_path, _lines(kept))
    else:
        _prepare_new(run_dir, overwrite)
        model = MeanFieldTransformer.init(layers=m.layers, heads=m.heads, key_dim=m.key_dim,
                                          dim=ts.tokens.shape[2], init_qk_std=m.init_qk_std,
                                          init_v_std=m.init_v_std, seed=m.seed, scheme=m.scheme,
                                          substeps=m.substeps)
        start, offset, initial, kept = 0, 0.0, None, []
        atomic_write_text(history_path, "")
    atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")

    ntk_seen = [(r["step"], r["ntk_min_eig"]) for r in kept if r.get("ntk_min_eig") is not None]
    state: dict = {"ckpt": checkpoint_path(run_dir, start) if resume else None,
                   "ckpt_step": start if resume else None, "initial": initial,
                   "last": None, "ntk": ntk_seen[-1] if ntk_seen else None}
    every = config.output.checkpoint_every

    def on_step(record: StepRecord, current: MeanFieldTransformer) -> None:
        records.append(record)
        if state["initial"] is None:
            state["initial"] = record.loss
        fh.write(json.dumps(record.to_dict()) + "\n")
        fh.flush()
        state["last"] = record
        if record.ntk_min_eig is not None:
            state["ntk"] = (record.step, record.ntk_min_eig)
        if every > 0 and record.step % every == 0 and state["ckpt_step"] != record.step:
            state["ckpt"] = _save_checkpoint(run_dir, current, record, state["initial"],
                                             fingerprint)
            state["ckpt_step"] = record.step
        if progress is not None:
            progress(record)

    def result(status: str, model: MeanFieldTransformer, step: int, error=None) -> TrainResult:
        last = state["last"]
        at = last if last and last.step == step else None  # the record of the final heads
        ntk = state["ntk"]
        return TrainResult(
            status=status, run_dir=run_dir, start_step=start, step=step,
            initial_loss=state["initial"],
            final_loss=at.loss if at else None,
            grad_norm_sq=at.grad_norm_sq if at else None,
            pl_ratio=at.pl_ratio if at else None,
            time=last.time if last else offset, ntk_min_eig=ntk[1] if ntk else None,
            ntk_step=ntk[0] if ntk else None, n_params=model.n_params,
            checkpoint=state["ckpt"], model=model, config=config,
            history=tuple(records), error=error)

    records: list[StepRecord] = []
    with open(history_path, "a", encoding="utf-8") as fh:
        try:
            flow = gradient_flow(model, ts.tokens, ts.weights, ts.loss,
                                 steps=config.flow.steps, step_size=config.flow.step_size,
                                 start_step=start, tol=config.flow.tol,
                                 ntk_every=config.output.ntk_every, initial_loss=initial,
                                 time_offset=offset, callback=on_step)
        except FlowDiverged as err:
            good = state["ckpt"]
            msg = (f"{err}; last good checkpoint: {good}" if good else
                   f"{err}; no checkpoint was written (set output.checkpoint_every > 0)")
            res = result("diverged", model, err.step, error=msg)
            atomic_write_text(run_dir / "summary.json", json.dumps(res.to_dict(), indent=2) + "\n")
            raise NumericalError(msg) from None
    final = flow.model
    last = state["last"]
    if state["ckpt_step"] != flow.step and last is not None and last.step == flow.step:
        state["ckpt"] = _save_checkpoint(run_dir, final, last, state["initial"], fingerprint)
        state["ckpt_step"] = flow.step
    elif state["ckpt_step"] != flow.step:
        # interrupted between an update and its record: save the heads with what is known
        elapsed = last.time if last else offset
        stub = StepRecord(flow.step, elapsed, float("nan"), float("nan"), None, None)
        state["ckpt"] = _save_checkpoint(run_dir, final, stub, state["initial"] or float("nan"),
                                         fingerprint)
        state["ckpt_step"] = flow.step
    res = result(flow.status.value, final, flow.step)
    atomic_write_text(run_dir / "summary.json", json.dumps(res.to_dict(), indent=2) + "\n")
    return res
