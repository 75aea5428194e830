"""GitHub Actions workflow commands: one annotation per dependency, per inconclusive or
injective file, and per unreadable file.

Format (GitHub's documented workflow-command syntax)::

    ::error file=data/train.npz,title=ntkcheck dependency::LSE[a] - LSE[b] = z1 (sequences a, b; ...)

``error`` for a dependency and for an unreadable file, ``warning`` for an inconclusive verdict
and, with ``--fail-below``, for each sequence scoring below the margin (title ``ntkcheck
near-dependency``, naming the sequences it is closest to), ``notice`` for an injective one and for each file of a directory scan that is not an ntkcheck
input (title ``ntkcheck skipped``, the reason as message: not analysed, not a failure).
Names are made safe before they are escaped: every control character (C0 with NUL, BEL, ESC,
CR and LF; DEL; C1 with 0x9B), lone surrogate and bidirectional override becomes a visible
``\\xNN`` / ``\\uNNNN``, and ``##[`` (a runner command anywhere in a line) becomes ``#\\x23[``
(:func:`ntkcheck.io.paths.printable`). Then data are escaped as the runner expects (``%`` ->
``%25``, CR -> ``%0D``, LF -> ``%0A``) and so are property values (also ``:`` -> ``%3A`` and
``,`` -> ``%2C``), so a name can neither end a command nor start another one.
"""

from __future__ import annotations

from typing import Sequence

from ..io.paths import printable
from .files import FileReport, Skipped
from .common import dependency_evidence, dependency_identity, dependency_tag, involved

__all__ = ["render", "annotation", "MAX_MARGIN_ANNOTATIONS"]

#: At most this many near-dependency warnings per file (then one line counting the rest).
MAX_MARGIN_ANNOTATIONS = 20


def _visible(text: str) -> str:
    """:func:`printable` on each line (CR and LF kept for the runner's own escapes): no other
    raw control character, surrogate or ``##[`` is left."""
    return "\n".join("\r".join(printable(part) for part in line.split("\r"))
                     for line in text.split("\n"))


def _escape_data(text: str) -> str:
    text = _visible(text)
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, file: str, title: str, message: str) -> str:
    """One workflow command line ``::level file=...,title=...::message``."""
    return (f"::{level} file={_escape_property(file)},title={_escape_property(title)}::"
            f"{_escape_data(message)}")


def _lines(report: FileReport) -> list[str]:
    result, file = report.result, report.file
    if result is None:
        return [annotation("error", file, "ntkcheck input error", report.error or "")]
    return _verdict_lines(report) + _margin_lines(report)


def _margin_lines(report: FileReport) -> list[str]:
    """One warning per sequence below the ``--fail-below`` margin."""
    result = report.result
    if result is None or not result.margin or not result.margin["below"]:
        return []
    m = result.margin
    closest = {d["name"]: d["closest"] for d in (result.near_dependency or {}).get("lowest", [])}
    out = []
    for item in m["sequences"][:MAX_MARGIN_ANNOTATIONS]:
        partners = ", ".join(p["name"] for p in closest.get(item["name"], []))
        out.append(annotation(
            "warning", report.file, "ntkcheck near-dependency",
            f"sequence {item['name']} has near-dependency score {item['score']:.3g} (distance "
            f"of its normalised LSE to the span of the others modulo affine functions)"
            + (f", closest to {partners}" if partners else "")
            + f"; scaled smallest singular value {m['scaled_smallest_singular_value']:.3g} < "
            f"--fail-below {m['threshold']:g}"))
    rest = len(m["sequences"]) - MAX_MARGIN_ANNOTATIONS
    if rest > 0:
        out.append(annotation("warning", report.file, "ntkcheck near-dependency",
                              f"{rest} more sequence(s) below --fail-below {m['threshold']:g} "
                              "(all in --output-format json)"))
    return out


def _verdict_lines(report: FileReport) -> list[str]:
    result, file = report.result, report.file
    assert result is not None
    evidence = f"{result.evidence} evidence" if result.evidence else "no evidence"
    if result.verdict == "injective":
        return [annotation("notice", file, "ntkcheck injective",
                           f"injective ({evidence}) on {result.n_distributions} distributions: "
                           f"{result.reason}")]
    if result.verdict == "inconclusive":
        return [annotation("warning", file, "ntkcheck inconclusive",
                           f"inconclusive on {result.n_distributions} distributions: "
                           f"{result.reason}")]
    out = []
    total = len(result.dependencies)
    for j, dep in enumerate(result.dependencies, 1):
        names = involved(dep)
        out.append(annotation(
            "error", file, f"ntkcheck dependency {j}/{total}",
            f"{dependency_identity(dep)} ({dependency_tag(dep)}; "
            f"{dependency_evidence(dep)} evidence); sequences "
            f"involved: {', '.join(names)}. The attention NTK is not injective on this data: "
            "remove or change one of these sequences."))
    if not out:  # not injective without an explicit relation (should not happen): still fail
        out.append(annotation("error", file, "ntkcheck not injective", result.reason))
    return out


def render(reports: Sequence[FileReport], *, skipped: Sequence[Skipped] = ()) -> str:
    """Every annotation, one per line (the skipped files of scans last)."""
    lines = [line for r in reports for line in _lines(r)]
    lines += [annotation("notice", s.file, "ntkcheck skipped",
                         f"not analysed: {s.reason}") for s in skipped]
    return "".join(line + "\n" for line in lines)
