"""Text that is safe to print in a CI log, whatever the names it carries (docs/safety.md).

A CI runner reads every line a step prints: GitHub Actions takes a line whose first non-blank
characters are ``::`` as a workflow command, and ``##[`` anywhere in a line as a command of its
older syntax; a raw carriage return ends a line for it. The machine formats therefore keep
their values and only change how they are spelled:

* JSON (and SARIF): ASCII only (``ensure_ascii``), lone surrogates written as visible escapes
  (:func:`clean_strings`), ``#`` of ``##[`` written ``\\u0023`` (the same string once parsed);
* text: :func:`ntkcheck.io.paths.printable` escapes controls and ``##[``, and
  :func:`guard_lines` breaks a ``::`` at the start of a line.
"""

from __future__ import annotations

import json
from typing import Any

from .paths import escape_surrogates

__all__ = ["clean_strings", "json_text", "guard_lines", "RUNNER_COMMAND"]

#: What a GitHub Actions runner reads as a command anywhere in a line (its older syntax).
RUNNER_COMMAND = "##["


def clean_strings(value: Any) -> Any:
    """``value`` with every string (dict keys too) passed through
    :func:`~ntkcheck.io.paths.escape_surrogates`, so that it encodes as UTF-8."""
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, dict):
        return {clean_strings(k): clean_strings(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_strings(v) for v in value]
    return value


def json_text(value: Any, indent: int | None = 2) -> str:
    """``json.dumps`` of ``value`` that is valid UTF-8 and ASCII, and safe in a CI log: lone
    surrogates escaped visibly, ``##[`` written ``#\\u0023[`` (unchanged once parsed). No final
    newline."""
    text = json.dumps(clean_strings(value), indent=indent)
    # '#' only occurs inside JSON strings, where \u0023 is the same character
    return text.replace(RUNNER_COMMAND, "#\\u0023[")


def guard_lines(text: str, colon: str = "\\x3a") -> str:
    """``text`` with the first ``:`` of every line that starts (after blanks) with ``::``
    replaced by ``colon`` (the escape the format shows), so that no line reads as a workflow
    command. Lines end at ``\\n`` and at every other line break ``str.splitlines`` knows."""
    lines = text.splitlines(keepends=True)
    if not any(line.lstrip().startswith("::") for line in lines):
        return text
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith("::"):
            lead = len(line) - len(stripped)
            line = line[:lead] + colon + line[lead + 1:]
        out.append(line)
    return "".join(out)
