"""Distribution specs in ``.toml`` or ``.json``: a list of named distributions.

TOML::

    [[distribution]]
    name = "coin"
    kind = "discrete"            # discrete | uniform | gaussian_mixture
    atoms = [[0], [1]]           # (n, d); a flat list [0, 1] means d = 1
    weights = ["1/2", "1/2"]     # optional for discrete (uniform by default)

    [[distribution]]
    name = "box"
    kind = "uniform"
    low = [0]
    high = [2]

    [[distribution]]
    name = "gm"
    kind = "gaussian_mixture"
    weights = [1, 1]
    means = [[0], [1]]
    covariances = [[[1]], [[1]]]   # (K, d, d); singular allowed

JSON: ``{"distribution": [{"name": ..., "kind": ..., ...}, ...]}``.

Numbers are exact (SPEC §3a, "exact inputs are what the user wrote"): a decimal literal ``0.49``
in a file means 49/100 (parsed as :class:`decimal.Decimal`, never through binary64), integers
are integers, and strings hold exact rationals or decimals (``"1/3"``, ``"-2"``, ``"1e-3"``).
Through :func:`parse_spec` from Python, :class:`~decimal.Decimal` and
:class:`~fractions.Fraction` values are exact too, and a Python ``float`` is its exact binary64
value. Every value is kept as a :class:`~fractions.Fraction` in ``distribution.rational`` for the
exact test (:mod:`ntkcheck.exact`); the arrays used by the numerical test hold the nearest
doubles.

Limits, checked before any costly conversion so that a hostile file is refused in
milliseconds with one line naming the file and the field:

* a number has at most :data:`MAX_DIGITS` (50) significant digits, and a string number at most
  :data:`MAX_NUMBER_CHARS` characters (``"1e-99999999"`` or a 400-digit integer is refused, never
  expanded);
* a non-zero value has ``1e-300 <= |x| <= 1e150`` (:data:`MIN_MAGNITUDE`,
  :data:`MAX_MAGNITUDE`). Why 1e150: the numerical test squares the values and sums the squares
  (covariances, whitening, tilted covariances, z^T S z at probe scales up to 30), and 1e150^2 =
  1e300 leaves a factor 1e8 of room below the float64 limit 1.8e308. Why 1e-300: smaller values
  are subnormal or 0 in float64, so the exact and the numerical test would see different data.
  In one distribution the non-zero weights span at most a factor 1e300 (the normalised weights
  must not underflow);
* at most :data:`MAX_DISTRIBUTIONS` distributions and :data:`MAX_VALUES` numbers in a spec, a
  file of at most :data:`MAX_SPEC_BYTES` bytes, lists/tables nested at most :data:`MAX_NESTING`
  deep (a spec needs 6), names of at most :data:`MAX_NAME_CHARS` characters. Larger data sets
  belong in ``.npz`` token files.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import Dataset
from ..distributions import Discrete, Distribution, GaussianMixture, UniformBox
from ..errors import InputError
from .paths import existing_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["load_spec", "parse_spec", "KINDS", "MAX_DIGITS", "MAX_MAGNITUDE", "MIN_MAGNITUDE",
           "MAX_DISTRIBUTIONS", "MAX_VALUES", "MAX_SPEC_BYTES", "MAX_NESTING"]

#: Valid ``kind`` values and the keys each accepts (required, optional).
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "discrete": (("atoms",), ("weights",)),
    "uniform": (("low", "high"), ()),
    "gaussian_mixture": (("weights", "means", "covariances"), ()),
}
#: Nesting levels of each key's list (atoms may also be a flat list of 1-D atoms).
_LEVELS = {"atoms": (2, 1), "weights": (1,), "low": (1,), "high": (1,), "means": (2,),
           "covariances": (3,)}

#: Significant digits of one number (more is never needed: write "1/3", not 0.3333...).
MAX_DIGITS = 50
#: Largest magnitude of a value, 1e150 (squares must stay far below float64's 1.8e308).
MAX_MAGNITUDE = Fraction(10**150)
#: Smallest magnitude of a non-zero value, 1e-300 (inside float64's normal range).
MIN_MAGNITUDE = Fraction(1, 10**300)
#: Largest ratio between the non-zero weights of one distribution.
MAX_WEIGHT_RATIO = 10**300
#: Characters of a number written as a string.
MAX_NUMBER_CHARS = 200
#: Distributions in one spec.
MAX_DISTRIBUTIONS = 100_000
#: Numbers in one spec (all keys of all distributions).
MAX_VALUES = 1_000_000
#: Size of a spec file (16 MiB; TOML parses at about 2 MB/s).
MAX_SPEC_BYTES = 16 * 2**20
#: Nesting depth of lists and tables (a spec needs 6: document, list, entry, 3 for covariances).
MAX_NESTING = 32
#: Characters of a distribution name.
MAX_NAME_CHARS = 1000
#: Longest run of digits in a file; more would trip Python's int-string limit (4300 digits)
#: inside the TOML parser. Anything near it is far beyond MAX_DIGITS anyway.
_MAX_DIGIT_RUN = 4000

_RANGE = "non-zero values need 1e-300 <= |x| <= 1e150 (largest supported magnitude 1e150)"


def load_spec(path: str | Path) -> Dataset:
    """Read a ``.toml`` or ``.json`` spec file into a validated :class:`Dataset`."""
    src = str(path)
    p = existing_file(path, "a .toml or .json file")
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise InputError(f"has unknown extension '{suffix}'; use .npz, .toml or .json",
                         source=src)
    try:
        text = _read_bounded(p, src).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("cannot be read as UTF-8 text; save the spec as UTF-8",
                         source=src) from None
    _check_nesting(text, suffix, src)
    if suffix == ".toml":
        _check_digit_runs(text, src)
    try:
        if suffix == ".toml":
            doc = tomllib.loads(text, parse_float=_literal)
        else:
            doc = json.loads(text, parse_float=_literal, parse_int=_literal,
                             parse_constant=float)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"is not valid TOML ({err})", source=src) from None
    except json.JSONDecodeError as err:
        raise InputError(f"is not valid JSON ({err.msg} at line {err.lineno})",
                         source=src) from None
    except (RecursionError, InvalidOperation, ValueError):  # safety nets behind the scans
        raise InputError("cannot be parsed: nesting or a number is beyond the supported limits "
                         f"(nesting {MAX_NESTING}, {MAX_DIGITS} significant digits)",
                         source=src) from None
    return parse_spec(doc, src)


def _read_bounded(p: Path, src: str) -> bytes:
    """The bytes of a regular file of at most MAX_SPEC_BYTES (FIFOs and devices are refused
    without blocking: the file is opened non-blocking and checked with fstat)."""
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        raise InputError(f"cannot be opened ({err.strerror}); check the permissions",
                         source=src) from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise InputError("is not a regular file (a device, FIFO or socket); give a .toml "
                             "or .json file", source=src)
        if info.st_size > MAX_SPEC_BYTES:
            raise InputError(_too_big(info.st_size), source=src)
        try:
            data = fh.read(MAX_SPEC_BYTES + 1)
        except OSError as err:
            raise InputError(f"cannot be read ({err.strerror})", source=src) from None
    if len(data) > MAX_SPEC_BYTES:
        raise InputError(_too_big(len(data)), source=src)
    return data


class _LongLiteral(str):
    """A number literal too long to convert (refused with its field by :func:`_exact`)."""


def _literal(text: str) -> Decimal | _LongLiteral:
    """Parser hook for number literals: an exact Decimal, or a marker when too long."""
    return _LongLiteral(text) if len(text) > MAX_NUMBER_CHARS else Decimal(text)


def _too_big(size: int) -> str:
    return (f"has {size} bytes, above the spec limit of {MAX_SPEC_BYTES} bytes; store large "
            "data sets as .npz token files")


#: Strings and comments, whose brackets and digits are not structure (TOML; JSON uses only
#: the double-quoted form). Alternatives are tried left to right at each position, so a '#'
#: inside a string is part of the string and a quote inside a comment part of the comment.
#: Each pattern consumes runs with character classes and also accepts an unterminated string
#: (up to the end of its line or of the text), so no match fails after a long scan and the
#: substitution is linear in the length of the text, whatever the text.
_TOML_SKIP = re.compile(r'"""[^"\\]*(?:(?:\\[\s\S]|"(?!""))[^"\\]*)*(?:"""|\\?\Z)'
                        r"|'''[^']*(?:'(?!'')[^']*)*(?:'''|\Z)"
                        r'|"[^"\\\n]*(?:\\.[^"\\\n]*)*(?:"|\\?(?=\n)|\\?\Z)'
                        r"|'[^'\n]*(?:'|(?=\n)|\Z)"
                        r"|#[^\n]*")
