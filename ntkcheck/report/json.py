"""The JSON document of ``analyze``: a faithful serialisation of the result, versioned.

* One file on the command line: the document of that file, ``AnalysisResult.to_dict()`` plus
  ``schema_version`` and ``file`` (and ``suggest_drop`` with ``--suggest-drop``).
* Several files or a directory: an envelope ``{"schema_version", "exit_code", "files": [...],
  "skipped": [...]}`` with one document per file (an unreadable file is ``{"schema_version",
  "file", "error"}``) and one ``{"file", "reason"}`` per file of a directory scan that is not
  an ntkcheck input (since 1.4; empty when none was).

Both shapes are described by ``analyze.schema.json`` (shipped in this package, JSON Schema
draft-07; :func:`schema` loads it). The version is ``MAJOR.MINOR``: keys are only added within
a major version, so consumers must ignore keys they do not know. Two runs on the same input and
settings give identical documents except for :data:`TIMING_FIELDS`: the timings in
``exact.time`` and, in ``settings.estimate``, the estimated times (from rates measured in each
process) and the process's resident memory.

The text is ASCII and valid UTF-8 JSON for any name: a lone surrogate (a file name byte that is
not UTF-8) is written as a visible escape (``\\xff``), and ``##[`` as ``#\\u0023[``
(:func:`ntkcheck.io.escape.json_text`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any, Sequence

from ..io.escape import json_text
from .files import FileReport, Skipped, worst_exit_code

__all__ = ["SCHEMA_VERSION", "TIMING_FIELDS", "document", "envelope", "render", "schema"]

#: Version of the document layout (``MAJOR.MINOR``).
SCHEMA_VERSION = "1.6"
#: Fields that differ from run to run (dotted paths): timings, and the estimate's times and
#: resident memory (present when the dense test ran; the exact parts when the test may run).
TIMING_FIELDS = ("exact.time", "settings.estimate.time", "settings.estimate.seconds",
                 "settings.estimate.confirmation_seconds", "settings.estimate.resident_bytes",
                 "settings.estimate.peak_resident_bytes", "settings.estimate.exact.seconds",
                 "settings.estimate.exact.time")


def document(report: FileReport) -> dict[str, Any]:
    """The document of one file (or its error document)."""
    if report.result is None:
        return {"schema_version": SCHEMA_VERSION, "file": report.file, "error": report.error or ""}
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    out.update(report.result.to_dict())
    if report.suggestion is not None:
        out["suggest_drop"] = report.suggestion.to_dict()
    out["file"] = report.file
    return out


def envelope(reports: Sequence[FileReport],
             skipped: Sequence[Skipped] = ()) -> dict[str, Any]:
    """Several files: their documents, the exit code of the whole call and the skipped files
    of directory scans (path and reason)."""
    return {"schema_version": SCHEMA_VERSION, "exit_code": worst_exit_code(reports),
            "files": [document(r) for r in reports],
            "skipped": [s.to_dict() for s in skipped]}


def payload(reports: Sequence[FileReport], *, single: bool = False,
            skipped: Sequence[Skipped] = ()) -> dict[str, Any] | None:
    """What ``--output-format json`` prints: the one document when ``single`` (None when that
    file was unreadable: its error goes to stderr only), else the envelope."""
    if single:
        return document(reports[0]) if reports and reports[0].result is not None else None
    return envelope(reports, skipped)


def render(reports: Sequence[FileReport], *, single: bool = False,
           skipped: Sequence[Skipped] = ()) -> str:
    """Indented JSON text of :func:`payload` with a final newline ('' when there is none)."""
    doc = payload(reports, single=single, skipped=skipped)
    return "" if doc is None else json_text(doc) + "\n"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The shipped JSON Schema of the documents (draft-07)."""
    text = resources.files(__package__).joinpath("analyze.schema.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]
