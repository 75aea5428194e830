"""Every snippet of README.md and docs/*.md runs, page by page, as a reader would run it.

Per page, in document order, in a fresh directory holding a copy of the repository's
``samples/``:

* ```python blocks run in one namespace; a line ``EXPR  # LITERAL`` (a comment that is a
  Python literal) is checked: EXPR must equal LITERAL;
* ```bash blocks run line by line; every line must be an ``ntkcheck`` command (run as
  ``python -m ntkcheck``); indented (unfenced) command lines are synopses with placeholders
  (``RUN_DIR``, ``data/``), not snippets;
* ```text transcripts (``$ ntkcheck ...`` lines followed by the output) are run and compared:
  the output must match the transcript line for line (:func:`line_matches`: a line ``...``
  stands for any lines, ``...`` inside a line for any text, durations for any duration,
  integers are equal, other numbers agree to 1 % or to the last printed digit, or are both
  round-off); a ``$ echo $?`` line gives the exit code the command must have.

A block that cannot run here (it installs packages, needs a Dask cluster, takes minutes) is
preceded by ``<!-- snippet: skip (reason) -->`` (other HTML comments may sit in between); the
reason is required. Other blocks (toml, yaml, text without ``$``) are data, not snippets.
"""

from __future__ import annotations

import ast
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
SKIP = re.compile(r"^<!-- snippet: skip(?: \((?P<reason>[^)]*)\))? -->$")
DURATION = re.compile(r"\b\d+(\.\d+)?(e[-+]?\d+)? ?(s|ms|min)\b")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    code: str
    skip: str | None  # the reason, when marked


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page with their skip markers (reason '' when none is given)."""
    text = page.read_text()
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[:m.start()].splitlines()
        skip = None
        while before and before[-1].startswith("<!--"):
            marker = SKIP.match(before.pop().strip())
            if marker:
                skip = (marker.group("reason") or "").strip()
        out.append(Block(page, line, m.group(1), m.group(2), skip))
    return out


def is_snippet(b: Block) -> bool:
    return b.lang in ("python", "bash", "sh", "shell") or (
        b.lang in ("text", "") and b.code.lstrip().startswith("$ "))


def runnable_pages() -> list[Path]:
    return [p for p in PAGES if any(is_snippet(b) and b.skip is None for b in blocks(p))]


def test_skip_markers_give_a_reason_and_precede_a_snippet():
    """Every ``<!-- snippet: skip ... -->`` has a reason in parentheses and sits right before
    (possibly after other HTML comments) a Python or shell block."""
    for page in PAGES:
        lines = page.read_text().splitlines()
        marked = {b.line for b in blocks(page) if b.skip is not None}
        for k, line in enumerate(lines, 1):
            if line.startswith("<!-- snippet:"):
                m = SKIP.match(line.strip())
                assert m and m.group("reason"), f"{page.name}:{k}: give the reason: {line}"
                nxt = k + 1
                while lines[nxt - 1].startswith("<!--"):
                    nxt += 1
                assert nxt in marked, f"{page.name}:{k}: the marker does not precede a block"
        for b in blocks(page):
            if b.skip is not None:
                assert is_snippet(b), f"{page.name}:{b.line}: only snippets are skipped"


def test_the_snippets_are_found():
    """The pages hold the snippets this test is about (a parser that found nothing would pass
    vacuously)."""
    found = [b for p in PAGES for b in blocks(p) if is_snippet(b)]
    assert sum(b.lang == "python" for b in found) >= 5
    assert sum(b.lang == "bash" for b in found) >= 3
    assert sum(b.lang == "text" for b in found) >= 8
    assert sum(b.skip is not None for b in found) >= 3


# ---------------------------------------------------------------------------------------------
# running them
# ---------------------------------------------------------------------------------------------

def _ntkcheck(command: str, cwd: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(command)
    assert argv[0] == "ntkcheck", f"not an ntkcheck command: {command!r} (mark the block skip)"
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "ntkcheck", *argv[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:e[-+]?\d+)?(?![\w.])")
#: Two values below this match: the quantities printed are of order 1 (or squares of such),
#: so these are round-off, whose digits depend on the BLAS and the thread count.
TINY = 1e-15


def _last_digit(text: str) -> float:
    """The value of one unit in the last printed digit of a number ('9.4e-27' -> 1e-28)."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    return 10.0 ** (int(exponent or 0) - decimals)


