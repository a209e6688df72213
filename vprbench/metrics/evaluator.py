"""All metrics of one ranking on one split, with fixed settings (thin wrapper of the pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vprbench.data.groundtruth import GroundTruth
from vprbench.metrics.pr import PRCurve, precision_recall
from vprbench.metrics.recall import DEFAULT_NS, recall_at_n, recall_vs_radius


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
