"""The repository's ``.pre-commit-hooks.yaml``: a valid manifest whose hook runs ``analyze``.

The manifest is validated by pre-commit's own loader when pre-commit is installed (it is in
the ``test`` extra). The end-to-end ``pre-commit try-repo`` run installs ntkcheck and its
dependencies into a fresh environment (a network download of about 100 MB): it is marked slow
and runs only with ``NTKCHECK_TRY_REPO=1``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / ".pre-commit-hooks.yaml"


def test_manifest_is_valid():
    """pre-commit accepts the manifest; the hook runs `ntkcheck analyze --only-failures` (quiet
    when every file passes) on .npz files."""
    clientlib = pytest.importorskip("pre_commit.clientlib",
                                    reason="pre-commit is not installed (pip install pre-commit)")
    hooks = clientlib.load_manifest(str(MANIFEST))
    (hook,) = hooks
    assert hook["id"] == "ntkcheck-analyze"
    assert hook["entry"].split()[:2] == ["ntkcheck", "analyze"]
    assert "--only-failures" in hook["entry"].split()
    assert hook["language"] == "python"
    import re

    assert re.search(hook["files"], "data/train.npz") and not re.search(hook["files"],
                                                                        "pyproject.toml")


@pytest.mark.slow
def test_pre_commit_try_repo(tmp_path):
    """`pre-commit try-repo` on a temporary repository: the hook fails on a dependent dataset
    (a translated copy) and passes on an injective one."""
    if os.environ.get("NTKCHECK_TRY_REPO") != "1":
        pytest.skip("set NTKCHECK_TRY_REPO=1 to run pre-commit try-repo (it installs ntkcheck and "
                    "its dependencies from the package index into a fresh environment, ~100 s)")
    pre_commit = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")
    if not Path(pre_commit).exists():
        pytest.skip("pre-commit is not installed (pip install pre-commit)")
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: try-repo needs the repository's history")
    work = tmp_path / "project"
    work.mkdir()
    env = dict(os.environ, PRE_COMMIT_HOME=str(tmp_path / "cache"), GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3, 2))
    np.savez(work / "good.npz", tokens=X)
    Y = X.copy()
    Y[4] = Y[1] + 1.0
    np.savez(work / "bad.npz", tokens=Y)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True, env=env)
    subprocess.run(["git", "add", "."], cwd=work, check=True, env=env)

    def try_repo(*files):
        return subprocess.run([pre_commit, "try-repo", str(ROOT), "ntkcheck-analyze",
                               "--files", *files], cwd=work, capture_output=True, text=True,
                              env=env, timeout=900)

    good = try_repo("good.npz")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "evidence" not in good.stdout  # quiet on success: no report
    bad = try_repo("good.npz", "bad.npz")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "not_injective" in bad.stdout
