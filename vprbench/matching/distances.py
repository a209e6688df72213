"""Single-image distances: pairwise Euclidean distances by matrix products and the distance sources kernels read.

Everything here is float32 and vectorised. A :class:`DistanceSource` serves single-image
distances [n_query, n_ref] in blocks of query rows, computed from per-frame descriptors (one
matrix product per block) or read from an imported distance matrix (``SplitData.distances``),
so methods that only need single-image distances run on both kinds of dataset through one path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.arrays import is_sparse
from vprbench.data.traverse import dense_descriptors

if TYPE_CHECKING:
    from vprbench.data.dataset import SplitData


def l2_normalise(x: np.ndarray, axis: int = -1, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32.

    Sparse input (scipy.sparse) is densified first, within the dense-copy limit of
    :func:`vprbench.data.traverse.dense_descriptors` (DataError beyond it): the callers (faiss
    search, window sums, PCA) need dense rows. :func:`l2_normalise_sparse` keeps it sparse.
    """
    if is_sparse(x):
        x = dense_descriptors(x, "L2 normalisation")
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, eps)


def l2_normalise_sparse(x, eps: float = 1e-12):
    """Rows of a sparse matrix [n, D] scaled to unit L2 norm, as CSR float32 (stays sparse)."""
    from scipy.sparse import csr_matrix, diags

    x = csr_matrix(x, dtype=np.float32)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1), dtype=np.float64).ravel())
    return csr_matrix(diags((1.0 / np.maximum(norms, eps)).astype(np.float32)) @ x, dtype=np.float32)


def _sparse_distances(q, rt, q_sqnorm: np.ndarray, r_sqnorm: np.ndarray) -> np.ndarray:
    """Euclidean distances [nq, nr] float32 from sparse ``q`` [nq, D] and ``rt`` = r^T [D, nr] (CSR)."""
    d2 = np.asarray((q @ rt).toarray(), dtype=np.float32)
    d2 *= -2.0
    d2 += q_sqnorm[:, None]
    d2 += r_sqnorm[None, :]
    np.maximum(d2, 0.0, out=d2)
    return np.sqrt(d2, out=d2)


def pairwise_distances(q: np.ndarray, r: np.ndarray, r_sqnorm: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distances [nq, nr] between rows of ``q`` [nq, D] and ``r`` [nr, D], float32.

    One matrix product: d^2 = |q|^2 + |r|^2 - 2 q.r, clipped at 0 before the square root.

    >>> pairwise_distances(np.array([[0., 0.]]), np.array([[3., 4.], [0., 1.]])).tolist()
    [[5.0, 1.0]]

    Sparse input (either side scipy.sparse) is multiplied sparse x sparse^T, never densified.
    """
    if is_sparse(q) or is_sparse(r):
        from scipy.sparse import csr_matrix

        q, r = csr_matrix(q, dtype=np.float32), csr_matrix(r, dtype=np.float32)
        if q.shape[1] != r.shape[1]:
            raise DataError(f"pairwise distances: descriptor dimension mismatch, query {q.shape} vs reference {r.shape}")
        q_sqnorm = np.asarray(q.multiply(q).sum(axis=1), dtype=np.float32).ravel()
        if r_sqnorm is None:
            r_sqnorm = np.asarray(r.multiply(r).sum(axis=1), dtype=np.float32).ravel()
        return _sparse_distances(q, csr_matrix(r.T), q_sqnorm, r_sqnorm)
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
    similarity conversion :meth:`cosine_block` relies on. Sparse descriptors (scipy.sparse, e.g.
    49k-D codes with 100 non-zeros per row) stay sparse: normalised sparse-wise, each block one
    sparse x sparse^T product (``sparse`` is then True).
    """

    sparse = False

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
        self.sparse = is_sparse(q) or is_sparse(r)
        if self.sparse:  # sparse codes: blocks are sparse x sparse^T products, never a dense copy of the descriptors
            self._init_sparse(q, r, normalise, what)
            return
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

    def _init_sparse(self, q, r, normalise: bool, what: str) -> None:
        """Sparse descriptors (either side scipy.sparse): kept as CSR float32, normalised sparse-wise."""
        from scipy.sparse import csr_matrix

        q, r = csr_matrix(q, dtype=np.float32), csr_matrix(r, dtype=np.float32)
        if q.shape[1] != r.shape[1] or 0 in q.shape or 0 in r.shape:
            raise DataError(f"{what}: descriptors must be non-empty [n, D] arrays of equal D, got query {q.shape}, reference {r.shape}")
        for side, x in (("query", q), ("reference", r)):
            if not np.isfinite(x.data).all():
                raise DataError(f"{what}: {side} descriptors hold NaN or infinite values")
        if normalise:
            q, r = l2_normalise_sparse(q), l2_normalise_sparse(r)
        self.matrix = None
        self.q, self.r = q, r
        self._rt = csr_matrix(r.T)
        self.q_sqnorm = np.asarray(q.multiply(q).sum(axis=1), dtype=np.float32).ravel()
        self.r_sqnorm = np.asarray(r.multiply(r).sum(axis=1), dtype=np.float32).ravel()
        self.n_query, self.n_ref = q.shape[0], r.shape[0]
        self.unit = normalise

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_query, self.n_ref)

    def block(self, lo: int, hi: int) -> np.ndarray:
        """Distances of query rows ``lo:hi`` to every reference, float32 [hi - lo, n_ref] (a copy)."""
        if self.matrix is not None:
            return np.array(self.matrix[lo:hi], dtype=np.float32)
        if self.sparse:
            return _sparse_distances(self.q[lo:hi], self._rt, self.q_sqnorm[lo:hi], self.r_sqnorm)
        return pairwise_distances(self.q[lo:hi], self.r, self.r_sqnorm)

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Distances of the query rows ``idx`` [m] to every reference, float32 [m, n_ref]."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.matrix is not None:
            return np.asarray(self.matrix[idx], dtype=np.float32)
        if self.sparse:
            return _sparse_distances(self.q[idx], self._rt, self.q_sqnorm[idx], self.r_sqnorm)
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
