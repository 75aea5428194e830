"""Training configuration (TOML): schema, validation and the training set it points to.

Tables and keys (defaults in brackets; ``*`` = required)::

    [data]    path*                               token dataset (.npz) holding a `targets` array
    [model]   layers*, heads*, key_dim*, init_qk_std [0.1], init_v_std [0.1], seed [0],
              scheme ["euler"], substeps [1]
    [loss]    kind ["token"]                      "token" | "pooled"
    [flow]    steps*, step_size*, tol [0]         stop once loss <= tol * initial loss (0: off)
    [output]  dir ["run"], checkpoint_every [100], ntk_every [0]

Relative paths resolve against the config file's directory. Every problem is a
:class:`~ntkcheck.ConfigError` naming the file and the key, e.g.
``config.toml: field 'model.heads': must be an integer >= 1, got 0``.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import ConfigError, InputError
from ..io.paths import MAX_NAME_BYTES, existing_file, shortened
from ..io.tokens import TokenArrays, load_token_npz
from .loss import LossKind, RegressionLoss
from .schemes import SCHEMES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["ModelConfig", "FlowConfig", "OutputConfig", "TrainConfig", "TrainingSet",
           "load_train_config", "parse_train_config", "load_training_set"]

#: Largest training configuration read (a few lines of TOML in practice).
MAX_CONFIG_BYTES = 1 * 2**20


@dataclass(frozen=True)
class ModelConfig:
    layers: int
    heads: int
    key_dim: int
    init_qk_std: float = 0.1
    init_v_std: float = 0.1
    seed: int = 0
    scheme: str = "euler"
    substeps: int = 1


@dataclass(frozen=True)
class FlowConfig:
    steps: int
    step_size: float
    tol: float = 0.0


@dataclass(frozen=True)
class OutputConfig:
    dir: Path
    checkpoint_every: int = 100
    ntk_every: int = 0


@dataclass(frozen=True)
class TrainConfig:
    """A validated training configuration; paths are absolute."""

    data_path: Path
    model: ModelConfig
    loss: LossKind
    flow: FlowConfig
    output: OutputConfig
    source: str = "<config>"

    def to_dict(self) -> dict:
        """The resolved configuration, JSON-ready, with the same tables as the TOML file."""
        out = asdict(self.output)
        out["dir"] = str(self.output.dir)
        return {"data": {"path": str(self.data_path)}, "model": asdict(self.model),
                "loss": {"kind": self.loss.value}, "flow": asdict(self.flow), "output": out}

    def with_overrides(self, *, steps: Optional[int] = None, out: Optional[Path] = None,
                       step_size: Optional[float] = None, ntk_every: Optional[int] = None,
                       checkpoint_every: Optional[int] = None) -> "TrainConfig":
        """Command-line overrides, validated like the file's keys (named by their option)."""
        flow, output = self.flow, self.output
        if steps is not None:
            flow = replace(flow, steps=_check("--steps", steps, _INT0, None))
        if step_size is not None:
            flow = replace(flow, step_size=_check("--step-size", step_size, _POS, None))
        if out is not None:
            output = replace(output, dir=Path(out).resolve())
        if ntk_every is not None:
            output = replace(output, ntk_every=_check("--ntk-every", ntk_every, _INT0, None))
        if checkpoint_every is not None:
            output = replace(output, checkpoint_every=_check("--checkpoint-every",
                                                             checkpoint_every, _INT0, None))
        return replace(self, flow=flow, output=output)


@dataclass(frozen=True)
class _Rule:
    kind: str  # "int", "float", "str", "path", "choice"
    low: float = -math.inf
    strict: bool = False  # low excluded
    high: float = math.inf
    choices: tuple = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return "must be one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "str":
            return "must be a string"
        if self.kind == "path":
            return "must be a string (a path)"
        noun = "an integer" if self.kind == "int" else "a number"
        if self.high < math.inf:
            return f"must be {noun} in [{self.low:g}, {self.high:g})"
        if self.low > -math.inf:
            return f"must be {noun} {'>' if self.strict else '>='} {self.low:g}"
        return f"must be {noun}"


_REQUIRED = object()
_INT0, _INT1 = _Rule("int", 0), _Rule("int", 1)
_POS, _NONNEG = _Rule("float", 0, strict=True), _Rule("float", 0)
_STR = _Rule("str")
_PATH = _Rule("path")

