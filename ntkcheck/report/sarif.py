"""SARIF 2.1.0 log of an ``analyze`` call (for code-scanning upload).

One run of the tool ``ntkcheck``; every analysed file is an artifact. Results:

=======  ===================  =======  =====================================================
rule     name                 level    one result per
=======  ===================  =======  =====================================================
NTK001   lse-dependency       error    dependency sum_i c_i LSE_i = affine (not injective)
NTK002   inconclusive         warning  file whose verdict is inconclusive
NTK003   unreadable-input     error    file that could not be read or analysed (exit 2)
NTK004   near-dependency      warning  sequence scoring below the ``--fail-below`` margin
=======  ===================  =======  =====================================================

An NTK004 result names the sequence and, as further logical locations, the sequences it is
closest to; its ``properties`` carry the score, the margin and the scaled smallest singular
value.

An injective file has no result (it is listed in ``artifacts``). A file of a directory scan
that is not an ntkcheck input is not analysed and raises no alert: it is a tool-execution
notification of level ``note`` (descriptor ``skipped-input``, its message the reason, its
location the file), so the log says what the scan left out without an alert to dismiss; the
run's ``executionSuccessful`` is unchanged by it. Each result's location is the
file as a whole (``region.startLine`` 1, since code scanning wants a line) and its logical
locations are the sequences involved (``kind`` ``"object"``, fully qualified as
``FILE::NAME``). ``properties`` carries the relation's coefficients, affine part, residual and
evidence, so the log is as faithful as the JSON document for what it reports.

An ``artifactLocation.uri`` is the file's path percent-encoded as a URI reference (``data/my
set.npz`` -> ``data/my%20set.npz``; a byte that is not UTF-8 -> ``%FF``). The text is ASCII JSON
and valid for any name (:func:`ntkcheck.io.escape.json_text`).
"""

from __future__ import annotations

import os
from typing import Any, Sequence
from urllib.parse import quote

from ..io.escape import json_text
from .files import FileReport, Skipped, worst_exit_code
from .common import dependency_evidence, dependency_identity, dependency_tag, involved

__all__ = ["RULES", "HELP_MARKDOWN", "NOTIFICATIONS", "SARIF_VERSION", "SARIF_SCHEMA_URI",
           "log", "render"]

SARIF_VERSION = "2.1.0"
#: The ``$schema`` value conventionally written in SARIF 2.1.0 logs.
SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"

#: (id, name, level, short description, full description)
RULES = (
    ("NTK001", "lse-dependency", "error",
     "The LSE functions of these sequences are linearly dependent modulo affine functions.",
     "A relation sum_i c_i LSE_i(z) = a + <b, z> holds for all z: the attention NTK is not "
     "injective on the data, so the global-convergence guarantee of the mean-field training flow "
     "does not apply. Typical causes: a duplicated sequence (up to token order), a translated "
     "copy, a single repeated token (Dirac mass), a convolution of two others."),
    ("NTK002", "inconclusive", "warning",
     "The injectivity test could not decide.",
     "Singular values lie between the round-off level and 100 times it, or changed under a "
     "redraw of the probes. Try --exact, more --probes or other --scales."),
    ("NTK003", "unreadable-input", "error",
     "The file could not be read or analysed.",
     "The message names the file, the field at fault and the fix (exit code 2)."),
    ("NTK004", "near-dependency", "warning",
     "This sequence is close to the span of the others modulo affine functions.",
     "Its near-dependency score (distance of its column-normalised LSE features to the span of "
     "the other sequences' columns, in [0, 1]) is below the --fail-below margin, and so is the "
     "scaled smallest singular value: the injectivity condition holds barely or not at all. "
     "Typical causes: near-duplicates (augmented copies with small jitter), near-translates. "
     "`ntkcheck analyze --suggest-drop` lists sequences to remove."),
)
_INDEX = {rule[0]: j for j, rule in enumerate(RULES)}

