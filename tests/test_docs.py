"""The documentation is self-contained: every relative link of README.md and docs/ points to a
file of the repository, nothing refers to a path outside it, and the docs name every SARIF rule
and every JSON field that the renderers write."""

from __future__ import annotations

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