# table -> key -> (rule, default, example shown when missing)
_SCHEMA: dict[str, dict[str, tuple[_Rule, Any, str]]] = {
    "data": {"path": (_PATH, _REQUIRED, 'path = "teacher.npz"')},
    "model": {
        "layers": (_INT1, _REQUIRED, "layers = 2"),
        "heads": (_INT1, _REQUIRED, "heads = 16"),
        "key_dim": (_INT1, _REQUIRED, "key_dim = 2"),
        "init_qk_std": (_NONNEG, 0.1, ""),
        "init_v_std": (_NONNEG, 0.1, ""),
        "seed": (_INT0, 0, ""),
        "scheme": (_Rule("choice", choices=tuple(SCHEMES)), "euler", ""),
        "substeps": (_INT1, 1, ""),
    },
    "loss": {"kind": (_Rule("choice", choices=tuple(k.value for k in LossKind)), "token", "")},
    "flow": {
        "steps": (_INT0, _REQUIRED, "steps = 1000"),
        "step_size": (_POS, _REQUIRED, "step_size = 1.0"),
        "tol": (_Rule("float", 0, high=1), 0.0, ""),
    },
    "output": {
        "dir": (_PATH, "run", ""),
        "checkpoint_every": (_INT0, 100, ""),
        "ntk_every": (_INT0, 0, ""),
    },
}


def _got(value: Any) -> str:
    kind = {bool: "a boolean", str: "a string", list: "an array", dict: "a table"}.get(type(value))
    return f"got {value!r}" + (f" ({kind})" if kind and not isinstance(value, str) else
                               " (a string)" if isinstance(value, str) else "")


def _check(field: str, value: Any, rule: _Rule, source: Optional[str]) -> Any:
    """Validate one value against its rule; returns it converted (int -> float for numbers)."""
    bad = ConfigError(f"{rule.describe()}, {_got(value)}", source=source, field=field)
    if rule.kind in ("str", "path"):
        if not isinstance(value, str) or not value:
            raise bad
        if rule.kind == "path":
            _check_path(field, value, source)
        return value
    if rule.kind == "choice":
        if value not in rule.choices:
            raise bad
        return value
    if isinstance(value, bool):
        raise bad
    if rule.kind == "int":
        if not isinstance(value, (int, np.integer)):
            raise bad
        value = int(value)
    else:
        if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
            raise bad
        value = float(value)
    if value < rule.low or (rule.strict and value == rule.low) or value >= rule.high:
        raise bad
    return value


def _check_path(field: str, value: str, source: Optional[str]) -> None:
    """Refuse, before any file is touched, a path the operating system would reject with an
    OSError or ValueError (a NUL character, a name component over MAX_NAME_BYTES bytes)."""
    if "\x00" in value:
        raise ConfigError("contains a NUL character (\\u0000); remove it", source=source,
                          field=field)
    for part in Path(value).parts:
        if len(os.fsencode(part)) > MAX_NAME_BYTES:
            raise ConfigError(f"has a name component of {len(os.fsencode(part))} bytes, over "
                              f"the {MAX_NAME_BYTES} the file system allows: "
                              f"{shortened(part, 40)!s}; use a shorter name", source=source,
                              field=field)


def _unknown(name: str, valid, what: str, where: str = "") -> str:
    close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {what}{hint}; valid {what}s{where}: {', '.join(valid)}"


