import numpy as np
import pytest

from vprbench.core.errors import DataError
from vprbench.data.groundtruth import GroundTruth


def brute_force(ref, qry, radius):
    d = np.linalg.norm(qry[:, None, :] - ref[None, :, :], axis=2)
    return d <= radius


def test_from_positions_matches_brute_force():
    rng = np.random.default_rng(1)
    ref, qry = rng.uniform(0, 50, (200, 2)), rng.uniform(0, 50, (80, 2))
    gt = GroundTruth.from_positions(ref, qry, 4.0)
    np.testing.assert_array_equal(gt.to_dense(), brute_force(ref, qry, 4.0))
    assert gt.n_without_positive == int((~brute_force(ref, qry, 4.0).any(1)).sum())


def test_radius_is_inclusive_and_frames_work():
    gt = GroundTruth.from_positions(np.arange(10.0), np.array([3.0, 20.0]), 1.0)
    assert gt.positives(0).tolist() == [2, 3, 4]
    assert gt.positives(1).tolist() == []
    assert gt.has_positive.tolist() == [True, False]


def test_hits_matches_dense_lookup():
    rng = np.random.default_rng(2)
    dense = rng.random((30, 40)) < 0.1
    gt = GroundTruth.from_dense(dense)
    ranked = rng.integers(-1, 40, size=(30, 7))
    expected = np.where(ranked >= 0, dense[np.arange(30)[:, None], np.maximum(ranked, 0)], False)
    np.testing.assert_array_equal(gt.hits(ranked), expected)


def test_subset_reindexes():
    dense = np.zeros((4, 5), bool)
    dense[0, 1] = dense[2, 4] = dense[3, 0] = True
    gt = GroundTruth.from_dense(dense, soft=np.eye(4, 5, dtype=bool))
    sub = gt.subset(np.array([0, 2]), np.array([1, 2, 4]))
    np.testing.assert_array_equal(sub.to_dense(), dense[np.ix_([0, 2], [1, 2, 4])])
    assert sub.soft is not None and sub.soft.to_dense()[1, 1]  # soft (2,2) kept


def test_bad_inputs():
    with pytest.raises(DataError, match="radius"):
        GroundTruth.from_positions(np.zeros((3, 1)), np.zeros((2, 1)), 0.0)
    with pytest.raises(DataError, match="2-D but query positions 1-D"):
        GroundTruth.from_positions(np.zeros((3, 2)), np.zeros((2, 1)), 1.0)
    gt = GroundTruth.from_lists([[0], [1]], n_ref=2)
    with pytest.raises(DataError, match=r"\[2, K\]"):
        gt.hits(np.zeros((3, 1), dtype=int))
    with pytest.raises(DataError, match="out of range"):
        GroundTruth.from_lists([[5]], n_ref=2)


def test_subset_matches_dense_for_unordered_selection():
    rng = np.random.default_rng(5)
    dense = rng.random((40, 30)) < 0.2
    q, r = rng.permutation(40)[:15], np.sort(rng.permutation(30)[:12])
    np.testing.assert_array_equal(GroundTruth.from_dense(dense).subset(q, r).to_dense(), dense[np.ix_(q, r)])
