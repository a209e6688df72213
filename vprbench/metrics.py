"""Evaluation metrics as pure functions, with a thin class wrapper.

Conventions (the SeqNet/SeqMatchNet evaluation): queries without any positive are excluded from
Recall@N and reported separately; a method that returns fewer than N matches per query has no
Recall@N (NaN, shown as "-"). Precision-recall curves use each query's top-1 match and its
confidence: a query with a positive counts towards recall; an accepted match is a true positive
if it is a positive, else a false positive (queries without positives can only add false
positives).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from .groundtruth import GroundTruth

DEFAULT_NS: tuple[int, ...] = (1, 5, 10, 20)


def recall_at_n(hits: np.ndarray, ns: Sequence[int] = DEFAULT_NS, mask: np.ndarray | None = None) -> dict[int, float]:
    """Recall@N: fraction of evaluated queries with a positive among their top N.

    Args:
        hits: [n_query, K] bool, ``hits[q, k]`` = the k-th ranked reference of q is a positive.
        ns: the N values; N > K gives NaN (the method returned fewer than N matches).
        mask: [n_query] bool, queries to evaluate (e.g. those with a positive); default all.

    >>> recall_at_n(np.array([[False, True], [True, False], [False, False]]), ns=(1, 2, 5))
    {1: 0.3333333333333333, 2: 0.6666666666666666, 5: nan}
    """
    hits = np.asarray(hits, dtype=bool)
    if mask is not None:
        hits = hits[np.asarray(mask, dtype=bool)]
    out: dict[int, float] = {}
    if hits.shape[0] == 0:
        return {int(n): float("nan") for n in ns}
    first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), np.iinfo(np.int64).max)
    for n in ns:
        n = int(n)
        if n < 1:
            raise ValueError(f"Recall@N needs N >= 1, got {n}")
        out[n] = float("nan") if n > hits.shape[1] else float((first_hit < n).mean())
    return out


def recall_vs_radius(
    ranked: np.ndarray,
    query_positions: np.ndarray,
    ref_positions: np.ndarray,
    radii: Sequence[float],
    n: int = 1,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Recall@n as a function of the localisation radius.

    For each radius r, a query counts if some reference lies within r of it (else it is excluded)
    and is correct if one of its top-n ranked references lies within r.

    Args:
        ranked: [n_query, K] reference indices (-1 = no match).
        query_positions, ref_positions: [n_query, P], [n_ref, P] (metres or frames).
        radii: radii, same unit.
        mask: [n_query] bool, queries to evaluate (default all).

    Returns:
        [len(radii)] recall values (NaN where no query has a reference within r, or n > K).
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    qp = np.asarray(query_positions, dtype=np.float64).reshape(len(query_positions), -1)
    rp = np.asarray(ref_positions, dtype=np.float64).reshape(len(ref_positions), -1)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        ranked, qp = ranked[mask], qp[mask]
    if n > ranked.shape[1]:
        return np.full(len(radii), np.nan)
    top = ranked[:, :n]
    d = np.linalg.norm(qp[:, None, :] - rp[np.maximum(top, 0)], axis=2)
    d[top < 0] = np.inf
    best_pred = d.min(axis=1)
    nearest, _ = cKDTree(rp).query(qp, k=1)
    out = np.empty(len(radii))
    for i, r in enumerate(radii):
        has = nearest <= r + 1e-9
        out[i] = (best_pred[has] <= r + 1e-9).mean() if has.any() else np.nan
    return out


@dataclass(frozen=True)
class PRCurve:
    """Precision-recall curve over a threshold on the match confidence.

    Attributes:
        precision, recall: [T] arrays, one point per distinct threshold, recall non-decreasing.
        thresholds: [T] confidence thresholds (a match is accepted if confidence >= threshold).
        auc: area under the curve (step-wise, average precision).
        recall_at_100_precision: the largest recall with precision exactly 1 (0 if none).
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    auc: float
    recall_at_100_precision: float