def _same_number(a: str, b: str) -> bool:
    """Expected ``a`` and actual ``b``: integers exactly; otherwise to 1 % or one unit of the
    last printed digit (a rounding of the last digit), and any two round-off values."""
    if not re.search(r"[.e]", a + b):  # integers (counts, steps, sizes) are exact
        return int(a) == int(b)
    x, y = float(a), float(b)
    if abs(x) < TINY and abs(y) < TINY:
        return True
    return abs(x - y) <= max(0.01 * max(abs(x), abs(y)), 1.01 * _last_digit(a))


def line_matches(expected: str, actual: str) -> bool:
    """One line of a transcript against one line of output: text equal, ``...`` any text,
    durations any duration, numbers as :func:`_same_number` says; a list after the last ': '
    may come in another order and with every sign flipped (the equal-magnitude entries of an
    eigenvector are ordered, and its sign chosen, by round-off)."""
    expected = DURATION.sub("<t>", expected.rstrip())
    actual = DURATION.sub("<t>", actual.rstrip())
    pieces, numbers = [], []
    for k, part in enumerate(expected.split("...")):
        last = 0
        for m in NUMBER.finditer(part):
            pieces.append(re.escape(part[last:m.start()]))
            pieces.append(r"([-+]?(?:\d+\.\d*|\.\d+|\d+)(?:e[-+]?\d+)?)")
            numbers.append(m.group())
            last = m.end()
        pieces.append(re.escape(part[last:]))
        if k < expected.count("..."):
            pieces.append(".*?")
    m = re.fullmatch("".join(pieces), actual)
    if m and all(_same_number(a, b) for a, b in zip(numbers, m.groups())):
        return True
    if ": " in expected and ": " in actual:
        (eh, et), (ah, at) = expected.rsplit(": ", 1), actual.rsplit(": ", 1)
        items, got = et.split(", "), at.split(", ")
        if len(items) > 1 and len(items) == len(got) and line_matches(eh, ah):
            flipped = [x.translate(str.maketrans("+-", "-+")) for x in items]
            return _same_items(items, got) or _same_items(flipped, got)
    return False


def _same_items(items: list[str], got: list[str]) -> bool:
    """The items match the other list's in some order (an eigenvector's tied entries; its
    sign is arbitrary too, so the caller also tries the items with every sign flipped)."""
    got = list(got)
    for item in items:
        hit = next((g for g in got if line_matches(item, g)), None)
        if hit is None:
            return False
        got.remove(hit)
    return True


def output_matches(expected: list[str], actual: list[str]) -> bool:
    """The transcript's lines against the output's, a line ``...`` matching any lines."""
    memo: dict[tuple[int, int], bool] = {}

    def match(i: int, j: int) -> bool:
        if (i, j) not in memo:
            if i == len(expected):
                memo[i, j] = j == len(actual)
            elif expected[i].strip() == "...":
                memo[i, j] = any(match(i + 1, k) for k in range(j, len(actual) + 1))
            else:
                memo[i, j] = j < len(actual) and line_matches(expected[i], actual[j]) \
                    and match(i + 1, j + 1)
        return memo[i, j]

    return match(0, 0)


def _same_stack() -> bool:
    sys.path.insert(0, str(ROOT / "tests" / "golden"))
    from cases import same_stack

    return same_stack()[0]


_SAME_STACK = _same_stack()


def run_transcript(b: Block, cwd: Path) -> None:
    lines = b.code.splitlines()
    k = 0
    while k < len(lines):
        line = lines[k]
        assert line.startswith("$ "), f"{b.page.name}:{b.line}: expected a '$ ' line: {line!r}"
        command = line[2:]
        k += 1
        expected = []
        while k < len(lines) and not lines[k].startswith("$ "):
            expected.append(lines[k])
            k += 1
        code = None
        if k < len(lines) and lines[k].strip() == "$ echo $?":
            code = int(lines[k + 1].strip())
            k += 2
        proc = _ntkcheck(command, cwd)
        where = f"{b.page.name}:{b.line}: $ {command}"
        assert proc.returncode < 5, f"{where}\n{proc.stderr}"
        if code is not None:
            assert proc.returncode == code, f"{where}: exit {proc.returncode}, not {code}"
        actual = proc.stdout.splitlines()
        if not _SAME_STACK and expected and expected[0] != "...":
            # another numpy / scipy draws other probe directions (SVD signs): the page's
            # numbers are those of the recorded stack, its first line (the verdict) holds always
            assert actual and line_matches(expected[0], actual[0]), (
                f"{where}: {actual[:1]} != {expected[:1]}")
            continue
        assert output_matches(expected, actual), (
            f"{where}: the output differs from the page\n--- page\n" + "\n".join(expected)
            + "\n--- actual\n" + proc.stdout)


