import numpy as np
import pytest
from conftest import make_toy_dataset

from vprbench.core.errors import DataError, UnknownNameError
from vprbench.data.dataset import BenchmarkDataset, SplitIndices
from vprbench.data.traverse import Traverse


def trav(n=10, dim=4, name="t", **kw):
    return Traverse(name, np.arange(n, dtype=float), descriptors=np.ones((n, dim), np.float32), **kw)


def test_empty_traverse():
    with pytest.raises(DataError, match="traverse 'e': is empty"):
        Traverse("e", np.zeros((0, 1)), descriptors=np.zeros((0, 4), np.float32))


def test_nan_and_inf_descriptors_name_rows():
    x = np.ones((5, 3), np.float32)
    x[2, 1] = np.nan
    x[4, 0] = np.inf
    with pytest.raises(DataError, match=r"traverse 'bad'.*2 descriptor row\(s\).*\[2, 4\]"):
        Traverse("bad", np.arange(5.0), descriptors=x)


def test_descriptors_large_enough_to_overflow_distances_are_refused():
    """Finite float32 values of 1e30 square to inf: every distance would be inf or NaN (a silent wrong ranking)."""
    from scipy.sparse import csr_matrix

    x = np.ones((5, 3), np.float32)
    x[1, 2] = 1e30
    with pytest.raises(DataError, match=r"traverse 'big'.*reach 1e\+30.*rescale"):
        Traverse("big", np.arange(5.0), descriptors=x)
    with pytest.raises(DataError, match="rescale"):
        Traverse("big", np.arange(5.0), descriptors=csr_matrix(x))
    Traverse("fine", np.arange(5.0), descriptors=x.clip(max=1e6))  # large but harmless values stay accepted


def test_nan_positions_and_count_mismatch():
    with pytest.raises(DataError, match="positions hold NaN"):
        Traverse("p", np.array([0.0, np.nan]), descriptors=np.ones((2, 2), np.float32))
    with pytest.raises(DataError, match="3 descriptor rows but 2 positions"):
        Traverse("p", np.arange(2.0), descriptors=np.ones((3, 2), np.float32))


def test_dimension_mismatch():
    with pytest.raises(DataError, match="dimension mismatch.*D=4.*D=8"):
        BenchmarkDataset("d", trav(dim=4, name="r"), {"q": trav(dim=8, name="q")}, {}, radius=1.0)


def test_overlapping_splits():
    splits = {"train": SplitIndices.from_ranges((0, 6), (0, 6)), "test": SplitIndices.from_ranges((5, 10), (6, 10))}
    with pytest.raises(DataError, match="splits 'train' and 'test' overlap in 1 reference frame"):
        BenchmarkDataset("d", trav(), {"q": trav()}, splits, radius=1.0)


def test_radii_order():
    with pytest.raises(DataError, match="negative radius .* must be larger"):
        BenchmarkDataset("d", trav(), {"q": trav()}, {}, radius=1.0, nontrivial_radius=5, negative_radius=5)


def test_split_without_positives():
    q = Traverse("q", np.arange(10.0) + 100, descriptors=np.ones((10, 4), np.float32))
    ds = BenchmarkDataset("far", trav(), {"q": q}, {"test": SplitIndices.from_ranges((0, 10), (0, 10))}, radius=1.0)
    with pytest.raises(DataError, match="no query of split 'test' has a positive"):
        ds.split("test")


def test_unknown_split_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'test'"):
        make_toy_dataset().split("tset")


def test_split_views_are_reindexed_and_disjoint(toy_dataset):
    test = toy_dataset.split("test")
    assert len(test.reference) == 30 and test.reference.positions[0, 0] == 90
    gt = test.ground_truth
    assert gt.n_ref == 30 and gt.positives(0).tolist() == [0, 1]
    assert toy_dataset.fingerprint == make_toy_dataset().fingerprint
    assert toy_dataset.fingerprint != make_toy_dataset(seed=1).fingerprint


def test_imported_distance_matrix_shape_checked():
    with pytest.raises(DataError, match=r"distance matrix has shape \(3, 3\), expected"):
        BenchmarkDataset("m", trav(), {"q": trav()}, {}, radius=1.0, distances=np.zeros((3, 3)))


def test_fingerprint_covers_segments_and_timestamps(toy_dataset):
    from dataclasses import replace

    ref = toy_dataset.reference
    cut = replace(ref, segments=np.repeat([[0, 60], [60, 120]], 60, axis=0))
    timed = replace(ref, timestamps=np.arange(len(ref), dtype=float))
    fps = {replace(toy_dataset, reference=r).fingerprint for r in (ref, cut, timed)}
    assert len(fps) == 3
