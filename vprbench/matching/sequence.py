"""Sequence matching over single-image distances: aggregation of aligned window distances, blocked top-K.

Large problems are processed in cache-sized tiles (query window starts x reference window
starts) on parallel worker threads, keeping only the running top-K per query, so a 100,000 x
100,000 comparison never materialises the full matrix and runs at most of the rate of the
matrix product. Maps too large even for that: :mod:`vprbench.matching.candidates`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.windows import check_seq_len
from vprbench.matching.distances import DistanceSource
from vprbench.matching.topk import merge_topk

if TYPE_CHECKING:
    pass


SEQ_VARIANTS: tuple[str, ...] = ("meanOfPairs", "centerOnly")

#: A reducer of the L aligned single-image distances of window pairs: [L, m] float32 -> [m].
Reducer = Callable[[np.ndarray], np.ndarray]


def trimmed_mean(d: np.ndarray, cut: int = 1) -> np.ndarray:
    """Mean of the aligned distances without the ``cut`` largest and ``cut`` smallest ([L, m] -> [m])."""
    L = d.shape[0]
    if L <= 2 * cut:
        return d.mean(axis=0)
    return np.sort(d, axis=0)[cut : L - cut].mean(axis=0)


def median(d: np.ndarray) -> np.ndarray:
    """Median of the aligned distances ([L, m] -> [m]); a partial sort (about 2x faster than np.median here)."""
    L, m = d.shape[0], d.shape[0] // 2
    if L % 2:
        return np.partition(d, m, axis=0)[m]
    p = np.partition(d, [m - 1, m], axis=0)
    return 0.5 * (p[m - 1] + p[m])


#: Named reducers (``None`` is the mean, computed by the fast diagonal-sum path).
REDUCERS: dict[str, Reducer | None] = {
    "mean": None,
    "median": median,
    "trimmed-mean": trimmed_mean,
    "max": lambda d: d.max(axis=0),
}


def aggregate_diagonals(d: np.ndarray, seq_len: int) -> np.ndarray:
    """Mean over L x L identity-kernel windows ('valid' 2-D convolution along diagonals).

    ``out[i, j] = mean_k d[i + k, j + k]`` for k in 0..L-1; shape [nq - L + 1, nr - L + 1].
    """
    seq_len = check_seq_len(seq_len)
    nq, nr = d.shape
    if seq_len > nq or seq_len > nr:
        raise DataError(f"sequence length {seq_len} exceeds the distance matrix {d.shape}")
    m, n = nq - seq_len + 1, nr - seq_len + 1
    if seq_len == 1:
        return d.astype(np.float32, copy=True)
    out = np.add(d[:m, :n], d[1 : m + 1, 1 : n + 1], out=np.empty((m, n), dtype=np.float32), casting="same_kind")
    for k in range(2, seq_len):
        out += d[k : m + k, k : n + k]
    out /= seq_len
    return out


def resolve_reducer(reducer: Reducer | str | None) -> Reducer | None:
    """A reducer by name or as given (None: the mean)."""
    if reducer is None or callable(reducer):
        return reducer
    if reducer not in REDUCERS:
        from vprbench.core.errors import unknown_name

        raise unknown_name("reducer", str(reducer), REDUCERS)
    return REDUCERS[reducer]


def check_windows(q_starts: np.ndarray, r_starts: np.ndarray, seq_len: int, nq: int, nr: int, variant: str) -> tuple[np.ndarray, np.ndarray]:
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
    q_starts, r_starts = check_windows(q_starts, r_starts, seq_len, src.n_query, src.n_ref, variant)
    if variant == "centerOnly":
        c = seq_len // 2
        return src.rows(q_starts + c)[:, r_starts + c]
    agg = aggregate_diagonals(src.full(), seq_len)
    return agg[q_starts][:, r_starts]


# Tile of the aggregated matrix one thread computes at a time: 512 query x 512 reference window
# starts keep the distances and their diagonal sums (~1 MiB each) in one core's L2 / the shared L3
# cache, where the elementwise passes cost little next to the matrix product (measured at 256-D:
# 128 x 1024 and 256 x 2048 tiles were slower, 1024 x 512 about the same).
TILE_ROWS = 512
TILE_COLS = 512


def _tile_shape(seq_len: int, n_rows: int, n_cols: int, memory_mb: float, workers: int) -> tuple[int, int]:
    """(query starts, reference starts) per tile within ``memory_mb`` shared by ``workers`` threads."""
    budget = memory_mb * 2**20 / workers

    def cost(r: int, c: int) -> int:  # distances + diagonal sums + gathered rows (float32) + a mask
        h = c + seq_len - 1
        return 4 * ((r + seq_len - 1) * h + r * h + r * c) + r * c

    r, c = min(TILE_ROWS, n_rows), min(TILE_COLS, n_cols)
    while cost(r, c) > budget and (r > 1 or c > 1):
        if c >= r and c > 1:
            c = max(1, c // 2)
        else:
            r = max(1, r // 2)
    return r, c


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = 0
_BLAS_LIMIT = None


@contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """One BLAS thread per calling thread while any kernel needs it (process-wide, restored by the last user).

    Counted, so that kernels running concurrently (e.g. in a threaded scheduler) do not restore
    each other's saved setting in the wrong order.
    """
    global _BLAS_USERS, _BLAS_LIMIT
    from threadpoolctl import threadpool_limits

    with _BLAS_LOCK:
        if _BLAS_USERS == 0:
            _BLAS_LIMIT = threadpool_limits(limits=1, user_api="blas")
        _BLAS_USERS += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS -= 1
            if _BLAS_USERS == 0 and _BLAS_LIMIT is not None:
                _BLAS_LIMIT.restore_original_limits()
                _BLAS_LIMIT = None


def _blas_threads() -> int:
    """Threads the BLAS library may use (its current setting), i.e. the cores this process may use."""
    from threadpoolctl import threadpool_info

    counts = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(1, min(counts)) if counts else max(1, os.cpu_count() or 1)


class ReferenceColumns:
    """Valid reference windows grouped by first frame: the columns of the aggregated matrix.

    Each distinct start ``u`` is one column; its windows (several under the "shift" policy, which
    moves windows at segment bounds inward) share its distance. A column's tie key is its lowest
    window index, so keeping the k best columns by (distance, key) keeps every window of the k
    best windows by (distance, window index).
    """

    def __init__(self, r_starts: np.ndarray, invalid: np.ndarray | None) -> None:
        n = r_starts.size
        self.sentinel = n  # key of "no column": sorts after every window index
        w = np.arange(n) if invalid is None else np.flatnonzero(~invalid)
        self.windows = w[np.argsort(r_starts[w], kind="stable")]  # valid windows by (start, index)
        s = r_starts[self.windows]
        first = np.ones(s.size, dtype=bool)
        first[1:] = s[1:] != s[:-1]
        self.starts = s[first]  # [n_columns] ascending
        self.ptr = np.append(np.flatnonzero(first), s.size)  # windows of column j: windows[ptr[j]:ptr[j+1]]
        self.count = np.diff(self.ptr)
        key = self.windows[self.ptr[:-1]]
        self.column_of = np.full(n + 1, -1, dtype=np.int64)  # key -> column
        self.column_of[key] = np.arange(key.size)
        if self.starts.size:
            self.lo, self.hi = int(self.starts[0]), int(self.starts[-1])
            self.key_at = np.full(self.hi - self.lo + 1, self.sentinel, dtype=np.int64)  # start frame - lo -> key
            self.key_at[self.starts - self.lo] = key

    def expand(self, best_v: np.ndarray, best_key: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` windows [m, k] (index, distance; -1 / inf where none) from top columns [m, k'] by key."""
        m = best_v.shape[0]
        ok = best_key < self.sentinel
        col = np.where(ok, self.column_of[np.minimum(best_key, self.sentinel)], 0)
        cnt = np.where(ok, self.count[col], 0)
        width = max(k, best_v.shape[1])
        idx = np.full((m, width), -1, dtype=np.int64)
        dist = np.full((m, width), np.inf, dtype=np.float32)
        if (cnt <= 1).all():
            idx[:, : best_v.shape[1]] = np.where(ok, best_key, -1)
            dist[:, : best_v.shape[1]] = np.where(ok, best_v, np.float32(np.inf))
        else:
            flat_cnt = cnt.ravel()
            rep_row = np.repeat(np.repeat(np.arange(m), best_v.shape[1]), flat_cnt)
            offset = np.arange(flat_cnt.sum()) - np.repeat(np.cumsum(flat_cnt) - flat_cnt, flat_cnt)
            win = self.windows[np.repeat(self.ptr[col.ravel()], flat_cnt) + offset]
            val = np.repeat(best_v.ravel(), flat_cnt)
            order = np.lexsort((win, val, rep_row))
            rep_row, win, val = rep_row[order], win[order], val[order]
            per_row = np.bincount(rep_row, minlength=m)
            rank = np.arange(rep_row.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
            keep = rank < width
            idx[rep_row[keep], rank[keep]] = win[keep]
            dist[rep_row[keep], rank[keep]] = val[keep]
        return idx[:, :k], dist[:, :k]


class _RunningTopK:
    """Running top-k lists of m rows, ordered by (distance, key), fed tile by tile.

    Each row keeps an upper bound on its k-th best distance: only tile entries <= it become
    candidates (entries equal to it too, so ties are decided by key). Candidates wait in a pending
    list and are merged in batches, which keeps the sorting work proportional to their number.
    """

    def __init__(self, m: int, k: int, sentinel: int) -> None:
        self.k = k
        self.best_v = np.full((m, k), np.inf, dtype=np.float32)
        self.best_key = np.full((m, k), sentinel, dtype=np.int64)
        self.bound = np.full(m, np.inf, dtype=np.float32)
        self.pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.n_pending = 0

    def add(self, v: np.ndarray, keys: np.ndarray) -> None:
        """Fold in one tile ``v`` [m, c] of distances (inf = not a window) whose columns have ``keys`` [c]."""
        k = self.k
        act = np.flatnonzero(v.min(axis=1) <= self.bound)
        if act.size == 0:
            return
        sub = v if act.size == v.shape[0] else v[act]
        b = self.bound[act]
        if sub.shape[1] > k:
            # rows with no bound yet, or with many entries under it: tighten it to the tile's own k-th value
            loose = ~np.isfinite(b)
            if not loose.all():
                loose |= np.count_nonzero(sub <= b[:, None], axis=1) > 4 * k
            if loose.any():
                rows = np.flatnonzero(loose)
                kth = np.partition(sub if rows.size == sub.shape[0] else sub[rows], k - 1, axis=1)[:, k - 1]
                b[rows] = np.minimum(b[rows], kth)
                self.bound[act] = b
        r_i, c_i = np.nonzero(sub <= b[:, None])
        val = sub[r_i, c_i]
        if not np.isfinite(b).all():  # unbounded rows also let masked (inf) entries through
            fin = np.isfinite(val)
            r_i, c_i, val = r_i[fin], c_i[fin], val[fin]
        if r_i.size:
            self.pending.append((act[r_i], val, keys[c_i]))
            self.n_pending += r_i.size
            if self.n_pending > 2 * k * self.best_v.shape[0]:
                self.flush()

    def flush(self) -> None:
        """Merge the pending candidates into the lists and tighten the bounds."""
        if not self.pending:
            return
        row, val, key = (np.concatenate(x) for x in zip(*self.pending))
        self.pending, self.n_pending = [], 0
        rows, cand_row = np.unique(row, return_inverse=True)
        merge_topk(self.best_v, self.best_key, rows, cand_row, val, key)
        np.minimum(self.bound, self.best_v[:, -1], out=self.bound)


def _row_block_topk(
    source: DistanceSource, f0: int, rows: np.ndarray, seq_len: int, k: int, refs: ReferenceColumns, tile_cols: int,
    reducer: Reducer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (index, distance) [len(rows), k] of the query windows starting at ``f0 + rows`` (ascending).

    Reference tiles are visited in ascending single-image distance of the block's middle query
    frame to their frames, so the tile holding the best matches usually comes first and the
    bounds of :class:`_RunningTopK` reject most of the other tiles after one pass over them.
    """
    span = int(rows[-1]) + 1
    dense = rows.size == span
    L = seq_len
    n_cols = refs.hi - refs.lo + 1
    top = _RunningTopK(rows.size, min(k, refs.starts.size), refs.sentinel)
    width = min(tile_cols, n_cols) + L - 1
    dbuf = np.empty((span + L - 1) * width, dtype=np.float32)
    obuf = np.empty(span * width, dtype=np.float32) if L > 1 else None
    tiles = np.arange(0, n_cols, tile_cols)
    if tiles.size > 1:
        probe = f0 + int(rows[rows.size // 2]) + L // 2
        c = L // 2
        row = source.tile(probe, probe + 1, refs.lo + c, refs.lo + c + n_cols)[0]
        row[refs.key_at == refs.sentinel] = np.inf
        pad = np.full(tiles.size * tile_cols, np.inf, dtype=np.float32)
        pad[:n_cols] = row
        tiles = tiles[np.argsort(pad.reshape(tiles.size, tile_cols).min(axis=1), kind="stable")]
    for c0 in tiles.tolist():
        cw = min(tile_cols, n_cols - c0)
        h = cw + L - 1
        lo_ref = refs.lo + c0
        d = source.tile(f0, f0 + span + L - 1, lo_ref, lo_ref + h, out=dbuf[: (span + L - 1) * h].reshape(span + L - 1, h))
        if L > 1:
            # diagonal sums on the flat buffer: entry (i, j) + k * (h + 1) is (i + k, j + k); the
            # L - 1 trailing columns of each row mix rows and are never read
            n = (span - 1) * h + cw
            agg = obuf[:n]
            if reducer is None:
                np.add(dbuf[:n], dbuf[h + 1 : h + 1 + n], out=agg)
                for j in range(2, L):
                    agg += dbuf[j * (h + 1) : j * (h + 1) + n]
                agg /= L
            else:  # a pluggable reducer over the L aligned distances, vectorised over the tile
                aligned = np.stack([dbuf[j * (h + 1) : j * (h + 1) + n] for j in range(L)])
                agg[:] = reducer(aligned)
            d = obuf[: span * h].reshape(span, h)[:, :cw]
        v = d if dense else d[rows]
        keys = refs.key_at[c0 : c0 + cw]
        gaps = keys == refs.sentinel
        if gaps.any():  # starts that begin no valid window (e.g. windows across a segment bound)
            v[:, gaps] = np.inf
        top.add(v, keys)
    top.flush()
    return refs.expand(top.best_v, top.best_key, k)


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
    threads: int | None = None,
    reducer: Reducer | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` reference windows per query window by sequence-matching distance, from any source.

    Args:
        source: single-image distances (descriptors or an imported matrix).
        q_starts, r_starts: [nq], [nr] first frame of each window (see :mod:`vprbench.data.windows`).
        seq_len: window length L (frames).
        k: references to keep per query.
        variant: ``"meanOfPairs"`` (mean of the L aligned distances) or ``"centerOnly"``.
        memory_mb: budget for the temporaries of all threads together (MiB); the tiles are smaller
            anyway (cache-sized), so this only binds below a few MiB.
        r_valid: [nr] bool; references that are False are never returned.
        threads: worker threads (default: as many as the BLAS library may use).
        reducer: how the L aligned single-image distances of a window pair become one distance: the
            mean (None or "mean": the fast diagonal-sum path), a name of :data:`REDUCERS`, or any
            function [L, m] -> [m] (vectorised over a tile; e.g. ``lambda d: np.median(d, axis=0)``).

    Returns:
        indices [nq, k'] int64 (into ``r_starts``, -1 where fewer than k' valid references) and
        distances [nq, k'] float32 ascending (inf for -1), with k' = min(k, nr). Equal distances
        keep the lower reference index first.

    The aggregated matrix is computed in cache-sized tiles (query window starts x reference window
    starts): one matrix product for the single-image distances of the tile's frames, the sums
    along its diagonals, then a running top-k per query that only looks at entries under its
    current k-th best. Each distinct start is computed once (several "shift" windows share one);
    tiles never hold more than the given windows' L frames, so windows never cross segment bounds
    (their starts come from :mod:`vprbench.data.windows`). Threads take blocks of query starts,
    each with a single-threaded BLAS, so the elementwise work runs in parallel too.
    """
    seq_len = check_seq_len(seq_len)
    if isinstance(k, bool) or int(k) < 1:
        raise ConfigError(f"top-k must be >= 1, got {k!r}")
    if not memory_mb > 0:
        raise ConfigError(f"memory budget must be > 0 MiB, got {memory_mb}")
    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise ConfigError(f"threads must be >= 1, got {threads!r}")
    q_starts, r_starts = check_windows(q_starts, r_starts, seq_len, source.n_query, source.n_ref, variant)
    reducer = resolve_reducer(reducer)
    if variant == "centerOnly":
        c = seq_len // 2
        q_starts, r_starts, seq_len = q_starts + c, r_starts + c, 1
    kk = min(int(k), r_starts.size)
    nq = q_starts.size
    out_idx = np.full((nq, kk), -1, dtype=np.int64)
    out_d = np.full((nq, kk), np.inf, dtype=np.float32)
    invalid = None if r_valid is None else ~np.asarray(r_valid, dtype=bool).reshape(-1)
    if invalid is not None and invalid.shape != r_starts.shape:
        raise DataError(f"r_valid has {invalid.size} entries, expected one per reference window ({r_starts.size})")
    refs = ReferenceColumns(r_starts, invalid)
    if nq == 0 or refs.starts.size == 0:
        return out_idx, out_d
    uq, q_inv = np.unique(q_starts, return_inverse=True)
    workers = int(threads) if threads is not None else _blas_threads()
    tile_rows, tile_cols = _tile_shape(seq_len, int(uq[-1] - uq[0]) + 1, refs.hi - refs.lo + 1, memory_mb, workers)
    blocks = []  # (first unique start, end) with starts spanning at most tile_rows frames
    b0 = 0
    while b0 < uq.size:
        b1 = max(int(np.searchsorted(uq, uq[b0] + tile_rows, side="left")), b0 + 1)
        blocks.append((b0, b1))
        b0 = b1
    workers = min(workers, len(blocks))
    res_idx = np.empty((uq.size, kk), dtype=np.int64)
    res_d = np.empty((uq.size, kk), dtype=np.float32)

    def run(b: int) -> int:
        b0, b1 = blocks[b]
        f0 = int(uq[b0])
        res_idx[b0:b1], res_d[b0:b1] = _row_block_topk(source, f0, uq[b0:b1] - f0, seq_len, kk, refs, tile_cols, reducer)
        return b

    bar = None
    if progress:
        from vprbench.core.progress import progress_bar

        bar = progress_bar(desc="sequence matching", total=len(blocks))
    try:
        if workers == 1:
            for b in range(len(blocks)):
                run(b)
                if bar is not None:
                    bar.update(1)
        else:
            from concurrent.futures import ThreadPoolExecutor, as_completed

            # one BLAS thread per worker: the workers are the parallelism
            with _single_threaded_blas(), ThreadPoolExecutor(workers) as pool:
                for fut in as_completed([pool.submit(run, b) for b in range(len(blocks))]):
                    fut.result()
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return res_idx[q_inv], res_d[q_inv]


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
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` reference windows for each query window by sequence-matching distance.

    Descriptors ``q`` [Nq, D] and ``r`` [Nr, D] are used as given (normalise them first if the
    metric assumes unit vectors). See :func:`sequence_topk_from` for the arguments and result;
    with L = 1 this is exact single-image nearest-neighbour search.
    """
    return sequence_topk_from(
        DistanceSource(q, r, normalise=False, what="sequence matching"),
        q_starts, r_starts, seq_len, k, variant=variant, memory_mb=memory_mb, r_valid=r_valid, progress=progress,
        threads=threads,
    )


def topk_from(source: DistanceSource, k: int, memory_mb: float = 512.0, r_valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Blocked single-image top-``k`` [nq, k'] over a :class:`DistanceSource` (bounded memory)."""
    return sequence_topk_from(
        source, np.arange(source.n_query), np.arange(source.n_ref), 1, k, memory_mb=memory_mb, r_valid=r_valid
    )