def _checked_statements(code: str):
    """(statement, expected or None) for each top-level statement; a one-line expression
    statement whose line ends in a comment that parses as a Python literal is checked."""
    tree = ast.parse(code)
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string[1:].strip()
    out = []
    for stmt in tree.body:
        expected = None
        if isinstance(stmt, ast.Expr) and stmt.lineno == stmt.end_lineno:
            comment = comments.get(stmt.lineno)
            if comment:
                try:
                    expected = (ast.literal_eval(comment),)
                except (ValueError, SyntaxError):
                    expected = None
        out.append((stmt, expected))
    return out


def run_python(b: Block, namespace: dict) -> None:
    for stmt, expected in _checked_statements(b.code):
        where = f"{b.page.name}:{b.line + stmt.lineno}"
        if expected is None:
            exec(compile(ast.Module([stmt], []), where, "exec"), namespace)
        else:
            value = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)
            assert value == expected[0], f"{where}: {value!r} != {expected[0]!r} (the page)"


def run_bash(b: Block, cwd: Path) -> None:
    for line in b.code.splitlines():
        line = line.split("  #")[0].strip()
        if line and not line.startswith("#"):
            proc = _ntkcheck(line, cwd)
            assert proc.returncode < 5, f"{b.page.name}:{b.line}: $ {line}\n{proc.stderr}"


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: p.name)
def test_page_snippets_run(page, tmp_path, monkeypatch):
    """The page's snippets run in order in a directory with a copy of samples/ (module
    docstring), and their outputs and checked values are those the page shows."""
    shutil.copytree(ROOT / "samples", tmp_path / "samples",
                    ignore=shutil.ignore_patterns("run_*", "__pycache__"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__snippet__"}
    for b in blocks(page):
        if not is_snippet(b) or b.skip is not None:
            continue
        if b.lang == "python":
            run_python(b, namespace)
        elif b.lang in ("bash", "sh", "shell"):
            run_bash(b, tmp_path)
        else:
            run_transcript(b, tmp_path)


def test_the_transcript_matcher():
    """The comparison is strict on text and tolerant only where the docstring says."""
    assert line_matches("converged: 514 steps, in 1.89 s", "converged: 514 steps, in 8.85 s")
    assert not line_matches("converged: 514 steps", "converged: 515 steps")
    assert line_matches("smallest eigenvalue -3.14e-17, tolerance 4.1e-14",
                        "smallest eigenvalue 1.66e-17, tolerance 4.1e-14")
    assert not line_matches("tolerance 4.1e-14", "tolerance 5.1e-14")
    assert line_matches("tolerance 9.4e-14", "tolerance 9.5e-14")  # last digit rounded
    assert not line_matches("tolerance 9.4e-14", "tolerance 9.6e-14")
    assert line_matches("run dir     .../samples/run", "run dir     /tmp/x/samples/run")
    assert line_matches("entries): box1 +0.5774, box2 -0.5774, coin +0.5774",
                        "entries): coin +0.5774, box2 -0.5774, box1 +0.5774")
    assert line_matches("entries): other +0.7071, permuted -0.7071",
                        "entries): permuted +0.7071, other -0.7071")  # sign flipped
    assert not line_matches("entries): other +0.7071, permuted +0.7071",
                            "entries): permuted +0.7071, other -0.7071")
    assert not line_matches("entries): box1 +0.5774, box2 -0.5774",
                            "entries): box1 +0.5774, box3 -0.5774")
    assert line_matches("s27", "s27") and not line_matches("s27", "s28")
    assert output_matches(["a", "...", "z"], ["a", "b", "c", "z"])
    assert not output_matches(["a", "z"], ["a", "b", "z"])
