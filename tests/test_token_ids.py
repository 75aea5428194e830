"""Token IDs with an embedding table (ntkcheck.vocabulary, ntkcheck.io.ids, ``--embeddings``).

Reference values come from independent code: the same data expanded to tokens (one (n_i, d)
array of table rows per sequence, the generic Discrete path), brute-force sums over each
sequence's tokens, and 50-digit mpmath values for the error model.
"""

from __future__ import annotations

import json
import struct
import sys

import mpmath
import numpy as np
import pytest
from typer.testing import CliRunner

import ntkcheck as nk
from ntkcheck.cli import app
from ntkcheck.dataset import Dataset
from ntkcheck.errors import InputError
from ntkcheck.injectivity.features import _entry_scales, centred_each
from ntkcheck.injectivity.screen import screen
from ntkcheck.io.ids import load_table, split_table_spec, token_id_dataset
from ntkcheck.vocabulary import TokenIdDataset

U = 2.0**-53


def corpus(seed=0, V=60, d=3, N=24, lo=2, hi=9):
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((V, d))
    seqs = [rng.integers(0, V, rng.integers(lo, hi)) for _ in range(N)]
    return table, seqs


def as_ids(table, seqs, weights=None, names=None):
    ids = np.concatenate(seqs)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    w = None if weights is None else np.concatenate(weights)
    return token_id_dataset(ids=ids, offsets=offsets, weights=w, names=names, table=table)


def expanded(table, seqs, weights=None, names=None):
    """The same data as token coordinates: the reference path."""
    return Dataset.from_tokens([table[s] for s in seqs], weights, names)


def brute_lse(table, seq, z, w=None):
    """log(sum_a w_a exp(<z, E_{v_a}>) / sum_a w_a), token by token, own max per probe."""
    w = np.ones(len(seq)) if w is None else np.asarray(w, float)
    s = z @ table[seq].T + np.log(w / w.sum())
    top = s.max(axis=1, keepdims=True)
    return np.log(np.exp(s - top).sum(axis=1)) + top[:, 0]


def planted(seed=3):
    """Generic sequences plus a duplicate, a permuted duplicate, a doubled-count duplicate and
    a Dirac (one repeated ID)."""
    table, seqs = corpus(seed, V=80, d=3, N=20, lo=3, hi=8)
    seqs[4] = seqs[1].copy()
    seqs[7] = seqs[2][::-1].copy()
    seqs[9] = np.concatenate([seqs[3], seqs[3]])
    seqs[11] = np.array([5, 5, 5, 5])
    return table, seqs


# --------------------------------------------------------------------------------------------
# features at vocabulary cost
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0, 3000.0])
def test_lse_matches_brute_force_sums(scale):
    """LSE at vocabulary cost equals the token-by-token sum of every sequence, at small probes
    and at probes so large that the shared shift must be lowered (scale 3000: sums of most
    sequences underflow at the first level)."""
    table, seqs = corpus(1)
    ds = as_ids(table, seqs)
    z = np.random.default_rng(2).standard_normal((40, 3)) * scale
    F = ds.lse(z)
    ref = np.column_stack([brute_lse(table, s, z) for s in seqs])
    assert np.allclose(F, ref, rtol=1e-13, atol=1e-13 * scale)


def test_lse_weighted_and_wide_weights():
    """Given weights (one sequence with weights spanning 1e-200, evaluated with its own shift)
    match the brute-force weighted sums."""
    table, seqs = corpus(4)
    rng = np.random.default_rng(5)
    weights = [rng.random(len(s)) + 0.1 for s in seqs]
    weights[3] = np.where(np.arange(len(seqs[3])) == 0, 1e-200, 1.0)
    ds = as_ids(table, seqs, weights)
    z = rng.standard_normal((30, 3)) * 50
    ref = np.column_stack([brute_lse(table, s, z, w) for s, w in zip(seqs, weights)])
    assert np.allclose(ds.lse(z), ref, rtol=1e-13, atol=1e-11)


