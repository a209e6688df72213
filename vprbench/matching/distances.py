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

if TYPE_CHECKING:
    from vprbench.data.dataset import SplitData


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

    @property
    def q_sqnorm(self) -> np.ndarray:
        """Squared norms [n_query] of the query descriptors (computed on first use)."""
        qn = self.__dict__.get("_q_sqnorm")
        if qn is None:  # concurrent first uses compute the same values
            qn = self._q_sqnorm = np.einsum("ij,ij->i", self.q, self.q)
        return qn

    def block(self, lo: int, hi: int) -> np.ndarray:
        """Distances of query rows ``lo:hi`` to every reference, float32 [hi - lo, n_ref] (a copy)."""
        return self.tile(lo, hi)

    def tile(self, lo: int, hi: int, c_lo: int = 0, c_hi: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Distances of query rows ``lo:hi`` to reference rows ``c_lo:c_hi``, float32 [hi - lo, c_hi - c_lo].

        Written into ``out`` (a C-contiguous float32 array of that shape) when given, so blocked
        kernels can reuse one cache-sized buffer per thread; only reads the source (thread-safe).
        From descriptors the values are those of :func:`pairwise_distances` on the same rows (up to
        rounding residues of near-identical frames, which can be ~1e-4 either way in both).
        """
        c_hi = self.n_ref if c_hi is None else c_hi
        if self.matrix is not None:
            part = self.matrix[lo:hi, c_lo:c_hi]
            if out is None:
                return np.array(part, dtype=np.float32)
            np.copyto(out, part, casting="unsafe")
            return out
        # (-2 q) r^T is exactly -2 (q r^T) (scaling by a power of two), without a pass over the product
        out = np.matmul(self.q[lo:hi] * np.float32(-2.0), self.r[c_lo:c_hi].T, out=out)
        out += self.q_sqnorm[lo:hi, None]
        out += self.r_sqnorm[None, c_lo:c_hi]
        # d^2 of near-identical frames is a rounding residue of either sign; its absolute value is
        # as good as clipping at 0 (positive residues are not clipped either) and 5x faster in numpy
        np.abs(out, out=out)
        return np.sqrt(out, out=out)

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
