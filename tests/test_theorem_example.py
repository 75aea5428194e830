"""examples/theorem_at_work.py on a short run: the three flows start from the same loss; on the
permuted duplicate the empirical NTK is singular to round-off and the loss never goes below the
floor |T_0 - T_last|^2 / (4 N) (the two copies always get the same pooled output); on the
injective data the NTK is positive definite; the figure is written."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("theorem_at_work",
                                                  ROOT / "examples" / "theorem_at_work.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_short_run(example, tmp_path):
    cases = {c.name: c for c in example.run(steps=40, ntk_every=20, verbose=False)}
    start = [c.records[0].loss for c in cases.values()]
    # same residual vector at step 0 by construction: equal up to the rounding of one sum
    assert max(start) - min(start) <= 1e-14 * max(start)
    assert cases["injective"].verdict == "injective"
    assert cases["duplicate"].verdict == "not_injective"
    lam_inj = cases["injective"].series("ntk_min_eig")[1]
    lam_dup = cases["duplicate"].series("ntk_min_eig")[1]
    # singular: |lambda_min| at round-off of a kernel whose entries are O(1e-1)
    assert np.all(np.abs(lam_dup) < 1e-12) and np.all(lam_inj > 1e-5)
    loss_dup = cases["duplicate"].series("loss")[1]
    floor = cases["duplicate"].floor
    assert floor > 0 and np.all(loss_dup >= floor * (1 - 1e-12))
    assert cases["injective"].records[-1].loss < floor
    pytest.importorskip("matplotlib")
    out = tmp_path / "fig.png"
    example.draw(list(cases.values()), out)
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 10_000