@pytest.mark.parametrize("scale", [1.0, 100.0, 4000.0])
def test_error_model_bounds_the_vocabulary_entries(scale):
    """Every entry of the centred vocabulary-cost features is within the features' error
    model e = u (d + n + 10)(sum_l |z_l| R_il + W_i + |F| + 1) of its 50-digit value."""
    table, seqs = corpus(6, V=30, d=2, N=10)
    table[:5] *= 7.0  # rows of different sizes
    centred, _ = centred_each(as_ids(table, seqs))
    R, _, W, n = _entry_scales(centred)
    z = np.random.default_rng(7).standard_normal((12, 2)) * scale
    F = centred.lse(z)
    bound = U * (2 + n + 10) * (np.abs(z) @ R.T + W + np.abs(F) + 1.0)
    mpmath.mp.dps = 50
    for i in range(len(seqs)):
        law = centred.law(i)
        for m in range(len(z)):
            terms = [mpmath.mpf(float(w)) * mpmath.exp(mpmath.fsum(
                mpmath.mpf(float(a)) * mpmath.mpf(float(b)) for a, b in zip(row, z[m])))
                for row, w in zip(law.atoms, law.rational["weights"])]
            exact = mpmath.log(mpmath.fsum(terms) / mpmath.fsum(law.rational["weights"]))
            assert abs(F[m, i] - exact) <= bound[m, i], (i, m)


def test_select_and_centred_keep_the_laws():
    """A selection compacts the table to the rows it uses but keeps every law; the centred data
    differ from the raw ones by the affine function <z, c>."""
    table, seqs = corpus(8)
    ds = as_ids(table, seqs)
    sub = ds.select([5, 2, 9])
    assert sub.names == ("seq5", "seq2", "seq9")
    assert sub.table.shape[0] == len(np.unique(np.concatenate([seqs[5], seqs[2], seqs[9]])))
    z = np.random.default_rng(9).standard_normal((7, 3))
    assert np.allclose(sub.lse(z), ds.lse(z)[:, [5, 2, 9]], rtol=1e-14, atol=1e-14)
    moved, centres = ds.centred()
    assert np.allclose(moved.lse(z) + z @ centres.T, ds.lse(z), rtol=1e-13, atol=1e-13)


def test_laws_are_exactly_the_table_rows():
    """Sequence i's law: its distinct rows (bitwise the stored values) with its counts as
    weights (unweighted), or its tokens' rows with the given weights."""
    table, seqs = corpus(10)
    ds = as_ids(table, [np.array([3, 1, 3, 3])] + seqs[1:])
    law = ds.law(0)
    assert np.array_equal(law.atoms, table[[1, 3]])
    assert list(law.rational["weights"]) == [1.0, 3.0]
    w = [np.array([0.5, 2.0])] + [np.ones(len(s)) for s in seqs[1:]]
    law_w = as_ids(table, [np.array([7, 2])] + seqs[1:], w).law(0)
    assert np.array_equal(law_w.atoms, table[[7, 2]]) and np.allclose(law_w.weights, [0.2, 0.8])


# --------------------------------------------------------------------------------------------
# structural screen and verdict against the expanded tokens
# --------------------------------------------------------------------------------------------

def test_screen_on_ids_equals_screen_on_tokens():
    """Diracs (one repeated ID, or IDs whose rows are equal), duplicates (permuted, doubled
    counts), and a translate (rows of other IDs shifted by t) are found on IDs exactly as on the
    same data expanded to tokens: same classes, parents, shifts, evidence and core."""
    table, seqs = planted()
    table[40] = table[41]  # two IDs, one row
    t = np.array([0.5, -0.25, 2.0])  # dyadic: exact translate
    table[50:53] = table[60:63] + t
    seqs[13] = np.array([40, 41, 40])  # a Dirac under two IDs
    seqs[14], seqs[15] = np.array([60, 61, 62, 62]), np.array([62, 50, 51, 52])
    assert screen(as_ids(table, seqs)) == screen(expanded(table, seqs))
    found = screen(as_ids(table, seqs))
    assert {f.name for f in found.diracs} == {"seq11", "seq13"}
    kinds = sorted((c.kind, c.names) for c in found.classes)
    assert ("duplicates", ("seq1", "seq4")) in kinds and ("translates", ("seq14", "seq15")) \
        not in kinds  # 62 twice in seq14, once in seq15: different laws
    assert all(e == "exact" for c in found.classes for e in c.evidence)


