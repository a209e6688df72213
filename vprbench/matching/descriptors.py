"""Nearest-neighbour search over descriptors: single-image and sequential (one vector per window)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.matching.distances import DistanceSource, l2_normalise
from vprbench.matching.sequence import topk_from
from vprbench.matching.topk import mask_queries

if TYPE_CHECKING:
    pass


def window_weighted_sum(x: np.ndarray, starts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Sequential descriptors [n, D]: ``sum_k weights[k] * x[starts + k]`` for windows of L = len(weights).

    Accumulates one offset at a time, so memory stays at [n, D] (no [n, L, D] gather).
    """
    x = np.asarray(x, dtype=np.float32)
    starts = np.asarray(starts, dtype=np.int64)
    w = np.asarray(weights, dtype=np.float32).reshape(-1)
    if w.size < 1:
        raise ConfigError("sequence length must be >= 1 (got an empty weight vector)")
    if starts.size and (starts.min() < 0 or starts.max() + w.size > x.shape[0]):
        raise DataError(f"windows of length {w.size} run outside the {x.shape[0]}-frame traverse")
    out = np.zeros((starts.size, x.shape[1]), dtype=np.float32)
    for k, wk in enumerate(w):
        if wk != 0:
            out += wk * x[starts + k]
    return out


def sequential_descriptor_topk(
    q: np.ndarray,
    r: np.ndarray,
    q_windows: tuple[np.ndarray, np.ndarray],
    r_windows: tuple[np.ndarray, np.ndarray],
    weights: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour search over sequential descriptors (one unit vector per window).

    Per-frame descriptors are L2-normalised, combined per window with ``weights`` [L]
    (:func:`window_weighted_sum`) and L2-normalised again; references without a valid window are
    left out of the index and queries without one get no match (-1, inf).

    Args:
        q, r: [Nq, D], [Nr, D] per-frame descriptors.
        q_windows, r_windows: (starts [n], valid [n]) from :func:`vprbench.data.windows.traverse_windows`.
        weights: [L] window weights.
        k: references per query.

    Returns:
        indices [Nq, k'] int64 into the reference frames and Euclidean distances [Nq, k'] ascending.
    """
    if q is None or r is None:
        raise DataError(
            "sequential descriptors need per-frame descriptors for both traverses; this dataset has none "
            "(images only, or an imported distance matrix)"
        )
    (qs, qv), (rs, rv) = q_windows, r_windows
    keep = np.flatnonzero(rv)
    if keep.size == 0:
        raise DataError(f"no reference frame has a full window of length {len(weights)}; use a shorter --seq-len")
    xq = l2_normalise(window_weighted_sum(l2_normalise(q), qs, weights))
    xr = l2_normalise(window_weighted_sum(l2_normalise(r), rs[keep], weights))
    idx, dist = nearest_neighbours(xq, xr, k)
    idx = np.where(idx >= 0, keep[np.maximum(idx, 0)], -1)
    return mask_queries(idx, dist, qv)


def nearest_neighbours(q: np.ndarray, r: np.ndarray, k: int, memory_mb: float = 512.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k-nearest neighbours of L2-normalised rows (blocked matrix products).

    Args:
        q: [nq, D] query descriptors, r: [nr, D] reference descriptors; both are L2-normalised here
            (zero rows stay zero).
        k: neighbours per query (capped at nr).
        memory_mb: budget of one block of query rows.

    Returns:
        indices [nq, k'] int64 and Euclidean distances [nq, k'] float32, ascending; ties go to the
        lower reference index, as in every search path of vprbench
        (:func:`vprbench.matching.topk.topk_smallest`).
    """
    if isinstance(k, bool) or int(k) < 1:
        raise ConfigError(f"top-k must be >= 1, got {k!r}")
    source = DistanceSource(q, r, normalise=True, what="nearest neighbours")
    return topk_from(source, int(k), memory_mb=memory_mb)
