"""Training data and hard-negative mining for triplet training on descriptor windows.

* Training windows use the ``"drop"`` boundary policy (a frame whose centred window would cross a
  segment bound is neither a training query nor a reference), whatever the test-time policy is.
* A training query is a query frame with a window and at least one *non-trivial* positive
  (``SplitData.training_positives()``) that has a window.
* Mining (:func:`mine`): the positive is the non-trivial positive closest under the mining
  distance; negatives are the ``n_neg`` hardest margin-violating references among
  ``n_neg_candidates`` random references outside the negative radius plus the query's negatives
  from its previous round; a query without a violating negative is skipped.
* When too few queries have a violating negative (``margin_adapt``, :func:`adapt_margin`), a round
  mines harder: every negative of the query is a candidate, and the margin grows to the smallest
  value at which the target fraction of queries has one (:func:`negative_gaps`), capped.
* Mining distance: ``"single"`` = distance of the centre frames' outputs, ``"seqmatch"`` = mean
  of the L aligned frame distances, for per-frame models. For models that output one descriptor
  per window (SeqNet, w > 1) both are that descriptor's Euclidean distance.

Decisions where the sources are silent: the 1,000 candidates are drawn without replacement among
the negatives of the query; ties in mining go to the lower reference index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.dataset import SplitData
from vprbench.data.groundtruth import GroundTruth
from vprbench.data.traverse import dense_descriptors
from vprbench.data.windows import check_seq_len, traverse_windows
from vprbench.matching.distances import pairwise_distances
from vprbench.matching.topk import topk_smallest

DISTANCES: tuple[str, ...] = ("single", "seqmatch")


def window_frame_distances(eq: np.ndarray, er: np.ndarray, q_starts: np.ndarray, r_starts: np.ndarray, seq_len: int, kind: str) -> np.ndarray:
    """Mining distances [nq, nr] between query windows and reference windows over per-frame outputs.

    ``"seqmatch"``: ``out[i, j] = (1/L) sum_k d(eq[q_starts[i] + k], er[r_starts[j] + k])``, the same value
    as :func:`vprbench.matching.sequence.sequence_distances` (identity convolution of the frame distance matrix),
    computed only for the requested query windows; ``"single"``: the centre term only.
    """
    r_sq = np.einsum("ij,ij->i", er, er)
    if kind == "single":
        c = seq_len // 2
        return pairwise_distances(eq[q_starts + c], er[r_starts + c] if len(r_starts) else er[:0])
    if kind != "seqmatch":
        raise ConfigError(f"mining distance must be one of {DISTANCES}, got {kind!r}")
    out = None
    for k in range(seq_len):
        dk = pairwise_distances(eq[q_starts + k], er, r_sq)[:, r_starts + k]
        out = dk if out is None else out + dk
    out /= seq_len
    return out


def dense_rows(gt: GroundTruth, rows: np.ndarray) -> np.ndarray:
    """[len(rows), n_ref] bool positives of the given queries."""
    counts = gt.counts[rows]
    starts = gt.indptr[rows]
    if counts.sum() == 0:
        return np.zeros((len(rows), gt.n_ref), bool)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = gt.indices[np.repeat(starts, counts) + offs]
    m = np.zeros((len(rows), gt.n_ref), bool)
    m[np.repeat(np.arange(len(rows)), counts), cols] = True
    return m


def mine(
    dist: np.ndarray,
    positives: np.ndarray,
    non_negatives: np.ndarray,
    rng: np.random.Generator,
    n_neg: int = 10,
    n_candidates: int = 1000,
    margin: float = 0.1**0.5,
    neg_cache: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and hard negatives for a block of queries (vectorised).

    Args:
        dist: [nq, nr] mining distances (inf = reference without a window, never chosen).
        positives: [nq, nr] bool non-trivial positives.
        non_negatives: [nq, nr] bool references within the negative radius (never negatives).
        rng: draws the ``n_candidates`` random negatives of each query (without replacement).
        n_neg: hard negatives to keep per query.
        margin: triplet margin; a negative violates it if ``d(q, n) < d(q, p) + margin``.
        neg_cache: [nq, n_neg] int64 negatives of the previous round (-1 = none), added to the candidates.

    Returns:
        pos [nq] int64 (-1: no positive) and neg [nq, n_neg] int64, hardest first (-1 = padding).
        A query whose ``neg[:, 0]`` is -1 has no violating negative and is skipped.
    """
    nq, nr = dist.shape
    d_pos_all = np.where(positives, dist, np.inf)
    pos = np.argmin(d_pos_all, axis=1) if nr else np.zeros(nq, np.int64)
    d_pos = d_pos_all[np.arange(nq), pos] if nr else np.full(nq, np.inf)
    pos = np.where(np.isfinite(d_pos), pos, -1).astype(np.int64)

    keys = rng.random((nq, nr))
    keys[non_negatives | ~np.isfinite(dist)] = np.inf
    c = min(n_candidates, nr)
    cand = np.argpartition(keys, c - 1, axis=1)[:, :c] if c < nr else np.broadcast_to(np.arange(nr), (nq, nr)).copy()
    cand = np.where(np.isfinite(np.take_along_axis(keys, cand, axis=1)), cand, -1)
    if neg_cache is not None and neg_cache.size:
        cand = np.concatenate([cand, neg_cache], axis=1)
    cand = np.sort(cand, axis=1)
    dup = np.zeros_like(cand, dtype=bool)
    dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
    cand[dup] = -1
    d_neg = np.where(cand >= 0, np.take_along_axis(dist, np.maximum(cand, 0), axis=1), np.inf)
    d_neg = np.where(d_neg < d_pos[:, None] + margin, d_neg, np.inf)
    idx, val = topk_smallest(d_neg, min(n_neg, d_neg.shape[1]))
    neg = np.where(np.isfinite(val), np.take_along_axis(cand, idx, axis=1), -1)
    if neg.shape[1] < n_neg:
        neg = np.pad(neg, ((0, 0), (0, n_neg - neg.shape[1])), constant_values=-1)
    neg[pos < 0] = -1
    return pos, neg.astype(np.int64)