_JSON_SKIP = re.compile(r'"[^"\\]*(?:\\[\s\S][^"\\]*)*(?:"|\\?\Z)')


def _check_nesting(text: str, suffix: str, src: str) -> None:
    """Refuse lists/tables nested deeper than MAX_NESTING, by counting brackets outside strings
    (no recursion, O(length) with numpy), before a recursive parser sees the text."""
    skip = _TOML_SKIP if suffix == ".toml" else _JSON_SKIP
    code = np.frombuffer(skip.sub("", text).encode("utf-8", "surrogatepass"), dtype=np.uint8)
    depth, carry = 0, 0
    step = 1 << 20
    for start in range(0, code.size, step):
        chunk = code[start:start + step]
        delta = ((chunk == ord("[")) | (chunk == ord("{"))).astype(np.int32) \
            - ((chunk == ord("]")) | (chunk == ord("}"))).astype(np.int32)
        running = np.cumsum(delta, dtype=np.int64) + carry
        if running.size:
            depth = max(depth, int(running.max()))
            carry = int(running[-1])
    if depth > MAX_NESTING:
        raise InputError(f"nests lists or tables {depth} levels deep, above the limit of "
                         f"{MAX_NESTING} (a spec needs at most 6)", source=src)


_DIGIT_RUN = re.compile(r"\d[\d_]{%d,}" % _MAX_DIGIT_RUN)


