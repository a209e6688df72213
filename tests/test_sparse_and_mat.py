"""Sparse descriptors (scipy CSR in traverses and distance kernels) and MATLAB .mat inputs, files built here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.arrays import describe, read_array, sniff
from vprbench.data.catalog import load_dataset
from vprbench.data.traverse import DENSE_LIMIT_ENV, Traverse
from vprbench.matching.distances import DistanceSource, l2_normalise, pairwise_distances


def sparse_codes(n: int, dim: int, nnz: int, seed: int) -> sp.csr_matrix:
    """Rows with ``nnz`` non-zeros each among ``dim`` (like SEER's 49k-D codes with 100 non-zeros)."""
    rng = np.random.default_rng(seed)
    cols = np.stack([rng.choice(dim, nnz, replace=False) for _ in range(n)])
    return sp.csr_matrix((rng.random(n * nnz).astype(np.float32) + 0.1, cols.ravel(), np.arange(0, n * nnz + 1, nnz)), shape=(n, dim))


def brute_distances(q: np.ndarray, r: np.ndarray) -> np.ndarray:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    r = r / np.linalg.norm(r, axis=1, keepdims=True)
    return np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))


def test_traverse_keeps_sparse_descriptors_canonical():
    x = sparse_codes(20, 300, 5, 0).tocoo()
    t = Traverse("s", np.arange(20.0), descriptors=x)
    assert sp.issparse(t.descriptors) and t.descriptors.format == "csr" and t.descriptors.dtype == np.float32 and t.sparse
    assert t.dim == 300
    sub = t.subset(np.array([2, 3, 7]))
    assert sub.sparse and np.array_equal(sub.descriptors.toarray(), x.toarray()[[2, 3, 7]].astype(np.float32))
    bad = sp.csr_matrix(x)
    bad.data[0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        Traverse("s", np.arange(20.0), descriptors=bad)


def test_sparse_distance_source_equals_dense_brute_force():
    q, r = sparse_codes(30, 500, 12, 1), sparse_codes(45, 500, 12, 2)
    q.data[0] = 0.0  # an explicitly stored zero
    src = DistanceSource(q, r)
    assert src.sparse and sp.issparse(src.q)
    assert np.allclose(np.asarray(src.q.multiply(src.q).sum(1)).ravel(), 1.0, atol=1e-6)  # normalised sparse-wise
    ref = brute_distances(q.toarray(), r.toarray())
    assert np.allclose(src.full(), ref, atol=1e-5)
    assert np.allclose(src.block(5, 9), ref[5:9], atol=1e-5)
    assert np.allclose(src.rows(np.array([12, 0, 12])), ref[[12, 0, 12]], atol=1e-5)
    assert np.allclose(src.similarity_block(0, 30), 1 - ref**2 / 2, atol=1e-5)
    assert np.allclose(pairwise_distances(q, r), np.sqrt(((q.toarray()[:, None] - r.toarray()[None]) ** 2).sum(-1)), atol=1e-4)


def test_large_sparse_codes_are_never_densified(monkeypatch):
    """49k-D codes with 100 non-zeros: distances work under a 1 MiB dense limit, dense consumers refuse clearly."""
    monkeypatch.setenv(DENSE_LIMIT_ENV, "1")
    q, r = sparse_codes(200, 49152, 100, 3), sparse_codes(300, 49152, 100, 4)
    src = DistanceSource(q, r)
    d = src.block(0, 200)
    i = 17
    qi, rj = q[i].toarray()[0], r.toarray()  # one row at a time for the reference value
    expected = brute_distances(qi[None], rj)[0]
    assert np.allclose(d[i], expected, atol=1e-5)
    with pytest.raises(DataError, match=r"would take \d+ MiB as a dense.*limit of 1 MiB.*VPRBENCH_DENSE_LIMIT_MB"):
        l2_normalise(q)


def _mat_pair(tmp_path: Path, q, r, **params) -> str:
    scipy.io.savemat(tmp_path / "ref.mat", {"Y": r})
    scipy.io.savemat(tmp_path / "qry.mat", {"Y": q, "other": np.zeros(3)})
    p = {"reference_descriptors": "ref.mat", "query_descriptors": "qry.mat", "query_key": "Y", "positions": "row", "tolerance": 1, **params}
    text = 'name = "matpair"\nloader = "descriptor-pair"\nsummary = "s"\n[params]\n' + "".join(f"{k} = {json.dumps(v)}\n" for k, v in p.items())
    (tmp_path / "m.toml").write_text(text)
    return str(tmp_path / "m.toml")


def test_sparse_mat_descriptors_run_distance_methods_like_dense(tmp_path):
    from vprbench.plugins.api import RunContext
    from vprbench.plugins.registry import default_registry

    base = sparse_codes(80, 300, 30, 5)  # codes that overlap: no exactly tied distances (seqslam's contrast
    noise = sparse_codes(80, 300, 5, 6)  # enhancement divides by local spread, which ties make ~0)
    r, q = base, base + noise * 0.5
    ds_sparse = load_dataset(_mat_pair(tmp_path, q, r), tmp_path)
    assert ds_sparse.reference.sparse and ds_sparse.queries["query"].sparse
    np.save(tmp_path / "ref.npy", r.toarray().astype(np.float32))
    np.save(tmp_path / "qry.npy", q.toarray().astype(np.float32))
    text = Path(tmp_path / "m.toml").read_text().replace("ref.mat", "ref.npy").replace("qry.mat", "qry.npy")
    (tmp_path / "d.toml").write_text(text.replace('name = "matpair"', 'name = "dense"'))
    ds_dense = load_dataset(str(tmp_path / "d.toml"), tmp_path)
    reg = default_registry()
    for name in ("seqmatch", "seqslam", "gism", "gism-dp", "grh", "netvlad", "smoothing", "delta"):
        out = []
        for ds in (ds_sparse, ds_dense):
            method = reg.create(name)
            ctx = RunContext(seed=0, seq_len=5, top_k=5)
            out.append(method.rank(ds.split("test"), ctx))
        assert np.array_equal(out[0].indices, out[1].indices), name
        assert np.allclose(out[0].distances, out[1].distances, atol=1e-4), name


def test_mat_descriptor_layout_and_variable_choice(tmp_path):
    x = np.random.default_rng(0).normal(size=(30, 8))
    _mat_pair(tmp_path, x.T.copy(), x.T.copy())  # MATLAB's [D, frames]
    with pytest.raises(ConfigError, match="holds 2 variables.*query_key"):
        read_array(tmp_path / "qry.mat", None, "q", "query_key")
    ds = load_dataset(_mat_pair(tmp_path, x.T.copy(), x.T.copy(), descriptor_layout="columns"), tmp_path)
    assert np.allclose(ds.reference.descriptors, x.astype(np.float32))
    with pytest.raises(DataError, match="no variable 'Z'"):
        read_array(tmp_path / "qry.mat", "Z", "q")
    # the row count is checked against the positions file, with a hint for transposed arrays
    (tmp_path / "pos.csv").write_text("x,y\n" + "".join(f"{i},0\n" for i in range(30)))
    text = Path(_mat_pair(tmp_path, x.T.copy(), x.T.copy())).read_text().replace('positions = "row"', 'positions = "pos.csv"').replace("tolerance = 1", "radius = 1.0")
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(DataError, match='set descriptor_layout = "columns"'):
        load_dataset(str(tmp_path / "p.toml"), tmp_path)


def _mat73(path: Path, arrays: dict) -> None:
    """A MATLAB v7.3 file as MATLAB writes it: HDF5 with a 512-byte header, arrays transposed, sparse as ir/jc/data groups."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, a in arrays.items():
            if sp.issparse(a):
                c = sp.csc_matrix(a)
                g = f.create_group(name)
                g.attrs["MATLAB_sparse"] = np.uint64(c.shape[0])
                g.attrs["MATLAB_class"] = np.bytes_("double")
                g["data"], g["ir"], g["jc"] = c.data.astype(np.float64), c.indices.astype(np.uint64), c.indptr.astype(np.uint64)
            else:
                d = f.create_dataset(name, data=np.asarray(a).T)
                d.attrs["MATLAB_class"] = np.bytes_("double")
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .".ljust(116))


def test_mat73_files_read_in_matlab_orientation(tmp_path):
    dense = np.arange(12.0).reshape(3, 4)
    codes = sparse_codes(5, 40, 3, 0)
    _mat73(tmp_path / "v73.mat", {"D": dense, "S": codes})
    assert sniff(tmp_path / "v73.mat") == "mat73"
    assert np.array_equal(read_array(tmp_path / "v73.mat", "D"), dense)
    s = read_array(tmp_path / "v73.mat", "S")
    assert sp.issparse(s) and np.allclose(s.toarray(), codes.toarray())


def test_mat73_without_h5py_is_a_clear_error(tmp_path, monkeypatch):
    _mat73(tmp_path / "v73.mat", {"D": np.eye(2)})
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(DataError, match=r"MATLAB v7.3.*vprbench\[hdf5\]"):
        read_array(tmp_path / "v73.mat", "D")


def test_vpr_tutorial_ground_truth_from_mat_sparse(tmp_path):
    rng = np.random.default_rng(1)
    n_ref, n_q = 12, 10
    s = rng.random((n_ref, n_q))
    hard = np.zeros((n_ref, n_q), bool)
    hard[np.arange(n_q), np.arange(n_q)] = True
    soft = hard.copy()
    soft[np.arange(1, n_q), np.arange(n_q - 1)] = True
    scipy.io.savemat(tmp_path / "S.mat", {"S": s})
    scipy.io.savemat(tmp_path / "GT.mat", {"GThard": sp.csc_matrix(hard), "GTsoft": sp.csc_matrix(soft)})
    (tmp_path / "t.toml").write_text('name = "t"\nloader = "vpr-tutorial"\nsummary = "s"\n[params]\nsimilarity = "S.mat"\nground_truth = "GT.mat"\n')
    ds = load_dataset(str(tmp_path / "t.toml"), tmp_path)
    gt = ds.ground_truth
    assert gt.positives(4).tolist() == [4] and gt.soft.positives(4).tolist() == [4, 5]
    assert ds.distance_kind == "similarity" and np.allclose(ds.distances, s.T, atol=1e-6)  # the similarity is kept as imported
    assert describe(tmp_path / "GT.mat") == "a MATLAB v5 .mat file"


def _sparse_and_dense_pair(tmp_path: Path, splits: str | None) -> tuple:
    """The same codes as a sparse .mat pair and a dense .npy pair (noisy queries so training has work to do)."""
    base, noise = sparse_codes(160, 200, 20, 7), sparse_codes(160, 200, 20, 8)
    r, q = base, base + noise * 1.5
    path = Path(_mat_pair(tmp_path, q, r))
    text = path.read_text()
    if splits:
        text += f"splits = {splits}\nnontrivial_tolerance = 1\nnegative_tolerance = 10\n"
    path.write_text(text)
    np.save(tmp_path / "ref.npy", r.toarray().astype(np.float32))
    np.save(tmp_path / "qry.npy", q.toarray().astype(np.float32))
    (tmp_path / "d.toml").write_text(text.replace("ref.mat", "ref.npy").replace("qry.mat", "qry.npy").replace('name = "matpair"', 'name = "dense"'))
    return load_dataset(str(path), tmp_path), load_dataset(str(tmp_path / "d.toml"), tmp_path)


@pytest.mark.parametrize("name", ["seqnet-s1", "seqmatchnet", "seqvlad"])
def test_learned_methods_train_and_rank_on_sparse_codes_like_dense(tmp_path, name):
    """Learned methods densify sparse inputs (within the limit): the same model and ranking as from dense arrays."""
    from vprbench.plugins.api import RunContext
    from vprbench.plugins.registry import default_registry

    splits = "{ train = { reference = [0.0, 0.5], query = [0.0, 0.5] }, test = { reference = [0.55, 1.0], query = [0.55, 1.0] } }"
    ds_sparse, ds_dense = _sparse_and_dense_pair(tmp_path, splits)
    assert ds_sparse.reference.sparse
    out = []
    for ds in (ds_sparse, ds_dense):
        method = default_registry().create(name, epochs=2)
        ctx = RunContext(seed=0, seq_len=3, top_k=5, cache_dir=tmp_path / f"cache-{ds.name}")
        method.fit(ds.split("train"), None, ctx)
        assert sum(h["queries_trained"] for h in method.training_info["history"]) > 0  # optimiser steps were made
        out.append(method.rank(ds.split("test"), ctx))
    assert np.array_equal(out[0].indices, out[1].indices)
    assert np.allclose(out[0].distances, out[1].distances, atol=1e-4)


def test_trained_methods_without_a_train_split_are_skipped_with_the_reason(tmp_path, capsys):
    from vprbench.cli.main import main

    _sparse_and_dense_pair(tmp_path, None)
    rc = main(["run", "--methods", "seqnet-s1,seqmatch", "--dataset", str(tmp_path / "m.toml"), "--data-dir", str(tmp_path),
               "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "seqnet-s1 (trains, but dataset 'matpair' has no 'train' split (splits: test); give --train-dataset DATASET)" in err
    assert (tmp_path / "out" / "records" / "matpair" / "seqmatch").is_dir() and not (tmp_path / "out" / "records" / "matpair" / "seqnet-s1").exists()
