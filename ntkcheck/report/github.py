"""GitHub Actions workflow commands: one annotation per dependency, per inconclusive or
injective file, and per unreadable file.

Format (GitHub's documented workflow-command syntax)::

    ::error file=data/train.npz,title=ntkcheck dependency::LSE[a] - LSE[b] = z1 (sequences a, b; ...)

``error`` for a dependency and for an unreadable file, ``warning`` for an inconclusive verdict,
``notice`` for an injective one. Data are escaped (``%``, CR, LF) and so are property values
(also ``:`` and ``,``), as the runner expects.
"""

from __future__ import annotations

from typing import Sequence

from . import FileReport
from .common import dependency_identity, dependency_tag, involved

__all__ = ["render", "annotation"]


def _escape_data(text: str) -> str:
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
            f"{dependency_identity(dep)} ({dependency_tag(dep)}; {evidence}); sequences "
            f"involved: {', '.join(names)}. The attention NTK is not injective on this data: "
            "remove or change one of these sequences."))
    if not out:  # not injective without an explicit relation (should not happen): still fail
        out.append(annotation("error", file, "ntkcheck not injective", result.reason))
    return out


def render(reports: Sequence[FileReport]) -> str:
    """Every annotation, one per line."""
    lines = [line for r in reports for line in _lines(r)]
    return "".join(line + "\n" for line in lines)