def _check_digit_runs(text: str, src: str) -> None:
    """Refuse a run of more than _MAX_DIGIT_RUN digits (line named) before the TOML parser
    converts it to an int (Python refuses 4300+ digits with a ValueError)."""
    hit = _DIGIT_RUN.search(text)
    if hit:
        line = text.count("\n", 0, hit.start()) + 1
        raise InputError(f"line {line} holds a number with more than {_MAX_DIGIT_RUN} digits; "
                         f"numbers have at most {MAX_DIGITS} significant digits and "
                         f"{_RANGE}", source=src)


def parse_spec(doc: Any, source: str = "<spec>") -> Dataset:
    """Validate a parsed spec document (dict with a ``distribution`` list).

    Values may be ints, :class:`~decimal.Decimal` (decimal literals, exact), strings holding a
    rational or decimal, :class:`~fractions.Fraction`, or floats (their exact binary64 value).
    """
    if not isinstance(doc, dict):
        raise InputError("must be a table/object with a 'distribution' list", source=source)
    extra = set(doc) - {"distribution"}
    if extra:
        raise InputError(f"unknown top-level key(s) {sorted(map(str, extra))}; only "
                         "[[distribution]] entries are allowed", source=source,
                         field=str(sorted(map(str, extra))[0]))
    entries = doc.get("distribution")
    if not isinstance(entries, list) or not entries:
        raise InputError("missing, empty or not a list; add [[distribution]] entries",
                         source=source, field="distribution")
    if len(entries) > MAX_DISTRIBUTIONS:
        raise InputError(f"has {len(entries)} distributions, above the spec limit of "
                         f"{MAX_DISTRIBUTIONS}; store large data sets as .npz token files",
                         source=source, field="distribution")
    names, dists = [], []
    counter = _Counter()
    for i, entry in enumerate(entries):
        prefix = f"distribution[{i}]"
        try:
            name, dist = _parse_entry(entry, counter)
        except InputError as err:
            raise err.located(source, prefix) from None
        names.append(name)
        dists.append(dist)
    return Dataset(tuple(names), tuple(dists), source)


class _Counter:
    """Numbers read so far, against MAX_VALUES."""

    def __init__(self) -> None:
        self.used = 0

    def take(self, count: int, key: str) -> None:
        self.used += count
        if self.used > MAX_VALUES:
            raise InputError(f"brings the spec to more than {MAX_VALUES} numbers, the spec "
                             "limit; store large data sets as .npz token files", field=key)


