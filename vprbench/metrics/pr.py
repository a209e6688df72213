"""Precision-recall of single best matches thresholded by their confidence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
