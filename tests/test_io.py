"""Loaders (ntkcheck.io): npz token files in both layouts and toml/json specs.

Round-trips are exact (no arithmetic beyond weight normalisation, checked to a few ulps); every bad
input must raise InputError naming the file and, when one is at fault, the field.
"""

from __future__ import annotations

import gc
import json
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntkcheck import Discrete, GaussianMixture, InputError, TokenArrays, UniformBox, load_token_npz
from ntkcheck.io import load_dataset, load_spec

EPS = np.finfo(float).eps


def save(tmp_path: Path, name: str = "data.npz", **arrays) -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


# ---- npz: valid layouts ------------------------------------------------------------------------

def test_padded_plain_roundtrip(tmp_path):
    """(N, n, d) tokens without padding: tokens kept bit-for-bit, uniform weights, seqK names."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 2))
    ta = load_token_npz(save(tmp_path, tokens=x))
    assert np.array_equal(ta.tokens, x)
    assert np.allclose(ta.weights, 1 / 3, rtol=EPS, atol=0)
    assert ta.names == ("seq0", "seq1", "seq2", "seq3")
    assert ta.source == str(tmp_path / "data.npz")
    assert ta.lengths.tolist() == [3, 3, 3, 3]


def test_padded_with_weights_mask_names_and_extra(tmp_path):
    """weights normalised per row; mask zeroes padded weights and tokens; names kept; unknown
    arrays kept in ``extra``; NaN at masked positions is allowed (ignored)."""
    x = np.arange(2 * 3 * 1, dtype=float).reshape(2, 3, 1)
    x[1, 2, 0] = np.nan
    w = np.array([[1.0, 2.0, 1.0], [3.0, 1.0, 5.0]])
    mask = np.array([[True, True, True], [True, True, False]])
    ta = load_token_npz(save(tmp_path, tokens=x, weights=w, mask=mask,
                             names=np.array(["a", "b"]), targets=np.ones(2)))
    assert ta.names == ("a", "b")
    assert np.allclose(ta.weights, [[0.25, 0.5, 0.25], [0.75, 0.25, 0.0]], rtol=0, atol=EPS)
    assert ta.tokens[1, 2, 0] == 0.0 and np.all(np.isfinite(ta.tokens))
    assert ta.lengths.tolist() == [3, 2]
    assert set(ta.extra) == {"targets"}
    ds = ta.to_dataset()
    assert ds.names == ("a", "b")
    assert ds.distributions[1].atoms.shape == (2, 1)


def test_lengths_and_ragged_offsets(tmp_path):
    """lengths (N,) and offsets (N+1,) describe the same sequences; bytes names are decoded."""
    x = np.array([[[1.0], [2.0], [9.0]], [[3.0], [np.inf], [np.nan]]])
    ta = load_token_npz(save(tmp_path, "p.npz", tokens=x, lengths=np.array([3, 1]),
                             names=np.array([b"u", b"v"])))
    tb = load_token_npz(save(tmp_path, "r.npz", tokens=np.array([[1.0], [2.0], [9.0], [3.0]]),
                             offsets=np.array([0, 3, 4]), names=np.array(["u", "v"])))
    for t in (ta, tb):
        assert t.names == ("u", "v")
        assert t.lengths.tolist() == [3, 1]
    assert np.array_equal(ta.tokens, tb.tokens)
    assert np.array_equal(ta.weights, tb.weights)


@st.composite
def ragged_datasets(draw):
    N = draw(st.integers(1, 5))
    d = draw(st.integers(1, 3))
    lengths = draw(st.lists(st.integers(1, 4), min_size=N, max_size=N))
    seed = draw(st.integers(0, 2**32 - 1))
    weighted = draw(st.booleans())
    named = draw(st.booleans())
    return N, d, lengths, seed, weighted, named


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ragged_datasets())
def test_padded_and_ragged_layouts_load_identically(tmp_path, case):
    """Hypothesis round-trip: random ragged datasets written as padded+lengths, padded+mask and
    ragged+offsets load to the same TokenArrays (tokens exactly; weights up to the one rounding of
    the normalisation, which is the same computation in every layout)."""
    N, d, lengths, seed, weighted, named = case
    rng = np.random.default_rng(seed)
    seqs = [rng.normal(size=(n, d)) for n in lengths]
    ws = [rng.uniform(0.1, 2, size=n) for n in lengths]
    n = max(lengths)
    padded = np.full((N, n, d), np.nan)  # NaN padding must be ignored
    pw = np.zeros((N, n))
    for i, (x, w) in enumerate(zip(seqs, ws)):
        padded[i, : len(x)] = x
        pw[i, : len(x)] = w
    common = {"names": np.array([f"n{i}" for i in range(N)])} if named else {}
    wkw_p = {"weights": pw} if weighted else {}
    wkw_r = {"weights": np.concatenate(ws)} if weighted else {}
    a = load_token_npz(save(tmp_path, "a.npz", tokens=padded, lengths=np.array(lengths),
                            **wkw_p, **common))
    b = load_token_npz(save(tmp_path, "b.npz", tokens=padded,
                            mask=np.arange(n) < np.array(lengths)[:, None], **wkw_p, **common))
    c = load_token_npz(save(tmp_path, "c.npz", tokens=np.concatenate(seqs),
                            offsets=np.concatenate([[0], np.cumsum(lengths)]), **wkw_r, **common))
    for t in (a, b, c):
        assert t.tokens.shape == (N, n, d)
        assert t.lengths.tolist() == lengths
        assert t.names == (tuple(f"n{i}" for i in range(N)) if named
                           else tuple(f"seq{i}" for i in range(N)))
        assert np.array_equal(t.tokens, a.tokens)
        assert np.allclose(t.weights, a.weights, rtol=2 * EPS, atol=0)
        assert np.allclose(t.weights.sum(axis=1), 1.0, rtol=0, atol=8 * EPS)
        for i, x in enumerate(seqs):
            assert np.array_equal(t.tokens[i, : len(x)], x)
            expected = ws[i] / ws[i].sum() if weighted else np.full(len(x), 1 / len(x))
            assert np.allclose(t.weights[i, : len(x)], expected, rtol=4 * EPS, atol=0)


def test_from_arrays_matches_file(tmp_path):
    """TokenArrays.from_arrays validates an in-memory mapping exactly like the file loader."""
    x = np.random.default_rng(1).normal(size=(3, 2, 2))
    a = TokenArrays.from_arrays({"tokens": x})
    b = load_token_npz(save(tmp_path, tokens=x))
    assert np.array_equal(a.tokens, b.tokens) and np.array_equal(a.weights, b.weights)


def test_load_dataset_dispatches_on_extension(tmp_path):
    """.npz -> one Discrete per sequence; .toml/.json -> spec; anything else -> InputError."""
    ds = load_dataset(save(tmp_path, tokens=np.zeros((2, 1, 1)) + [[[0.0]], [[1.0]]]))
    assert all(isinstance(d, Discrete) for d in ds.distributions)
    bad = tmp_path / "data.csv"
    bad.write_text("1,2\n")
    with pytest.raises(InputError, match="data.csv"):
        load_dataset(bad)


# ---- npz: bad inputs ------------------------------------------------------------------------

Z3 = np.zeros((2, 3, 1))
BAD_NPZ = {
    "missing_tokens": ({"x": Z3}, "tokens"),
    "tokens_1d": ({"tokens": np.zeros(3)}, "tokens"),
    "tokens_4d": ({"tokens": np.zeros((1, 2, 3, 1))}, "tokens"),
    "tokens_2d_no_offsets": ({"tokens": np.zeros((3, 1))}, "tokens"),
    "tokens_strings": ({"tokens": np.array([[["a"]], [["b"]]])}, "tokens"),
    "tokens_complex": ({"tokens": Z3 + 1j}, "tokens"),
    "tokens_nan_real": ({"tokens": np.where(np.arange(3)[None, :, None] == 1, np.nan, Z3)},
                        "tokens"),
    "tokens_inf_real": ({"tokens": np.full((2, 3, 1), np.inf)}, "tokens"),
    "nan_ragged": ({"tokens": np.array([[0.0], [np.nan]]), "offsets": np.array([0, 1, 2])},
                   "tokens"),
    "empty_dataset_padded": ({"tokens": np.zeros((0, 3, 1))}, "tokens"),
    "empty_dataset_ragged": ({"tokens": np.zeros((0, 1)), "offsets": np.array([0])}, "tokens"),
    "d_zero": ({"tokens": np.zeros((2, 3, 0))}, "tokens"),
    "offsets_short": ({"tokens": np.zeros((4, 1)), "offsets": np.array([0, 2, 3])}, "offsets"),
    "offsets_decreasing": ({"tokens": np.zeros((4, 1)), "offsets": np.array([0, 3, 2, 4])},
                           "offsets"),
    "offsets_not_from_zero": ({"tokens": np.zeros((4, 1)), "offsets": np.array([1, 4])},
                              "offsets"),
    "offsets_float": ({"tokens": np.zeros((4, 1)), "offsets": np.array([0, 1.5, 4])}, "offsets"),
    "offsets_2d": ({"tokens": np.zeros((4, 1)), "offsets": np.array([[0, 4]])}, "offsets"),
    "offsets_with_3d": ({"tokens": Z3, "offsets": np.array([0, 3, 6])}, "offsets"),
    "weights_negative": ({"tokens": Z3, "weights": np.array([[1.0, -1, 1], [1, 1, 1]])},
                         "weights"),
    "weights_all_zero_row": ({"tokens": Z3, "weights": np.array([[1.0, 1, 1], [0, 0, 0]])},
                             "weights"),
    "weights_nan": ({"tokens": Z3, "weights": np.array([[1.0, np.nan, 1], [1, 1, 1]])},
                    "weights"),
    "weights_shape": ({"tokens": Z3, "weights": np.ones((2, 2))}, "weights"),
    "weights_ragged_shape": ({"tokens": np.zeros((4, 1)), "offsets": np.array([0, 2, 4]),
                              "weights": np.ones(3)}, "weights"),
    "empty_sequence_lengths": ({"tokens": Z3, "lengths": np.array([3, 0])}, None),
    "empty_sequence_offsets": ({"tokens": np.zeros((4, 1)), "offsets": np.array([0, 2, 2, 4])},
                               None),
    "empty_sequence_mask": ({"tokens": Z3, "mask": np.array([[1, 1, 1], [0, 0, 0]], bool)}, None),
    "mask_and_lengths": ({"tokens": Z3, "mask": np.ones((2, 3), bool),
                          "lengths": np.array([3, 3])}, "lengths"),
    "mask_shape": ({"tokens": Z3, "mask": np.ones((2, 2), bool)}, "mask"),
    "mask_values": ({"tokens": Z3, "mask": np.full((2, 3), 2)}, "mask"),
    "lengths_too_big": ({"tokens": Z3, "lengths": np.array([3, 4])}, "lengths"),
    "lengths_negative": ({"tokens": Z3, "lengths": np.array([3, -1])}, "lengths"),
    "lengths_shape": ({"tokens": Z3, "lengths": np.array([3])}, "lengths"),
    "mask_in_ragged": ({"tokens": np.zeros((4, 1)), "offsets": np.array([0, 4]),
                        "mask": np.ones(4, bool)}, "mask"),
    "names_length": ({"tokens": Z3, "names": np.array(["a"])}, "names"),
    "names_duplicate": ({"tokens": Z3, "names": np.array(["a", "a"])}, "names"),
    "names_numeric": ({"tokens": Z3, "names": np.array([1, 2])}, "names"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_names_file_and_field(tmp_path, case):
    """Each malformed npz raises InputError; the message names the file and the field at fault
    (for empty sequences the field may be whichever array made it empty, so only the sequence
    index is required)."""
    arrays, field = BAD_NPZ[case]
    path = save(tmp_path, f"{case}.npz", **arrays)
    with pytest.raises(InputError) as info:
        load_token_npz(path)
    msg = str(info.value)
    assert str(path) in msg
    if field is not None:
        assert f"'{field}'" in msg, msg
    else:
        assert "sequence 1" in msg or "sequence" in msg.lower(), msg
    assert "\n" not in msg


def test_empty_name_rejected_when_building_dataset(tmp_path):
    """An empty sequence name is refused (at the latest when the dataset is built, which is what
    every command does), naming the file and the field."""
    path = save(tmp_path, tokens=Z3, names=np.array(["a", ""]))
    with pytest.raises(InputError) as info:
        load_dataset(path)
    assert str(path) in str(info.value) and "'names'" in str(info.value)


def test_missing_file_and_directory(tmp_path):
    """A missing path or a directory: InputError naming the path."""
    for p in (tmp_path / "nope.npz", tmp_path):
        with pytest.raises(InputError) as info:
            load_token_npz(p)
        assert str(p) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"hello, not a zip", b"PK\x03\x04garbage"])
def test_not_an_npz(tmp_path, content):
    """Garbage bytes: InputError naming the file (never a raw numpy/zip exception)."""
    p = tmp_path / "bad.npz"
    p.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # no leaked file handle either
        with pytest.raises(InputError) as info:
            load_token_npz(p)
        gc.collect()
    assert str(p) in str(info.value)


def test_corrupt_zip_does_not_leak_file_handle(tmp_path):
    """A failed load must close the file it opened (no ResourceWarning on collection)."""
    p = tmp_path / "bad.npz"
    p.write_bytes(b"PK\x03\x04garbage")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with pytest.raises(InputError):
            load_token_npz(p)
        gc.collect()
    assert not [w for w in rec if issubclass(w.category, ResourceWarning)]


def test_text_file_is_reported_as_not_npz(tmp_path):
    """The message must describe the actual problem (not a readable .npz file)."""
    p = tmp_path / "bad.npz"
    p.write_bytes(b"hello, not a zip")
    with pytest.raises(InputError) as info:
        load_token_npz(p)
    assert "object array" not in str(info.value)


def test_single_npy_array_is_input_error(tmp_path):
    """np.save output is one array, not an archive: InputError naming the file."""
    p = tmp_path / "arr.npy"
    np.save(p, np.zeros((2, 3, 1)))
    q = tmp_path / "arr.npz"
    p.rename(q)
    with pytest.raises(InputError) as info:
        load_token_npz(q)
    assert str(q) in str(info.value)


def test_object_array_is_input_error(tmp_path):
    """Object (pickled) arrays are refused (allow_pickle=False) with an InputError naming the
    file."""
    path = save(tmp_path, tokens=Z3, names=np.array(["a", 1], dtype=object))
    with pytest.raises(InputError) as info:
        load_token_npz(path)
    assert str(path) in str(info.value)


def _npz_with_member(path: Path, arrays: dict, key: str, member: bytes) -> Path:
    """An .npz (valid zip, correct CRCs) whose member ``key`` holds the bytes ``member``."""
    import io
    import zipfile
    with zipfile.ZipFile(path, "w") as zf:
        for k, a in arrays.items():
            if k == key:
                zf.writestr(f"{k}.npy", member)
            else:
                buf = io.BytesIO()
                np.save(buf, a)
                zf.writestr(f"{k}.npy", buf.getvalue())
    return path


def _npy_bytes(a: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


# Header bytes damaged so that numpy's tokenizer stops with tokenize.TokenError ("EOF in
# multi-line statement"), which is neither a ValueError nor a SyntaxError: it escaped as an
# internal error (exit 5) before _npy_header caught it.
HEADER_FLIPS = {
    "open_paren": (b"'shape': (", b"'shape': \xa8"),      # one byte: '(' -> 0xa8
    "closed_paren": (b"(3, 4, 2)", b"(3, 4, 2("),           # ')' -> '('
    "three_flips": (b"'fortran_order': False, 'shape': (3, 4, 2)",
                    b"'forTran_order': \x06alse, 'shape': (3, 4, 2("),
}


@pytest.mark.parametrize("case", sorted(HEADER_FLIPS))
def test_bit_flipped_npy_header_is_input_error(tmp_path, case):
    """A damaged .npy header inside a valid zip: one-line InputError naming the file and the
    member, with the fix (pins the tokenize.TokenError branch of _npy_header), also through
    the CLI (exit 2, not 5)."""
    from typer.testing import CliRunner
    from ntkcheck.cli import app

    old, new = HEADER_FLIPS[case]
    x = np.random.default_rng(0).normal(size=(3, 4, 2))
    raw = _npy_bytes(x)
    assert old in raw
    path = _npz_with_member(tmp_path / "flip.npz", {"tokens": x}, "tokens",
                            raw.replace(old, new, 1))
    with pytest.raises(InputError) as info:
        load_token_npz(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: field 'tokens': has a corrupt .npy header"), msg
    assert "write the file again" in msg and "\n" not in msg
    res = CliRunner().invoke(app, ["analyze", str(path)])
    assert res.exit_code == 2, res.output
    assert res.stderr.strip().splitlines() == [f"ntkcheck: error: {msg}"]


def test_names_with_invalid_code_points_are_input_errors_and_bytes_stay_visible(tmp_path):
    """Damaged names: a U array whose data hold code points above U+10FFFF (numpy reads them
    unchecked; ``tolist`` raised SystemError, exit 5) is a one-line InputError naming the
    entry; an S array of non-UTF-8 bytes (UnicodeDecodeError, exit 5) loads with the bytes
    escaped (a name only has to be recognisable and encodable in every output format)."""
    z = np.zeros((2, 1, 1))
    good = _npy_bytes(np.array(["a", "b"]))
    bad = good[:-8] + b"\x20\x20\x20\x20" + good[-4:]  # entry 0: code point 0x20202020
    path = _npz_with_member(tmp_path / "u.npz", {"tokens": z, "names": None}, "names", bad)
    with pytest.raises(InputError, match=r"field 'names': entry 0 holds a code point above"):
        load_token_npz(path)
    path = save(tmp_path, "s.npz", tokens=z, names=np.array([b"ok", b"\xff\xfe"]))
    assert load_token_npz(path).names == ("ok", "\\xff\\xfe")


@pytest.mark.parametrize("key", ["names", "tokens"])
def test_object_array_error_names_field(tmp_path, key):
    """The message must name which array is an object array."""
    arrays = {"tokens": Z3, "names": np.array(["a", "b"])}
    arrays[key] = np.array(list(arrays[key]) + [None], dtype=object)[:-1]
    path = save(tmp_path, **arrays)
    with pytest.raises(InputError) as info:
        load_token_npz(path)
    assert f"'{key}'" in str(info.value)


# ---- toml / json specs ------------------------------------------------------------------------

SPEC_TOML = """
[[distribution]]
name = "coin"
kind = "discrete"
atoms = [0, 1]
weights = ["1/3", "2/3"]