def parse_train_config(doc: dict, *, source: str = "<config>",
                       base_dir: Path | str = ".") -> TrainConfig:
    """Validate a parsed TOML document; relative paths resolve against ``base_dir``."""
    base = Path(base_dir).resolve()
    for table in doc:
        if table not in _SCHEMA:
            raise ConfigError(_unknown(table, _SCHEMA, "table"), source=source, field=table)
    values: dict[str, dict[str, Any]] = {}
    for table, keys in _SCHEMA.items():
        given = doc.get(table, {})
        if not isinstance(given, dict):
            raise ConfigError(f"must be a table [{table}], {_got(given)}", source=source,
                              field=table)
        for key in given:
            if key not in keys:
                raise ConfigError(_unknown(key, keys, "key", f" in [{table}]"), source=source,
                                  field=f"{table}.{key}")
        values[table] = {}
        for key, (rule, default, example) in keys.items():
            if key not in given:
                if default is _REQUIRED:
                    raise ConfigError(f"missing; add it under [{table}], e.g. {example}",
                                      source=source, field=f"{table}.{key}")
                values[table][key] = default
            else:
                values[table][key] = _check(f"{table}.{key}", given[key], rule, source)
    return TrainConfig(
        data_path=(base / values["data"]["path"]).resolve(),
        model=ModelConfig(**values["model"]),
        loss=LossKind(values["loss"]["kind"]),
        flow=FlowConfig(**values["flow"]),
        output=OutputConfig(dir=(base / values["output"]["dir"]).resolve(),
                            checkpoint_every=values["output"]["checkpoint_every"],
                            ntk_every=values["output"]["ntk_every"]),
        source=source,
    )


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a TOML training configuration."""
    src = str(path)
    p = Path(path)
    try:
        existing_file(p, "a .toml configuration")  # a FIFO or device is refused unopened
    except InputError as err:
        raise ConfigError(err.reason, source=src) from None
    if os.stat(p).st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"is over {MAX_CONFIG_BYTES // 2**20} MiB; a training configuration "
                          "is a few lines of TOML", source=src)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"is not valid TOML ({err})", source=src) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot be read ({err})", source=src) from None
    return parse_train_config(doc, source=src, base_dir=p.parent)


@dataclass(frozen=True, eq=False)
class TrainingSet:
    """Tokens, weights and the regression loss (with validated targets) of a run."""

    data: TokenArrays
    loss: RegressionLoss

    @property
    def tokens(self) -> np.ndarray:
        return self.data.tokens

    @property
    def weights(self) -> np.ndarray:
        return self.data.weights


from ..io.load import check_units  # noqa: E402  (io imports nothing from meanfield)


def load_training_set(config: TrainConfig) -> TrainingSet:
    """Load ``data.path`` and check its ``targets`` against ``loss.kind``.

    Targets are (N, n, d') for the token loss and (N, d') for the pooled loss, d' <= d; token
    targets at padded positions are ignored (set to 0).
    """
    src, path = config.source, config.data_path
    try:
        existing_file(path, "an .npz token dataset")
    except InputError as err:  # missing, too long a name, a directory, no permission ...
        raise ConfigError(f"{shortened(path)}: {err.reason}", source=src,
                          field="data.path") from None
    data = load_token_npz(path)
    N, n, d = data.tokens.shape
    check_units(data.tokens[data.weights > 0], str(path), "tokens", "train")
    if "targets" not in data.extra:
        raise ConfigError(f"{path} has no 'targets' array; save the regression targets as "
                          "targets=... ((N, n, d') for the token loss, (N, d') pooled)",
                          source=src, field="data.path")
    T = np.asarray(data.extra["targets"])
    if T.dtype.kind not in "biuf":
        raise InputError(f"has dtype {T.dtype}; give real numbers", source=str(path),
                         field="targets")
    kind = config.loss
    want = (N, n) if kind is LossKind.TOKEN else (N,)
    shape_txt = "(N, n, d') = (%d, %d, d')" % (N, n) if kind is LossKind.TOKEN else \
        "(N, d') = (%d, d')" % N
    if T.ndim != len(want) + 1 or T.shape[:-1] != want:
        other = "pooled" if kind is LossKind.TOKEN else "token"
        raise ConfigError(f"'{kind.value}' needs targets of shape {shape_txt}, got {T.shape} in "
                          f"{path}; fix the targets or use kind = \"{other}\"", source=src,
                          field="loss.kind")
    e = T.shape[-1]
    if not 1 <= e <= d:
        raise ConfigError(f"targets in {path} have d' = {e} coordinates; need 1 <= d' <= d = {d}"
                          " (the readout takes the first d' coordinates)", source=src,
                          field="loss.kind")
    T = T.astype(np.float64)
    if kind is LossKind.TOKEN:
        T = np.where(data.mask[..., None], T, 0.0)
    if not np.all(np.isfinite(T)):
        raise InputError("has NaN or Inf (at real tokens); give finite targets",
                         source=str(path), field="targets")
    return TrainingSet(data, RegressionLoss(kind, T))