#: Descriptors of the tool-execution notifications (``driver.notifications``).
NOTIFICATIONS = (
    {"id": "skipped-input", "name": "skipped-input",
     "shortDescription": {"text": "A file of a directory scan is not an ntkcheck input and was "
                                  "not analysed."},
     "fullDescription": {"text": "The scan found a file with an input suffix that is not a "
                                 "token dataset, a distribution spec or a token-ID file (e.g. "
                                 "a dataset_info.json, an embeddings .npz, a training run's "
                                 "history.jsonl); the message says why. Name it on the "
                                 "command line to have it read (and its fault reported), or "
                                 "leave it out with --exclude GLOB."},
     "defaultConfiguration": {"level": "note"}},
)

#: The help of each rule in Markdown (code scanning shows it beside the alert): what the
#: finding means and how to fix it. The plain-text help is the full description.
HELP_MARKDOWN = {
    "NTK001": (
        "**The LSE functions of the named sequences are linearly dependent modulo affine "
        "functions.**\n\n"
        "A relation `sum_i c_i LSE_i(z) = a + <b, z>` holds for every `z`, so the attention "
        "NTK is not injective on this data and the global-convergence guarantee of the "
        "mean-field training flow does not apply.\n\n"
        "Typical causes: a duplicated sequence (up to token order), a translated copy, a "
        "sequence of one repeated token (a Dirac mass), a convolution of two others.\n\n"
        "**Fix:** remove or change one of the sequences involved (the result's logical "
        "locations), e.g. with `ntkcheck analyze FILE --suggest-drop --write-clean "
        "clean.npz`."),
    "NTK002": (
        "**The injectivity test could not decide.**\n\n"
        "Singular values lie between the round-off level and 100 times it, or changed under a "
        "redraw of the probes.\n\n"
        "**Fix:** try `--exact` (rational data), more `--probes` or other `--scales`."),
    "NTK003": (
        "**The file could not be read or analysed** (exit code 2).\n\n"
        "The message names the file, the field at fault and the fix. Files of a directory "
        "scan that are not ntkcheck inputs are skipped (a note among the tool-execution "
        "notifications, not an alert); `--exclude GLOB` leaves out others."),
    "NTK004": (
        "**This sequence is close to the span of the others modulo affine functions.**\n\n"
        "Its near-dependency score (distance of its column-normalised LSE features to the "
        "span of the other sequences' columns, in [0, 1]) is below the `--fail-below` margin, "
        "and so is the scaled smallest singular value: the injectivity condition holds barely "
        "or not at all. Typical causes: near-duplicates (augmented copies with small jitter), "
        "near-translates.\n\n"
        "**Fix:** `ntkcheck analyze FILE --fail-below MARGIN --suggest-drop` lists sequences "
        "to remove."),
}


def _rule(rule: tuple[str, str, str, str, str]) -> dict[str, Any]:
    rid, name, level, short, full = rule
    return {"id": rid, "name": name, "shortDescription": {"text": short},
            "fullDescription": {"text": full},
            "help": {"text": full, "markdown": HELP_MARKDOWN[rid]},
            "defaultConfiguration": {"level": level}}


def file_uri(file: str) -> str:
    """``file`` as a relative (or absolute) URI reference: its bytes (a file name's undecodable
    bytes included) percent-encoded except ``/`` and the unreserved characters."""
    try:
        raw = os.fsencode(file)
    except (UnicodeError, ValueError):
        raw = file.encode("utf-8", "backslashreplace")
    if os.sep != "/":  # pragma: no cover - Windows
        raw = raw.replace(os.fsencode(os.sep), b"/")
    return quote(raw, safe="/")


def _location(file: str, index: int, names: Sequence[str] = ()) -> dict[str, Any]:
    loc: dict[str, Any] = {"physicalLocation": {
        "artifactLocation": {"uri": file_uri(file), "index": index},
        "region": {"startLine": 1}}}
    if names:
        loc["logicalLocations"] = [{"name": n, "fullyQualifiedName": f"{file}::{n}",
                                    "kind": "object"} for n in names]
    return loc