def test_screen_translate_classes_match():
    """A translate class among IDs (its members use other rows) is one exact class."""
    table, seqs = corpus(11, V=40, d=2, N=8)
    table = np.round(table * 1024) / 1024  # dyadic rows: E + t is exact
    t = np.array([0.75, -1.5])
    table[30:34] = table[10:14] + t
    seqs[2], seqs[5], seqs[6] = np.array([10, 11, 13]), np.array([33, 30, 31]), \
        np.array([11, 10, 13])
    a, b = screen(as_ids(table, seqs)), screen(expanded(table, seqs))
    assert a == b
    (cls,) = a.classes
    assert cls.names == ("seq2", "seq5", "seq6") and cls.evidence == ("exact",) * 3


def _summary(r):
    deps = sorted((tuple(sorted(d.coefficients.items())), d.exact) for d in r.dependencies)
    return r.verdict, r.evidence, r.rank, deps


def test_analyze_ids_equals_expanded_tokens_with_planted_relations():
    """Planted duplicate, permuted duplicate, doubled counts and a Dirac: the verdict, its
    evidence, the rank and every relation (coefficients, exactness) are those of the expanded
    tokens, and the affine parts agree to round-off."""
    table, seqs = planted()
    a = nk.analyze(as_ids(table, seqs), exact="never")
    b = nk.analyze(expanded(table, seqs), exact="never")
    assert _summary(a) == _summary(b)
    assert a.verdict == "not_injective" and len(a.dependencies) == 4
    for da, db in zip(sorted(a.dependencies, key=lambda x: sorted(x.coefficients)),
                      sorted(b.dependencies, key=lambda x: sorted(x.coefficients))):
        assert np.allclose(da.linear, db.linear, atol=1e-12)


def test_generic_ids_certified_injective_like_tokens():
    """Generic ID data: injective with a rigorous certificate, as the expanded tokens."""
    table, seqs = corpus(12, V=120, d=3, N=16, lo=4, hi=10)
    a = nk.analyze(as_ids(table, seqs), exact="never")
    b = nk.analyze(expanded(table, seqs), exact="never")
    assert (a.verdict, a.evidence) == (b.verdict, b.evidence) == ("injective", "certified")
    assert a.rank == b.rank == 16


def test_streamed_ids_same_verdict():
    """The streamed dense test (probe blocks folded into R) on IDs: same verdict and relations
    as in memory (the columns of a relation are recomputed at vocabulary cost)."""
    table, seqs = planted(13)
    seqs[6] = seqs[8].copy()
    ds = as_ids(table, seqs)
    a, b = nk.analyze(ds, exact="never", stream=True), nk.analyze(ds, exact="never")
    assert _summary(a) == _summary(b)


def test_python_api_ids_and_files(tmp_path):
    """analyze(list of ID sequences, embeddings=table) and as_dataset(ID file,
    embeddings='table.npy') give TokenIdDatasets with the same verdict."""
    table, seqs = planted()
    r = nk.analyze([list(map(int, s)) for s in seqs], embeddings=table, exact="never")
    assert r.verdict == "not_injective" and r.names[0] == "seq0"
    np.save(tmp_path / "t.npy", table)
    write_jsonl(tmp_path / "c.jsonl", seqs)
    ds = nk.as_dataset(str(tmp_path / "c.jsonl"), embeddings=str(tmp_path / "t.npy"))
    assert isinstance(ds, TokenIdDataset) and len(ds) == len(seqs)
    renamed = nk.as_dataset(ds, names=[f"x{i}" for i in range(len(seqs))])
    assert renamed.names[3] == "x3" and isinstance(renamed, TokenIdDataset)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------