[[distribution]]
name = "box"
kind = "uniform"
low = ["-1/2"]
high = [0.25]

[[distribution]]
name = "gm"
kind = "gaussian_mixture"
weights = [1, 3]
means = [[0], ["1/7"]]
covariances = [[["1/3"]], [[0]]]
"""


def test_toml_spec_rationals_exact(tmp_path):
    """"1/3" is kept as Fraction(1, 3) in .rational and its nearest float in the arrays; weights are
    normalised in the arrays only; flat atom lists mean d = 1."""
    p = tmp_path / "s.toml"
    p.write_text(SPEC_TOML)
    ds = load_spec(p)
    assert ds.names == ("coin", "box", "gm") and ds.dim == 1
    coin, box, gm = ds.distributions
    assert isinstance(coin, Discrete) and isinstance(box, UniformBox)
    assert isinstance(gm, GaussianMixture)
    assert list(coin.rational["weights"]) == [Fraction(1, 3), Fraction(2, 3)]
    assert coin.weights[0] == 1 / 3 and coin.weights[1] == 2 / 3
    assert coin.atoms.shape == (2, 1)
    assert box.rational["low"][0] == Fraction(-1, 2) and box.low[0] == -0.5
    assert box.rational["high"][0] == Fraction(1, 4)
    assert gm.rational["means"][1, 0] == Fraction(1, 7) and gm.means[1, 0] == 1 / 7
    assert gm.rational["covariances"][0, 0, 0] == Fraction(1, 3)
    assert np.allclose(gm.weights, [0.25, 0.75], rtol=0, atol=EPS)


def test_json_spec_equals_toml(tmp_path):
    """The same spec in JSON loads to the same arrays and rationals."""
    import tomllib

    doc = tomllib.loads(SPEC_TOML)
    p = tmp_path / "s.json"
    p.write_text(json.dumps(doc))
    q = tmp_path / "s.toml"
    q.write_text(SPEC_TOML)
    a, b = load_spec(p), load_spec(q)
    assert a.names == b.names
    z = np.linspace(-3, 3, 7)[:, None]
    assert np.array_equal(a.lse(z), b.lse(z))
    assert list(a.distributions[0].rational["weights"]) == list(b.distributions[0].rational["weights"])


def _entry(**kw):
    base = {"name": "x", "kind": "discrete", "atoms": [[0], [1]]}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


BAD_SPECS = {
    "unknown_kind": ([_entry(kind="poisson")], "distribution[0].kind"),
    "unknown_key": ([_entry(mean=[0])], "distribution[0].mean"),
    "missing_key": ([{"name": "x", "kind": "uniform", "low": [0]}], "distribution[0].high"),
    "missing_name": ([_entry(name=None)], "distribution[0].name"),
    "low_gt_high": ([{"name": "x", "kind": "uniform", "low": [1], "high": [0]}],
                    "distribution[0].low"),
    "non_psd": ([{"name": "g", "kind": "gaussian_mixture", "weights": [1], "means": [[0, 0]],
                  "covariances": [[[1, 2], [2, 1]]]}], "distribution[0].covariances[0]"),
    "non_symmetric": ([{"name": "g", "kind": "gaussian_mixture", "weights": [1],
                        "means": [[0, 0]], "covariances": [[[1, 0.5], [0, 1]]]}],
                      "distribution[0].covariances[0]"),
    "ragged_atoms": ([_entry(atoms=[[0, 1], [2]])], "distribution[0].atoms[1]"),
    "ragged_cov": ([{"name": "g", "kind": "gaussian_mixture", "weights": [1], "means": [[0, 0]],
                     "covariances": [[[1, 0], [0]]]}], "distribution[0].covariances[0][1]"),
    "bad_rational": ([_entry(weights=["1/0", "1"])], "distribution[1 - 1].weights[0]"),
    "not_a_number": ([_entry(atoms=[["a"], [1]])], "distribution[0].atoms[0][0]"),
    "boolean": ([_entry(atoms=[[True], [1]])], "distribution[0].atoms[0][0]"),
    "negative_weight": ([_entry(weights=[-1, 2])], "distribution[0].weights"),
    "zero_weights": ([_entry(weights=[0, 0])], "distribution[0].weights"),
    "mixed_dimensions": ([_entry(name="a"), _entry(name="b", atoms=[[0, 1]])], "distributions"),
    "duplicate_names": ([_entry(), _entry()], "names"),
    "second_entry_bad": ([_entry(name="a"), _entry(name="b", kind="poisson")],
                         "distribution[1].kind"),
    "empty_list": ([], "distribution"),
}


@pytest.mark.parametrize("fmt", ["toml", "json"])
@pytest.mark.parametrize("case", sorted(BAD_SPECS))
def test_bad_spec_names_file_and_field(tmp_path, case, fmt):
    """Malformed specs raise InputError naming the file and the (dotted) field."""
    entries, field = BAD_SPECS[case]
    field = field.replace("[1 - 1]", "[0]")
    path = tmp_path / f"{case}.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps({"distribution": entries}))
    else:
        path.write_text(_to_toml(entries))
    with pytest.raises(InputError) as info:
        load_spec(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f"'{field}'" in msg, msg


def _to_toml(entries) -> str:
    if not entries:
        return "distribution = []\n"
    out = []
    for e in entries:
        out.append("[[distribution]]")
        for k, v in e.items():
            out.append(f"{k} = {json.dumps(v).replace('true', 'true')}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("name,text", [
    ("bad.toml", "[[distribution]\nname = 'x'\n"),
    ("bad.json", '{"distribution": [}'),
    ("top.toml", 'foo = 1\n[[distribution]]\nname = "x"\nkind = "discrete"\natoms = [0]\n'),
    ("list.json", "[1, 2]"),
])
def test_unparsable_specs(tmp_path, name, text):
    """Invalid TOML/JSON or a wrong top-level shape: InputError naming the file."""
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(InputError) as info:
        load_spec(p)
    assert str(p) in str(info.value)


def test_missing_spec_file(tmp_path):
    """A missing spec file is an InputError naming it."""
    with pytest.raises(InputError, match="nope.toml"):
        load_spec(tmp_path / "nope.toml")
