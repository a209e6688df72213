"""All metrics of one ranking on one split, with fixed settings (thin wrapper of the pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vprbench.core.errors import ConfigError
from vprbench.data.dataset import SplitData
from vprbench.data.groundtruth import GroundTruth
from vprbench.data.protocol import Protocol
from vprbench.data.windows import window_starts
from vprbench.metrics.pr import PRCurve, precision_recall
from vprbench.metrics.recall import DEFAULT_NS, recall_at_n, recall_vs_radius


@dataclass
class Evaluation:
    """All metrics of one ranking on one split.

    ``n_queries``: queries evaluated under the window policy; ``n_evaluated``: those counted by
    Recall@N (with a positive, or all under the "miss" policy); ``n_unmatched``: counted queries that
    got no match at all; ``ties_at_1``: matched queries whose first two references are at the same
    distance (the tie rule, lower reference index first, decided them).
    """

    recall: dict[int, float]
    n_queries: int
    n_evaluated: int
    n_without_positive: int
    radii: np.ndarray
    recall_by_radius: np.ndarray
    pr: PRCurve
    n_unmatched: int = 0
    ties_at_1: int = 0
    first_hit: np.ndarray | None = None  # [n_query] rank of the first positive (-1: none in the top K)
    counted: np.ndarray | None = None  # [n_query] bool: the query counts for Recall@N
    query_mask: np.ndarray | None = None  # [n_query] bool: evaluated under the window policy
    has_positive: np.ndarray | None = None  # [n_query] bool: the query has a positive (PR recall denominator)
    pr_ignore: np.ndarray | None = None  # [n_query] bool: top-1 match only soft-positive (neither right nor wrong)


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
        hits: np.ndarray | None = None,
        count_missing: bool = False,
        distances: np.ndarray | None = None,
    ) -> Evaluation:
        """Evaluate ``ranked`` [n_query, K] against ``gt``; ``query_mask`` restricts the queries.

        ``hits`` [n_query, K] replaces ``gt.hits(ranked)`` (other positive rules); ``count_missing``
        counts queries without a positive as misses instead of excluding them.
        """
        n_q = gt.n_query
        mask = np.ones(n_q, dtype=bool) if query_mask is None else np.asarray(query_mask, dtype=bool)
        hits = gt.hits(ranked) if hits is None else np.asarray(hits, dtype=bool)
        eval_mask = mask & (True if count_missing else gt.has_positive)
        recall = recall_at_n(hits, self.ns, eval_mask)
        if confidence is None:
            confidence = np.zeros(n_q)
        ignore = None
        if gt.soft is not None:
            ignore = gt.soft.hits(ranked[:, :1])[:, 0] & ~hits[:, 0]
        pr = precision_recall(
            np.where(mask, confidence, -np.inf), hits[:, 0] & mask, mask & gt.has_positive, None if ignore is None else ignore & mask
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
            n_unmatched=int((eval_mask & (np.asarray(ranked)[:, 0] < 0)).sum()) if np.asarray(ranked).shape[1] else int(eval_mask.sum()),
            ties_at_1=_ties_at_1(ranked, distances, eval_mask),
            first_hit=np.where(hits.any(axis=1), hits.argmax(axis=1), -1).astype(np.int32),
            counted=eval_mask,
            query_mask=mask,
            has_positive=gt.has_positive,
            pr_ignore=np.zeros(n_q, bool) if ignore is None else ignore & mask,
        )


def _ties_at_1(ranked: np.ndarray, distances: np.ndarray | None, mask: np.ndarray) -> int:
    if distances is None or np.asarray(ranked).shape[1] < 2:
        return 0
    d = np.asarray(distances)
    ok = mask & (np.asarray(ranked)[:, 1] >= 0) & np.isfinite(d[:, 0])
    return int((ok & (d[:, 0] == d[:, 1])).sum())


@dataclass(frozen=True, eq=False)
class EvaluationData:
    """What evaluating a split's rankings needs, and nothing a method sees: positions, segments,
    explicit ground truth (VPR_Tutorial-style imports), the position unit and the dataset's radius.

    Stored once per split beside the predictions, so that metrics can be recomputed under another
    protocol without re-running any method.
    """

    query_positions: np.ndarray
    ref_positions: np.ndarray
    query_segments: np.ndarray
    ref_segments: np.ndarray
    unit: str
    radius: float
    explicit: GroundTruth | None = None

    @classmethod
    def from_split(cls, split: SplitData) -> EvaluationData:
        return cls(split.query.positions, split.reference.positions, split.query.segment_bounds, split.reference.segment_bounds,
                   split.reference.position_unit, float(split.radius), split.explicit_ground_truth)

    def ground_truth(self, protocol: Protocol) -> GroundTruth:
        """Positives under ``protocol``: the explicit ground truth for the default protocol, else by radius."""
        if self.explicit is not None:
            if protocol.radius is not None:
                raise ConfigError(f"{protocol.name}: this dataset has explicit ground truth; a radius protocol cannot apply to it")
            return self.explicit
        return GroundTruth.from_positions(self.ref_positions, self.query_positions, protocol.effective_radius(self.radius))


def evaluate_protocol(
    ranked: np.ndarray,
    confidence: np.ndarray | None,
    data: EvaluationData,
    protocol: Protocol,
    seq_len: int,
    boundary: str,
    evaluator: RecallEvaluator,
    distances: np.ndarray | None = None,
) -> Evaluation:
    """Every metric of a ranking [n_query, K] under ``protocol``, with the job's window settings.

    Queries evaluated: those with a window of ``seq_len`` under ``boundary`` (all under "shift",
    except in segments shorter than L). Positives "window": a retrieved reference counts if any frame
    of its window is a positive of the query.
    """
    gt = data.ground_truth(protocol)
    _, q_valid = window_starts(data.query_segments, seq_len, boundary)
    hits = None
    ranked = np.asarray(ranked, dtype=np.int64)
    if protocol.positives == "window":
        r_starts, _ = window_starts(data.ref_segments, seq_len, boundary)
        safe = np.maximum(ranked, 0)
        hits = np.zeros(ranked.shape, dtype=bool)
        for k in range(seq_len):
            hits |= gt.hits(np.where(ranked >= 0, r_starts[safe] + k, -1))
    return evaluator.evaluate(ranked, gt, confidence, q_valid, data.query_positions, data.ref_positions,
                              hits=hits, count_missing=protocol.no_positive == "miss", distances=distances)