def negative_gaps(dist: np.ndarray, positives: np.ndarray, non_negatives: np.ndarray) -> np.ndarray:
    """[nq] distance of each query's hardest negative (over all its negatives) minus that of its closest positive.

    A negative violates margin m iff its distance is below d(q, p) + m, so a query has a violating
    negative iff its gap is below m. NaN for queries without a positive or without a negative.
    """
    d_pos = np.where(positives, dist, np.inf).min(axis=1) if dist.shape[1] else np.full(len(dist), np.inf)
    d_neg = np.where(non_negatives | ~np.isfinite(dist), np.inf, dist).min(axis=1) if dist.shape[1] else np.full(len(dist), np.inf)
    ok = np.isfinite(d_pos) & np.isfinite(d_neg)
    return np.where(ok, d_neg - np.where(ok, d_pos, 0.0), np.nan)


def adapt_margin(gaps: np.ndarray, margin: float, target: float, margin_max: float) -> float:
    """The smallest margin >= ``margin`` (and <= ``margin_max``) at which a ``target`` fraction of queries has a violating negative.

    ``gaps`` from :func:`negative_gaps` (NaN = query without positive or negative, ignored). The
    margin only grows: already enough violators (or ``target`` 0) -> ``margin``.

    >>> adapt_margin(np.array([0.1, 0.5, 0.9, 1.3]), 0.3, 0.5, 2.0)  # 2 of 4 need gap < m: m just above 0.5
    0.500001
    """
    g = np.sort(np.asarray(gaps, dtype=np.float64)[np.isfinite(gaps)])
    if target <= 0 or g.size == 0:
        return float(margin)
    need = int(np.ceil(target * g.size))
    if (g < margin).sum() >= need:
        return float(margin)
    return float(min(max(margin, g[need - 1] + 1e-6), margin_max))


