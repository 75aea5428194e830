"""A training run on disk: resolved config, history, checkpoints, summary; resume and interrupt.

Layout of ``output.dir``::

    config.json                     resolved configuration (absolute paths)
    history.jsonl                   one JSON object per recorded step
    checkpoints/step_NNNNNN.npz     Q, K, V, step, elapsed, initial_loss, loss, fingerprint, ...
    summary.json                    status, losses, time, NTK smallest eigenvalue, ...

Every file is written atomically (history.jsonl is appended line by line and rewritten
atomically when a resume truncates it to the checkpoint's step). The flow is deterministic given
a checkpoint, so an interrupted and resumed run ends with bit-identical heads.

Guarantees after a crash (SIGKILL, power loss) at any point:

* only one process writes a run directory: ``.ntkcheck.lock`` is held with ``flock`` for the
  whole run; the kernel releases it when its holder dies, so a lock left by a killed run is
  stale by construction and is taken over (no manual cleanup);
* a checkpoint at step 0 is written before the history, so every run directory that holds a
  history can be resumed; a directory with no usable checkpoint at all resumes from step 0;
* ``--resume`` skips a corrupt or truncated checkpoint (renamed ``*.corrupt``) for the previous
  good one, skips torn or corrupt lines of history.jsonl while keeping every later good record,
  and removes the temporary files of interrupted writes; each of these is reported as a note;
* SIGTERM is handled like SIGINT (Ctrl-C): the flow stops at the current step, its checkpoint
  and summary are written, and further signals are deferred until they are.

Nothing outside the run directory is written or deleted (docs/safety.md): the run's own files
are checked by :mod:`ntkcheck.io.runfiles` before anything is touched, and a configuration or
data file that is one of them is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..errors import ConfigError, InputError, NumericalError, ResourceError, Terminated
from ..io.atomic import atomic_savez, atomic_write_text, remove_stale_temps
from ..io.paths import existing_file
from ..io.runfiles import (LOCK_NAME, MAX_HISTORY_LINE, RUN_FILES, RunLock, check_run_files,
                           list_checkpoints, read_history, run_owned)
from ..io.tokens import read_npz
from ..resources import check_memory, train_bytes
from .config import TrainConfig, TrainingSet, load_training_set
from .flow import FlowDiverged, StepRecord, gradient_flow
from .model import MeanFieldTransformer
from .ntk import MAX_BYTES, ntk_bytes, ntk_size
from .schemes import get_scheme

__all__ = ["TrainResult", "Checkpoint", "train", "load_checkpoint", "list_checkpoints",
           "checkpoint_path", "RunLock", "LOCK_NAME", "RUN_FILES", "MAX_HISTORY_LINE",
           "check_run_files", "run_owned"]


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
    notes: tuple[str, ...] = field(default=())   # what a resume repaired or skipped
    signal: Optional[str] = None                 # SIGINT or SIGTERM when interrupted by one

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
            "error": self.error, "signal": self.signal, "notes": list(self.notes),
            "config": self.config.to_dict(),
        }


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:06d}.npz"


def _fingerprint(config: TrainConfig) -> dict:
    """What must not change between a checkpoint and its resume (the flow's definition)."""
    sha = hashlib.sha256()
    with open(existing_file(config.data_path, "an .npz file"), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    digest = sha.hexdigest()
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
    Q, K, V = (np.asarray(arrays[k]) for k in ("Q", "K", "V"))
    ok = (all(a.dtype == np.float64 for a in (Q, K, V)) and Q.ndim == 4 and K.shape == Q.shape
          and V.shape == Q.shape[:2] + (Q.shape[3], Q.shape[3])
          and all(np.all(np.isfinite(a)) for a in (Q, K, V)))
    if not ok:
        raise InputError("holds heads of inconsistent shapes, types or non-finite values; it "
                         "is corrupt", source=str(path))
    try:
        fingerprint = json.loads(str(arrays["fingerprint"]))
        model = MeanFieldTransformer(Q, K, V, get_scheme(str(arrays["scheme"])),
                                     int(arrays["substeps"]))
        ckpt = Checkpoint(model, int(arrays["step"]), float(arrays["elapsed"]),
                          float(arrays["initial_loss"]), float(arrays["loss"]), fingerprint,
                          Path(path))
    except (ValueError, TypeError, KeyError, OverflowError, InputError) as err:
        raise InputError(f"has corrupt metadata ({str(err)[:100]})", source=str(path)) from None
    if not isinstance(fingerprint, dict) or ckpt.step < 0:
        raise InputError("has corrupt metadata (fingerprint or step)", source=str(path))
    return ckpt


def _lines(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _prepare_new(run_dir: Path, overwrite: bool) -> None:
    ours = [run_dir / "history.jsonl", run_dir / "summary.json", run_dir / "config.json"]
    ckpts = [p for _, p in list_checkpoints(run_dir)]
    ckpts += sorted((run_dir / "checkpoints").glob("step_*.npz.corrupt"))
    history = run_dir / "history.jsonl"
    used = history.exists() and (not history.is_file() or history.stat().st_size > 0)
    if not overwrite and (ckpts or used):
        raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, "
                          "--overwrite to start over, or choose another --out",
                          field="output.dir")
    for p in ours + ckpts:
        if p.exists():
            p.unlink()


@contextmanager
def _interrupts(state: dict):
    """SIGINT and SIGTERM stop the run like Ctrl-C: the first one raises KeyboardInterrupt
    (:class:`Terminated` for SIGTERM) and is recorded in ``state['signal']``; later ones are
    only recorded, so that the final checkpoint and summary are always written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        first = state.get("signal") is None
        if first:
            state["signal"] = signal.Signals(signum).name
        if first and not state.get("deferred"):
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _latest_good_checkpoint(run_dir: Path, notes: list[str]) -> Optional[Checkpoint]:
    """The newest checkpoint that loads; corrupt ones are renamed ``*.corrupt`` (with a note)."""
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            return load_checkpoint(path)
        except ResourceError:
            raise  # too large for the memory limit is not corrupt: never rename it
        except (InputError, OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as err:
            reason = err.reason if isinstance(err, InputError) else str(err)[:100]
            try:
                os.replace(path, path.with_name(path.name + ".corrupt"))
                moved = f"; renamed {path.name}.corrupt"
            except OSError:
                moved = ""
            notes.append(f"checkpoint {path.name} is unreadable ({reason}){moved}; resuming "
                         "from the previous one")
    return None


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          progress: Optional[Callable[[StepRecord], None]] = None,
          training_set: Optional[TrainingSet] = None,
          max_memory: Optional[int] = None) -> TrainResult:
    """Run (or resume) the gradient flow of ``config`` and write its run directory.

    Parameters
    ----------
    resume : continue from the last checkpoint in ``output.dir`` (history truncated to it).
    overwrite : start over in a directory that already holds a run (our files only).
    progress : called with every record; may raise KeyboardInterrupt to stop cleanly.
    training_set : the loaded data (default: :func:`load_training_set`).
    max_memory : bytes a training step may need (estimated by
        :func:`ntkcheck.resources.train_bytes`); default: the machine's default limit.

    Returns
    -------
    TrainResult; status ``interrupted`` after a KeyboardInterrupt, SIGINT or SIGTERM
    (checkpoint written; ``signal`` names the signal). ``notes`` lists what a resume repaired.

    Raises
    ------
    ConfigError, InputError on bad configuration or data; NumericalError if the flow diverges
    (summary.json written with status ``diverged``; earlier checkpoints kept).
    """
    ts = training_set if training_set is not None else load_training_set(config)
    m = config.model
    N, n, d = ts.tokens.shape
    stages = len(get_scheme(m.scheme).b)
    check_memory(train_bytes(layers=m.layers, heads=m.heads, key_dim=m.key_dim, dim=d,
                             samples=N, tokens=n, depth_states=m.layers * m.substeps * stages),
                 max_memory, f"training {m.layers} layers x {m.heads} heads (key_dim "
                 f"{m.key_dim}) on {N} x {n} tokens", "use fewer layers, heads or samples",
                 source=config.source, field="model.heads")
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
    check_run_files(run_dir)
    for what, path in (("the configuration", config.source), ("data.path", config.data_path)):
        if path and os.path.lexists(path) and run_owned(run_dir, path):
            raise ConfigError(f"{what} {path} is one of the files the run in {run_dir} writes; "
                              "move it out of the run directory or choose another --out",
                              field="output.dir")
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create {run_dir} ({err.strerror or err})",
                          source=config.source, field="output.dir") from None
    signals: dict = {"signal": None}
    with RunLock(run_dir), _interrupts(signals):
        check_run_files(run_dir)  # again under the lock: nothing changes it from now on
        return _train_locked(config, ts, run_dir, resume, overwrite, progress, signals)


def _remove_temps(run_dir: Path, notes: list[str]) -> None:
    """Once the run is accepted, remove the temporary files of killed writes (ours only)."""
    stale = remove_stale_temps(run_dir) + remove_stale_temps(run_dir / "checkpoints")
    if stale:
        notes.append(f"removed {len(stale)} temporary file(s) of an interrupted write")


def _train_locked(config: TrainConfig, ts: TrainingSet, run_dir: Path, resume: bool,
                  overwrite: bool, progress: Optional[Callable[[StepRecord], None]],
                  signals: dict) -> TrainResult:
    """:func:`train` once the run directory is locked and the signal handlers installed."""
    m = config.model
    notes: list[str] = []
    fingerprint = _fingerprint(config)
    history_path = run_dir / "history.jsonl"
    had_ckpts = bool(list_checkpoints(run_dir))
    ckpt = _latest_good_checkpoint(run_dir, notes) if resume else None
    if resume and ckpt is None:
        if not had_ckpts and not read_history(history_path)[0]:
            raise InputError(f"no checkpoint in {run_dir / 'checkpoints'}; run without --resume",
                             field="--resume")
        notes.append(f"no usable checkpoint in {run_dir / 'checkpoints'}; starting at step 0")
    if ckpt is not None:
        changed = [k for k in fingerprint if ckpt.fingerprint.get(k) != fingerprint[k]]
        if changed:
            k = changed[0]
            raise InputError(f"{ckpt.path} was made with {k} = {ckpt.fingerprint.get(k)!r}, the "
                             f"config has {fingerprint[k]!r}; resume with the original config "
                             "or start a new run with --out", field="--resume")
        if ckpt.model.dim != ts.tokens.shape[2]:
            raise InputError(f"{ckpt.path} has heads for d = {ckpt.model.dim}, the data have d = "
                             f"{ts.tokens.shape[2]}; start a new run with --out",
                             field="--resume")
        model, start, offset = ckpt.model, ckpt.step, ckpt.elapsed
        initial = ckpt.initial_loss if np.isfinite(ckpt.initial_loss) else None
        _remove_temps(run_dir, notes)
        records_read, bad = read_history(history_path)
        if bad:
            notes.append(f"history.jsonl: skipped {len(bad)} torn or corrupt line(s) (line "
                         f"{bad[0]}{' ...' if len(bad) > 1 else ''}); later good records kept "
                         "and the file rewritten without them")
        kept = sorted((r for r in records_read if r["step"] < start), key=lambda r: r["step"])
        atomic_write_text(history_path, _lines(kept))
        state_ckpt, state_step = ckpt.path, start
    else:
        if not resume:
            _prepare_new(run_dir, overwrite)
        else:
            _prepare_new(run_dir, overwrite=True)  # nothing usable: start over, ours only
        _remove_temps(run_dir, notes)
        model = MeanFieldTransformer.init(layers=m.layers, heads=m.heads, key_dim=m.key_dim,
                                          dim=ts.tokens.shape[2], init_qk_std=m.init_qk_std,
                                          init_v_std=m.init_v_std, seed=m.seed, scheme=m.scheme,
                                          substeps=m.substeps)
        start, offset, initial, kept = 0, 0.0, None, []
        # step 0 first: any directory with a history can then be resumed
        nan = float("nan")
        state_ckpt = _save_checkpoint(run_dir, model, StepRecord(0, 0.0, nan, nan, None, None),
                                      nan, fingerprint)
        state_step = None  # rewritten at step 0 with the loss once it is known
        atomic_write_text(history_path, "")
    atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2) + "\n")

    ntk_seen = [(r["step"], r["ntk_min_eig"]) for r in kept if r.get("ntk_min_eig") is not None]
    state: dict = {"ckpt": state_ckpt, "ckpt_step": state_step, "initial": initial,
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
            history=tuple(records), error=error, notes=tuple(notes),
            signal=signals["signal"] if status == "interrupted" else None)

    records: list[StepRecord] = []
    fd = os.open(history_path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
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
            signals["deferred"] = True
            res = result("diverged", model, err.step, error=msg)
            atomic_write_text(run_dir / "summary.json", json.dumps(res.to_dict(), indent=2) + "\n")
            raise NumericalError(msg) from None
        # from here on, a signal is only recorded: the final checkpoint must be written
        signals["deferred"] = True
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
