"""Graph-based online sequence matching (Vysotska & Stachniss): lazy best-first search, GRH, exact DP.

The data association graph has a node (q, r) per query frame q and reference frame r, with node
cost c(q, r) = 1 / similarity (:class:`CostRows`). The similarity is what the released code uses:
the cosine of the descriptors, or an imported similarity matrix as is (its cost-matrix mode reads
similarities and inverts them); see :meth:`vprbench.matching.distances.DistanceSource.similarity_block`.
Node (q, r) links to (q+1, r') for |r' - r| <= fanOut, clipped to the reference range; a source
links to every (0, r).

:func:`lazy_search` reproduces the released online matcher (online_place_recognition, RA-L 2016)
and, with ``relocalise=True``, its relocalisation variant (vpr_relocalization, 2017): the search
runs query by query and reports one match per query as soon as the query is processed.
:func:`dp_search` is the exact dynamic-programming (Viterbi) counterpart on the same graph.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.traverse import dense_descriptors
from vprbench.matching.distances import DistanceSource, block_rows

SIMILARITIES: tuple[str, ...] = ("cosine", "shifted")

#: Cost of a node whose similarity is below 1e-9 (the released code uses DBL_MAX; a finite
#: stand-in keeps sums and means finite while no real path can compete with it).
MAX_COST = 1e12


def similarity_to_cost(cos: np.ndarray, similarity: str = "cosine") -> np.ndarray:
    """Node costs 1 / similarity from similarities (float64, same shape).

    ``"cosine"``: similarity as given (the released code; values below 1e-9 give :data:`MAX_COST`);
    ``"shifted"``: similarity = (1 + s) / 2, for a cosine s in [-1, 1] a value in [0, 1], so every
    node has a finite cost >= 1.
    """
    if similarity not in SIMILARITIES:
        raise ConfigError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    s = np.asarray(cos, dtype=np.float64)
    if similarity == "shifted":
        s = 0.5 * (1.0 + s)
    with np.errstate(divide="ignore"):
        return np.where(s < 1e-9, MAX_COST, 1.0 / np.maximum(s, 1e-9))


class CostRows:
    """Node-cost rows c(q, :) [n_ref] float64, computed in blocks of queries on demand (LRU cache).

    The similarity behind each cost is ``source.similarity_block`` (see its kinds).
    """

    def __init__(self, source: DistanceSource, similarity: str = "cosine", memory_mb: float = 512.0, max_blocks: int = 3) -> None:
        if similarity not in SIMILARITIES:
            raise ConfigError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        self.source, self.similarity = source, similarity
        self.n_query, self.n_ref = source.shape
        self.rows_per_block = block_rows(self.n_ref, memory_mb / max_blocks, bytes_per_item=8, copies=3)
        self.max_blocks = max_blocks
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getitem__(self, q: int) -> np.ndarray:
        b = q // self.rows_per_block
        blk = self._cache.get(b)
        if blk is None:
            lo = b * self.rows_per_block
            blk = similarity_to_cost(self.source.similarity_block(lo, min(self.n_query, lo + self.rows_per_block)), self.similarity)
            self._cache[b] = blk
            if len(self._cache) > self.max_blocks:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(b)
        return blk[q - b * self.rows_per_block]


def binarise(x: np.ndarray) -> np.ndarray:
    """Hash bits [n, D] bool: per descriptor min-max scale to 0..255 (truncated), bit = value >= 127.

    A constant descriptor (max = min) gets no bits.
    """
    x = np.asarray(x, dtype=np.float64)
    lo = x.min(axis=1, keepdims=True)
    span = x.max(axis=1, keepdims=True) - lo
    scaled = np.floor((x - lo) * (255.0 / np.where(span > 0, span, 1.0)))
    return (scaled >= 127) & (span > 0)


class DimensionHash:
    """Inverted index from descriptor dimension to the references whose hash bit is set (GRH).

    A reference's score for a query is the sum, over the query's set bits, of the IDF weight
    log(n_ref / |postings of the dimension|) if the reference has that bit; candidates are the
    references with any shared bit whose score is >= min + ``accept`` (max - min) over those.
    """

    def __init__(self, ref_descriptors: np.ndarray, accept: float = 0.7, block: int = 4096) -> None:
        import scipy.sparse as sp

        x = ref_descriptors  # dense or scipy.sparse rows (densified one block at a time)
        # sparse [nr, D] bit matrix built in row blocks: its non-zeros are the inverted index's postings
        self.bits = sp.vstack([sp.csr_matrix(binarise(dense_descriptors(x[i : i + block], 'GRH hash')), dtype=np.float32) for i in range(0, x.shape[0], block)]).tocsr()
        counts = np.asarray(self.bits.sum(axis=0)).ravel()
        n = self.bits.shape[0]
        self.weights = np.where(counts > 0, np.log(n / np.maximum(counts, 1.0)), 0.0).astype(np.float32)
        self.accept = accept

    def candidates(self, query_descriptor: np.ndarray) -> np.ndarray:
        """Candidate reference indices (ascending) for one query descriptor [D]."""
        qb = binarise(dense_descriptors(query_descriptor, 'GRH hash').reshape(1, -1))[0].astype(np.float32)
        shared = self.bits @ qb  # [nr] number of shared set bits
        score = self.bits @ (qb * self.weights)
        hit = shared > 0
        if not hit.any():
            return np.zeros(0, dtype=np.int64)
        s = score[hit]
        thr = s.min() + self.accept * (s.max() - s.min())
        return np.flatnonzero(hit & (score >= thr - 1e-6 * max(1.0, abs(thr))))


@dataclass
class GraphResult:
    """One match per query: reference [nq] (-1 = hidden / none), its node cost [nq], hidden flag [nq]."""

    match: np.ndarray
    cost: np.ndarray
    hidden: np.ndarray
    expansions: int = 0
    relocalisations: int = 0


def _check_params(fan_out: int, expansion_rate: float, non_match_cost: float) -> None:
    if isinstance(fan_out, bool) or int(fan_out) != fan_out or fan_out < 0:
        raise ConfigError(f"fanOut must be an integer >= 0, got {fan_out!r}")
    if not (expansion_rate >= 0 and math.isfinite(expansion_rate)):
        raise ConfigError(f"expansionRate must be a finite number >= 0, got {expansion_rate!r}")
    if not non_match_cost >= 0:
        raise ConfigError(f"nonMatchCost must be >= 0, got {non_match_cost!r}")


def lazy_search(
    costs: CostRows | np.ndarray,
    fan_out: int = 5,
    expansion_rate: float = 0.7,
    non_match_cost: float = 6.0,
    relocalise: bool = False,
    hasher: DimensionHash | None = None,
    query_descriptors: np.ndarray | None = None,
    lost_window: int = 5,
    lost_ratio: float = 0.8,
) -> GraphResult:
    """The released lazy best-first search, run online over all queries.

    Args:
        costs: node costs, a :class:`CostRows` or a dense array [nq, nr] (small problems, tests).
        fan_out: children of (q, r) are (q+1, r - fan_out .. r + fan_out), clipped.
        expansion_rate: heuristic weight of the expansion rule.
        non_match_cost: nodes costlier than this are hidden (reported as no match).
        relocalise: GRH: relocalise at query 0 and whenever the last ``lost_window`` path nodes are
            more than ``lost_ratio`` hidden; else GISM (a source links to every reference of query 0).
        hasher, query_descriptors: GRH candidates; without them every reference is a candidate.

    Per query q the search pops nodes by accumulated cost (ties: first pushed first). A popped node
    is expanded if it is the source, the current best, or acc + (best row - its row) * mean cost of
    the best path * expansion_rate < acc(best); otherwise it is dropped for good. Children reached
    before keep their first accumulated cost. After each expansion the child with the lowest own
    cost (first in reference order) becomes the best if it is in a later row, or in the same row
    with accumulated cost <= the best's. The round ends right after a node of row q-1 is expanded;
    the best (now in row q) is the query's output. If the frontier runs empty first (the released
    code aborts there), the current best is expanded.
    """
    _check_params(fan_out, expansion_rate, non_match_cost)
    dense = isinstance(costs, np.ndarray)
    if dense:
        c = np.asarray(costs, dtype=np.float64)
        if c.ndim != 2 or 0 in c.shape:
            raise DataError(f"graph search: cost matrix must be a non-empty [n_query, n_ref] array, got shape {c.shape}")
        if np.isnan(c).any():
            raise DataError("graph search: cost matrix holds NaN values")
        nq, nr = c.shape
        row = c.__getitem__
    else:
        nq, nr = costs.n_query, costs.n_ref
        row = costs.__getitem__
    f = int(fan_out)
    SOURCE = -1
    acc: dict[int, float] = {SOURCE: 0.0}
    idv: dict[int, float] = {SOURCE: 0.0}
    pred: dict[int, int] = {SOURCE: SOURCE}
    heap: list[tuple[float, int, int]] = [(0.0, 0, SOURCE)]
    counter = 1
    best = SOURCE
    best_q = -1
    match = np.full(nq, -1, dtype=np.int64)
    cost_out = np.full(nq, np.inf)
    hidden = np.zeros(nq, dtype=bool)
    expansions = relocs = 0
    need_reloc = relocalise

    def add_children(parent: int, q_child: int, refs: np.ndarray) -> None:
        """updateGraph + updateSearch for children (q_child, refs) of ``parent``."""
        nonlocal counter, best, best_q
        cr = row(q_child)[refs]
        pa = acc[parent]
        base = q_child * nr
        for r, cv in zip(refs.tolist(), cr.tolist()):
            key = base + r
            if key not in acc:
                a = pa + cv
                acc[key], idv[key], pred[key] = a, cv, parent
                heapq.heappush(heap, (a, counter, key))
                counter += 1
        k = int(np.argmin(cr))  # first lowest own cost
        cand = base + int(refs[k])
        if q_child > best_q or (q_child == best_q and acc[cand] <= acc[best]):
            best, best_q = cand, q_child

    for qu in range(nq):
        if need_reloc:
            relocs += 1
            heap.clear()
            parent = best
            cands = None
            if hasher is not None and query_descriptors is not None:
                cands = hasher.candidates(query_descriptors[qu])
            if cands is None or cands.size == 0:
                # no hash candidates: the released code keeps the same reference; from the source
                # (query 0) every reference is a candidate
                cands = np.arange(nr) if parent == SOURCE or cands is None else np.array([parent % nr])
            cr = row(qu)[cands]
            r = int(cands[int(np.argmin(cr))])
            key = qu * nr + r
            best, best_q = key, qu
            if key not in acc:
                acc[key], idv[key], pred[key] = acc[parent] + float(row(qu)[r]), float(row(qu)[r]), parent
                heapq.heappush(heap, (acc[key], counter, key))
                counter += 1
        else:
            reached = False
            while not reached:
                if heap:
                    a_e, _, node = heapq.heappop(heap)
                else:
                    node = best  # frontier exhausted: expand the current best
                if node == SOURCE:
                    expansions += 1
                    add_children(SOURCE, 0, np.arange(nr))
                    e_row = -1
                else:
                    e_row, e_ref = divmod(node, nr)
                    if node != best:
                        if e_row > best_q:
                            raise RuntimeError("graph search: popped a node beyond the current best (internal error)")
                        mean = acc[best] / (best_q + 1)
                        if not acc[node] + (best_q - e_row) * mean * expansion_rate < acc[best]:
                            continue
                    if e_row + 1 >= nq:
                        continue
                    expansions += 1
                    add_children(node, e_row + 1, np.arange(max(e_ref - f, 0), min(e_ref + f, nr - 1) + 1))
                if e_row == qu - 1:
                    reached = True
        r_best = best % nr
        cost_out[qu] = idv[best]
        hidden[qu] = idv[best] > non_match_cost
        match[qu] = -1 if hidden[qu] else r_best
        if relocalise:
            # lost: more than lost_ratio of the last lost_window path nodes are hidden
            node, n, n_hidden = best, 0, 0
            while node != SOURCE and n < lost_window:
                n += 1
                n_hidden += idv[node] > non_match_cost
                node = pred[node]
            need_reloc = n >= lost_window and n_hidden / n > lost_ratio
    return GraphResult(match, cost_out, hidden, expansions, relocs)


def dp_search(costs: CostRows | np.ndarray, fan_out: int = 5, non_match_cost: float = 6.0) -> GraphResult:
    """Exact online shortest paths on the same graph (dynamic programming, one vectorised step per query).

    acc(0, r) = c(0, r); acc(q, r) = c(q, r) + min_{|r' - r| <= fanOut} acc(q-1, r'). The output for
    query q is the first argmin_r acc(q, r) (the end of the cheapest path so far); hidden if its own
    cost exceeds ``non_match_cost``.
    """
    from scipy.ndimage import minimum_filter1d

    _check_params(fan_out, 0.0, non_match_cost)
    if isinstance(costs, np.ndarray):
        c = np.asarray(costs, dtype=np.float64)
        if c.ndim != 2 or 0 in c.shape or np.isnan(c).any():
            raise DataError(f"graph search: cost matrix must be a finite non-empty [n_query, n_ref] array, got shape {c.shape}")
        nq = c.shape[0]
        row = c.__getitem__
    else:
        nq = costs.n_query
        row = costs.__getitem__
    match = np.full(nq, -1, dtype=np.int64)
    cost_out = np.full(nq, np.inf)
    hidden = np.zeros(nq, dtype=bool)
    acc = None
    for q in range(nq):  # sequential by nature; each step is vectorised over references
        cq = row(q)
        if acc is None:
            acc = cq.copy()
        else:
            acc = cq + minimum_filter1d(acc, size=2 * int(fan_out) + 1, mode="nearest")
            acc -= acc.min()  # keeps values bounded; argmins are unchanged
        r = int(np.argmin(acc))
        cost_out[q] = cq[r]
        hidden[q] = cq[r] > non_match_cost
        match[q] = -1 if hidden[q] else r
    return GraphResult(match, cost_out, hidden)


def graph_ranking_arrays(result: GraphResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranking arrays with K = 1: indices [nq, 1] (-1 hidden), distances = node cost (inf if hidden),
    confidence = minus the node cost (-inf if hidden)."""
    matched = result.match >= 0
    idx = result.match[:, None].copy()
    dist = np.where(matched, result.cost, np.inf)[:, None].astype(np.float32)
    conf = np.where(matched, -result.cost, -np.inf)
    return idx, dist, conf
