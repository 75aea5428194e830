"""The golden cases: CLI calls whose normalised output is recorded in ``expected/`` and compared by
``tests/test_golden.py``. Record anew (only when a change of output is intended and explained in
the commit): python tests/golden/cases.py --record

Normalisation removes what legitimately varies between runs: wall-clock timings (keys ``seconds``,
``elapsed``, ``time``, ``wall`` and ``*_seconds`` in JSON; ``<number> s`` durations in text;
``time="..."`` attributes in XML), the process's memory (``*resident_bytes`` keys of the
estimate), temporary paths and the location of the checkout (``{root}``)."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIX = "tests/golden/fixtures"
EXPECTED = Path(__file__).parent / "expected"

# name -> argv (paths relative to the repository root)
CASES: dict[str, list[str]] = {
    "sample_injective": ["analyze", "samples/tokens_injective.npz", "--json"],
    "sample_dependent": ["analyze", "samples/tokens_dependent.npz", "--json"],
    "sample_dependent_text": ["analyze", "samples/tokens_dependent.npz"],
    "sample_mixed": ["analyze", "samples/mixed.toml", "--json"],
    "sample_mixed_text": ["analyze", "samples/mixed.toml"],
    "sample_teacher": ["analyze", "samples/teacher.npz", "--json", "--exact", "never"],
    "convolution": ["analyze", f"{FIX}/convolution.npz", "--json"],
    "convolution_text": ["analyze", f"{FIX}/convolution.npz", "--exact", "never"],
    "convolution_partial": ["analyze", f"{FIX}/convolution.npz", "--json", "--spectrum", "partial",
                            "--exact", "never"],
    "convolution_streamed": ["analyze", f"{FIX}/convolution.npz", "--json", "--stream",
                             "--exact", "never"],
    "gaussian": ["analyze", f"{FIX}/gaussian.npz", "--json"],
    "gaussian_text": ["analyze", f"{FIX}/gaussian.npz"],
    "gaussian_fail_below": ["analyze", f"{FIX}/gaussian.npz", "--json", "--fail-below", "0.5"],
    "gaussian_no_whiten": ["analyze", f"{FIX}/gaussian.npz", "--json", "--no-whiten",
                           "--probes", "200", "--seed", "3"],
    "screened": ["analyze", f"{FIX}/screened.npz", "--json"],
    "screened_text": ["analyze", f"{FIX}/screened.npz"],
    "grey": ["analyze", f"{FIX}/grey.npz", "--json"],
    "grey_text": ["analyze", f"{FIX}/grey.npz"],
    "weighted": ["analyze", f"{FIX}/weighted.npz", "--json"],
    "wide_partial": ["analyze", f"{FIX}/wide.npz", "--json", "--spectrum", "partial"],
    "wide_streamed": ["analyze", f"{FIX}/wide.npz", "--json", "--stream"],
    "wide_suggest": ["analyze", f"{FIX}/wide.npz", "--json", "--fail-below", "0.05", "--suggest-drop"],
    "gaussians_spec": ["analyze", f"{FIX}/gaussians.toml", "--json"],
    "gaussians_spec_never": ["analyze", f"{FIX}/gaussians.toml", "--json", "--exact", "never"],
    "uniforms_spec": ["analyze", f"{FIX}/uniforms.toml", "--json"],
    "github": ["analyze", "samples/tokens_dependent.npz", f"{FIX}/gaussian.npz", "-f", "github"],
    "sarif": ["analyze", "samples/tokens_dependent.npz", f"{FIX}/screened.npz", "-f", "sarif"],
    "junit": ["analyze", "samples/tokens_dependent.npz", f"{FIX}/grey.npz", "-f", "junit"],
    "spectrum_qk": ["spectrum", "samples/tokens_dependent.npz", "--json"],
    "spectrum_gram": ["spectrum", f"{FIX}/screened.npz", "--json", "--kernel", "gram"],
    "spectrum_value": ["spectrum", "samples/mixed.toml", "--json", "--kernel", "value"],
    "spectrum_full": ["spectrum", f"{FIX}/gaussian.npz", "--json", "--kernel", "full"],
    "train": ["train", "samples/train.toml", "--steps", "6", "--ntk-every", "3",
              "--checkpoint-every", "3", "--json", "--out", "{tmp}/run"],
}

_TIME_KEYS = re.compile(r"^(seconds|elapsed|time|wall|wall_time|.*_seconds|duration"
                        r"|.*resident_bytes)$")
_DURATION = re.compile(r"\b\d+(\.\d+)?(e[-+]?\d+)? ?(s|ms|min)\b")
_XML_TIME = re.compile(r' time="[0-9.]+"')


def _strip(doc):
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if not _TIME_KEYS.match(k)}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def normalise(stdout: str, tmp: str) -> str:
    """The temporary directory as {tmp} and the checkout's root as {root} (the output is then
    the same in every clone), durations and timings stripped."""
    text = stdout.replace(tmp, "{tmp}").replace(str(ROOT), "{root}")
    try:
        doc = json.loads(text)
    except ValueError:
        return _DURATION.sub("<t>", _XML_TIME.sub(' time="<t>"', text))
    return json.dumps(_strip(doc), indent=1, sort_keys=True) + "\n"


def run_case(name: str) -> tuple[int, str]:
    """Run one case in-process (typer's CliRunner, cwd at the repository root); returns
    (exit code, normalised stdout)."""
    import os

    from typer.testing import CliRunner

    from ntkcheck.cli.app import app

    tmp = tempfile.mkdtemp(prefix="ntkgolden")
    try:
        argv = [a.replace("{tmp}", tmp) for a in CASES[name]]
        old = os.getcwd()
        os.chdir(ROOT)
        try:
            res = CliRunner().invoke(app, argv, env={"COLUMNS": "100", "NO_COLOR": "1"})
        finally:
            os.chdir(old)
        return res.exit_code, normalise(res.stdout, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


STACK_FILE = Path(__file__).parent / "stack.json"


def _stack() -> dict:
    """numpy's and scipy's major.minor: the probe directions come from an SVD whose signs and
    last bits depend on the LAPACK / BLAS they bring."""
    import numpy
    import scipy

    return {m.__name__: ".".join(m.__version__.split(".")[:2]) for m in (numpy, scipy)}


def same_stack() -> tuple[bool, str]:
    """(whether this numpy / scipy is the one the outputs were recorded with, a reason)."""
    recorded = json.loads(STACK_FILE.read_text())
    now = _stack()
    return now == recorded, (f"outputs recorded with numpy {recorded['numpy']} / scipy "
                             f"{recorded['scipy']}; this is numpy {now['numpy']} / scipy "
                             f"{now['scipy']} (another SVD sign convention moves the probes)")


def main() -> None:
    if "--record" not in sys.argv:
        raise SystemExit(__doc__)
    EXPECTED.mkdir(exist_ok=True)
    STACK_FILE.write_text(json.dumps(_stack(), indent=1) + "\n")
    for name in CASES:
        code, out = run_case(name)
        (EXPECTED / f"{name}.out").write_text(f"exit {code}\n{out}")
        print(name, code, file=sys.stderr)


if __name__ == "__main__":
    main()
