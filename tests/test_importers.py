"""Importers of other tools' single-image results (files built here in the tools' layouts)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers import write_definition

from vprbench.core.errors import DataError
from vprbench.data.catalog import load_dataset
from vprbench.data.loaders.importers import read_vpr_bench_ground_truth, read_vpr_tutorial, similarity_to_distance
from vprbench.matching.distances import split_distances


def _tutorial_files(tmp_path: Path, n_ref=12, n_q=10):
    rng = np.random.default_rng(1)
    s = rng.random((n_ref, n_q))
    hard = np.zeros((n_ref, n_q), bool)
    soft = np.zeros((n_ref, n_q), bool)
    for q in range(n_q):
        hard[q, q] = True
        soft[max(q - 1, 0) : q + 2, q] = True
        s[q, q] += 1.0  # the true match is the most similar
    s[0, 3] = 5.0  # ... except for query 3
    np.savez(tmp_path / "gt.npz", GThard=hard, GTsoft=soft)
    np.save(tmp_path / "S.npy", s)
    return s, hard, soft


def test_vpr_tutorial_import(tmp_path):
    s, hard, soft = _tutorial_files(tmp_path)
    ds = load_dataset(str(write_definition(tmp_path / "vpr-tutorial.toml", "vpr-tutorial", {"similarity": "S.npy", "ground_truth": "gt.npz"})), tmp_path)
    q = ds.queries[ds.default_query]
    assert (len(q), len(ds.reference)) == (10, 12) and q.descriptors is None and q.position_unit == "frame"
    # the similarity itself is kept ([n_query, n_ref]), declared a generic similarity by default
    assert ds.distances.shape == (10, 12) and ds.distance_kind == "similarity"
    np.testing.assert_allclose(ds.distances, s.T, atol=1e-6)
    sd = ds.split("test")
    assert sd.distance_kind == "similarity"
    # methods read distances (lower = more similar) by the documented rule max(S) - S
    with pytest.warns(UserWarning, match=r"max\(S\) - S"):
        d = split_distances(sd)
    assert np.array_equal(d.argmin(1), s.argmax(0))
    np.testing.assert_allclose(d, s.max() - s.T, atol=1e-6)
    assert sd.ground_truth.positives(4).tolist() == [4]
    assert sd.ground_truth.soft.positives(4).tolist() == [3, 4, 5]
    top1 = d.argmin(1)[:, None]
    hits = sd.ground_truth.hits(top1)[:, 0]
    assert hits.tolist() == [q != 3 for q in range(10)]


def test_vpr_tutorial_bad_inputs(tmp_path):
    s, hard, soft = _tutorial_files(tmp_path)
    np.savez(tmp_path / "gt_bad.npz", GThard=hard[:, :-1], GTsoft=soft)
    with pytest.raises(DataError, match=r"GThard has shape \(12, 9\), S has \(12, 10\)"):
        read_vpr_tutorial(tmp_path / "S.npy", tmp_path / "gt_bad.npz")
    s2 = s.copy()
    s2[2, 2] = np.nan
    np.save(tmp_path / "S_nan.npy", s2)
    with pytest.raises(DataError, match="NaN"):
        read_vpr_tutorial(tmp_path / "S_nan.npy", tmp_path / "gt.npz")
    np.save(tmp_path / "S_obj.npy", np.array([s], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="non-pickled"):
        read_vpr_tutorial(tmp_path / "S_obj.npy", tmp_path / "gt.npz")
    with pytest.raises(DataError, match="missing"):
        load_dataset(str(write_definition(tmp_path / "vpr-tutorial.toml", "vpr-tutorial", {"similarity": "nope.npy", "ground_truth": "gt.npz"})), tmp_path)


def test_similarity_to_distance_orders():
    s = np.array([[0.2, 0.9, 0.5]])
    for mode in ("max-minus", "negate"):
        assert similarity_to_distance(s, mode).argsort(1).tolist() == [[1, 2, 0]]


def _vpr_bench_files(tmp_path: Path, n_ref=8, n_q=6):
    d = tmp_path / "ds"
    (d / "ref").mkdir(parents=True)
    (d / "query").mkdir()
    from PIL import Image

    for i in range(n_ref):
        Image.new("L", (8, 8), i).save(d / "ref" / f"{i:07d}.jpg")
    for i in range(n_q):
        Image.new("L", (8, 8), i).save(d / "query" / f"{i:07d}.jpg")
    gt = np.empty((n_q, 2), dtype=object)
    order = [3, 0, 5, 1, 4, 2]  # rows not in query order
    for row, q in enumerate(order):
        gt[row, 0] = q
        gt[row, 1] = [q, q + 1] if q % 2 else [q]
    np.save(d / "ground_truth_new.npy", gt, allow_pickle=True)
    rng = np.random.default_rng(0)
    scores = rng.random((n_q, n_ref))
    scores[np.arange(n_q), np.arange(n_q)] += 2.0
    m = np.empty(6, dtype=object)
    m[:] = [np.arange(n_q), scores.argmax(1), scores.max(1), scores, 1.5, 0.25]
    (tmp_path / "pm").mkdir()
    np.save(tmp_path / "pm" / "precomputed_data_corrected.npy", m, allow_pickle=True)
    return scores


def test_vpr_bench_needs_trust(tmp_path):
    _vpr_bench_files(tmp_path)
    path = str(write_definition(tmp_path / "vpr-bench.toml", "vpr-bench", {"dataset_dir": "ds", "matches": "pm/precomputed_data_corrected.npy"}))
    with pytest.raises(DataError, match="pickled.*arbitrary code.*trust = true"):
        load_dataset(path, tmp_path)
    with pytest.raises(DataError, match="trust"):
        read_vpr_bench_ground_truth(tmp_path / "ds" / "ground_truth_new.npy")


def test_vpr_bench_import_with_trust(tmp_path):
    scores = _vpr_bench_files(tmp_path)
    path = str(write_definition(tmp_path / "vpr-bench.toml", "vpr-bench", {"dataset_dir": "ds", "matches": "pm/precomputed_data_corrected.npy", "trust": True}))
    ds = load_dataset(path, tmp_path)
    q = ds.queries[ds.default_query]
    assert len(q) == 6 and len(ds.reference) == 8 and len(q.image_paths) == 6
    with pytest.warns(UserWarning, match="stand-in"):
        d = split_distances(ds.split("test"))
    assert ds.distance_kind == "similarity" and np.array_equal(d.argmin(1), scores.argmax(1))
    gt = ds.split("test").ground_truth
    assert gt.positives(3).tolist() == [3, 4] and gt.positives(2).tolist() == [2]
    assert ds.meta["encoding_time_s"] == 1.5 and ds.meta["matching_time_s"] == 0.25
    assert gt.hits(ds.distances.argmax(1)[:, None]).all()  # a similarity: the best is the largest


def test_vpr_bench_mismatched_image_count(tmp_path):
    _vpr_bench_files(tmp_path)
    (tmp_path / "ds" / "ref" / "0000007.jpg").unlink()
    path = str(write_definition(tmp_path / "vpr-bench.toml", "vpr-bench", {"dataset_dir": "ds", "matches": "pm/precomputed_data_corrected.npy", "trust": True}))
    with pytest.raises(DataError, match="7 images but the score matrix has 8 references"):
        load_dataset(path, tmp_path)


def test_sequence_methods_run_on_imported_distances(tmp_path):
    """Every method that needs only distances runs on an imported matrix; SeqMatch fixes a single-image confuser."""
    from vprbench.plugins.api import RunContext
    from vprbench.plugins.registry import default_registry

    n = 30
    rng = np.random.default_rng(3)
    s = rng.random((n, n)) * 0.5
    s[np.arange(n), np.arange(n)] += 0.4  # true matches a little more similar on average
    s[7, 10] = 2.0  # a single-image confuser for query 10 (S is [n_ref, n_query])
    np.save(tmp_path / "S.npy", s)
    np.savez(tmp_path / "gt.npz", GThard=np.eye(n, dtype=bool), GTsoft=np.eye(n, dtype=bool))
    ds = load_dataset(str(write_definition(tmp_path / "vpr-tutorial.toml", "vpr-tutorial", {"similarity": "S.npy", "ground_truth": "gt.npz"})), tmp_path)
    sd = ds.split("test")
    assert sd.distances.argmax(1)[10] == 7  # the single image is fooled (S kept: higher = more similar)
    reg = default_registry()
    ctx = RunContext(seq_len=5, top_k=3)
    ran = []
    with warnings.catch_warnings():  # a generic similarity: distance stand-ins, no hash (tested in test_fidelity)
        warnings.simplefilter("ignore", UserWarning)
        for name in reg.names():
            cls = reg.get(name)
            if tuple(cls.info.needs) != ("distances",) or cls.info.trains:
                continue
            r = reg.create(name).rank(sd, ctx)
            assert r.indices.shape[0] == n, name
            # the true match is on average more similar: every method finds most of them from the matrix alone
            # (chance is 1/30), so a method that misreads the imported similarity as a distance fails here
            hit = (r.indices[:, 0] == np.arange(n)).mean()
            assert hit >= 0.6, (name, hit)
            ran.append(name)
        assert {"seqmatch", "seqslam", "gism", "gism-dp", "grh", "netvlad"} <= set(ran)
        r = reg.create("seqmatch").rank(sd, ctx)
    assert r.indices[10, 0] == 10
