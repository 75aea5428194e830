"""JUnit XML: one test suite ``ntkcheck analyze``, one test case per file.

A case passes when the file is injective; a dependency is a ``<failure type="not_injective">``
(its message the first relation, its text every relation and the sequences involved), an
inconclusive verdict a ``<failure type="inconclusive">``, an unreadable file an
``<error type="input_error">``, and a file of a directory scan that is not an ntkcheck input a
case with ``<skipped message="REASON"/>`` (counted in ``skipped``, time 0); with ``--fail-below``, an injective file below the margin is a
``<failure type="near_dependency">`` (the sequences below it in its text), and a failing file
below the margin has those sequences added to its failure text. The case's ``classname`` is
``ntkcheck.analyze`` and its ``name`` the file, as CI test reporters expect; its ``time`` is the
wall time in seconds of reading and analysing the file, and the suite's ``time`` their sum.

The document is well-formed XML 1.0 for any file or sequence name: characters XML 1.0 cannot
hold (C0 controls but tab and newline, lone surrogates, U+FFFE, U+FFFF) are written as visible
``\\xNN`` / ``\\uNNNN`` escapes; ``<``, ``&``, ``>`` (so ``]]>``) and quotes are escaped by the
serialiser; DEL, C1 controls and carriage returns are written as character references, and so
are ``#`` in ``##[`` and a ``:`` that would start a line with ``::`` (the same text once parsed,
but nothing a CI runner reads as a command in its log).
"""

from __future__ import annotations

import re
from typing import Sequence
from xml.etree import ElementTree as ET

from ..io.escape import RUNNER_COMMAND, guard_lines
from ..results import AnalysisResult
from .files import FileReport, Skipped
from .common import dependency_identity, dependency_tag, involved, summary_line

__all__ = ["render"]


def _seconds(report: FileReport) -> float:
    return max(0.0, float(report.seconds or 0.0))


def _case(report: FileReport) -> ET.Element:
    case = ET.Element("testcase", {"classname": "ntkcheck.analyze", "name": report.file,
                                   "time": f"{_seconds(report):.3f}"})
    result = report.result
    if result is None:
        err = ET.SubElement(case, "error", {"type": "input_error",
                                            "message": report.error or "unreadable"})
        err.text = report.error or ""
        return case
    margin = _margin_text(result)
    if result.verdict == "injective":
        if margin:
            fail = ET.SubElement(case, "failure", {"type": "near_dependency",
                                                   "message": margin.splitlines()[0]})
            fail.text = margin
        out = ET.SubElement(case, "system-out")
        out.text = summary_line(result)
        return case
    if result.verdict == "inconclusive":
        fail = ET.SubElement(case, "failure", {"type": "inconclusive",
                                               "message": summary_line(result)})
        fail.text = result.reason + (f"\n{margin}" if margin else "")
        return case
    lines = [f"{dependency_identity(d)} ({dependency_tag(d)}); sequences: {', '.join(involved(d))}"
             for d in result.dependencies]
    fail = ET.SubElement(case, "failure", {"type": "not_injective",
                                           "message": summary_line(result)})
    fail.text = ("\n".join(lines) or result.reason) + (f"\n{margin}" if margin else "")
    return case


def _margin_text(result: AnalysisResult) -> str:
    """'' unless the ``--fail-below`` margin is not met; else one line for the margin and one
    per sequence below it."""
    m = result.margin
    if not m or not m["below"]:
        return ""
    head = (f"near-dependency: scaled smallest singular value "
            f"{m['scaled_smallest_singular_value']:.3g} < --fail-below {m['threshold']:g}")
    return "\n".join([head] + [f"{s['name']}: score {s['score']:.3g}" for s in m["sequences"]])


#: Characters XML 1.0 cannot hold at all (tab, LF and CR can).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: Characters XML holds but a terminal or CI log must not get raw.
_RAW_UNSAFE = re.compile("[\r\x7f-\x9f]")


def _visible(ch: str) -> str:
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte of a file name
        return f"\\x{o - 0xDC00:02x}"
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: _visible(m.group()), text)


def _clean(element: ET.Element) -> None:
    """Make every text, tail and attribute of ``element``'s tree representable in XML 1.0."""
    for el in element.iter():
        if el.text:
            el.text = _xml_text(el.text)
        if el.tail:
            el.tail = _xml_text(el.tail)
        for key, value in el.attrib.items():
            el.attrib[key] = _xml_text(value)


def _log_safe(xml: str) -> str:
    """Character references for DEL, C1 controls, CR, the '#' of '##[' and a line-leading
    ':' of '::' (the serialised text holds them only inside text and attribute values)."""
    xml = _RAW_UNSAFE.sub(lambda m: f"&#{ord(m.group())};", xml)
    return guard_lines(xml.replace(RUNNER_COMMAND, "#&#35;["), colon="&#58;")


def _skipped_case(item: Skipped) -> ET.Element:
    case = ET.Element("testcase", {"classname": "ntkcheck.analyze", "name": item.file,
                                   "time": "0.000"})
    ET.SubElement(case, "skipped", {"message": f"not an ntkcheck input: {item.reason}"})
    return case


def render(reports: Sequence[FileReport], *, skipped: Sequence[Skipped] = ()) -> str:
    """The XML document (UTF-8 declaration, final newline)."""
    failures = sum(1 for r in reports if r.result is not None
                   and (r.result.verdict != "injective" or r.exit_code != 0))
    errors = sum(1 for r in reports if r.result is None)
    total = f"{sum(_seconds(r) for r in reports):.3f}"
    tests = str(len(reports) + len(skipped))
    root = ET.Element("testsuites", {"name": "ntkcheck", "tests": tests,
                                     "failures": str(failures), "errors": str(errors),
                                     "time": total})
    suite = ET.SubElement(root, "testsuite", {
        "name": "ntkcheck analyze", "tests": tests, "failures": str(failures),
        "errors": str(errors), "skipped": str(len(skipped)), "time": total})
    for r in reports:
        suite.append(_case(r))
    for item in skipped:
        suite.append(_skipped_case(item))
    _clean(root)
    ET.indent(root)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            + _log_safe(ET.tostring(root, "unicode")) + "\n")