@dataclass
class TripletData:
    """Training windows of one split (``"drop"`` policy), frame-indexed.

    Attributes:
        q, r: [Nq, D], [Nr, D] per-frame descriptors.
        q_starts, r_starts: [Nq], [Nr] window starts; r_valid: [Nr] bool reference has a window.
        train_queries: query frames that are training queries (window + non-trivial positive with a window).
        positives, non_negatives: ground truths (non-trivial radius, negative radius).
    """

    q: np.ndarray
    r: np.ndarray
    q_starts: np.ndarray
    r_starts: np.ndarray
    r_valid: np.ndarray
    train_queries: np.ndarray
    positives: GroundTruth
    non_negatives: GroundTruth
    seq_len: int

    @classmethod
    def from_split(cls, split: SplitData, seq_len: int, features: tuple[np.ndarray, np.ndarray] | None = None) -> TripletData:
        """Build from a training split; DataError for unusable data (see module doc).

        ``features``: per-frame model inputs (query [Nq, ...], reference [Nr, ...]) to use instead of
        the traverses' descriptors (e.g. cached backbone feature maps).
        """
        what = f"training split {split.split!r} of dataset {split.dataset!r}"
        if features is None:
            for t in (split.reference, split.query):
                if t.descriptors is None:
                    raise DataError(f"{what}: traverse {t.name!r} has no per-frame descriptors; learned methods train on descriptors")
            if split.reference.dim != split.query.dim:
                raise DataError(f"{what}: reference D={split.reference.dim} but query D={split.query.dim}; expected equal dimensions")
            features = tuple(dense_descriptors(t.descriptors, f"{what}: traverse {t.name!r}") for t in (split.query, split.reference))
        pos_r = split.nontrivial_radius or split.radius
        neg_r = split.negative_radius or split.radius
        if neg_r < pos_r or (split.negative_radius is not None and not neg_r > pos_r):
            raise DataError(
                f"{what}: negative radius ({neg_r}) must be larger than the non-trivial positive radius ({pos_r}); "
                "check the dataset's negative_radius / nontrivial_radius"
            )
        check_seq_len(seq_len, split.query.segment_bounds, what=f"{what}, query traverse")
        check_seq_len(seq_len, split.reference.segment_bounds, what=f"{what}, reference traverse")
        q_starts, q_valid = traverse_windows(split.query, seq_len, "drop")
        r_starts, r_valid = traverse_windows(split.reference, seq_len, "drop")
        q_starts = safe_starts(q_starts, len(split.query), seq_len)  # frames without a window: any in-range start
        r_starts = safe_starts(r_starts, len(split.reference), seq_len)
        positives = split.training_positives()
        # a query trains only if one of its positives has a window
        rows = np.repeat(np.arange(positives.n_query), positives.counts)
        has = np.zeros(positives.n_query, bool)
        np.logical_or.at(has, rows, r_valid[positives.indices])
        train_queries = np.flatnonzero(q_valid & has)
        if train_queries.size == 0:
            raise DataError(
                f"{what}: no query frame has a non-trivial positive (a reference within {pos_r} "
                f"{split.reference.position_unit}) with a full {seq_len}-frame window; cannot train. "
                "Check the split, the radii and --seq-len"
            )
        return cls(
            q=features[0], r=features[1], q_starts=q_starts, r_starts=r_starts,
            r_valid=r_valid, train_queries=train_queries, positives=positives,
            non_negatives=split.training_non_negatives(), seq_len=seq_len,
        )


def safe_starts(starts: np.ndarray, n: int, seq_len: int) -> np.ndarray:
    """Window starts clipped into 0..n-L (frames without a valid window get some in-range window)."""
    return np.clip(starts, 0, max(n - seq_len, 0))