def _parse_entry(entry: Any, counter: _Counter) -> tuple[str, Distribution]:
    if not isinstance(entry, dict):
        raise InputError(f"is {_kind_of(entry)}; give a table with name, kind and parameters")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"is {_kind_of(name)}; give a non-empty string", field="name")
    if len(name) > MAX_NAME_CHARS:
        raise InputError(f"has {len(name)} characters, above the limit of {MAX_NAME_CHARS}",
                         field="name")
    kind = entry.get("kind")
    if not isinstance(kind, str):
        raise InputError(f"is {_kind_of(kind)}; must be a string, one of {'|'.join(KINDS)}",
                         field="kind")
    if kind not in KINDS:
        raise InputError(f"is {_quoted(kind)}; choose one of {', '.join(KINDS)}", field="kind")
    required, optional = KINDS[kind]
    allowed = {"name", "kind", *required, *optional}
    unknown = sorted(str(k) for k in set(entry) - allowed)
    if unknown:
        raise InputError(f"is not a key of a {kind} distribution; valid keys: "
                         f"{', '.join(sorted(allowed))}", field=unknown[0])
    for key in required:
        if key not in entry:
            raise InputError(f"is missing (required for kind = \"{kind}\")", field=key)
    exact = {key: _numbers(entry[key], key, counter) for key in (*required, *optional)
             if key in entry}
    if "weights" in exact:
        _check_weight_range(exact["weights"])
    if kind == "discrete" and exact["atoms"].ndim == 1:  # a flat list of scalars: atoms in R^1
        exact["atoms"] = exact["atoms"].reshape(-1, 1)
    num = {key: _to_float(val) for key, val in exact.items()}
    if kind == "discrete":
        dist: Distribution = Discrete(num["atoms"], num.get("weights"), rational=exact)
    elif kind == "uniform":
        dist = UniformBox(num["low"], num["high"], rational=exact)
    else:
        dist = GaussianMixture(num["weights"], num["means"], num["covariances"], rational=exact)
    return name, dist


def _numbers(value: Any, key: str, counter: _Counter) -> np.ndarray:
    """A rectangular nested list of numbers -> object array of exact Fractions.

    The shape is read along the first elements, checked against the key's nesting level(s)
    and the value budget, then every list is checked level by level (no recursion), and each
    leaf converted by :func:`_exact`. Errors name the element, e.g. ``atoms[2][1]``.
    """
    shape: list[int] = []
    probe = value
    while isinstance(probe, list) and len(shape) < 4:
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    levels = _LEVELS[key]
    if 0 in shape:
        raise InputError("is empty; give at least one value per level", field=key)
    if len(shape) not in levels or isinstance(probe, list):
        want = " or ".join(f"{n}-level" for n in levels)
        got = (f"{len(shape)}-level nested list" if shape and not isinstance(probe, list)
               else _kind_of(value) if not shape else "deeper nesting")
        raise InputError(f"must be a {want} nested list of numbers, got {got}", field=key)
    counter.take(math.prod(shape), key)
    level: list[tuple[tuple[int, ...], Any]] = [((), value)]
    for depth, size in enumerate(shape):
        nxt: list[tuple[tuple[int, ...], Any]] = []
        for idx, item in level:
            if not isinstance(item, list):
                raise InputError(f"is {_kind_of(item)} where a list of {size} entries is "
                                 "expected; every row must have the same nesting",
                                 field=_path(key, idx))
            if len(item) != size:
                raise InputError(f"has {len(item)} entries but {_path(key, (0,) * depth)} has "
                                 f"{size}; every row must have the same length",
                                 field=_path(key, idx))
            nxt.extend(((*idx, j), x) for j, x in enumerate(item))
        level = nxt
    out = np.empty(len(level), dtype=object)
    for j, (idx, item) in enumerate(level):
        out[j] = _exact(item, _path(key, idx))
    return out.reshape(shape)


def _path(key: str, idx: tuple[int, ...]) -> str:
    return key + "".join(f"[{i}]" for i in idx)


def _kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {_quoted(value)}"
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float, Decimal, Fraction)):
        return f"the number {_short(value)}"
    return f"a {type(value).__name__} value"


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-10:]} ({len(text)} characters)"


def _quoted(text: str) -> str:
    """repr-like quoting that never lets a control character through, shortened."""
    return repr(_short(text))


_NOT_A_NUMBER = "give a number or an exact rational string such as \"1/3\""


