import numpy as np
import pytest

from vprbench.data.groundtruth import GroundTruth
from vprbench.metrics.evaluator import RecallEvaluator
from vprbench.metrics.pr import precision_recall
from vprbench.metrics.recall import recall_at_n, recall_vs_radius


def brute_recall(ranked, positives, n):
    """Reference: loop over queries with a positive."""
    hits = total = 0
    for q, pos in enumerate(positives):
        if not pos:
            continue
        total += 1
        hits += any(r in pos for r in ranked[q, :n])
    return hits / total


def test_recall_at_n_matches_brute_force():
    rng = np.random.default_rng(0)
    positives = [list(rng.choice(50, size=rng.integers(0, 4), replace=False)) for _ in range(200)]
    gt = GroundTruth.from_lists(positives, 50)
    ranked = np.stack([rng.permutation(50)[:20] for _ in range(200)])
    got = recall_at_n(gt.hits(ranked), (1, 5, 10, 20), gt.has_positive)
    for n in (1, 5, 10, 20):
        assert got[n] == pytest.approx(brute_recall(ranked, positives, n))
    assert all(np.diff([got[n] for n in (1, 5, 10, 20)]) >= 0)


def test_single_match_gives_nan_beyond_k():
    r = recall_at_n(np.array([[True], [False]]), (1, 5))
    assert r[1] == 0.5 and np.isnan(r[5])


def test_recall_vs_radius_hand_case():
    ref = np.arange(10.0)[:, None]
    qry = np.array([[2.0], [5.2], [30.0]])
    ranked = np.array([[3], [9], [0]])
    out = recall_vs_radius(ranked, qry, ref, radii=[0.5, 1.0, 5.0])
    # r=0.5: queries 0 (nearest 0) and 1 (nearest 0.2) count; pred 3 is 1 m off, 9 is 3.8 m off -> 0/2
    # r=1: q0 hit (|3-2|=1), q1 miss -> 1/2 ; r=5: both hit -> 2/2; q2 never counts
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0])


def brute_pr(conf, correct, n_pos):
    pts = []
    for thr in sorted(set(conf), reverse=True):
        acc = conf >= thr
        tp = (acc & correct).sum()
        pts.append((tp / acc.sum(), tp / n_pos))
    return np.array(pts)


def test_precision_recall_matches_threshold_sweep():
    rng = np.random.default_rng(3)
    conf = rng.integers(0, 30, 300).astype(float)  # ties on purpose
    correct = rng.random(300) < 0.6
    has_pos = correct | (rng.random(300) < 0.5)
    c = precision_recall(conf, correct, has_pos)
    ref = brute_pr(conf, correct, has_pos.sum())
    np.testing.assert_allclose(np.c_[c.precision, c.recall], ref)
    assert c.auc == pytest.approx(np.sum(np.diff(np.r_[0, ref[:, 1]]) * ref[:, 0]))


def test_recall_at_100_precision_and_no_match():
    c = precision_recall(np.array([5.0, 4.0, 3.0, -np.inf]), np.array([True, True, False, False]), np.ones(4, bool))
    assert c.recall_at_100_precision == 0.5  # two of four queries before the first false positive
    assert c.recall[-1] == 0.5  # the unmatched query is never accepted


def test_soft_positives_are_ignored():
    gt = GroundTruth.from_dense(np.array([[1, 0], [0, 1]], bool), soft=np.array([[1, 1], [0, 1]], bool))
    ev = RecallEvaluator(ns=(1,)).evaluate(np.array([[1], [1]]), gt, confidence=np.array([2.0, 1.0]))
    # query 0's match is only soft-true: ignored, so precision stays 1
    assert ev.pr.precision.tolist() == [1.0] and ev.pr.recall.tolist() == [0.5]
    assert ev.recall[1] == 0.5


def test_evaluator_masks_queries():
    gt = GroundTruth.from_lists([[0], [1], [1]], n_ref=2)
    ev = RecallEvaluator(ns=(1,)).evaluate(np.array([[0], [0], [1]]), gt, query_mask=np.array([True, False, True]))
    assert ev.recall[1] == 1.0 and ev.n_evaluated == 2 and ev.n_queries == 2
