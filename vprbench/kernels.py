"""Distance kernels: pairwise distances by matrix products, blocked top-K, sequence aggregation.

Everything here is float32 and vectorised. Large problems are processed in blocks of query rows
whose size follows a memory budget (MiB), keeping only the running top-K per query, so a
30,000 x 30,000 comparison never materialises the full matrix.

Single-image distances come from a :class:`DistanceSource`: either per-frame descriptors
(distances by one matrix product per block) or an imported distance matrix
(``SplitData.distances``). Every blocked kernel takes a source, so methods that only need
single-image distances run on both kinds of dataset through one code path.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConfigError, DataError
from .windows import check_seq_len

if TYPE_CHECKING:
    from .dataset import SplitData

SEQ_VARIANTS: tuple[str, ...] = ("meanOfPairs", "centerOnly")


def l2_normalise(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, eps)


def pairwise_distances(q: np.ndarray, r: np.ndarray, r_sqnorm: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances [nq, nr] between rows of ``q`` [nq, D] and ``r`` [nr, D], float32.

    One matrix product: d^2 = |q|^2 + |r|^2 - 2 q.r, clipped at 0 before the square root.

    >>> pairwise_distances(np.array([[0., 0.]]), np.array([[3., 4.], [0., 1.]])).tolist()
    [[5.0, 1.0]]
    """
    q = np.asarray(q, dtype=np.float32)
    r = np.asarray(r, dtype=np.float32)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise DataError(f"pairwise distances: descriptor dimension mismatch, query {q.shape} vs reference {r.shape}")
    if r_sqnorm is None:
        r_sqnorm = np.einsum("ij,ij->i", r, r)
    d2 = q @ r.T
    d2 *= -2.0
    d2 += np.einsum("ij,ij->i", q, q)[:, None]
    d2 += r_sqnorm[None, :]
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2, out=d2)


def block_rows(n_cols: int, memory_mb: float, bytes_per_item: int = 4, copies: int = 3) -> int:
    """Rows per block so that ``copies`` float matrices [rows, n_cols] fit in ``memory_mb`` MiB."""
    if not memory_mb > 0:
        raise ConfigError(f"memory budget must be > 0 MiB, got {memory_mb}")
    return max(1, int(memory_mb * 2**20 // (bytes_per_item * copies * max(n_cols, 1))))


class DistanceSource:
    """Single-image Euclidean distances [n_query, n_ref] (lower = more similar), served in row blocks.

    Built from descriptors (``q`` [nq, D], ``r`` [nr, D]; each block is one matrix product) or from
    a precomputed ``matrix`` [nq, nr]. With ``normalise=True`` descriptors are L2-normalised first
    (the methods assume unit vectors; non-unit input is normalised, not rejected).
    ``unit`` tells whether the distances are those of unit vectors (d in [0, 2]), which the
    similarity conversion :meth:`cosine_block` relies on.
    """

    def __init__(
        self,
        q: np.ndarray | None = None,
        r: np.ndarray | None = None,
        matrix: np.ndarray | None = None,
        normalise: bool = True,
        what: str = "distances",
    ) -> None:
        self.what = what
        if matrix is not None:
            m = np.asarray(matrix)
            if m.ndim != 2 or 0 in m.shape:
                raise DataError(f"{what}: distance matrix must be a non-empty [n_query, n_ref] array, got shape {m.shape}")
            if np.isnan(m).any():
                raise DataError(f"{what}: distance matrix holds NaN values; expected finite distances (lower = more similar)")
            self.matrix: np.ndarray | None = m
            self.q = self.r = None
            self.n_query, self.n_ref = m.shape
            self.unit = False
            self._max: float | None = None
            return
        if q is None or r is None:
            raise DataError(f"{what}: needs query and reference descriptors or a distance matrix")
        q = np.asarray(q, dtype=np.float32)
        r = np.asarray(r, dtype=np.float32)
        if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1] or 0 in q.shape or 0 in r.shape:
            raise DataError(f"{what}: descriptors must be non-empty [n, D] arrays of equal D, got query {q.shape}, reference {r.shape}")
        for side, x in (("query", q), ("reference", r)):
            if not np.isfinite(x).all():
                raise DataError(f"{what}: {side} descriptors hold NaN or infinite values")
        if normalise:
            q, r = l2_normalise(q), l2_normalise(r)
        self.matrix = None
        self.q, self.r = np.ascontiguousarray(q), np.ascontiguousarray(r)
        self.r_sqnorm = np.einsum("ij,ij->i", self.r, self.r)
        self.n_query, self.n_ref = q.shape[0], r.shape[0]
        self.unit = normalise

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_query, self.n_ref)

    def block(self, lo: int, hi: int) -> np.ndarray:
        """Distances of query rows ``lo:hi`` to every reference, float32 [hi - lo, n_ref] (a copy)."""
        if self.matrix is not None:
            return np.array(self.matrix[lo:hi], dtype=np.float32)
        return pairwise_distances(self.q[lo:hi], self.r, self.r_sqnorm)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Distances of the query rows ``idx`` [m] to every reference, float32 [m, n_ref]."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.matrix is not None:
            return np.asarray(self.matrix[idx], dtype=np.float32)
        return pairwise_distances(self.q[idx], self.r, self.r_sqnorm)

    def full(self) -> np.ndarray:
        """The whole matrix [n_query, n_ref] float32 (small problems only)."""
        return self.block(0, self.n_query)

    def cosine_block(self, lo: int, hi: int) -> np.ndarray:
        """Cosine similarity 1 - d^2/2 of rows ``lo:hi`` [hi - lo, n_ref], float64.

        Exact for unit descriptors. For an imported matrix the distances are assumed to be those of
        unit vectors if they all lie in [0, 2]; otherwise they are first scaled by 2 / max.
        """
        d = self.block(lo, hi).astype(np.float64)
        if not self.unit and self.matrix is not None:
            if self._max is None:
                self._max = float(np.max(self.matrix))
            if self._max > 2.0:
                d *= 2.0 / self._max
        return 1.0 - 0.5 * d * d


