"""The array-first Python API (ntkcheck.arrays) and how results show themselves.

Properties: every accepted kind of input gives the same distributions, hence the same singular
values, as the equivalent list of Discrete laws; Fraction and Decimal values reach the exact
test unrounded; wrong kinds raise a TypeError listing the accepted kinds; results round-trip
through to_dict / from_dict; a user script type-checks under ``mypy --strict``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import ntkcheck as nk
from ntkcheck.arrays import ACCEPTED, training_set

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


class Tensorish:
    """Stands for a torch/JAX tensor: only ``__array__``."""

    def __init__(self, values):
        self._values = np.asarray(values)

    def __array__(self, dtype=None, copy=None):
        return self._values if dtype is None else self._values.astype(dtype)


@pytest.fixture(scope="module")
def tokens():
    return np.random.default_rng(7).normal(size=(6, 4, 2))


def reference(tokens, lengths=None):
    n = tokens.shape[1]
    lengths = [n] * len(tokens) if lengths is None else lengths
    return nk.analyze([nk.Discrete(x[:k]) for x, k in zip(tokens, lengths)],
                      names=[f"seq{i}" for i in range(len(tokens))], exact="never")


def test_numpy_array_equals_discrete_laws(tokens):
    """An (N, n, d) array is N uniform discrete laws: the same singular values (the same
    float computation, so equal to round-off: 1e-12 relative)."""
    ref = reference(tokens)
    got = nk.analyze(tokens, exact="never")
    assert got.names == ref.names
    np.testing.assert_allclose(got.singular_values, ref.singular_values, rtol=1e-12)


def test_array_protocol_and_ragged_list(tokens):
    """An object with __array__ gives exactly the numpy result; a ragged list equals the padded
    array with lengths= and with the equivalent mask=."""
    base = nk.analyze(tokens, exact="never")
    np.testing.assert_array_equal(nk.analyze(Tensorish(tokens), exact="never").singular_values,
                                  base.singular_values)
    lengths = np.array([4, 3, 2, 4, 1, 3])
    ragged = [x[:k] for x, k in zip(tokens, lengths)]
    ref = reference(tokens, lengths)
    mask = np.arange(4)[None, :] < lengths[:, None]
    for got in (nk.analyze(ragged, exact="never"),
                nk.analyze(tokens, lengths=lengths, exact="never"),
                nk.analyze(tokens, mask=mask, exact="never")):
        np.testing.assert_allclose(got.singular_values, ref.singular_values, rtol=1e-12)


def test_weights_and_names(tokens):
    """weights= for padded and ragged inputs: equal to Discrete laws with those weights."""
    w = np.random.default_rng(1).uniform(0.1, 1.0, size=tokens.shape[:2])
    ref = nk.analyze([nk.Discrete(x, wi) for x, wi in zip(tokens, w)], exact="never")
    padded = nk.analyze(tokens, weights=w, names=list("abcdef"), exact="never")
    ragged = nk.analyze(list(tokens), weights=list(w), exact="never")
    assert padded.names == tuple("abcdef")
    np.testing.assert_allclose(padded.singular_values, ref.singular_values, rtol=1e-12)
    np.testing.assert_allclose(ragged.singular_values, ref.singular_values, rtol=1e-12)


def test_kernel_spectrum_accepts_arrays(tokens):
    """kernel_spectrum of the array equals that of the Dataset (same kernel matrix)."""
    ds = nk.Dataset.from_tokens(list(tokens))
    a = nk.kernel_spectrum(tokens, "value", probes=64)
    b = nk.kernel_spectrum(ds, "value", probes=64)
    np.testing.assert_allclose(a.matrix, b.matrix, rtol=1e-12, atol=0)


def test_fractions_stay_exact():
    """Binomial(2, 1/3)-like laws with Fraction atoms 0, 1/3, 2/3 and weights (1/4, 1/2, 1/4)
    against the coin (0, 1/3): LSE[binomial] = 2 LSE[coin] exactly. The exact test proves it;
    the certificate's coefficients are exact rationals."""
    coin = [[Fraction(0)], [Fraction(1, 3)]]
    binom = [[Fraction(0)], [Fraction(1, 3)], [Fraction(2, 3)]]
    w = [[Fraction(1, 2), Fraction(1, 2)], [Fraction(1, 4), Fraction(1, 2), Fraction(1, 4)]]
    for data in ([coin, binom],
                 [nk.Discrete(coin, w[0]), nk.Discrete(binom, w[1])]):
        r = nk.analyze(data, weights=w if isinstance(data[0], list) else None,
                       exact="always")
        assert (r.verdict, r.evidence) == ("not_injective", "exact")
        (dep,) = r.dependencies
        ratio = Fraction(dep.certificate["coefficients"][r.names[0]]) / Fraction(
            dep.certificate["coefficients"][r.names[1]])
        assert ratio == -2


def test_decimal_is_the_decimal_not_the_double():
    """Decimal('0.1') is 1/10: the exact test decides it, while the float 0.1 is its binary64
    value (denominator 2^55), over the exact test's budget: skipped with the hint to write 1/10."""
    data = [[[Decimal("0.1")], [Decimal("0.3")]], [[Decimal("0.2")], [Decimal("0.5")]],
            [[0], [1], [3]]]
    r = nk.analyze(data, exact="always")
    assert r.evidence == "exact" and r.exact["status"] == "decided"
    floats = [[[0.1], [0.3]], [[0.2], [0.5]], [[0], [1], [3]]]
    skipped = nk.analyze(floats, exact="always").exact
    assert skipped["status"] == "skipped" and skipped["kind"] == "budget"
    assert "1/10" in skipped["reason"]


