"""Top-K selection with one tie rule (lower index first), used by every search path."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass


def topk_smallest(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``k`` smallest entries of each row of ``d``, ascending.

    Ties are broken by the lower column index (stable), so results are deterministic. The
    selection uses ``torch.topk`` (multi-threaded, an order of magnitude faster than
    ``np.argpartition`` on large blocks); its tie order is then normalised here.
    """
    import torch

    d = np.ascontiguousarray(d)
    k = min(int(k), d.shape[1])
    if k == 0 or d.shape[0] == 0:
        return np.zeros((d.shape[0], k), dtype=np.int64), np.zeros((d.shape[0], k), dtype=d.dtype)
    with warnings.catch_warnings():  # read-only inputs (e.g. memory maps) are only read here
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(d)
    vals_t, idx_t = torch.topk(t, k, dim=1, largest=False, sorted=True)
    idx = idx_t.numpy().astype(np.int64, copy=False)
    vals = vals_t.numpy()
    # order by (value, index): stable sort by index, then stable sort by value
    o = np.argsort(idx, axis=1, kind="stable")
    idx, vals = np.take_along_axis(idx, o, axis=1), np.take_along_axis(vals, o, axis=1)
    o = np.argsort(vals, axis=1, kind="stable")
    idx = np.take_along_axis(idx, o, axis=1)
    if k < d.shape[1]:
        # entries equal to the k-th value but left out may have a lower index: redo those rows exactly
        kth = np.take_along_axis(d, idx[:, -1:], axis=1)
        tied = (d == kth).sum(axis=1) > (np.take_along_axis(d, idx, axis=1) == kth).sum(axis=1)
        tied &= np.isfinite(kth[:, 0])  # ties among 'no match' (inf) entries are irrelevant
        if tied.any():
            rows = np.flatnonzero(tied)
            idx[rows] = np.argsort(d[rows], axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(d, idx, axis=1)


def merge_topk(
    best_v: np.ndarray, best_key: np.ndarray, rows: np.ndarray, cand_row: np.ndarray, cand_v: np.ndarray, cand_key: np.ndarray
) -> None:
    """Merge candidates into running top-k lists, in place, ordered by (value, key) ascending.

    ``best_v`` [n, k] float and ``best_key`` [n, k] int64 hold each list (unused slots: value inf
    and a key larger than any real one). ``rows`` [m] are the lists that receive candidates;
    candidate i goes to list ``rows[cand_row[i]]`` with value ``cand_v[i]`` and key ``cand_key[i]``.
    Equal values keep the lower key first (the project's tie rule, with key = reference index).
    """
    m, k = rows.size, best_v.shape[1]
    if m == 0:
        return
    all_row = np.concatenate([np.repeat(np.arange(m), k), cand_row])
    all_v = np.concatenate([best_v[rows].ravel(), cand_v.astype(best_v.dtype, copy=False)])
    all_key = np.concatenate([best_key[rows].ravel(), cand_key])
    order = np.lexsort((all_key, all_v, all_row))
    counts = k + np.bincount(cand_row, minlength=m)
    first = np.cumsum(counts) - counts
    sel = order[first[:, None] + np.arange(k)]
    best_v[rows] = all_v[sel]
    best_key[rows] = all_key[sel]


def mask_queries(indices: np.ndarray, distances: np.ndarray, q_valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Set rows of queries that are not valid (no window) to no match: index -1, distance inf."""
    if q_valid is not None:
        bad = ~np.asarray(q_valid, dtype=bool)
        indices[bad] = -1
        distances[bad] = np.inf
    return indices, distances
