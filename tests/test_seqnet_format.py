"""SeqNet/SeqMatchNet published format: readers on hand-made files, loaders on the real structure files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from conftest import data_dir

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.catalog import get_definition, load_dataset
from vprbench.data.loaders.common import parse_splits
from vprbench.data.loaders.seqnet_files import load_db_struct, load_descriptors, load_seq_bounds, load_split_indices

REPO = Path(__file__).resolve().parents[1]
DATA = data_dir()
STRUCTS = DATA / "seqnet-structs"
needs_data = pytest.mark.skipif(not STRUCTS.is_dir(), reason=f"real data not found at {STRUCTS}")


# hand-made files ---------------------------------------------------------------------------


def _cell(names):
    c = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        c[i, 0] = np.array([n])
    return c


def write_db(path: Path, n_db=3, n_q=2, drop: str | None = None, num_images: int | None = None) -> None:
    s = {
        "whichSet": "test",
        "dataset": "toy",
        "dbImageFns": _cell([f"r{i}.png" for i in range(n_db)]),
        "qImageFns": _cell([f"q{i}.png" for i in range(n_q)]),
        "numImages": num_images if num_images is not None else n_db,
        "numQueries": n_q,
        "posDistThr": 10.0,
        "posDistSqThr": 100.0,
        "nonTrivPosDistSqThr": 25.0,
        "utmDb": np.vstack([np.arange(n_db) * 2.0, np.zeros(n_db)]),
        "utmQ": np.vstack([np.arange(n_q) * 3.0, np.ones(n_q)]),
    }
    if drop:
        del s[drop]
    scipy.io.savemat(path, {"dbStruct": s})


def test_db_struct_roundtrip(tmp_path):
    write_db(tmp_path / "a.db")
    st = load_db_struct(tmp_path / "a.db")
    assert st.db_image_fns == ("r0.png", "r1.png", "r2.png") and st.q_image_fns == ("q0.png", "q1.png")
    assert st.utm_db.shape == (3, 2) and st.utm_db[:, 0].tolist() == [0.0, 2.0, 4.0]
    assert st.utm_q[:, 1].tolist() == [1.0, 1.0]
    assert st.pos_dist_thr == 10.0 and st.nontrivial_radius == 5.0 and st.which_set == "test"


def test_db_struct_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_db_struct(tmp_path / "missing.db")
    (tmp_path / "junk.db").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="junk.db"):
        load_db_struct(tmp_path / "junk.db")
    write_db(tmp_path / "b.db", drop="utmQ")
    with pytest.raises(DataError, match="utmQ"):
        load_db_struct(tmp_path / "b.db")
    write_db(tmp_path / "c.db", num_images=5)
    with pytest.raises(DataError, match="numImages=5"):
        load_db_struct(tmp_path / "c.db")
    scipy.io.savemat(tmp_path / "d.db", {"other": np.zeros(3)})
    with pytest.raises(DataError, match="dbStruct"):
        load_db_struct(tmp_path / "d.db")


def _obj_pair(a, b):
    x = np.empty(2, dtype=object)
    x[0], x[1] = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    return x


def test_split_indices_read_without_trusting_pickle(tmp_path):
    np.savez(tmp_path / "s.npz", trainInds=_obj_pair([0, 1, 2], [0, 1]), testInds=_obj_pair([5, 6], [4, 5, 6]))
    s = load_split_indices(tmp_path / "s.npz")
    assert s["train"][0].tolist() == [0, 1, 2] and s["train"][1].tolist() == [0, 1]
    assert s["test"][1].tolist() == [4, 5, 6] and s["test"][0].dtype == np.int64


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_split_indices_refuse_code(tmp_path):
    x = np.empty(2, dtype=object)
    x[0], x[1] = Evil(), np.arange(3)
    np.savez(tmp_path / "evil.npz", trainInds=x)
    with pytest.raises(DataError, match="refusing to load posix.system|refusing to load os.system|refusing"):
        load_split_indices(tmp_path / "evil.npz")
    # sanity: the file really carries a pickled global
    assert b"system" in pickle.dumps(Evil())


def test_split_indices_wrong_layout(tmp_path):
    np.savez(tmp_path / "w.npz", trainInds=np.zeros((3, 4)))
    with pytest.raises(DataError, match="2 entries"):
        load_split_indices(tmp_path / "w.npz")


def test_seq_bounds(tmp_path):
    (tmp_path / "ok.txt").write_text("0 3\n0 3\n0 3\n3 4\n")
    b = load_seq_bounds(tmp_path / "ok.txt", 4)
    assert b.tolist() == [[0, 3], [0, 3], [0, 3], [3, 4]]
    with pytest.raises(DataError, match="expected 5"):
        load_seq_bounds(tmp_path / "ok.txt", 5)
    (tmp_path / "bad.txt").write_text("0 3\n0 1\n0 3\n")
    with pytest.raises(DataError, match=r"violated at frames \[1\]"):
        load_seq_bounds(tmp_path / "bad.txt")


def test_descriptor_errors(tmp_path):
    with pytest.raises(DataError, match="not found.*\\[10, 4\\].*get it here"):
        load_descriptors(tmp_path / "x.npy", 10, 4, where="get it here")
    np.save(tmp_path / "x.npy", np.zeros((9, 4), np.float32))
    with pytest.raises(DataError, match=r"shape \[9, 4\], expected \[10, 4\]"):
        load_descriptors(tmp_path / "x.npy", 10, 4)
    np.save(tmp_path / "y.npy", np.zeros(10, np.float32))
    with pytest.raises(DataError, match="shape"):
        load_descriptors(tmp_path / "y.npy", 10, None)
    np.save(tmp_path / "z.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="pickl"):
        load_descriptors(tmp_path / "z.npy")
    x = np.arange(40, dtype=np.float64).reshape(10, 4)
    np.save(tmp_path / "ok.npy", x)
    got = load_descriptors(tmp_path / "ok.npy", 10, 4, take=np.array([1, 3]))
    assert got.dtype == np.float32 and got.tolist() == x[[1, 3]].tolist()


def test_parse_splits():
    s = parse_splits({"train": {"reference": [0, 5]}, "test": {"reference": [0.5, 1.0], "query": [3, 8]}}, 10, 8, "x")
    assert s["train"].query.tolist() == [0, 1, 2, 3, 4]
    assert s["test"].reference.tolist() == [5, 6, 7, 8, 9] and s["test"].query.tolist() == [3, 4, 5, 6, 7]
    with pytest.raises(ConfigError, match="outside"):
        parse_splits({"a": {"reference": [0, 11]}}, 10, 10, "x")


# descriptor-pair loader (Brisbane-style user-supplied arrays) ---------------------------------


def _pair_def(tmp_path, **params):
    text = [
        'name = "pair"',
        'loader = "descriptor-pair"',
        'summary = "test pair"',
        "[params]",
        'reference_descriptors = "ref.npy"',
        'query_descriptors = "qry.npy"',
        'reference_positions = "ref_pos.csv"',
        'query_positions = "qry_pos.npy"',
        "radius = 5.0",
    ] + [f"{k} = {v}" for k, v in params.items()]
    p = tmp_path / "pair.toml"
    p.write_text("\n".join(text) + "\n")
    return str(p)


def test_descriptor_pair(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "ref.npy", rng.normal(size=(20, 8)).astype(np.float32))
    np.save(tmp_path / "qry.npy", rng.normal(size=(15, 8)).astype(np.float32))
    (tmp_path / "ref_pos.csv").write_text("x,y\n" + "".join(f"{i * 2.0},0\n" for i in range(20)))
    np.save(tmp_path / "qry_pos.npy", np.stack([np.arange(15) * 2.0 + 1, np.zeros(15)], 1))
    ds = load_dataset(_pair_def(tmp_path), tmp_path)
    assert len(ds.reference) == 20 and ds.reference.positions[3].tolist() == [6.0, 0.0]
    gt = ds.split("test").ground_truth
    # query at x = 2q + 1 has references at x in [2q-4, 2q+6] -> indices q-2 .. q+3 (clipped)
    assert gt.positives(5).tolist() == [3, 4, 5, 6, 7, 8]
    # NaN position
    bad = np.load(tmp_path / "qry_pos.npy")
    bad[4, 0] = np.nan
    np.save(tmp_path / "qry_pos.npy", bad)
    with pytest.raises(DataError, match=r"NaN.*\[4\]"):
        load_dataset(_pair_def(tmp_path), tmp_path)
    # wrong count
    np.save(tmp_path / "qry_pos.npy", np.zeros((14, 2)))
    with pytest.raises(DataError, match="15 descriptor rows .* but 14 positions"):
        load_dataset(_pair_def(tmp_path), tmp_path)
    # missing file: message lists it
    (tmp_path / "ref.npy").unlink()
    with pytest.raises(DataError, match="ref.npy"):
        load_dataset(_pair_def(tmp_path), tmp_path)


def test_no_data_dir_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("VPRBENCH_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="--data-dir"):
        load_dataset("nordland-sw", None)


# real structure files -----------------------------------------------------------------------

EXPECTED = {
    # name: (n_ref, n_query, radius, nontrivial, negative, {split: (n_ref, n_query)})
    "nordland-sw": (21000, 21000, 1.0, 10.0, 40.0, {"train": (15000, 15000), "val": (3000, 3000), "test": (3000, 3000)}),
    "nordland-sf": (21000, 21000, 1.0, 10.0, 40.0, {"train": (15000, 15000), "val": (3000, 3000), "test": (3000, 3000)}),
    "oxford-v1.0": (4555, 4507, 10.0, 5.0, 20.0, {"train": (2981, 2931), "test": (1574, 1576)}),
    "oxford-pnv": (4599, 4550, 25.0, 5.0, 20.0, {"train": (3029, 2971), "test": (1570, 1579)}),
    "msls-amman": (953, 835, 10.0, 10.0, None, {"test": (953, 835)}),
    "msls-austin": (4927, 1732, 10.0, 10.0, None, {"val": (4927, 1732)}),
    "msls-melbourne": (4973, 4474, 10.0, 10.0, None, {"train": (4973, 4474)}),
}


def _fake_data_dir(tmp_path: Path, name: str, dim: int, corrupt: str | None = None) -> Path:
    """A data dir with the real structs (symlinked) and random descriptors of the right row count."""
    d = tmp_path / "data"
    (d / "seqnet-descriptors").mkdir(parents=True)
    (d / "seqnet-structs").symlink_to(STRUCTS)
    p = get_definition(name).params
    from vprbench.data.download import file_specs

    rows = {s.path: s.shape[0] for s in file_specs(get_definition(name)) if s.shape}
    rng = np.random.default_rng(0)
    for key in ("reference_descriptors", "query_descriptors"):
        n = rows[p[key]] - (1 if corrupt == key else 0)
        np.save(d / p[key], rng.normal(size=(n, dim)).astype(np.float32))
    return d


@pytest.mark.data
@needs_data
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_structs_counts_radii_splits(tmp_path, name, monkeypatch):
    monkeypatch.setenv("VPRBENCH_ALLOW_LINKS_TO", str(STRUCTS.resolve()))  # the fake data dir links the real structure files
    n_ref, n_q, radius, nontriv, neg, splits = EXPECTED[name]
    ds = load_dataset(name, _fake_data_dir(tmp_path, name, dim=4), {"dim": 4})
    q = ds.queries[ds.default_query]
    assert (len(ds.reference), len(q)) == (n_ref, n_q)
    assert ds.reference.dim == 4 and ds.reference.descriptors.dtype == np.float32
    assert (ds.radius, ds.nontrivial_radius, ds.negative_radius) == (radius, nontriv, neg)
    assert {s: (v.reference.size, v.query.size) for s, v in ds.splits.items()} == splits
    # descriptor rows are the published rows: row r of the file lands at traverse index i
    rows = ds.reference.meta["source_rows"]
    full = np.load(tmp_path / "data" / get_definition(name).params["reference_descriptors"])
    assert np.array_equal(ds.reference.descriptors, full[rows])


@pytest.mark.data
@needs_data
def test_real_nordland_positives_per_query():
    ds = load_dataset("nordland-sw", DATA, {"descriptors": "none"})
    for split, lo in (("train", 0), ("test", 15100), ("val", 18200)):
        sd = ds.split(split)
        assert sd.reference.positions[0, 0] == lo
        gt = sd.ground_truth
        # +-1 frame: 3 positives inside, 2 at both ends of the split
        assert gt.counts[0] == 2 and gt.counts[-1] == 2 and (gt.counts[1:-1] == 3).all()
        assert gt.positives(10).tolist() == [9, 10, 11]
    assert ds.reference.meta["image_names"][15000] == "images-19159.png"  # first test frame


@pytest.mark.data
@needs_data
def test_real_oxford_positives_and_segments():
    ds = load_dataset("oxford-v1.0", DATA, {"descriptors": "none"})
    test = ds.split("test")
    gt = test.ground_truth
    assert gt.n_without_positive == 0
    assert (gt.counts.min(), gt.counts.max()) == (5, 22)
    assert round(float(gt.counts.mean()), 2) == 12.36
    # brute-force check of one query's positives (within 10 m)
    d = np.linalg.norm(test.reference.positions - test.query.positions[100], axis=1)
    assert gt.positives(100).tolist() == np.flatnonzero(d <= 10.0).tolist()
    # the train split skips the test stretch: its windows must break there
    train = ds.split("train")
    assert len(np.unique(train.reference.segment_bounds[:, 0])) == 2
    assert load_dataset("oxford-pnv", DATA, {"descriptors": "none"}).meta["published_val_equals_test"]


@pytest.mark.data
@needs_data
def test_real_msls_sequence_bounds():
    ds = load_dataset("msls-amman", DATA, {"descriptors": "none"})
    assert ds.meta["published_role"] == "test"
    seg = ds.reference.segment_bounds
    raw = np.loadtxt(STRUCTS / "seqBoundsFiles/msls_amman_database_seqBounds.txt", dtype=np.int64)
    assert np.array_equal(seg, raw)
    assert len(np.unique(seg[:, 0])) == 43 and len(np.unique(ds.queries["query"].segment_bounds[:, 0])) == 27
    gt = ds.split("test").ground_truth
    assert gt.n_without_positive == 155 and gt.counts.max() == 6
    mel = load_dataset("msls-melbourne", DATA, {"descriptors": "none"})
    assert mel.meta["published_role"] == "train" and list(mel.splits) == ["train"]
    assert list(load_dataset("msls-melbourne", DATA, {"descriptors": "none", "split": "test"}).splits) == ["test"]


@pytest.mark.data
@needs_data
def test_real_missing_or_wrong_descriptors(tmp_path, monkeypatch):
    monkeypatch.setenv("VPRBENCH_ALLOW_LINKS_TO", str(STRUCTS.resolve()))
    d = _fake_data_dir(tmp_path, "oxford-v1.0", dim=4, corrupt="query_descriptors")
    with pytest.raises(DataError, match=r"oxford_2014-12-16-18-44-24_stereo_left.npy.*shape \[4549, 4\], expected \[4550, 4\]"):
        load_dataset("oxford-v1.0", d, {"dim": 4})
    with pytest.raises(DataError, match=r"expected \[4599, 4096\]"):
        load_dataset("oxford-v1.0", d)  # published dim is 4096
    (d / get_definition("oxford-v1.0").params["reference_descriptors"]).unlink()
    with pytest.raises(DataError) as e:
        load_dataset("oxford-v1.0", d, {"dim": 4})
    msg = str(e.value)
    assert "1 file(s) missing" in msg and "oxford_2015-03-17-11-08-44_stereo_left.npy" in msg and "box.com" in msg


@pytest.mark.data
@needs_data
def test_real_struct_checksums_recorded():
    from vprbench.data.download import verify_files

    for name in ("nordland-sw", "oxford-pnv", "msls-austin"):
        status = verify_files(get_definition(name), DATA)
        structs = [s for s in status if s.spec.path.startswith("seqnet-structs/")]
        assert structs and all(s.ok for s in structs), [s.problem for s in structs if not s.ok]
        assert all(not s.ok and "missing" in s.problem for s in status if s.spec.path.startswith("seqnet-descriptors/"))


def test_corrupt_and_truncated_descriptor_files_are_named(tmp_path):
    from vprbench.core.errors import DataError
    from vprbench.data.loaders.seqnet_files import load_descriptors

    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(DataError, match=r"junk\.npy: not a \.npy file"):
        load_descriptors(junk, 4, 3)
    full = tmp_path / "full.npy"
    np.save(full, np.ones((40, 3), np.float32))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(full.read_bytes()[:200])
    with pytest.raises(DataError, match=r"cut\.npy: not a plain \.npy array \(corrupt or truncated"):
        load_descriptors(cut, 40, 3)
