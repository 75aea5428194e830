"""Targeted mutation testing of the decision modules (issue: every threshold, constant and branch
of the decision has tests on both sides of it).

    python tests/mutation/run_mutants.py [--only LABEL_SUBSTRING] [--jobs 1]

Each mutant replaces one exact snippet of a decision module (a threshold times 10, a comparison
flipped, a branch dropped, the redraw seed kept) in a temporary copy of the package and runs the
decision tests there; a mutant is *killed* when a test fails. Mutants marked ``equivalent`` change
nothing observable by construction and are reported apart. Prints one line per mutant and the
score; exits 1 when the score of non-equivalent mutants is below 90 %.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mutants import MUTANTS

ROOT = Path(__file__).resolve().parents[2]
TESTS = ["tests/test_relation_display.py", "tests/test_issue19_survivors.py", "tests/test_certify_reuse.py", "tests/test_extreme_spreads.py",
         "tests/test_optional_deps.py", "tests/test_trust.py", "tests/test_decision_thresholds.py", "tests/test_analyze.py",
         "tests/test_screen.py", "tests/test_exact_analysis.py", "tests/test_certify.py",
         "tests/test_analyze_spectrum.py", "tests/test_partial_spectrum.py",
         "tests/test_streaming.py", "tests/test_written_values.py", "tests/test_certify_gram.py",
         "tests/test_kernels.py", "tests/test_lse_compiled.py", "tests/test_factor.py",
         "tests/test_feature_errors.py", "tests/test_verify_sensitivity.py"]


#: The test files most likely to kill a mutant of each module, run first (then the rest of
#: TESTS in order). Only the order changes: with -x a mutant is still killed iff any test of
#: TESTS fails, but a killed one stops after seconds instead of after the whole list.
_I = "ntkcheck/injectivity/"
FIRST = {
    **dict.fromkeys([_I + "decide.py", _I + "dependencies.py", _I + "verify.py"],
                    ["tests/test_written_values.py", "tests/test_relation_display.py",
                     "tests/test_issue19_survivors.py", "tests/test_decision_thresholds.py",
                     "tests/test_extreme_spreads.py", "tests/test_verify_sensitivity.py"]),
    **dict.fromkeys([_I + "screen.py", _I + "written.py", _I + "keys.py", _I + "findings.py"],
                    ["tests/test_screen.py", "tests/test_written_values.py",
                     "tests/test_issue19_survivors.py"]),
    **dict.fromkeys([_I + "certify.py", _I + "enclosure.py", _I + "rounding.py", _I + "reuse.py",
                     _I + "sigma.py"],
                    ["tests/test_certify_gram.py", "tests/test_certify.py",
                     "tests/test_certify_reuse.py", "tests/test_issue19_survivors.py"]),
    **dict.fromkeys([_I + "spectrum.py", _I + "plan.py", _I + "stream.py", _I + "factor.py",
                     _I + "triangle.py", _I + "iteration.py"],
                    ["tests/test_partial_spectrum.py", "tests/test_decision_thresholds.py",
                     "tests/test_streaming.py", "tests/test_issue19_survivors.py"]),
    **dict.fromkeys([_I + "geometry.py", _I + "probes.py", _I + "features.py"],
                    ["tests/test_feature_errors.py", "tests/test_issue19_survivors.py", "tests/test_decision_thresholds.py",
                     "tests/test_extreme_spreads.py"]),
    "ntkcheck/kernel_spectrum.py": ["tests/test_kernels.py"],
    _I + "summary.py": ["tests/test_analyze_spectrum.py", "tests/test_kernels.py"],
    **dict.fromkeys([_I + "combine.py", "ntkcheck/analysis.py"],
                    ["tests/test_exact_analysis.py", "tests/test_trust.py",
                     "tests/test_issue19_survivors.py"]),
}


def ordered(path: str, tests: list[str]) -> list[str]:
    """TESTS with the likely killers of a mutant of ``path`` first (:data:`FIRST`)."""
    first = [t for t in FIRST.get(path, []) if t in tests]
    return first + [t for t in tests if t not in first]


def run_one(path: str, old: str, new: str, tests: list[str]) -> tuple[bool, float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "ntkcheck", Path(tmp) / "ntkcheck",
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "tests", Path(tmp) / "tests",
                        ignore=shutil.ignore_patterns("__pycache__", "mutation"))
        shutil.copy(ROOT / "pyproject.toml", Path(tmp) / "pyproject.toml")
        shutil.copytree(ROOT / "samples", Path(tmp) / "samples")
        target = Path(tmp) / path
        text = target.read_text()
        if text.count(old) != 1:
            return False, 0.0, f"snippet found {text.count(old)} times"
        target.write_text(text.replace(old, new))
        start = time.perf_counter()
        existing = [t for t in ordered(path, tests) if (Path(tmp) / t).exists()]
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                               "-m", "not slow", *existing], cwd=tmp, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": tmp})
        killed = proc.returncode != 0
        last = (proc.stdout.strip().splitlines() or [""])[-1]
        return killed, time.perf_counter() - start, last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    killed = total = equivalent = 0
    survivors = []
    for m in MUTANTS:
        if args.only not in m["label"]:
            continue
        ok, secs, last = run_one(m["path"], m["old"], m["new"], TESTS)
        if m.get("equivalent"):
            equivalent += 1
            print(f"[equivalent] {m['label']}: {'killed' if ok else 'survived'} ({secs:.0f} s)")
            continue
        total += 1
        killed += ok
        if not ok:
            survivors.append(m["label"])
        print(f"[{'killed' if ok else 'SURVIVED'}] {m['label']} ({secs:.0f} s) {last}", flush=True)
    score = killed / total if total else 1.0
    print(f"\nkilled {killed}/{total} non-equivalent mutants ({100 * score:.0f} %), "
          f"{equivalent} equivalent")
    for s in survivors:
        print(f"  survivor: {s}")
    return 0 if score >= 0.9 else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    raise SystemExit(main())
