"""Ground truth: which reference frames are correct matches (positives) for each query frame."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from vprbench.core.errors import DataError


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Per-query positive reference indices in compressed sparse row form.

    Attributes:
        indptr: [n_query + 1] int64; positives of query q are ``indices[indptr[q]:indptr[q+1]]``.
        indices: [nnz] int64 reference indices, ascending within each query.
        n_ref: number of reference frames.
        radius: localisation radius used (metres or frames), or None for explicit ground truth.
        soft: optional second GroundTruth of also-acceptable matches (VPR_Tutorial "GTsoft");
            a prediction that is only soft-positive is neither rewarded nor punished in PR curves.
    """

    indptr: np.ndarray
    indices: np.ndarray
    n_ref: int
    radius: float | None = None
    soft: GroundTruth | None = None

    def __post_init__(self) -> None:
        if self.indptr.ndim != 1 or self.indptr[0] != 0 or self.indptr[-1] != self.indices.size:
            raise DataError("ground truth: malformed indptr")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= self.n_ref):
            raise DataError(f"ground truth: positive reference index out of range 0..{self.n_ref - 1}")

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_positions(cls, ref_positions: np.ndarray, query_positions: np.ndarray, radius: float) -> GroundTruth:
        """Positives = references within ``radius`` (inclusive, Euclidean) of each query.

        ``ref_positions`` [n_ref, P] and ``query_positions`` [n_query, P] share a unit (metres or frames).

        >>> gt = GroundTruth.from_positions(np.array([[0.], [5.], [10.]]), np.array([[4.], [20.]]), 1.0)
        >>> gt.positives(0).tolist(), gt.n_without_positive
        ([1], 1)
        """
        ref = np.asarray(ref_positions, dtype=np.float64).reshape(len(ref_positions), -1)
        qry = np.asarray(query_positions, dtype=np.float64).reshape(len(query_positions), -1)
        if ref.shape[1] != qry.shape[1]:
            raise DataError(f"ground truth: reference positions are {ref.shape[1]}-D but query positions {qry.shape[1]}-D")
        if not radius > 0:
            raise DataError(f"ground truth: radius must be > 0, got {radius}")
        tree = cKDTree(ref)
        lists = tree.query_ball_point(qry, r=radius + 1e-9, return_sorted=True)
        return cls.from_lists(lists, len(ref), radius=float(radius))

    @classmethod
    def from_lists(cls, positives: Sequence[Sequence[int]], n_ref: int, radius: float | None = None) -> GroundTruth:
        """From one list of positive reference indices per query."""
        lengths = np.fromiter((len(p) for p in positives), dtype=np.int64, count=len(positives))
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.concatenate([np.sort(np.asarray(p, dtype=np.int64)) for p in positives]) if lengths.sum() else np.zeros(0, np.int64)
        return cls(indptr=indptr, indices=flat.astype(np.int64), n_ref=int(n_ref), radius=radius)

    @classmethod
    def from_dense(cls, matrix: np.ndarray, soft: np.ndarray | None = None) -> GroundTruth:
        """From a boolean matrix [n_query, n_ref] (True = positive), optionally with a soft matrix."""
        m = np.asarray(matrix, dtype=bool)
        if m.ndim != 2:
            raise DataError(f"ground truth: matrix must be [n_query, n_ref], got shape {m.shape}")
        q, r = np.nonzero(m)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(q, minlength=m.shape[0]))]).astype(np.int64)
        soft_gt = None
        if soft is not None:
            s = np.asarray(soft, dtype=bool)
            if s.shape != m.shape:
                raise DataError(f"ground truth: soft matrix shape {s.shape} differs from hard {m.shape}")
            soft_gt = cls.from_dense(s | m)
        return cls(indptr=indptr, indices=r.astype(np.int64), n_ref=m.shape[1], soft=soft_gt)

    @classmethod
    def from_sparse(cls, matrix, soft=None) -> GroundTruth:
        """From a scipy.sparse boolean matrix [n_query, n_ref] (True = positive), never densified.

        ``soft`` (optional, sparse or dense, same shape): also-acceptable matches; as in
        :meth:`from_dense`, the soft set includes the hard positives.
        """
        from scipy.sparse import csr_matrix

        m = csr_matrix(matrix, dtype=bool)
        m.eliminate_zeros()
        m.sort_indices()
        soft_gt = None
        if soft is not None:
            s = csr_matrix(soft, dtype=bool)
            if s.shape != m.shape:
                raise DataError(f"ground truth: soft matrix shape {s.shape} differs from hard {m.shape}")
            soft_gt = cls.from_sparse(s + m)
        return cls(indptr=m.indptr.astype(np.int64), indices=m.indices.astype(np.int64), n_ref=m.shape[1], soft=soft_gt)

    def update_hash(self, h: Any) -> None:
        """Feed the positives and, if present, the soft positives into the hash object ``h``
        (both decide the metrics: the soft set changes precision-recall curves)."""
        h.update(self.indptr.tobytes() + self.indices.tobytes())
        if self.soft is not None:
            h.update(b"soft")
            self.soft.update_hash(h)

    # queries ------------------------------------------------------------------------------
    @property
    def n_query(self) -> int:
        return int(self.indptr.size - 1)

    @property
    def counts(self) -> np.ndarray:
        """[n_query] number of positives per query."""
        return np.diff(self.indptr)

    @property
    def has_positive(self) -> np.ndarray:
        """[n_query] bool: the query has at least one positive."""
        return self.counts > 0

    @property
    def n_without_positive(self) -> int:
        """Number of queries with no positive (excluded from Recall@N)."""
        return int((~self.has_positive).sum())

    def positives(self, q: int) -> np.ndarray:
        """Positive reference indices of query ``q`` (ascending)."""
        return self.indices[self.indptr[q] : self.indptr[q + 1]]

    def hits(self, ranked: np.ndarray) -> np.ndarray:
        """[n_query, K] bool: ``ranked[q, k]`` is a positive of query q (entries < 0 are misses).

        Vectorised over all queries: positives are encoded as sorted keys q * n_ref + r.
        """
        ranked = np.asarray(ranked, dtype=np.int64)
        if ranked.ndim != 2 or ranked.shape[0] != self.n_query:
            raise DataError(f"ground truth: ranking must be [{self.n_query}, K], got shape {ranked.shape}")
        rows = np.repeat(np.arange(self.n_query, dtype=np.int64), self.counts)
        keys = rows * self.n_ref + self.indices  # sorted: CSR rows ascending, columns ascending
        valid = (ranked >= 0) & (ranked < self.n_ref)
        query_keys = np.arange(self.n_query, dtype=np.int64)[:, None] * self.n_ref + np.where(valid, ranked, 0)
        pos = np.searchsorted(keys, query_keys)
        pos = np.minimum(pos, max(keys.size - 1, 0))
        found = keys[pos] == query_keys if keys.size else np.zeros_like(valid)
        return found & valid

    def subset(self, query_indices: np.ndarray, ref_indices: np.ndarray) -> GroundTruth:
        """Ground truth restricted to queries ``query_indices`` and references ``ref_indices`` (re-indexed)."""
        q = np.asarray(query_indices, dtype=np.int64)
        r = np.asarray(ref_indices, dtype=np.int64)
        new_col = np.full(self.n_ref, -1, dtype=np.int64)
        new_col[r] = np.arange(r.size)
        new_row = np.full(self.n_query, -1, dtype=np.int64)
        new_row[q] = np.arange(q.size)
        rows = new_row[np.repeat(np.arange(self.n_query), self.counts)]
        cols = new_col[self.indices]
        keep = (rows >= 0) & (cols >= 0)
        rows, cols = rows[keep], cols[keep]
        order = np.lexsort((cols, rows))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=q.size))]).astype(np.int64)
        soft = self.soft.subset(q, r) if self.soft is not None else None
        return GroundTruth(indptr, cols[order], int(r.size), self.radius, soft)

    def to_dense(self) -> np.ndarray:
        """[n_query, n_ref] boolean matrix (small problems only)."""
        m = np.zeros((self.n_query, self.n_ref), dtype=bool)
        m[np.repeat(np.arange(self.n_query), self.counts), self.indices] = True
        return m

