"""The documentation is self-contained: every relative link of README.md and docs/ points to a
file of the repository (and heading), nothing refers to a path outside it, and the docs name
every SARIF rule and every top-level JSON field that the renderers write. The README stays a
short overview with a table of contents; docs/README.md indexes every page."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ntkcheck.report.sarif import RULES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def _slug(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_relative_links_resolve():
    """Every markdown link without a scheme names an existing file (and heading, if any)."""
    for page in PAGES:
        for target, anchor in LINK.findall(page.read_text()):
            if re.match(r"^[a-z]+:", target):
                continue
            path = (page.parent / target).resolve()
            assert path.exists(), f"{page.name}: broken link {target}"
            assert ROOT in path.parents or path == ROOT, f"{page.name}: {target} leaves the repo"
            if anchor and path.suffix == ".md":
                slugs = {_slug(h) for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)}
                assert anchor[1:] in slugs, f"{page.name}: no heading {anchor} in {target}"


def test_nothing_points_outside_the_repository():
    """No page or module names the workspace's SPEC file or a parent directory."""
    files = PAGES + sorted((ROOT / "ntkcheck").rglob("*.py"))
    for f in files:
        text = f.read_text()
        assert "SPEC.md" not in text and "../shared" not in text, f


def test_docs_name_every_rule_and_the_paper():
    ci = (ROOT / "docs" / "ci.md").read_text()
    assert all(rule[0] in ci for rule in RULES)
    spec = (ROOT / "docs" / "spec.md").read_text()
    assert "arXiv:2605.17660" in spec and "Barboni" in spec
    for n in range(1, 8):
        assert re.search(rf"^## §{n} ", spec, re.M), f"spec.md has no section §{n}"


def _headings(text: str) -> set[str]:
    """Slugs of the page's headings (lines in fenced code blocks are not headings)."""
    slugs, fenced = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#+ (.*)$", line)):
            slugs.add(_slug(m.group(1)))
    return slugs


def test_same_page_anchors_resolve():
    """Every link to a heading of the same page (`](#anchor)`) names an existing heading."""
    for page in PAGES:
        text = page.read_text()
        slugs = _headings(text)
        for anchor in re.findall(r"\]\(#([^)\s]+)\)", text):
            assert anchor in slugs, f"{page.name}: no heading #{anchor}"


def test_readme_is_short_with_a_table_of_contents():
    """README.md stays an overview (<= 300 lines; the rest lives in docs/), opens with a table
    of contents whose links all resolve to its headings and which lists every section."""
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines (at most 300)"
    start = lines.index("## Contents")
    assert start < 20, "the table of contents is not near the top of README.md"
    toc = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        toc += re.findall(r"\]\(#([^)\s]+)\)", line)
    slugs = _headings(text)
    assert toc, "README.md: empty table of contents"
    assert all(anchor in slugs for anchor in toc), [a for a in toc if a not in slugs]
    sections = {_slug(h) for h in re.findall(r"^## (.*)$", text, re.M)} - {"contents"}
    assert sections <= set(toc), f"sections missing from the contents: {sections - set(toc)}"


def test_readme_keeps_the_sections_referred_to_by_name():
    """Code, tests and the CI script refer to these README sections and markers by name."""
    text = (ROOT / "README.md").read_text()
    slugs = _headings(text)
    for heading in ("Exit codes", "Limits", "Run directory guarantees"):
        assert _slug(heading) in slugs, f"README.md has no section {heading!r}"
    assert re.search(r"<!-- ci:test-command -->\n```bash\n[^\n]*pytest[^\n]*\n```", text)


def test_docs_index_lists_every_page():
    """docs/README.md links every page of docs/."""
    index = (ROOT / "docs" / "README.md").read_text()
    linked = {target for target, _ in LINK.findall(index)}
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.name != "README.md":
            assert page.name in linked, f"docs/README.md does not list {page.name}"


def test_docs_name_every_top_level_json_field():
    """Every key of the JSON documents of `analyze` (file document, error document, envelope
    of several files) is named in docs/."""
    schema = json.loads((ROOT / "ntkcheck" / "report" / "analyze.schema.json").read_text())
    docs = "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
    for definition in ("fileDocument", "errorDocument", "envelope"):
        for key in schema["definitions"][definition]["properties"]:
            assert re.search(rf"\b{re.escape(key)}\b", docs), f"docs/ never name {key!r}"