@pytest.mark.parametrize("bad", ["tokens.npz", {"tokens": 1}, 3.0, None,
                                 [nk.Discrete([[0.0]]), np.zeros((2, 1))]])
def test_wrong_kind_is_a_type_error(bad):
    """A value of no accepted kind: TypeError whose message lists the accepted kinds."""
    with pytest.raises(TypeError) as info:
        nk.analyze(bad)
    assert ACCEPTED in str(info.value)


def test_malformed_arrays_are_input_errors(tokens):
    """2-D tokens, mask with lengths, lengths for a ragged list: one-line InputErrors with the
    field and the fix."""
    with pytest.raises(nk.InputError, match="x\\[None\\]"):
        nk.analyze(tokens[0])
    with pytest.raises(nk.InputError, match="either mask or lengths"):
        nk.analyze(tokens, lengths=[1] * 6, mask=np.ones((6, 4), bool))
    with pytest.raises(nk.InputError, match="padded"):
        nk.analyze(list(tokens), lengths=[1] * 6)


def test_training_set_from_arrays_equals_the_file():
    """training_set(tokens, targets) equals what train loads from samples/teacher.npz."""
    from ntkcheck.meanfield.config import load_training_set

    ts_file = load_training_set(nk.load_train_config(SAMPLES / "train.toml"))
    with np.load(SAMPLES / "teacher.npz") as data:
        ts = training_set(Tensorish(data["tokens"]), data["targets"])
    np.testing.assert_array_equal(ts.tokens, ts_file.tokens)
    np.testing.assert_array_equal(ts.weights, ts_file.weights)
    np.testing.assert_array_equal(ts.loss.targets, ts_file.loss.targets)


@pytest.mark.parametrize("sample", ["tokens_dependent.npz", "mixed.toml"])
def test_result_round_trip_and_display(sample):
    """from_dict(to_dict()) rebuilds an equal result (also through JSON text); repr is one
    short line with the verdict; the HTML table names the verdict and each dependency."""
    r = nk.analyze(nk.load_dataset(SAMPLES / sample))
    doc = json.loads(json.dumps(r.to_dict()))
    again = nk.AnalysisResult.from_dict(doc)
    assert again.to_dict() == r.to_dict()
    text = repr(r)
    assert "\n" not in text and len(text) < 300 and r.verdict in text
    page = r._repr_html_()
    assert r.verdict in page and all(d.describe().replace("<", "&lt;") in page
                                     for d in r.dependencies)
    s = nk.kernel_spectrum(nk.load_dataset(SAMPLES / sample), "gram")
    s2 = nk.KernelSpectrum.from_dict(json.loads(json.dumps(s.to_dict(arrays=True))))
    assert s2.to_dict() == s.to_dict()
    np.testing.assert_array_equal(s2.matrix, s.matrix)
    assert repr(s).startswith("KernelSpectrum(gram") and "\n" not in repr(s)


USER_SCRIPT = '''
from __future__ import annotations
from fractions import Fraction
import numpy as np
import numpy.typing as npt
import ntkcheck as nk


def main() -> int:
    rng = np.random.default_rng(0)
    tokens: npt.NDArray[np.float64] = rng.normal(size=(6, 4, 2))
    result: nk.AnalysisResult = nk.analyze(tokens, names=[f"s{i}" for i in range(6)])
    verdict: str = result.verdict
    for dep in result.dependencies:
        text: str = dep.describe()
        print(text)
    ragged = [rng.normal(size=(n, 2)) for n in (3, 4, 5)]
    spectrum: nk.KernelSpectrum = nk.kernel_spectrum(ragged, "qk", probes=64)
    smallest: float = spectrum.min_eigenvalue
    exact = nk.analyze([nk.Discrete([[Fraction(0)], [Fraction(1, 3)]]),
                        nk.Discrete([[Fraction(0)], [Fraction(1, 3)], [Fraction(2, 3)]],
                                    [Fraction(1, 4), Fraction(1, 2), Fraction(1, 4)])])
    again = nk.AnalysisResult.from_dict(exact.to_dict())
    print(verdict, smallest, again.verdict, result.exit_code)
    return 0


def after_training(run_dir: str,
                   tokens: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    run: nk.Run = nk.load_run(run_dir)
    losses: npt.NDArray[np.float64] = run.history["loss"]
    model: nk.TrainedModel = run.model(run.checkpoints[-1])
    print(losses.shape, run.config.flow.step_size)
    return model.predict(tokens)
'''


def test_mypy_strict_accepts_a_user_script(tmp_path):
    """`mypy --strict` on a user script that uses the public API reports no error (ntkcheck is
    read through its py.typed annotations, its own modules silenced as for an installed
    package)."""
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")
    assert (ROOT / "ntkcheck" / "py.typed").exists()
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\n[mypy-ntkcheck.*]\n"
                                       "follow_imports = silent\n")
    env = dict(os.environ, MYPYPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"),
                        "--cache-dir", str(tmp_path / "cache"), str(script)],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
