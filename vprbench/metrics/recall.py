"""Evaluation metrics as pure functions, with a thin class wrapper.

Conventions (the SeqNet/SeqMatchNet evaluation): queries without any positive are excluded from
Recall@N and reported separately; a method that returns fewer than N matches per query has no
Recall@N (NaN, shown as "-"). Precision-recall curves use each query's top-1 match and its
confidence: a query with a positive counts towards recall; an accepted match is a true positive
if it is a positive, else a false positive (queries without positives can only add false
positives)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

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