def _exact(value: Any, field: str) -> Fraction:
    """One value as an exact Fraction, bounded before any costly conversion (module docstring).
    """
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"is {_kind_of(bool(value))}; {_NOT_A_NUMBER}", field=field)
    if isinstance(value, np.integer):
        value = int(value)
    elif isinstance(value, np.floating):
        value = float(value)  # exact: every float32/float64 value is a double
    if isinstance(value, Decimal):
        return _from_decimal(value, field, _short(value))
    if isinstance(value, int):
        return _in_range(_from_int(value, field), field, value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError("contains NaN or Inf; give finite numbers", field=field)
        return _in_range(Fraction(value), field, value)
    if isinstance(value, Fraction):
        if max(abs(value.numerator), value.denominator) >= 10**400:
            raise InputError(f"is a fraction with more than 400 digits; {_RANGE} with at most "
                             f"{MAX_DIGITS} significant digits", field=field)
        return _in_range(value, field, value)
    if isinstance(value, _LongLiteral):
        raise InputError(f"is a number written with {len(value)} characters; a number has at "
                         f"most {MAX_DIGITS} significant digits and {_RANGE}", field=field)
    if isinstance(value, str):
        return _from_string(value, field)
    raise InputError(f"is {_kind_of(value)}; {_NOT_A_NUMBER}", field=field)


def _from_int(value: int, field: str) -> Fraction:
    if abs(value) > MAX_MAGNITUDE:  # a cheap comparison, before any str() of a huge int
        raise InputError(f"is an integer of about {int(abs(value).bit_length() * 0.30103) + 1} "
                         f"digits, outside the supported range: {_RANGE}", field=field)
    digits = str(abs(value)).rstrip("0")
    if len(digits) > MAX_DIGITS:
        raise InputError(f"has {len(digits)} significant digits, above the limit of "
                         f"{MAX_DIGITS}", field=field)
    return Fraction(value)


def _from_decimal(value: Decimal, field: str, text: str) -> Fraction:
    """Exact value of a Decimal; digits and exponent are bounded from its tuple first, so
    ``1e-99999999`` is refused without ever building 10^99999999."""
    if not value.is_finite():
        raise InputError("contains NaN or Inf; give finite numbers", field=field)
    _, digits, exponent = value.as_tuple()
    significant = len(digits)  # Decimal keeps no leading zeros, only trailing ones
    while significant and digits[significant - 1] == 0:
        significant -= 1
    if significant == 0:
        return Fraction(0)
    if significant > MAX_DIGITS:
        raise InputError(f"has {significant} significant digits, above the limit of "
                         f"{MAX_DIGITS}; write an exact rational such as \"1/3\" instead",
                         field=field)
    leading = int(exponent) + len(digits) - 1  # value in [10^leading, 10^(leading + 1))
    if not -301 <= leading <= 150:
        raise InputError(f"is {text}, outside the supported range: {_RANGE}", field=field)
    return _in_range(Fraction(value), field, text)


def _in_range(frac: Fraction, field: str, shown: Any) -> Fraction:
    if frac and not MIN_MAGNITUDE <= abs(frac) <= MAX_MAGNITUDE:
        raise InputError(f"is {_short(shown)}, outside the supported range: {_RANGE} (the "
                         "numerical test works in float64); rescale the data", field=field)
    return frac


_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,9})?")
_INTEGER = re.compile(r"[+-]?\d+")


def _from_string(value: str, field: str) -> Fraction:
    """``"p/q"`` (integers) or a decimal such as ``"-2"``, ``"0.25"``, ``"1e-3"``; exact."""
    if len(value) > MAX_NUMBER_CHARS:
        raise InputError(f"is a string of {len(value)} characters; a number has at most "
                         f"{MAX_NUMBER_CHARS} (and {MAX_DIGITS} significant digits)",
                         field=field)
    text = value.strip()
    bad = InputError(f"holds {_quoted(value)}, which is not a number; {_NOT_A_NUMBER}",
                     field=field)
    if "/" in text:
        num, _, den = (part.strip() for part in text.partition("/"))
        if not (_INTEGER.fullmatch(num) and den.isdigit() and den.isascii()):
            raise bad
        p = _from_decimal(Decimal(num), field, num)
        q = _from_decimal(Decimal(den), field, den)
        if q == 0:
            raise InputError(f"holds {_quoted(value)}, a division by zero; give a non-zero "
                             "denominator", field=field)
        return _in_range(p / q, field, text)
    if not (_DECIMAL.fullmatch(text) and text.isascii()):
        raise bad
    return _from_decimal(Decimal(text), field, text)


def _check_weight_range(weights: np.ndarray) -> None:
    nonzero = [abs(w) for w in weights.ravel() if w]
    if nonzero and max(nonzero) > min(nonzero) * MAX_WEIGHT_RATIO:
        raise InputError("has non-zero weights more than a factor 1e300 apart; the normalised "
                         "weights would underflow in float64: set the tiny ones to 0",
                         field="weights")


def _to_float(arr: np.ndarray) -> np.ndarray:
    """Nearest doubles of the exact values (float(Fraction) rounds correctly)."""
    return np.array([float(x) for x in arr.ravel()], dtype=np.float64).reshape(arr.shape)