def write_jsonl(path, seqs, weights=None, names=None):
    with open(path, "w") as fh:
        for i, s in enumerate(seqs):
            obj = {"input_ids": [int(x) for x in s]}
            if weights is not None:
                obj["weights"] = [float(x) for x in weights[i]]
            if names is not None:
                obj["name"] = names[i]
            fh.write(json.dumps(obj) + "\n")


def write_safetensors(path, tensors: dict, dtypes: dict | None = None):
    """The safetensors layout: u64 header length, JSON header, little-endian data."""
    header, blobs, at = {"__metadata__": {"format": "np"}}, [], 0
    for name, (kind, arr) in tensors.items():
        raw = arr.tobytes()
        header[name] = {"dtype": kind, "shape": list(arr.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header).encode()
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def test_split_table_spec():
    """FILE.npz:NAME and FILE.safetensors:NAME split at the suffix; dots in NAME are kept."""
    assert split_table_spec("a/emb.safetensors:model.embed_tokens.weight") == \
        (split_table_spec("a/emb.safetensors")[0], "model.embed_tokens.weight")
    assert split_table_spec("t.npz:E")[1] == "E" and split_table_spec("t.npy")[1] is None


def test_tables_from_every_format_are_exact(tmp_path):
    """.npy, .npz:NAME, a single-array .npz and .safetensors (F32, F16, BF16) tables load as
    float64 holding exactly the stored values."""
    rng = np.random.default_rng(14)
    t32 = rng.standard_normal((6, 4)).astype(np.float32)
    np.save(tmp_path / "t.npy", t32)
    np.savez(tmp_path / "m.npz", E=t32, other=np.zeros(3))
    np.savez(tmp_path / "one.npz", t32)
    bf = (t32.view(np.uint32) >> 16).astype(np.uint16)
    write_safetensors(tmp_path / "t.safetensors", {"w.f32": ("F32", t32),
                                                   "w.f16": ("F16", t32.astype(np.float16)),
                                                   "w.bf16": ("BF16", bf)})
    exact = t32.astype(np.float64)
    for spec in ("t.npy", "m.npz:E", "one.npz", "t.safetensors:w.f32"):
        table, _ = load_table(tmp_path / spec)
        assert table.dtype == np.float64 and np.array_equal(table, exact), spec
    f16, _ = load_table(tmp_path / "t.safetensors:w.f16")
    assert np.array_equal(f16, t32.astype(np.float16).astype(np.float64))
    b16, _ = load_table(tmp_path / "t.safetensors:w.bf16")
    assert np.array_equal(b16, (bf.astype(np.uint32) << 16).view(np.float32).astype(np.float64))


def test_safetensors_reader_agrees_with_the_package(tmp_path):
    """A file written by the safetensors package itself reads back bit for bit."""
    st = pytest.importorskip("safetensors.numpy")
    t = np.random.default_rng(15).standard_normal((5, 3))
    st.save_file({"embed": t, "other": np.ones((2, 2), np.float32)}, str(tmp_path / "e.safetensors"))
    table, _ = load_table(str(tmp_path / "e.safetensors") + ":embed")
    assert np.array_equal(table, t)


def run(*args):
    return CliRunner().invoke(app, [*map(str, args)])


def one_line_error(r, *fragments):
    assert r.exit_code == 2, (r.stdout, r.stderr, r.exception)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ntkcheck: error: "), r.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


@pytest.fixture
def files(tmp_path):
    """The planted corpus as .npz (offsets), .npz (2-D + attention_mask), .jsonl, the table as
    .npy and .safetensors."""
    table, seqs = planted()
    ids = np.concatenate(seqs)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    np.savez(tmp_path / "ids.npz", input_ids=ids, offsets=offsets)
    n = max(len(s) for s in seqs)
    padded = np.zeros((len(seqs), n), np.int32)
    mask = np.zeros((len(seqs), n), np.int8)
    for i, s in enumerate(seqs):
        padded[i, :len(s)], mask[i, :len(s)] = s, 1
    np.savez(tmp_path / "padded.npz", input_ids=padded, attention_mask=mask)
    np.savez(tmp_path / "lengths.npz", input_ids=ids, lengths=np.diff(offsets))
    np.savez(tmp_path / "inline.npz", input_ids=ids, offsets=offsets, embeddings=table)
    write_jsonl(tmp_path / "c.jsonl", seqs, names=[f"doc{i}" for i in range(len(seqs))])
    np.save(tmp_path / "t.npy", table)
    write_safetensors(tmp_path / "t.safetensors", {"embed_tokens.weight": ("F64", table)})
    return tmp_path, table, seqs


@pytest.mark.parametrize("data,table", [("ids.npz", "t.npy"), ("padded.npz", "t.npy"),
                                        ("lengths.npz", "t.safetensors"),
                                        ("c.jsonl", "t.safetensors:embed_tokens.weight"),
                                        ("inline.npz", None)])
def test_cli_analyze_every_id_format(files, data, table):
    """`ntkcheck analyze IDS --embeddings TABLE` on every ID layout: exit 1 (not injective) with
    the four planted relations in --json, the same in every format."""
    tmp, _, _ = files
    args = ["analyze", tmp / data, "--json", "-q", "--exact", "never"]
    if table:
        args += ["--embeddings", tmp / table]
    r = run(*args)
    assert r.exit_code == 1, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "not_injective" and len(doc["dependencies"]) == 4
    if data == "c.jsonl":
        assert doc["names"][0] == "doc0"


def test_cli_parquet(files):
    """A parquet corpus (list<int> input_ids, name) analyses like the .npz one."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    tmp, _, seqs = files
    pq.write_table(pa.table({"input_ids": [list(map(int, s)) for s in seqs],
                             "name": [f"p{i}" for i in range(len(seqs))]}), tmp / "c.parquet")
    r = run("analyze", tmp / "c.parquet", "--embeddings", tmp / "t.npy", "--json", "-q",
            "--exact", "never")
    assert r.exit_code == 1 and json.loads(r.stdout)["names"][1] == "p1"


def test_cli_parquet_without_pyarrow(files, monkeypatch):
    """Without pyarrow: one line with the install hint, exit 2."""
    tmp, _, _ = files
    (tmp / "c.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    one_line_error(run("analyze", tmp / "c.parquet", "--embeddings", tmp / "t.npy"),
                   "c.parquet", "needs pyarrow: pip install pyarrow")


def test_cli_spectrum_on_ids(files):
    """`ntkcheck spectrum IDS --embeddings TABLE`: the planted Dirac and duplicates make the
    query-key kernel singular (exit 3)."""
    tmp, _, _ = files
    r = run("spectrum", tmp / "ids.npz", "--embeddings", tmp / "t.npy", "--json", "-q")
    assert r.exit_code == 3, (r.stdout, r.stderr)
    assert len(json.loads(r.stdout)["names"]) == 20


@pytest.mark.parametrize("case,fragments", [
    ("missing_table", ["ids.npz", "embeddings", "pass --embeddings TABLE"]),
    ("out_of_range", ["bad.npz", "input_ids", "sequence 2 token 1 has ID 80", "out of range",
                      "80 rows"]),
    ("negative", ["bad.npz", "input_ids", "sequence 0 token 0 has ID -1", "negative"]),
    ("offsets", ["bad.npz", "offsets", "from 0 to T"]),
    ("no_split", ["bad.npz", "offsets", "exactly one of offsets"]),
    ("nan_row", ["t_nan.npy", "embeddings", "row 5 (used by sequence 11) has NaN"]),
    ("int_table", ["t_int.npy", "embeddings", "must be float"]),
    ("table_shape", ["t_1d.npy", "embeddings", "must be 2-D"]),
    ("npz_unnamed", ["two.npz", "--embeddings", "name the embedding table as two.npz:NAME"]),
    ("safetensors_name", ["t.safetensors", "--embeddings", "no tensor 'nope'"]),
    ("bad_json", ["bad.jsonl", "line 2", "not valid JSON"]),
    ("json_ids", ["bad.jsonl", "line 1.input_ids", "list of integers"]),
    ("tokens_with_embeddings", ["tok.npz", "--embeddings", "not token IDs"]),
    ("weights_shape", ["bad.npz", "weights", "one weight per ID"]),
    ("table_suffix", ["t.txt", "--embeddings", ".safetensors[:NAME]"]),
])
def test_cli_id_errors(files, case, fragments):
    """Every malformed ID input or table: one line naming the file, the field and the fix,
    exit 2."""
    tmp, table, seqs = files
    ids = np.concatenate(seqs)
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    tab = tmp / "t.npy"
    target = tmp / "bad.npz"
    if case == "missing_table":
        target, tab = tmp / "ids.npz", None
    elif case == "out_of_range":
        bad = ids.copy()
        bad[offsets[2] + 1] = 80
        np.savez(target, input_ids=bad, offsets=offsets)
    elif case == "negative":
        bad = ids.copy()
        bad[0] = -1
        np.savez(target, input_ids=bad, offsets=offsets)
    elif case == "offsets":
        np.savez(target, input_ids=ids, offsets=offsets[:-1])
    elif case == "no_split":
        np.savez(target, input_ids=ids)
    elif case == "nan_row":
        t = table.copy()
        t[5, 1] = np.nan
        t[79] = np.inf  # an unused row may be anything
        np.save(tmp / "t_nan.npy", t)
        target, tab = tmp / "ids.npz", tmp / "t_nan.npy"
    elif case == "int_table":
        np.save(tmp / "t_int.npy", np.ones((80, 3), np.int64))
        target, tab = tmp / "ids.npz", tmp / "t_int.npy"
    elif case == "table_shape":
        np.save(tmp / "t_1d.npy", np.ones(80))
        target, tab = tmp / "ids.npz", tmp / "t_1d.npy"
    elif case == "npz_unnamed":
        np.savez(tmp / "two.npz", a=table, b=table)
        target, tab = tmp / "ids.npz", tmp / "two.npz"
    elif case == "safetensors_name":
        target, tab = tmp / "ids.npz", str(tmp / "t.safetensors") + ":nope"
    elif case == "bad_json":
        target = tmp / "bad.jsonl"
        target.write_text('{"input_ids": [1, 2]}\n{"input_ids": [1,\n')
    elif case == "json_ids":
        target = tmp / "bad.jsonl"
        target.write_text('{"input_ids": [1, 2.5]}\n')
    elif case == "tokens_with_embeddings":
        target = tmp / "tok.npz"
        np.savez(target, tokens=np.ones((2, 3, 2)))
    elif case == "weights_shape":
        np.savez(target, input_ids=ids, offsets=offsets, weights=np.ones(3))
    elif case == "table_suffix":
        target, tab = tmp / "ids.npz", tmp / "t.txt"
        tab.write_text("x")
    args = ["analyze", target] + ([] if tab is None else ["--embeddings", tab])
    one_line_error(run(*args), *fragments)


def test_jsonl_weights_and_zero_weight_tokens(tmp_path):
    """jsonl weights are per ID; tokens of weight 0 are dropped (their IDs need no row)."""
    table, seqs = corpus(16)
    weights = [np.ones(len(s)) for s in seqs]
    weights[0] = np.arange(len(seqs[0]), dtype=float)  # the first token has weight 0
    write_jsonl(tmp_path / "w.jsonl", seqs, weights)
    ds = nk.io.load_dataset(tmp_path / "w.jsonl", embeddings=table)
    z = np.random.default_rng(17).standard_normal((5, 3))
    assert np.allclose(ds.lse(z)[:, 0], brute_lse(table, seqs[0][1:], z, weights[0][1:]))
    assert np.allclose(ds.lse(z)[:, 1], brute_lse(table, seqs[1], z))


def test_truncated_safetensors_is_refused(tmp_path):
    """A safetensors header that declares more data than the file holds: one-line error."""
    t = np.ones((4, 2))
    write_safetensors(tmp_path / "t.safetensors", {"e": ("F64", t)})
    raw = (tmp_path / "t.safetensors").read_bytes()
    (tmp_path / "t.safetensors").write_bytes(raw[:-8])
    with pytest.raises(InputError, match="declares shape"):
        load_table(tmp_path / "t.safetensors")