def _result(rule: str, text: str, location: dict[str, Any],
            properties: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ruleId": rule, "ruleIndex": _INDEX[rule],
                           "level": RULES[_INDEX[rule]][2], "message": {"text": text},
                           "locations": [location]}
    if properties:
        out["properties"] = properties
    return out


def _results(report: FileReport, index: int) -> list[dict[str, Any]]:
    result, file = report.result, report.file
    if result is None:
        return [_result("NTK003", report.error or "unreadable", _location(file, index))]
    if result.verdict == "inconclusive":
        return [_result("NTK002", f"inconclusive: {result.reason}",
                        _location(file, index, result.names),
                        {"smallest_singular_value": (float(result.singular_values[-1])
                                                     if result.singular_values.size else None),
                         "noise": result.noise, "tolerance": result.tolerance})] + \
            _margin_results(result, file, index)
    out = []
    for dep in result.dependencies:
        names = involved(dep)
        out.append(_result(
            "NTK001",
            f"{dependency_identity(dep)} ({dependency_tag(dep)}, {dependency_evidence(dep)} "
            "evidence); "
            f"sequences involved: {', '.join(names)}",
            _location(file, index, names),
            {"evidence": dependency_evidence(dep), **dep.to_dict()}))
    return out + _margin_results(result, file, index)


def _margin_results(result: Any, file: str, index: int) -> list[dict[str, Any]]:
    """One NTK004 warning per sequence below the ``--fail-below`` margin."""
    m = result.margin
    if not m or not m["below"]:
        return []
    closest = {d["name"]: d["closest"] for d in (result.near_dependency or {}).get("lowest", [])}
    out = []
    for item in m["sequences"]:
        partners = [p["name"] for p in closest.get(item["name"], [])]
        out.append(_result(
            "NTK004",
            f"sequence {item['name']}: near-dependency score {item['score']:.3g}"
            + (f", closest to {', '.join(partners)}" if partners else "")
            + f"; scaled smallest singular value {m['scaled_smallest_singular_value']:.3g} "
            f"< margin {m['threshold']:g}",
            _location(file, index, [item["name"], *partners]),
            {"score": item["score"], "threshold": m["threshold"],
             "scaled_smallest_singular_value": m["scaled_smallest_singular_value"],
             "closest": closest.get(item["name"], [])}))
    return out


def _skipped_note(item: Skipped) -> dict[str, Any]:
    return {"level": "note", "descriptor": {"id": "skipped-input", "index": 0},
            "message": {"text": f"skipped {item.file}: {item.reason}"},
            "locations": [{"physicalLocation": {
                "artifactLocation": {"uri": file_uri(item.file)}}}]}


def log(reports: Sequence[FileReport], *, version: str | None = None,
        skipped: Sequence[Skipped] = ()) -> dict[str, Any]:
    """The SARIF log (a dict) of one ``analyze`` call over ``reports`` (``skipped``: the files
    of directory scans that are not inputs, as notes)."""
    if version is None:
        from .. import __version__ as version
    results = [res for j, r in enumerate(reports) for res in _results(r, j)]
    errors = [{"level": "error", "message": {"text": r.error or "unreadable"},
               "locations": [_location(r.file, j)]}
              for j, r in enumerate(reports) if r.result is None]
    notifications = errors + [_skipped_note(item) for item in skipped]
    invocation: dict[str, Any] = {"executionSuccessful": not errors,
                                  "exitCode": worst_exit_code(reports)}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    run = {
        "tool": {"driver": {"name": "ntkcheck", "version": version, "semanticVersion": version,
                            "rules": [_rule(r) for r in RULES],
                            "notifications": list(NOTIFICATIONS)}},
        "invocations": [invocation],
        "artifacts": [{"location": {"uri": file_uri(r.file)}} for r in reports],
        "results": results,
    }
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def render(reports: Sequence[FileReport], *, skipped: Sequence[Skipped] = ()) -> str:
    """Indented JSON text of :func:`log` with a final newline (ASCII, safe in a CI log)."""
    return json_text(log(reports, skipped=skipped)) + "\n"