def split_distance_source(split: SplitData, normalise: bool = True) -> DistanceSource:
    """The single-image distances of a split: its imported matrix if it has one, else from descriptors.

    An imported ``SplitData.distances`` [nq, nr] takes precedence (it is what the dataset gives);
    otherwise both traverses need per-frame descriptors, L2-normalised when ``normalise``.
    Raises :class:`DataError` naming the split if neither is available.
    """
    what = f"dataset {split.dataset!r} split {split.split!r}"
    if split.distances is not None:
        src = DistanceSource(matrix=split.distances, what=what)
        if src.shape != (len(split.query), len(split.reference)):
            raise DataError(
                f"{what}: imported distance matrix has shape {src.shape}, expected "
                f"[n_query, n_ref] = [{len(split.query)}, {len(split.reference)}]"
            )
        return src
    if split.query.descriptors is None or split.reference.descriptors is None:
        missing = split.query.name if split.query.descriptors is None else split.reference.name
        raise DataError(
            f"{what}: traverse {missing!r} has no per-frame descriptors and the dataset carries no imported "
            "distance matrix; extract descriptors first"
        )
    return DistanceSource(split.query.descriptors, split.reference.descriptors, normalise=normalise, what=what)


def split_distances(split: SplitData, normalise: bool = True) -> np.ndarray:
    """A split's full single-image distance matrix [nq, nr] float32 (imported, or from descriptors)."""
    return split_distance_source(split, normalise).full()


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
        q_starts, r_starts: [nq], [nr] first frame of each window (see :mod:`vprbench.windows`).
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
    cross segment bounds because the starts come from :mod:`vprbench.windows`; the aggregation
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
        from .progress import progress_bar

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


def mask_queries(indices: np.ndarray, distances: np.ndarray, q_valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Set rows of queries that are not valid (no window) to no match: index -1, distance inf."""
    if q_valid is not None:
        bad = ~np.asarray(q_valid, dtype=bool)
        indices[bad] = -1
        distances[bad] = np.inf
    return indices, distances


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
        q_windows, r_windows: (starts [n], valid [n]) from :func:`vprbench.windows.traverse_windows`.
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


def nearest_neighbours(q: np.ndarray, r: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean k-nearest neighbours of unit-length rows with a faiss flat inner-product index.

    Args:
        q: [nq, D] query descriptors, r: [nr, D] reference descriptors; both are L2-normalised here
            (zero rows stay zero), so inner product ranks like Euclidean distance.
        k: neighbours per query (capped at nr).

    Returns:
        indices [nq, k'] int64 and Euclidean distances [nq, k'] float32 (sqrt(2 - 2 ip)), ascending.
    """
    import faiss

    q = l2_normalise(q)
    r = l2_normalise(r)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise DataError(f"nearest neighbours: descriptor dimension mismatch, query {q.shape} vs reference {r.shape}")
    if isinstance(k, bool) or int(k) < 1:
        raise ConfigError(f"top-k must be >= 1, got {k!r}")
    for side, x in (("query", q), ("reference", r)):
        if not np.isfinite(x).all():
            raise DataError(f"nearest neighbours: {side} descriptors hold NaN or infinite values")
    index = faiss.IndexFlatIP(r.shape[1])
    index.add(np.ascontiguousarray(r))
    sims, idx = index.search(np.ascontiguousarray(q), min(int(k), r.shape[0]))
    dist = np.sqrt(np.maximum(2.0 - 2.0 * sims, 0.0)).astype(np.float32)
    return idx.astype(np.int64), dist
