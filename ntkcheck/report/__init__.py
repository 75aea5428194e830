"""Renderers of ``analyze`` results, one module per output format.

=========  ==============================================================================
format     module
=========  ==============================================================================
text       :mod:`.text`    the human report (rich markup, colour only on a terminal)
json       :mod:`.json`    one versioned JSON document, validated by ``analyze.schema.json``
github     :mod:`.github`  GitHub Actions workflow commands (annotations in a pull request)
sarif      :mod:`.sarif`   SARIF 2.1.0 (code-scanning upload), one result per dependency
junit      :mod:`.junit`   JUnit XML, one test case per file
=========  ==============================================================================

Every renderer takes the same input, a sequence of :class:`FileReport` (one per input file:
a result, or the one-line error that made the file unreadable), and returns the text to print.
The CLI loops over the files, builds the reports and prints ``render(fmt, reports)``.
The files of directory scans that are not inputs (:class:`Skipped`) are listed by every
machine format (``skipped=``): a JSON ``skipped`` list, a SARIF tool-execution notification
of level ``note``, a JUnit ``skipped`` test case, a GitHub ``notice``; the text format leaves
them to the notes on stderr.
"""

from __future__ import annotations

from typing import Callable, Sequence

from .files import EXIT_ORDER, FileReport, Skipped, worst_exit_code

__all__ = ["FileReport", "Skipped", "FORMATS", "MACHINE_FORMATS", "render", "worst_exit_code",
           "EXIT_ORDER"]

#: Every ``--output-format``; all but ``text`` are machine formats that ``-q`` never silences.
FORMATS = ("text", "json", "github", "sarif", "junit")
MACHINE_FORMATS = FORMATS[1:]


def render(fmt: str, reports: Sequence[FileReport], *, single: bool = False,
           color: bool = False, skipped: Sequence[Skipped] = ()) -> str:
    """The whole output of one ``analyze`` call in format ``fmt`` (ends with a newline, or is
    empty when there is nothing to say).

    ``single`` is true when the command line named exactly one file (not a directory): the JSON
    format then prints that file's document itself instead of the multi-file envelope.
    ``color`` turns on ANSI colour in the text format (the CLI: stdout is a terminal and
    ``NO_COLOR`` is not set). ``skipped``: the files of directory scans left out as not
    inputs (the machine formats list them).
    """
    renderers: dict[str, Callable[..., str]] = _renderers()
    if fmt not in renderers:
        raise ValueError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")
    if fmt == "json":
        return renderers[fmt](reports, single=single, skipped=skipped)
    if fmt == "text":
        return renderers[fmt](reports, color=color)
    return renderers[fmt](reports, skipped=skipped)


def _renderers() -> dict[str, Callable[..., str]]:
    from . import github, json, junit, sarif, text

    return {"text": text.render, "json": json.render, "github": github.render,
            "sarif": sarif.render, "junit": junit.render}
