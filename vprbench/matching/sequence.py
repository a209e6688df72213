"""Sequence matching over single-image distances: aggregation of aligned window distances, blocked top-K.

Large problems are processed in blocks of query rows whose size follows a memory budget (MiB),
keeping only the running top-K per query, so a 30,000 x 30,000 comparison never materialises
the full matrix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.windows import check_seq_len
from vprbench.matching.distances import DistanceSource, block_rows
from vprbench.matching.topk import topk_smallest

if TYPE_CHECKING:
    pass


SEQ_VARIANTS: tuple[str, ...] = ("meanOfPairs", "centerOnly")


def aggregate_diagonals(d: np.ndarray, seq_len: int) -> np.ndarray:
    """Mean over L x L identity-kernel windows ('valid' 2-D convolution along diagonals).

    ``out[i, j] = mean_k d[i + k, j + k]`` for k in 0..L-1; shape [nq - L + 1, nr - L + 1].
    """
    seq_len = check_seq_len(seq_len)
    nq, nr = d.shape
    if seq_len > nq or seq_len > nr:
        raise DataError(f"sequence length {seq_len} exceeds the distance matrix {d.shape}")
    out = d[: nq - seq_len + 1, : nr - seq_len + 1].astype(np.float32, copy=True)
    for k in range(1, seq_len):
        out += d[k : nq - seq_len + 1 + k, k : nr - seq_len + 1 + k]
    out /= seq_len
    return out


def _check_windows(q_starts: np.ndarray, r_starts: np.ndarray, seq_len: int, nq: int, nr: int, variant: str) -> tuple[np.ndarray, np.ndarray]:
    if variant not in SEQ_VARIANTS:
        raise ConfigError(f"sequence-matching variant must be one of {SEQ_VARIANTS}, got {variant!r}")
    q_starts = np.asarray(q_starts, dtype=np.int64).reshape(-1)
    r_starts = np.asarray(r_starts, dtype=np.int64).reshape(-1)
    if q_starts.size and (q_starts.min() < 0 or q_starts.max() + seq_len > nq):
        raise DataError(f"query windows of length {seq_len} run outside the {nq}-frame traverse")
    if r_starts.size == 0:
        raise DataError("sequence matching needs at least one reference window")
    if r_starts.min() < 0 or r_starts.max() + seq_len > nr:
        raise DataError(f"reference windows of length {seq_len} run outside the {nr}-frame traverse")
    return q_starts, r_starts


def sequence_distances(
    q: np.ndarray | DistanceSource,
    r: np.ndarray | None,
    q_starts: np.ndarray,
    r_starts: np.ndarray,
    seq_len: int,
    variant: str = "meanOfPairs",
) -> np.ndarray:
    """Full sequence-matching distance matrix [len(q_starts), len(r_starts)] (small problems).

    ``out[t, s] = mean_k d(q[q_starts[t] + k], r[r_starts[s] + k])`` ("meanOfPairs") or only the
    centre offset k = L//2 ("centerOnly"). ``q`` may be a :class:`DistanceSource` (then ``r`` is
    ignored); raw descriptors are used as given (not normalised).
    """
    seq_len = check_seq_len(seq_len)
    src = q if isinstance(q, DistanceSource) else DistanceSource(q, r, normalise=False)
    q_starts, r_starts = _check_windows(q_starts, r_starts, seq_len, src.n_query, src.n_ref, variant)
    if variant == "centerOnly":
        c = seq_len // 2
        return src.rows(q_starts + c)[:, r_starts + c]
    agg = aggregate_diagonals(src.full(), seq_len)
    return agg[q_starts][:, r_starts]


def sequence_topk_from(
    source: DistanceSource,
    q_starts: np.ndarray,
    r_starts: np.ndarray,
    seq_len: int,
    k: int,
    variant: str = "meanOfPairs",
    memory_mb: float = 512.0,
    r_valid: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` reference windows per query window by sequence-matching distance, from any source.

    Args:
        source: single-image distances (descriptors or an imported matrix).
        q_starts, r_starts: [nq], [nr] first frame of each window (see :mod:`vprbench.data.windows`).
        seq_len: window length L (frames).
        k: references to keep per query.
        variant: ``"meanOfPairs"`` (mean of the L aligned distances) or ``"centerOnly"``.
        memory_mb: budget for one block of query rows (all temporaries of a block together).
        r_valid: [nr] bool; references that are False are never returned.

    Returns:
        indices [nq, k'] int64 (into ``r_starts``, -1 where fewer than k' valid references) and
        distances [nq, k'] float32 ascending (inf for -1), with k' = min(k, nr).

    Query windows are processed in blocks spanning at most the budgeted number of query frames;
    each block takes the single-image distances of its frames against all reference frames once,
    aggregates them along diagonals, gathers the windows and keeps the top-k. Windows never
    cross segment bounds because the starts come from :mod:`vprbench.data.windows`; the aggregation
    only ever sums the L frames of each given window.
    """
    seq_len = check_seq_len(seq_len)
    if isinstance(k, bool) or int(k) < 1:
        raise ConfigError(f"top-k must be >= 1, got {k!r}")
    q_starts, r_starts = _check_windows(q_starts, r_starts, seq_len, source.n_query, source.n_ref, variant)
    if variant == "centerOnly":
        c = seq_len // 2
        q_starts, r_starts, seq_len = q_starts + c, r_starts + c, 1
    kk = min(int(k), r_starts.size)
    nq = q_starts.size
    out_idx = np.full((nq, kk), -1, dtype=np.int64)
    out_d = np.full((nq, kk), np.inf, dtype=np.float32)
    if nq == 0:
        return out_idx, out_d
    invalid = None if r_valid is None else ~np.asarray(r_valid, dtype=bool).reshape(-1)
    if invalid is not None and invalid.shape != r_starts.shape:
        raise DataError(f"r_valid has {invalid.size} entries, expected one per reference window ({r_starts.size})")
    r_contiguous = bool((np.diff(r_starts) == 1).all())
    order = np.argsort(q_starts, kind="stable")
    sorted_starts = q_starts[order]
    # temporaries per block row: distances + aggregate + gathered windows + top-k selection
    rows = max(block_rows(source.n_ref, memory_mb, copies=5), seq_len)
    bounds = [0]
    while bounds[-1] < nq:
        b0 = bounds[-1]
        b1 = int(np.searchsorted(sorted_starts, sorted_starts[b0] + rows - seq_len + 1, side="left"))
        bounds.append(max(b1, b0 + 1))
    iterator = range(len(bounds) - 1)
    if progress:
        from vprbench.core.progress import progress_bar

        iterator = progress_bar(iterator, desc="sequence matching", total=len(bounds) - 1)
    for b in iterator:
        sel = order[bounds[b] : bounds[b + 1]]
        lo, hi = int(sorted_starts[bounds[b]]), int(sorted_starts[bounds[b + 1] - 1]) + seq_len
        d = source.block(lo, hi)
        if seq_len > 1:
            d = aggregate_diagonals(d, seq_len)
        rows_sel = q_starts[sel] - lo
        if (np.diff(rows_sel) == 1).all():
            block = d[rows_sel[0] : rows_sel[-1] + 1]  # contiguous windows: a view, no copy
        else:
            block = d[rows_sel]
        block = block[:, r_starts[0] : r_starts[0] + r_starts.size] if r_contiguous else block[:, r_starts]
        del d  # (block may be a view of this block's own temporary; writing into it is safe)
        if invalid is not None:
            block[:, invalid] = np.inf
        idx, dist = topk_smallest(block, kk)
        idx[~np.isfinite(dist)] = -1
        out_idx[sel], out_d[sel] = idx, dist
    return out_idx, out_d


def sequence_topk(
    q: np.ndarray,
    r: np.ndarray,
    q_starts: np.ndarray,
    r_starts: np.ndarray,
    seq_len: int,
    k: int,
    variant: str = "meanOfPairs",
    memory_mb: float = 512.0,
    r_valid: np.ndarray | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` reference windows for each query window by sequence-matching distance.

    Descriptors ``q`` [Nq, D] and ``r`` [Nr, D] are used as given (normalise them first if the
    metric assumes unit vectors). See :func:`sequence_topk_from` for the arguments and result;
    with L = 1 this is exact single-image nearest-neighbour search.
    """
    return sequence_topk_from(
        DistanceSource(q, r, normalise=False, what="sequence matching"),
        q_starts, r_starts, seq_len, k, variant=variant, memory_mb=memory_mb, r_valid=r_valid, progress=progress,
    )


def topk_from(source: DistanceSource, k: int, memory_mb: float = 512.0, r_valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Blocked single-image top-``k`` [nq, k'] over a :class:`DistanceSource` (bounded memory)."""
    return sequence_topk_from(
        source, np.arange(source.n_query), np.arange(source.n_ref), 1, k, memory_mb=memory_mb, r_valid=r_valid
    )
