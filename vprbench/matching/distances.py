"""Single-image distances: pairwise Euclidean distances by matrix products and the distance sources kernels read.

Everything here is float32 and vectorised. A :class:`DistanceSource` serves single-image
distances [n_query, n_ref] in blocks of query rows, computed from per-frame descriptors (one
matrix product per block) or read from an imported matrix (``SplitData.distances``), so methods
that only need single-image distances run on both kinds of dataset through one path.

A source knows what it holds (its ``kind``, one of :data:`DISTANCE_KINDS`) and converts it to the
quantity each matcher's original program used:

============================ ================================ ====================================
kind                         :meth:`DistanceSource.block`     :meth:`DistanceSource.similarity_block`
                             (distance, lower = better)       (similarity, higher = better)
============================ ================================ ====================================
descriptors, ``euclidean``   Euclidean distance of the        cosine q.r of the L2-normalised
(``"unit-euclidean"``)       L2-normalised descriptors        descriptors
descriptors, ``sad`` or not  SAD of the descriptors as given, none (ConfigError: the graph
normalised (``"distance"``)  or their plain Euclidean distance matchers need unit descriptors)
``"unit-euclidean"`` matrix  as is                            1 - d^2 / 2 (exact for unit vectors)
``"cosine-similarity"``      sqrt(max(2 - 2 S, 0)) (exact:    S as is
matrix                       the distance of unit vectors)
``"similarity"`` matrix      max(S) - S (a rule: monotone,    S as is
                             not a Euclidean distance)
``"distance"`` matrix        as is                            rule: 1 - (c d)^2 / 2, c = 1 if
                                                              max(d) <= 2 else 2 / max(d)
============================ ================================ ====================================

Where a conversion is a rule rather than an identity (a generic similarity served as a distance,
a generic distance served as a similarity) the source warns once when it first applies it;
:attr:`DistanceSource.distance_note` / :attr:`DistanceSource.similarity_note` say in words what
is served (matchers put them in their run notes).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.arrays import is_sparse
from vprbench.data.dataset import DISTANCE_KINDS
from vprbench.data.traverse import dense_descriptors

if TYPE_CHECKING:
    from vprbench.data.dataset import SplitData

#: Metrics a descriptor source can compute: Euclidean distance (of L2-normalised descriptors when
#: ``normalise``) or the sum of absolute differences (SeqSLAM's difference matrix).
DISTANCE_METRICS: tuple[str, ...] = ("euclidean", "sad")


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


def sad_distances(q: np.ndarray, r: np.ndarray, memory_mb: float = 512.0) -> np.ndarray:
    """Sums of absolute differences sum_k |q_ik - r_jk| [nq, nr] float32 of rows of ``q`` [nq, D] and ``r`` [nr, D].

    Accumulated in float64 (scipy's ``cdist`` "cityblock", a compiled kernel); the reference rows
    are taken in chunks so that their float64 copy and the output tile fit in ``memory_mb`` MiB.

    >>> sad_distances(np.array([[0., 0.]]), np.array([[3., -4.], [0., 1.]])).tolist()
    [[7.0, 1.0]]
    """
    from scipy.spatial.distance import cdist

    q = np.asarray(q, dtype=np.float32)
    r = np.asarray(r, dtype=np.float32)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise DataError(f"SAD distances: descriptor dimension mismatch, query {q.shape} vs reference {r.shape}")
    out = np.empty((q.shape[0], r.shape[0]), dtype=np.float32)
    q64 = q.astype(np.float64)
    step = block_rows(r.shape[1] + q.shape[0], memory_mb, bytes_per_item=8, copies=2)
    for c in range(0, r.shape[0], step):
        out[:, c : c + step] = cdist(q64, r[c : c + step].astype(np.float64), "cityblock")
    return out


def block_rows(n_cols: int, memory_mb: float, bytes_per_item: int = 4, copies: int = 3) -> int:
    """Rows per block so that ``copies`` float matrices [rows, n_cols] fit in ``memory_mb`` MiB."""
    if not memory_mb > 0:
        raise ConfigError(f"memory budget must be > 0 MiB, got {memory_mb}")
    return max(1, int(memory_mb * 2**20 // (bytes_per_item * copies * max(n_cols, 1))))


class DistanceSource:
    """Single-image distances [n_query, n_ref] (lower = more similar), served in row blocks.

    Built from descriptors (``q`` [nq, D], ``r`` [nr, D]; each block is one matrix product, or one
    SAD kernel call with ``metric="sad"``) or from a precomputed ``matrix`` [nq, nr] whose meaning
    is ``kind`` (see the module docstring; default "distance"). With ``normalise=True`` Euclidean
    descriptors are L2-normalised first (the methods assume unit vectors; non-unit input is
    normalised, not rejected); SAD uses the descriptors as given (for SeqSLAM's front end they are
    the patch-normalised pixels).

    Attributes:
        kind: what :attr:`matrix` holds (``kind`` argument, default "distance"), or for descriptors
            "unit-euclidean" (normalised Euclidean) or "distance" (SAD, or Euclidean of
            non-normalised descriptors).
        metric: "euclidean" or "sad" for descriptor sources, None for an imported matrix.

    Sparse descriptors (scipy.sparse, e.g. 49k-D codes with 100 non-zeros per row) stay sparse:
    normalised sparse-wise, each block one sparse x sparse^T product (``sparse`` is then True).
    """

    sparse = False

    def __init__(
        self,
        q: np.ndarray | None = None,
        r: np.ndarray | None = None,
        matrix: np.ndarray | None = None,
        normalise: bool = True,
        what: str = "distances",
        kind: str | None = None,
        metric: str = "euclidean",
        memory_mb: float = 512.0,
    ) -> None:
        self.what = what
        self._max: float | None = None
        self._warned: set[str] = set()
        if metric not in DISTANCE_METRICS:
            raise ConfigError(f"{what}: distance metric must be one of {list(DISTANCE_METRICS)}, got {metric!r}")
        if matrix is not None:
            kind = "distance" if kind is None else kind
            if kind not in DISTANCE_KINDS:
                raise ConfigError(f"{what}: matrix kind must be one of {list(DISTANCE_KINDS)}, got {kind!r}")
            m = np.asarray(matrix)
            if m.ndim != 2 or 0 in m.shape:
                raise DataError(f"{what}: distance matrix must be a non-empty [n_query, n_ref] array, got shape {m.shape}")
            if np.isnan(m).any():
                raise DataError(f"{what}: distance matrix holds NaN values; expected finite distances (lower = more similar)")
            if kind in ("cosine-similarity", "similarity") and not np.isfinite(m).all():
                raise DataError(f"{what}: {kind} matrix holds infinite values; expected finite similarities")
            if kind == "cosine-similarity" and (m.min() < -1 - 1e-3 or m.max() > 1 + 1e-3):
                raise DataError(
                    f"{what}: a cosine similarity of unit vectors lies in [-1, 1], this matrix spans "
                    f"[{float(m.min()):.4g}, {float(m.max()):.4g}]; declare it a generic similarity instead"
                )
            self.matrix: np.ndarray | None = m
            self.q = self.r = None
            self.n_query, self.n_ref = m.shape
            self.kind, self.metric = kind, None
            return
        if q is None or r is None:
            raise DataError(f"{what}: needs query and reference descriptors or a distance matrix")
        if kind is not None:
            raise ConfigError(f"{what}: kind describes an imported matrix; a descriptor source's kind follows from metric and normalise")
        self.sparse = is_sparse(q) or is_sparse(r)
        if self.sparse:  # sparse codes: blocks are sparse x sparse^T products, never a dense copy of the descriptors
            if metric != "euclidean":
                raise ConfigError(f"{what}: the {metric} metric needs dense descriptors; these are sparse")
            self._init_sparse(q, r, normalise, what)
            self.memory_mb = memory_mb
            return
        q = np.asarray(q, dtype=np.float32)
        r = np.asarray(r, dtype=np.float32)
        if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1] or 0 in q.shape or 0 in r.shape:
            raise DataError(f"{what}: descriptors must be non-empty [n, D] arrays of equal D, got query {q.shape}, reference {r.shape}")
        for side, x in (("query", q), ("reference", r)):
            if not np.isfinite(x).all():
                raise DataError(f"{what}: {side} descriptors hold NaN or infinite values")
        normalise = normalise and metric == "euclidean"
        if normalise:
            q, r = l2_normalise(q), l2_normalise(r)
        self.matrix = None
        self.q, self.r = np.ascontiguousarray(q), np.ascontiguousarray(r)
        self.r_sqnorm = np.einsum("ij,ij->i", self.r, self.r)
        self.n_query, self.n_ref = q.shape[0], r.shape[0]
        self.kind = "unit-euclidean" if normalise else "distance"
        self.metric = metric
        self.memory_mb = memory_mb

    @property
    def unit(self) -> bool:
        """Whether :meth:`block` gives Euclidean distances of unit vectors (d in [0, 2])."""
        return self.kind in ("unit-euclidean", "cosine-similarity")

    @unit.setter
    def unit(self, value: bool) -> None:
        # kept for callers that mark an imported matrix as unit-vector distances; prefer kind="unit-euclidean"
        if self.matrix is None or self.kind not in ("distance", "unit-euclidean"):
            raise ConfigError(f"{self.what}: only an imported distance matrix can be marked as unit-vector distances")
        self.kind = "unit-euclidean" if value else "distance"

    def _warn_rule(self, quantity: str, note: str) -> None:
        if quantity not in self._warned:
            self._warned.add(quantity)
            warnings.warn(
                f"{self.what}: the imported matrix has no {quantity} of its own ({self.kind}); using a stand-in: {note}",
                stacklevel=3,
            )

    @property
    def distance_note(self) -> str:
        """What :meth:`block` returns, in words (for run notes)."""
        if self.matrix is None:
            if self.metric == "sad":
                return "sum of absolute differences (SAD) of the per-frame descriptors"
            return "Euclidean distance of L2-normalised descriptors" if self.kind == "unit-euclidean" else "Euclidean distance of the descriptors (not normalised)"
        return {
            "unit-euclidean": "imported Euclidean distances of unit vectors, as is",
            "cosine-similarity": "cosine similarity imported, d = sqrt(2 - 2 S)",
            "similarity": "generic similarity imported, d = max(S) - S (a monotone rule, not a Euclidean distance)",
            "distance": "generic distance matrix imported, as is",
        }[self.kind]

    @property
    def similarity_note(self) -> str:
        """What :meth:`similarity_block` returns, in words (for run notes)."""
        if self.matrix is None and self.kind == "unit-euclidean":
            return "cosine similarity of L2-normalised descriptors"
        return {
            "unit-euclidean": "imported Euclidean distances of unit vectors, s = 1 - d^2/2",
            "cosine-similarity": "cosine similarity imported, s = S",
            "similarity": "generic similarity imported, s = S",
            "distance": "generic distance d converted by a rule, s = 1 - (c d)^2/2 with c = 2/max(d) if max(d) > 2 else 1",
        }[self.kind]

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
        self._q_sqnorm = np.asarray(q.multiply(q).sum(axis=1), dtype=np.float32).ravel()
        self.r_sqnorm = np.asarray(r.multiply(r).sum(axis=1), dtype=np.float32).ravel()
        self.n_query, self.n_ref = q.shape[0], r.shape[0]
        self.kind = "unit-euclidean" if normalise else "distance"
        self.metric = "euclidean"

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
            part = self._as_distance(self.matrix[lo:hi, c_lo:c_hi])
            if out is None:
                return part
            np.copyto(out, part, casting="unsafe")
            return out
        if self.sparse or self.metric == "sad":
            q = self.q[lo:hi]
            part = (_sparse_distances(q, self._rt[:, c_lo:c_hi], self.q_sqnorm[lo:hi], self.r_sqnorm[c_lo:c_hi]) if self.sparse
                    else sad_distances(q, self.r[c_lo:c_hi], self.memory_mb))
            if out is None:
                return part
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
            return self._as_distance(self.matrix[idx])
        if self.sparse:
            return _sparse_distances(self.q[idx], self._rt, self.q_sqnorm[idx], self.r_sqnorm)
        if self.metric == "sad":
            return sad_distances(self.q[idx], self.r, self.memory_mb)
        return pairwise_distances(self.q[idx], self.r, self.r_sqnorm)

    def full(self) -> np.ndarray:
        """The whole matrix [n_query, n_ref] float32 (small problems only)."""
        return self.block(0, self.n_query)

    def similarity_block(self, lo: int, hi: int) -> np.ndarray:
        """Similarities (higher = more similar) of rows ``lo:hi`` [hi - lo, n_ref], float64.

        The cosine for unit vectors (descriptors: q.r; a unit-distance matrix: 1 - d^2/2), the
        imported S for similarity kinds; a generic distance is converted by the rule in the module
        docstring (scaled into [0, 2] if it exceeds it, then 1 - d^2/2).
        """
        if self.matrix is None and self.kind == "unit-euclidean":
            if self.sparse:
                return np.asarray((self.q[lo:hi] @ self._rt).toarray(), dtype=np.float64)
            return (self.q[lo:hi] @ self.r.T).astype(np.float64)
        if self.matrix is None:
            raise ConfigError(f"{self.what}: similarities need L2-normalised Euclidean descriptors (normalise=True, metric='euclidean')")
        if self.kind in ("cosine-similarity", "similarity"):
            return np.asarray(self.matrix[lo:hi], dtype=np.float64)
        d = self.block(lo, hi).astype(np.float64)
        if self.kind == "distance":
            self._warn_rule("similarity", self.similarity_note)
            if self._matrix_max() > 2.0:
                d *= 2.0 / self._matrix_max()
        return 1.0 - 0.5 * d * d

    def _matrix_max(self) -> float:
        if self._max is None:
            self._max = float(np.max(self.matrix))
        return self._max

    def _as_distance(self, m: np.ndarray) -> np.ndarray:
        """Rows of the imported matrix as distances float32 (see the module docstring)."""
        if self.kind == "cosine-similarity":
            return np.sqrt(np.maximum(2.0 - 2.0 * np.asarray(m, dtype=np.float64), 0.0)).astype(np.float32)
        if self.kind == "similarity":
            self._warn_rule("distance", self.distance_note)
            return (self._matrix_max() - np.asarray(m, dtype=np.float64)).astype(np.float32)
        return np.array(m, dtype=np.float32)


def split_distance_source(split: SplitData, normalise: bool = True, metric: str = "euclidean", memory_mb: float = 512.0) -> DistanceSource:
    """The single-image distances of a split: its imported matrix if it has one, else from descriptors.

    An imported ``SplitData.distances`` [nq, nr] takes precedence (it is what the dataset gives; its
    meaning is ``SplitData.distance_kind``, and ``metric`` does not apply to it: the source's
    ``metric`` is then None); otherwise both traverses need per-frame descriptors, compared by
    ``metric`` ("euclidean": L2-normalised when ``normalise``; "sad": as given, blocks within
    ``memory_mb``). Raises :class:`DataError` naming the split if neither is available.
    """
    what = f"dataset {split.dataset!r} split {split.split!r}"
    if split.distances is not None:
        src = DistanceSource(matrix=split.distances, what=what, kind=split.distance_kind)
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
    return DistanceSource(
        split.query.descriptors, split.reference.descriptors, normalise=normalise, what=what, metric=metric, memory_mb=memory_mb
    )


def split_distances(split: SplitData, normalise: bool = True) -> np.ndarray:
    """A split's full single-image distance matrix [nq, nr] float32 (imported, or from descriptors)."""
    return split_distance_source(split, normalise).full()
