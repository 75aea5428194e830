"""Where ``analyze`` writes its reports: stdout, ``--output PATH`` and ``--report FORMAT=PATH``.

One analysis, any number of formats: ``-f github --report sarif=r.sarif --report junit=r.xml``
prints the annotations and writes the SARIF log and the JUnit XML of the same run.
``--output PATH`` writes the ``--output-format`` report to PATH instead of stdout. Every target
is checked before the work starts (:func:`ntkcheck.io.paths.output_target`: a regular file or a
new name in a writable directory, never a symbolic link, never an input nor a file of a
scanned directory) and no two outputs share a path (``--write-clean`` included); each file is
written atomically (:func:`ntkcheck.io.atomic.atomic_write_text`, docs/safety.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..errors import InputError
from ..io.atomic import atomic_write_text
from ..io.paths import output_target, same_file
from ..report import FORMATS, FileReport, Skipped, render

__all__ = ["Target", "parse_report", "report_targets", "write_reports"]


@dataclass(frozen=True)
class Target:
    """One report file: its format, its path and the option that named it (for errors)."""

    fmt: str
    path: Path
    option: str


def parse_report(text: str) -> tuple[str, Path]:
    """``"sarif=r.sarif"`` -> ``("sarif", Path("r.sarif"))``, or an InputError naming
    ``--report`` with the formats."""
    fmt, sep, path = str(text).partition("=")
    fmt = fmt.strip().lower()
    if not sep or not path:
        raise InputError(f"'{text}' is not FORMAT=PATH; e.g. --report sarif=ntkcheck.sarif "
                         f"(formats: {', '.join(FORMATS)})", field="--report")
    if fmt not in FORMATS:
        raise InputError(f"'{text}' names the unknown format '{fmt}'; use one of "
                         f"{', '.join(FORMATS)}", field="--report")
    return fmt, Path(path)


def report_targets(output: Path | None, output_format: str, reports: Sequence[str],
                   inputs: Iterable[Path], others: Sequence[tuple[Path, str]] = ()
                   ) -> list[Target]:
    """Every report file of the call, checked before any work (module docstring).

    ``others`` are further outputs of the call as (path, option), e.g. ``--write-clean``:
    a report may not share their path either.
    """
    targets = [Target(output_format, output, "--output")] if output is not None else []
    for text in reports:
        fmt, path = parse_report(text)
        targets.append(Target(fmt, path, f"--report {fmt}"))
    inputs = list(inputs)
    for t in targets:
        output_target(t.path, t.option, inputs=inputs)
    named = [(t.path, t.option) for t in targets] + list(others)
    for j, (path, option) in enumerate(named):
        for earlier, first in named[:j]:
            if same_file(path, earlier):
                raise InputError(f"'{path}' is also the {first} file; two outputs cannot "
                                 "share one path, give two file names", field=option)
    return targets


def write_reports(targets: Sequence[Target], reports: Sequence[FileReport],
                  single: bool, skipped: Sequence[Skipped] = ()) -> None:
    """Write every target atomically (a failed write is an InputError, exit 2), each with what
    stdout would show in its format (no colour). When that is nothing (JSON of one unreadable
    file, whose error is on stderr; text when no file could be read) the target is not
    written and keeps its previous content, as a run that fails on its input leaves it."""
    for t in targets:
        text = render(t.fmt, reports, single=single, color=False, skipped=skipped)
        if text:
            atomic_write_text(t.path, text)
