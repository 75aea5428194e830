"""Install hints work from a clone: ntkcheck is installed from a clone of its repository (not a
package index), so no message or page tells users to ``pip install 'ntkcheck[...]'``; every
hint names an extra that pyproject.toml defines and packages that extra really pulls in."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ntkcheck.errors import install_hint

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "ntkcheck").rglob("*.py"))
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_no_hint_installs_from_a_package_index():
    """`pip install 'ntkcheck[x]'` / "ntkcheck[x]" cannot work (not on an index): nowhere in
    the package or the docs."""
    pattern = re.compile(r"pip install ['\"]?ntkcheck\[")
    for path in SOURCES + PAGES:
        assert not pattern.search(path.read_text()), path


def test_every_hint_names_a_defined_extra_and_its_packages():
    """Each install_hint(extra, packages) call names an extra of pyproject.toml, and each
    package it names is a requirement of that extra."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    calls = re.compile(r"install_hint\(\s*['\"](\w+)['\"],\s*['\"]([\w\- ]+)['\"]\s*\)")
    found = 0
    for path in SOURCES:
        for extra, packages in calls.findall(path.read_text()):
            found += 1
            assert extra in extras, (path, extra)
            names = {re.split(r"[<>=;\[ ]", req)[0] for req in extras[extra]}
            assert set(packages.split()) <= names, (path, extra, packages)
    assert found >= 6


def test_hint_text():
    """The hint is the editable install of the extra run in the clone, or the packages."""
    assert install_hint("fast", "numba") == (
        "pip install -e '.[fast]' in the ntkcheck clone (or pip install numba)")
