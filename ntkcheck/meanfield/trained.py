"""A finished (or interrupted) training run, read back from its directory.

:func:`load_run` only reads the run directory written by :func:`~ntkcheck.train`
(``config.json``, ``history.jsonl``, ``summary.json``, ``checkpoints/``) and the data file the
config names (for the target dimension, from the array's header: nothing else of it is read);
it never writes. Every file is checked to be a regular file before it is opened (a FIFO cannot
hang it) and read within a size limit (:data:`MAX_RUN_JSON_BYTES`, history lines
:data:`~ntkcheck.io.runfiles.MAX_HISTORY_LINE`); every failure is an
:class:`~ntkcheck.errors.InputError` naming the file. :meth:`Run.model` gives the heads at
any checkpoint as a :class:`TrainedModel`, whose :meth:`~TrainedModel.predict` is the forward
pass followed by the run's readout (SPEC §6):

* token loss:  prediction_ia = P x_ia^L            (N, n, d'), zero at padded tokens
* pooled loss: prediction_i  = P sum_a w_ia x_ia^L  (N, d')

with P the projection on the first d' coordinates (d' = the targets' last dimension).
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputError
from ..io.paths import existing_file
from .config import TrainConfig, parse_train_config
from .loss import LossKind
from .model import MeanFieldTransformer
from ..io.runfiles import list_checkpoints, read_history
from .run import load_checkpoint

__all__ = ["Run", "TrainedModel", "load_run", "HISTORY_FIELDS", "MAX_RUN_JSON_BYTES"]

#: Columns of :attr:`Run.history` (NaN where a step did not record the quantity).
HISTORY_FIELDS = ("step", "time", "loss", "grad_norm_sq", "ntk_min_eig", "pl_ratio")
#: Largest config.json / summary.json read (train writes a few KiB).
MAX_RUN_JSON_BYTES = 16 * 2**20


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """Heads of a run at one checkpoint, with the run's readout.

    Attributes
    ----------
    model : MeanFieldTransformer
    loss : LossKind (``token`` or ``pooled``)
    target_dim : d', the number of leading coordinates read out
    step : the checkpoint's step
    """

    model: MeanFieldTransformer
    loss: LossKind
    target_dim: int
    step: int

    def _facts(self) -> list[tuple[str, str]]:
        m = self.model
        return [("step", str(self.step)),
                ("model", f"{m.layers} layers x {m.heads} heads, key_dim {m.key_dim}, d {m.dim}"),
                ("parameters", str(m.n_params)),
                ("depth scheme", f"{m.scheme.name} x {m.substeps}"),
                ("readout", f"{self.loss.value} loss, first {self.target_dim} coordinate(s)")]

    def __repr__(self) -> str:
        m = self.model
        return (f"TrainedModel(step {self.step}: {m.layers} layers x {m.heads} heads, key_dim "
                f"{m.key_dim}, d {m.dim}, {m.n_params} parameters, {m.scheme.name} x "
                f"{m.substeps}; {self.loss.value} loss, reads out {self.target_dim})")

    def _repr_html_(self) -> str:
        return _html_table("TrainedModel", self._facts())

    def predict(self, tokens: Any, weights: Any = None, *, lengths: Any = None,
                mask: Any = None) -> np.ndarray:
        """Predictions for token sequences (N, n, d): (N, n, d') for the token loss, zero at
        padded tokens, or (N, d') for the pooled loss. ``weights``/``lengths``/``mask`` as in
        the ``.npz`` format (uniform weights over real tokens by default)."""
        from ..arrays import _numeric
        from ..io.tokens import TokenArrays

        arrays: dict[str, Any] = {"tokens": _numeric(tokens, "tokens")}
        for key, value in (("weights", weights), ("lengths", lengths), ("mask", mask)):
            if value is not None:
                arrays[key] = np.asarray(value)
        data = TokenArrays.from_arrays(arrays, "<tokens>")
        return self.predict_arrays(data.tokens, data.weights)

    def predict_arrays(self, tokens: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """:meth:`predict` on validated padded arrays (weights normalised per sequence)."""
        d = self.model.dim
        if tokens.shape[-1] != d:
            raise InputError(f"tokens have d = {tokens.shape[-1]} coordinates; this model was "
                             f"trained with d = {d}", field="tokens")
        XL = self.model.forward(tokens, weights)[..., : self.target_dim]
        if self.loss is LossKind.TOKEN:
            return np.where((weights > 0)[..., None], XL, 0.0)
        return np.einsum("ia,iae->ie", weights, XL)


@dataclass(frozen=True, eq=False)
class Run:
    """A run directory, read.

    Attributes
    ----------
    run_dir : Path
    config : TrainConfig (from ``config.json``)
    history : {field: (S,) float64 array} over the S recorded steps, fields
        :data:`HISTORY_FIELDS`; NaN where a step did not record the quantity (``ntk_min_eig``
        only every ``output.ntk_every`` steps)
    summary : ``summary.json`` as a dict (None while a run has not written it)
    checkpoints : steps that have a checkpoint, ascending
    skipped_lines : 1-based numbers of the history.jsonl lines skipped as torn or corrupt
        (``train --resume`` removes them)
    """

    run_dir: Path
    config: TrainConfig
    history: dict[str, np.ndarray]
    summary: Optional[dict[str, Any]]
    checkpoints: tuple[int, ...]
    _paths: dict[int, Path] = field(default_factory=dict, repr=False)
    skipped_lines: tuple[int, ...] = ()

    def _facts(self) -> list[tuple[str, str]]:
        s = self.summary or {}
        m = self.config.model
        status = s.get("status", "no summary.json yet (running, or stopped before writing it)")
        step = s.get("step", int(self.history["step"][-1]) if self.history["step"].size else 0)
        loss = self.history["loss"]
        first = s.get("initial_loss", float(loss[0]) if loss.size else float("nan"))
        last = s.get("final_loss", float(loss[-1]) if loss.size else float("nan"))
        ckpt = (f"{len(self.checkpoints)} (last at step {self.checkpoints[-1]})"
                if self.checkpoints else "none")
        facts = [("run directory", _short(str(self.run_dir))),
                 ("status", f"{status} at step {step} of {self.config.flow.steps}"),
                 ("loss", f"{first:.3g} -> {last:.3g}"),
                 ("model", f"{m.layers} layers x {m.heads} heads, key_dim {m.key_dim}, "
                           f"{m.scheme} x {m.substeps}, {self.config.loss.value} loss"),
                 ("history", f"{loss.size} steps: {', '.join(HISTORY_FIELDS)}"),
                 ("checkpoints", ckpt)]
        if s.get("ntk_min_eig") is not None:
            facts.insert(3, ("NTK smallest eigenvalue",
                             f"{s['ntk_min_eig']:.3g} (step {s.get('ntk_step')})"))
        return facts

    def __repr__(self) -> str:
        f = dict(self._facts())
        return (f"Run({_short(str(self.run_dir), 48)!r}: {f['status']}, loss {f['loss']}, "
                f"{self.config.model.layers} layers x {self.config.model.heads} heads, "
                f"checkpoints {f['checkpoints']})")

    def _repr_html_(self) -> str:
        return _html_table("Run", self._facts())

    def model(self, step: Optional[int] = None) -> TrainedModel:
        """The heads at checkpoint ``step`` (default: the last checkpoint)."""
        if not self.checkpoints:
            raise InputError("has no checkpoint; train with output.checkpoint_every > 0 or let "
                             "the run finish", source=str(self.run_dir / "checkpoints"))
        if step is None:
            step = self.checkpoints[-1]
        if step not in self._paths:
            near = ", ".join(str(s) for s in self.checkpoints[-5:])
            raise InputError(f"no checkpoint at step {step}; available (last 5): {near}",
                             source=str(self.run_dir), field="step")
        ckpt = load_checkpoint(self._paths[step])
        return TrainedModel(ckpt.model, self.config.loss, self._target_dim(), ckpt.step)

    def _target_dim(self) -> int:
        """d' from the targets of the run's data file."""
        from ..io.tokens import npz_members

        path = self.config.data_path
        where = dict(source=str(self.run_dir / "config.json"), field="data.path")
        try:
            members = {m.key: m for m in npz_members(path)}  # headers only: no zip bomb
        except InputError as err:
            raise InputError(f"the run's data file cannot be read for the target dimension "
                             f"({err}); restore it", **where) from None
        targets = members.get("targets")
        if targets is None or not targets.shape or targets.shape[-1] < 1:
            raise InputError(f"the run's data file {path} has no usable 'targets' array; "
                             "restore the file the run was trained on", **where)
        return int(targets.shape[-1])


def _short(text: str, width: int = 60) -> str:
    """``text``, or '...' and its last width - 3 characters."""
    return text if len(text) <= width else "..." + text[-(width - 3):]


def _html_table(title: str, facts: list[tuple[str, str]]) -> str:
    """A small two-column HTML table (escaped) for notebooks."""
    rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                   f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in facts)
    return f"<table><caption style='text-align:left'><b>{html.escape(title)}</b></caption>" \
           f"{rows}</table>"


def _history_arrays(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    out = {}
    for key in HISTORY_FIELDS:
        vals = [r.get(key) for r in records]
        out[key] = np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
    out["step"] = out["step"].astype(np.int64) if records else np.zeros(0, np.int64)
    return out


def _read_json(path: Path, what: str) -> Any:
    """The JSON document in the regular file ``path`` (at most MAX_RUN_JSON_BYTES)."""
    existing_file(path, what)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size  # read(n) would allocate n bytes at once
            raw = fh.read(min(size, MAX_RUN_JSON_BYTES) + 1)
    except OSError as err:
        raise InputError(f"cannot be read ({err.strerror or err}); check its permissions",
                         source=str(path)) from None
    if len(raw) > MAX_RUN_JSON_BYTES:
        raise InputError(f"is over {MAX_RUN_JSON_BYTES // 2**20} MiB, not a file train wrote; "
                         "restore it", source=str(path))
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise InputError(f"is not valid JSON ({str(err)[:100]}); restore it",
                         source=str(path)) from None


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory written by :func:`~ntkcheck.train` (read only).

    Raises
    ------
    InputError
        When the directory, its ``config.json``, its history or its checkpoint folder is
        missing, unreadable, not a regular file (a FIFO) or malformed. Corrupt history lines
        are skipped and listed in :attr:`Run.skipped_lines`.
    """
    root = Path(run_dir)
    cfg_path = root / "config.json"
    if not root.is_dir():
        raise InputError("no such run directory; give the output.dir of a train run",
                         source=str(root))
    if not os.path.lexists(cfg_path):
        raise InputError("has no config.json; is it the output.dir of a train run?",
                         source=str(root))
    doc = _read_json(cfg_path, "the config.json written by train")
    if not isinstance(doc, dict):
        raise InputError("is not a JSON object; restore the config.json train wrote",
                         source=str(cfg_path))
    config = parse_train_config(doc, source=str(cfg_path), base_dir=root)
    summary = None
    summary_path = root / "summary.json"
    if os.path.lexists(summary_path):
        existing_file(summary_path, "the summary.json written by train")  # a FIFO: refused
        try:
            summary = _read_json(summary_path, "the summary.json written by train")
        except InputError:
            summary = None  # a run killed while writing it: the history still holds
        if not isinstance(summary, dict):
            summary = None
    found = list_checkpoints(root)
    records, skipped = read_history(root / "history.jsonl")
    return Run(root, config, _history_arrays(records), summary,
               tuple(s for s, _ in found), {s: p for s, p in found}, tuple(skipped))