def precision_recall(confidence: np.ndarray, correct: np.ndarray, has_positive: np.ndarray, ignore: np.ndarray | None = None) -> PRCurve:
    """Precision-recall of single best matches thresholded by confidence.

    Args:
        confidence: [n_query] confidence of each query's top-1 match (higher = more confident;
            -inf = no match, never accepted).
        correct: [n_query] bool, the top-1 match is a positive.
        has_positive: [n_query] bool, the query has a positive (the recall denominator).
        ignore: [n_query] bool, matches neither rewarded nor punished (e.g. only soft-positive).

    Returns:
        :class:`PRCurve`.

    >>> c = precision_recall(np.array([0.9, 0.8, 0.1]), np.array([True, False, True]), np.array([True, True, True]))
    >>> c.precision.tolist(), c.recall.tolist(), round(c.auc, 4), round(c.recall_at_100_precision, 4)
    ([1.0, 0.5, 0.6666666666666666], [0.3333333333333333, 0.3333333333333333, 0.6666666666666666], 0.5556, 0.3333)
    """
    conf = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    n_pos = int(np.asarray(has_positive, dtype=bool).sum())
    keep = np.isfinite(conf)
    if ignore is not None:
        keep &= ~np.asarray(ignore, dtype=bool)
    conf, correct = conf[keep], correct[keep]
    if n_pos == 0 or conf.size == 0:
        empty = np.zeros(0)
        return PRCurve(empty, empty, empty, 0.0, 0.0)
    order = np.argsort(-conf, kind="stable")
    conf, correct = conf[order], correct[order]
    tp = np.cumsum(correct)
    fp = np.cumsum(~correct)
    # one point per distinct threshold: the last index of each run of equal confidences
    last = np.r_[np.flatnonzero(np.diff(conf) != 0), conf.size - 1]
    tp, fp, thr = tp[last], fp[last], conf[last]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    auc = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    perfect = recall[precision >= 1.0]
    return PRCurve(precision, recall, thr, auc, float(perfect.max()) if perfect.size else 0.0)


@dataclass
class Evaluation:
    """All metrics of one ranking on one split."""

    recall: dict[int, float]
    n_queries: int
    n_evaluated: int
    n_without_positive: int
    radii: np.ndarray
    recall_by_radius: np.ndarray
    pr: PRCurve


class RecallEvaluator:
    """Thin wrapper: evaluates a ranking against a split's ground truth with fixed settings.

    >>> gt = GroundTruth.from_lists([[0], [1], []], n_ref=2)
    >>> ev = RecallEvaluator(ns=(1, 2)).evaluate(np.array([[0, 1], [0, 1], [1, 0]]), gt)
    >>> ev.recall, ev.n_evaluated, ev.n_without_positive
    ({1: 0.5, 2: 1.0}, 2, 1)
    """

    def __init__(self, ns: Sequence[int] = DEFAULT_NS, radius_factors: Sequence[float] = (0.25, 0.5, 1, 2, 3, 5, 10)) -> None:
        self.ns = tuple(int(n) for n in ns)
        self.radius_factors = tuple(float(f) for f in radius_factors)

    def evaluate(
        self,
        ranked: np.ndarray,
        gt: GroundTruth,
        confidence: np.ndarray | None = None,
        query_mask: np.ndarray | None = None,
        query_positions: np.ndarray | None = None,
        ref_positions: np.ndarray | None = None,
    ) -> Evaluation:
        """Evaluate ``ranked`` [n_query, K] against ``gt``; ``query_mask`` restricts the queries."""
        n_q = gt.n_query
        mask = np.ones(n_q, dtype=bool) if query_mask is None else np.asarray(query_mask, dtype=bool)
        hits = gt.hits(ranked)
        eval_mask = mask & gt.has_positive
        recall = recall_at_n(hits, self.ns, eval_mask)
        if confidence is None:
            confidence = np.zeros(n_q)
        ignore = None
        if gt.soft is not None:
            ignore = gt.soft.hits(ranked[:, :1])[:, 0] & ~hits[:, 0]
        pr = precision_recall(
            np.where(mask, confidence, -np.inf), hits[:, 0] & mask, eval_mask, None if ignore is None else ignore & mask
        )
        radii = np.zeros(0)
        by_radius = np.zeros(0)
        if query_positions is not None and ref_positions is not None and gt.radius is not None:
            radii = np.array(self.radius_factors) * gt.radius
            by_radius = recall_vs_radius(ranked, query_positions, ref_positions, radii, n=1, mask=mask)
        return Evaluation(
            recall=recall,
            n_queries=int(mask.sum()),
            n_evaluated=int(eval_mask.sum()),
            n_without_positive=int((mask & ~gt.has_positive).sum()),
            radii=radii,
            recall_by_radius=by_radius,
            pr=pr,
        )
