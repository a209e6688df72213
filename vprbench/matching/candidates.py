"""Sequence matching on maps too large for exhaustive search: windows scored only where per-frame
candidates agree.

Exhaustive sequence matching (:func:`vprbench.matching.sequence.sequence_topk_from`) costs
n_query x n_ref x D. Here each query frame first gets its K nearest reference frames from an
approximate faiss index (IVF-Flat or HNSW-Flat over the reference descriptors). A reference window
start s is a candidate for the query window starting at a when, for at least ``min_votes`` of the
offsets k = 0..L-1, reference frame s + k is among the candidates of query frame a + k (the
candidate frame ``c`` of query frame ``a + k`` votes for start ``c - k``). Only candidate windows
are scored, with the exact SeqMatch distance (mean of the L aligned single-image Euclidean
distances, as the exhaustive path computes them), so the cost grows as n_query x K x L (plus the
index). With K covering every reference frame and an exhaustive index this is the exhaustive
result; otherwise a window that no offset proposes is missed (recall is measured in
``tests/benchmarks``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.windows import check_seq_len
from vprbench.matching.distances import DistanceSource
from vprbench.matching.sequence import ReferenceColumns, check_windows
from vprbench.matching.topk import merge_topk

SEARCH_KINDS: tuple[str, ...] = ("ivf", "hnsw")


@dataclass(frozen=True)
class CandidateSearch:
    """How per-frame candidates are found.

    Attributes:
        kind: ``"ivf"`` (faiss IndexIVFFlat: k-means lists, ``nprobe`` of them scanned per query)
            or ``"hnsw"`` (faiss IndexHNSWFlat graph).
        k: per-frame candidates K (reference frames per query frame).
        nlist: IVF lists; None: round(sqrt(n_ref)) (at least 1, at most n_ref / 39).
        nprobe: IVF lists scanned per query frame (<= an explicit nlist; capped at the automatic
            one; nprobe = nlist is exhaustive). A search-time setting, like efSearch: an index built
            once serves several of them (:func:`set_search_params`).
        hnsw_m: HNSW neighbours per node (M).
        ef_search: HNSW search beam (efSearch; raised to K when smaller, as faiss does).
        ef_construction: HNSW construction beam (efConstruction).
        min_votes: offsets of the window that must propose a start (1..L).
        seed: seed of the k-means training sample and initialisation.

    Decisions where faiss is silent: the IVF quantiser is trained on at most 64 reference frames
    per list, drawn with ``seed`` (faiss's own cap is 256; 64 keeps training well under the cost
    of the search); the HNSW graph is built with one thread, because faiss's parallel insertion
    depends on thread timing and would make runs irreproducible (searches use every thread).
    """

    kind: str = "ivf"
    k: int = 32
    nlist: int | None = None
    nprobe: int = 16
    hnsw_m: int = 32
    ef_search: int = 64
    ef_construction: int = 40
    min_votes: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in SEARCH_KINDS:
            raise ConfigError(f"candidate search kind must be one of {SEARCH_KINDS}, got {self.kind!r}")
        for name, lo in (("k", 1), ("nprobe", 1), ("hnsw_m", 2), ("ef_search", 1), ("ef_construction", 1), ("min_votes", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
                raise ConfigError(f"candidate search: {name} must be an integer >= {lo}, got {value!r}")
        if self.nlist is not None and (isinstance(self.nlist, bool) or not isinstance(self.nlist, (int, np.integer)) or self.nlist < 1):
            raise ConfigError(f"candidate search: nlist must be an integer >= 1 or None (automatic), got {self.nlist!r}")
        if self.nlist is not None and self.nprobe > self.nlist:
            raise ConfigError(f"candidate search: nprobe ({self.nprobe}) must be <= nlist ({self.nlist})")

    def lists(self, n_ref: int) -> int:
        """IVF lists for ``n_ref`` reference frames (the given nlist, or the automatic choice)."""
        if self.nlist is not None:
            if self.nlist > n_ref:
                raise ConfigError(f"candidate search: nlist ({self.nlist}) must be <= the number of reference frames ({n_ref})")
            return int(self.nlist)
        return int(max(1, min(round(math.sqrt(n_ref)), n_ref // 39)))


def build_index(r: np.ndarray, search: CandidateSearch) -> Any:
    """A faiss L2 index over reference descriptors ``r`` [n_ref, D] float32 (IVF-Flat or HNSW-Flat)."""
    import faiss

    r = np.ascontiguousarray(r, dtype=np.float32)
    n, dim = r.shape
    if search.kind == "ivf":
        nlist = search.lists(n)
        quantiser = faiss.IndexFlatL2(dim)
        index = faiss.IndexIVFFlat(quantiser, dim, nlist, faiss.METRIC_L2)
        index.cp.seed = int(search.seed)
        index.cp.max_points_per_centroid = 64
        n_train = min(n, 64 * nlist)
        sample = r if n_train == n else r[np.sort(np.random.default_rng(search.seed).choice(n, n_train, replace=False))]
        if n_train < 39 * nlist:
            warnings.warn(
                f"candidate search: {n_train} reference frames train {nlist} IVF lists (faiss wants >= 39 per list); "
                "lists will be uneven, lower nlist",
                stacklevel=3,
            )
        index.train(sample)
        index.add(r)
        set_search_params(index, search)
        return index
    index = faiss.IndexHNSWFlat(dim, int(search.hnsw_m), faiss.METRIC_L2)
    index.hnsw.efConstruction = int(search.ef_construction)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # deterministic graph (see CandidateSearch)
    try:
        index.add(r)
    finally:
        faiss.omp_set_num_threads(threads)
    set_search_params(index, search)
    return index


def set_search_params(index: Any, search: CandidateSearch) -> None:
    """Apply the search-time settings of ``search`` (nprobe, or efSearch raised to K) to a built index."""
    if hasattr(index, "nprobe"):
        index.nprobe = int(min(search.nprobe, index.nlist))
    if hasattr(index, "hnsw"):
        index.hnsw.efSearch = int(max(search.ef_search, search.k))


def frame_candidates(index: Any, q: np.ndarray, k: int) -> np.ndarray:
    """[m, k'] int64 reference frames proposed for each query frame ``q`` [m, D] (-1: none), k' = min(k, n_ref)."""
    _, idx = index.search(np.ascontiguousarray(q, dtype=np.float32), min(int(k), int(index.ntotal)))
    return idx.astype(np.int64, copy=False)


def candidate_starts(
    cand: np.ndarray, a: np.ndarray, f0: int, seq_len: int, refs: ReferenceColumns, min_votes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (window, reference start) pairs from per-frame candidates.

    ``cand`` [n_frames, K] are the candidates of query frames ``f0 ..``; ``a`` [n] the query window
    starts (frames). Returns ``win`` [p] (index into ``a``) and ``start`` [p] (reference start
    frame, one that begins a valid window), each pair once, proposed by >= ``min_votes`` offsets.
    """
    n, kk = a.size, cand.shape[1]
    offs = np.arange(seq_len)
    props = cand[(a - f0)[:, None] + offs[None, :]]  # [n, L, K] frames proposed at each offset
    starts = props - offs[None, :, None]  # the window start each proposal votes for
    ok = (props >= 0) & (starts >= refs.lo) & (starts <= refs.hi)
    win = np.broadcast_to(np.arange(n)[:, None, None], (n, seq_len, kk))[ok]
    s = starts[ok]
    keep = refs.key_at[s - refs.lo] != refs.sentinel
    win, s = win[keep], s[keep]
    span = refs.hi - refs.lo + 1
    pair, votes = np.unique(win * span + (s - refs.lo), return_counts=True)
    pair = pair[votes >= min_votes]
    return pair // span, pair % span + refs.lo


def frame_distances(source: DistanceSource, fq: np.ndarray, fr: np.ndarray) -> np.ndarray:
    """Single-image distances [p] float32 of query frames ``fq`` [p] to reference frames ``fr`` [p].

    d^2 = |q|^2 + |r|^2 - 2 q.r as :meth:`DistanceSource.tile` computes it; the dot
    products come from faiss's indexed inner products (multi-threaded, no gathered copies), summed
    in another order than the matrix product, so values agree to float32 rounding.
    """
    import faiss

    q, r = source.q, source.r
    fq = np.ascontiguousarray(fq, dtype=np.int64)
    fr = np.ascontiguousarray(fr, dtype=np.int64)
    d2 = np.empty(fq.size, dtype=np.float32)
    faiss.pairwise_indexed_inner_product(
        q.shape[1], fq.size, faiss.swig_ptr(q), faiss.swig_ptr(fq), faiss.swig_ptr(r), faiss.swig_ptr(fr), faiss.swig_ptr(d2)
    )
    d2 *= -2.0
    d2 += source.q_sqnorm[fq]
    d2 += source.r_sqnorm[fr]
    np.abs(d2, out=d2)  # (the rounding residue of near-identical frames, as in DistanceSource.tile)
    return np.sqrt(d2, out=d2)


def window_distances(source: DistanceSource, a: np.ndarray, s: np.ndarray, seq_len: int, memory_mb: float = 512.0) -> np.ndarray:
    """Exact sequence distances [p] float32 of query windows starting at ``a`` [p] to reference windows at ``s`` [p].

    The mean over k = 0..L-1 of d(q[a + k], r[s + k]), summed in offset order then divided by L,
    as the exhaustive path does; in blocks of windows whose frame-pair temporaries fit ``memory_mb``.
    """
    offs = np.arange(seq_len)
    out = np.empty(a.size, dtype=np.float32)
    block = max(1, int(memory_mb * 2**20 // (seq_len * 40)))  # two int64 frame indices, norms and distances per pair
    for lo in range(0, a.size, block):
        aa, ss = a[lo : lo + block], s[lo : lo + block]
        d = frame_distances(source, (aa[:, None] + offs).ravel(), (ss[:, None] + offs).ravel()).reshape(aa.size, seq_len)
        acc = out[lo : lo + block]
        acc[:] = d[:, 0]
        for k in range(1, seq_len):
            acc += d[:, k]
        if seq_len > 1:
            acc /= seq_len
    return out


def candidate_topk(
    source: DistanceSource,
    q_starts: np.ndarray,
    r_starts: np.ndarray,
    seq_len: int,
    k: int,
    search: CandidateSearch,
    variant: str = "meanOfPairs",
    memory_mb: float = 512.0,
    r_valid: np.ndarray | None = None,
    progress: bool = False,
    index: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` reference windows per query window among candidate windows (see the module doc).

    Arguments and result as :func:`vprbench.matching.sequence.sequence_topk_from` (indices into
    ``r_starts``, ascending distances, ties to the lower reference index, -1 / inf where a query has
    fewer than k' candidate windows), plus ``search`` (the index and its parameters) and
    optionally a prebuilt ``index`` over ``source.r`` (from :func:`build_index`). Needs per-frame
    descriptors: an imported distance matrix has no index to search.
    """
    seq_len = check_seq_len(seq_len)
    if isinstance(k, bool) or int(k) < 1:
        raise ConfigError(f"top-k must be >= 1, got {k!r}")
    if not memory_mb > 0:
        raise ConfigError(f"memory budget must be > 0 MiB, got {memory_mb}")
    if not isinstance(search, CandidateSearch):
        raise ConfigError(f"candidate search settings must be a CandidateSearch, got {type(search).__name__}")
    if source.matrix is not None:
        raise DataError(
            f"{source.what}: candidate search needs per-frame descriptors to index; this source is an imported "
            "distance matrix (use exhaustive search)"
        )
    if getattr(source, "sparse", False) or getattr(source, "metric", "euclidean") != "euclidean":
        raise DataError(f"{source.what}: candidate search indexes dense descriptors under Euclidean distance; this source is "
                        f"{'sparse' if getattr(source, 'sparse', False) else source.metric} (use exhaustive search)")
    if search.min_votes > seq_len:
        raise ConfigError(f"candidate search: min_votes ({search.min_votes}) must be <= the sequence length ({seq_len})")
    q_starts, r_starts = check_windows(q_starts, r_starts, seq_len, source.n_query, source.n_ref, variant)
    if variant == "centerOnly":
        c = seq_len // 2
        q_starts, r_starts, seq_len = q_starts + c, r_starts + c, 1
    min_votes = min(search.min_votes, seq_len)
    kk = min(int(k), r_starts.size)
    nq = q_starts.size
    invalid = None if r_valid is None else ~np.asarray(r_valid, dtype=bool).reshape(-1)
    if invalid is not None and invalid.shape != r_starts.shape:
        raise DataError(f"r_valid has {invalid.size} entries, expected one per reference window ({r_starts.size})")
    refs = ReferenceColumns(r_starts, invalid)
    if nq == 0 or refs.starts.size == 0:
        return np.full((nq, kk), -1, dtype=np.int64), np.full((nq, kk), np.inf, dtype=np.float32)
    if index is None:
        index = build_index(source.r, search)
    elif int(index.ntotal) != source.n_ref or int(index.d) != source.r.shape[1]:
        raise DataError(f"{source.what}: the given index holds {index.ntotal} x {index.d}-D vectors, expected the "
                        f"{source.n_ref} x {source.r.shape[1]}-D reference descriptors")
    else:
        set_search_params(index, search)
    uq, q_inv = np.unique(q_starts, return_inverse=True)
    kc = min(kk, refs.starts.size)
    best_v = np.full((uq.size, kc), np.inf, dtype=np.float32)
    best_key = np.full((uq.size, kc), refs.sentinel, dtype=np.int64)
    # query windows in chunks whose temporaries ([n, L, K] proposals, their votes and pairs) fit the budget
    per_window = seq_len * min(search.k, index.ntotal) * 8 * 8
    chunk = max(1, int(memory_mb * 2**20 // per_window))
    chunks = range(0, uq.size, chunk)
    if progress:
        from vprbench.core.progress import progress_bar

        chunks = progress_bar(chunks, desc="candidate matching", total=math.ceil(uq.size / chunk))
    for lo in chunks:
        a = uq[lo : lo + chunk]
        f0, f1 = int(a[0]), int(a[-1]) + seq_len
        cand = frame_candidates(index, source.q[f0:f1], search.k)
        win, s = candidate_starts(cand, a, f0, seq_len, refs, min_votes)
        if win.size == 0:
            continue
        dist = window_distances(source, a[win], s, seq_len, memory_mb)
        rows, cand_row = np.unique(win, return_inverse=True)
        merge_topk(best_v, best_key, lo + rows, cand_row, dist, refs.key_at[s - refs.lo])
    idx, dist = refs.expand(best_v, best_key, kk)
    return idx[q_inv], dist[q_inv]
