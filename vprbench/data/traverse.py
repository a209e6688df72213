"""A traverse: one ordered drive along a route, with per-frame descriptors or images."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.arrays import is_sparse

PositionUnit = Literal["m", "frame"]

#: Largest dense copy of sparse descriptors (MiB) that :func:`dense_descriptors` makes; override
#: with $VPRBENCH_DENSE_LIMIT_MB.
DENSE_LIMIT_MB = 2048.0
DENSE_LIMIT_ENV = "VPRBENCH_DENSE_LIMIT_MB"
#: Largest descriptor magnitude accepted: squares and dot products of larger float32 values overflow
#: (float32 max ~3.4e38, and a D-dim dot product sums D such products), so every distance would be
#: inf or NaN. No real descriptor comes near this; such data has to be rescaled.
MAX_ABS_DESCRIPTOR = 1e15


def _check_magnitude(values: np.ndarray, what: str) -> None:
    if values.size and float(np.abs(values).max()) > MAX_ABS_DESCRIPTOR:
        raise DataError(f"{what}: descriptor values reach {float(np.abs(values).max()):.3g}; values above "
                        f"{MAX_ABS_DESCRIPTOR:g} overflow float32 distances: rescale the descriptors (e.g. L2-normalise them)")


def check_descriptors(x: np.ndarray, what: str) -> np.ndarray:
    """Validate a descriptor array [n, D] and return it as C-contiguous float32.

    Raises :class:`DataError` naming ``what`` for a wrong rank, an empty array or NaN/inf values.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(f"{what}: descriptors must be a 2-D array [frames, dim], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{what}: descriptor array is empty (shape {x.shape})")
    x = np.ascontiguousarray(x, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DataError(
            f"{what}: {rows.size} descriptor row(s) hold NaN or infinite values "
            f"(first rows: {rows[:5].tolist()}); expected finite float32 values"
        )
    _check_magnitude(x, what)
    return x


def check_sparse_descriptors(x: Any, what: str) -> Any:
    """Validate sparse descriptors [n, D] and return them as canonical scipy CSR float32.

    Duplicate entries are summed and column indices sorted; DataError for an empty matrix or
    NaN/inf stored values (implicit zeros are zeros).
    """
    from scipy.sparse import csr_matrix

    if x.ndim != 2 or 0 in x.shape:
        raise DataError(f"{what}: sparse descriptors must be a non-empty [frames, dim] matrix, got shape {x.shape}")
    x = csr_matrix(x, dtype=np.float32)
    x.sum_duplicates()
    x.sort_indices()
    if not np.isfinite(x.data).all():
        rows = np.unique(np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))[~np.isfinite(x.data)])
        raise DataError(f"{what}: {rows.size} sparse descriptor row(s) hold NaN or infinite values (first rows: {rows[:5].tolist()})")
    _check_magnitude(x.data, what)
    return x


def dense_limit_mb() -> float:
    """The dense-copy limit in MiB: $VPRBENCH_DENSE_LIMIT_MB or :data:`DENSE_LIMIT_MB`."""
    value = os.environ.get(DENSE_LIMIT_ENV)
    if not value:
        return DENSE_LIMIT_MB
    try:
        limit = float(value)
    except ValueError:
        limit = -1.0
    if not limit > 0:
        raise ConfigError(f"${DENSE_LIMIT_ENV} must be a positive number of MiB, got {value!r}")
    return limit


def dense_descriptors(x: Any, what: str = "descriptors", limit_mb: float | None = None) -> np.ndarray:
    """Descriptors as a dense float32 array [n, D]: dense input as is, sparse input densified.

    Densifying is refused with a DataError (before allocating) when the dense copy would exceed
    ``limit_mb`` MiB (default :func:`dense_limit_mb`); methods that only need single-image
    distances work on the sparse matrix itself (:class:`vprbench.matching.distances.DistanceSource`).
    """
    if not is_sparse(x):
        return np.asarray(x, dtype=np.float32)
    limit = dense_limit_mb() if limit_mb is None else limit_mb
    need = x.shape[0] * x.shape[1] * 4 / 2**20
    if need > limit:
        raise DataError(
            f"{what}: sparse descriptors [{x.shape[0]}, {x.shape[1]}] ({x.nnz} non-zeros) would take {need:.0f} MiB as a dense "
            f"float32 array, more than the limit of {limit:.0f} MiB; this method needs dense descriptors. Raise the limit with "
            f"${DENSE_LIMIT_ENV}, reduce the descriptors (e.g. PCA), or use a method that works on single-image distances "
            "(seqmatch, seqslam, gism, grh, netvlad on imported distances)"
        )
    return np.ascontiguousarray(x.toarray(), dtype=np.float32)


def segment_bounds_from_ids(segment_ids: np.ndarray) -> np.ndarray:
    """Per-frame [start, end) bounds [n, 2] from per-frame segment ids [n] (runs of equal ids)."""
    ids = np.asarray(segment_ids)
    n = ids.shape[0]
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [n]])
    lengths = ends - starts
    return np.stack([np.repeat(starts, lengths), np.repeat(ends, lengths)], axis=1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Traverse:
    """Ordered frames of one drive.

    Attributes:
        name: traverse name, e.g. ``"summer"``.
        positions: [n, P] float64 positions, metres (GPS/UTM) or frame index (frame-aligned data).
        position_unit: ``"m"`` or ``"frame"``.
        descriptors: [n, D] float32 single-image descriptors (a numpy array, or a scipy.sparse CSR
            matrix for sparse codes: distance kernels use it as is, dense consumers call
            :func:`dense_descriptors`), or None when the traverse is images (or when the dataset
            carries an imported single-image distance matrix instead).
        image_paths: n image files, or None.
        timestamps: [n] seconds, optional.
        segments: [n, 2] int64 per-frame [start, end) bounds of the frame's drive segment; frames
            of different segments never share a sequence window. None means one segment.
    """

    name: str
    positions: np.ndarray
    position_unit: PositionUnit = "m"
    descriptors: np.ndarray | None = None
    image_paths: tuple[Path, ...] | None = None
    timestamps: np.ndarray | None = None
    segments: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        what = f"traverse {self.name!r}"
        pos = np.asarray(self.positions, dtype=np.float64)
        if pos.ndim == 1:
            pos = pos[:, None]
        if pos.ndim != 2 or pos.shape[0] == 0:
            raise DataError(f"{what}: is empty or has positions of shape {pos.shape}; expected [frames, P] with frames > 0")
        if not np.isfinite(pos).all():
            rows = np.unique(np.nonzero(~np.isfinite(pos))[0])
            raise DataError(f"{what}: positions hold NaN or infinite values at frames {rows[:5].tolist()}")
        if self.position_unit not in ("m", "frame"):
            raise DataError(f"{what}: position_unit must be 'm' or 'frame', got {self.position_unit!r}")
        n = pos.shape[0]
        object.__setattr__(self, "positions", pos)
        if self.descriptors is not None:
            desc = check_sparse_descriptors(self.descriptors, what) if is_sparse(self.descriptors) else check_descriptors(self.descriptors, what)
            if desc.shape[0] != n:
                raise DataError(f"{what}: {desc.shape[0]} descriptor rows but {n} positions; expected one row per frame")
            object.__setattr__(self, "descriptors", desc)
        if self.image_paths is not None:
            paths = tuple(Path(p) for p in self.image_paths)
            if len(paths) != n:
                raise DataError(f"{what}: {len(paths)} image paths but {n} positions; expected one image per frame")
            object.__setattr__(self, "image_paths", paths)
        if self.timestamps is not None:
            ts = np.asarray(self.timestamps, dtype=np.float64).reshape(-1)
            if ts.shape[0] != n:
                raise DataError(f"{what}: {ts.shape[0]} timestamps but {n} frames")
            object.__setattr__(self, "timestamps", ts)
        if self.segments is not None:
            seg = np.asarray(self.segments, dtype=np.int64)
            if seg.shape != (n, 2):
                raise DataError(f"{what}: segments must be [frames, 2] [start, end) bounds, got shape {seg.shape} for {n} frames")
            idx = np.arange(n)
            if not ((seg[:, 0] <= idx) & (idx < seg[:, 1]) & (seg[:, 0] >= 0) & (seg[:, 1] <= n)).all():
                bad = np.flatnonzero(~((seg[:, 0] <= idx) & (idx < seg[:, 1])))
                raise DataError(f"{what}: segment bounds must satisfy start <= frame < end <= {n}; violated at frames {bad[:5].tolist()}")
            object.__setattr__(self, "segments", seg)

    def __len__(self) -> int:
        return int(self.positions.shape[0])

    @property
    def dim(self) -> int:
        """Descriptor dimension D (error if the traverse only has images)."""
        if self.descriptors is None:
            raise DataError(
                f"traverse {self.name!r} has no per-frame descriptors (images only, or an imported distance "
                "matrix); extract descriptors first or use a method that needs only single-image distances"
            )
        return int(self.descriptors.shape[1])

    @property
    def sparse(self) -> bool:
        """True when the descriptors are a scipy.sparse matrix."""
        return is_sparse(self.descriptors)

    @property
    def segment_bounds(self) -> np.ndarray:
        """[n, 2] per-frame [start, end) segment bounds (one segment if none were given)."""
        if self.segments is not None:
            return self.segments
        n = len(self)
        return np.tile(np.array([[0, n]], dtype=np.int64), (n, 1))

    def update_hash(self, h: Any) -> None:
        """Feed everything results depend on (name, positions, segments, timestamps, descriptors,
        image paths) into the hash object ``h``; used by dataset fingerprints and model cache keys."""
        h.update(self.name.encode())
        h.update(np.ascontiguousarray(self.positions).tobytes())
        h.update(np.ascontiguousarray(self.segment_bounds).tobytes())
        if self.timestamps is not None:
            h.update(np.ascontiguousarray(self.timestamps).tobytes())
        if is_sparse(self.descriptors):
            x = self.descriptors
            h.update(repr(("csr", x.shape)).encode() + x.indptr.tobytes() + x.indices.tobytes() + x.data.tobytes())
        elif self.descriptors is not None:
            h.update(self.descriptors.tobytes())
        if self.image_paths is not None:
            h.update("\n".join(map(str, self.image_paths)).encode())

    def subset(self, indices: np.ndarray, name: str | None = None) -> Traverse:
        """Frames ``indices`` (ascending) as a new traverse.

        Segments are kept, and additionally broken wherever the selected indices are not
        consecutive, so that no sequence window bridges a gap in the selection.
        """
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1 or idx.size == 0:
            raise DataError(f"traverse {self.name!r}: subset needs a non-empty 1-D index array")
        if (np.diff(idx) <= 0).any():
            raise DataError(f"traverse {self.name!r}: subset indices must be strictly increasing")
        if idx[0] < 0 or idx[-1] >= len(self):
            raise DataError(f"traverse {self.name!r}: subset indices out of range 0..{len(self) - 1}")
        old_seg_start = self.segment_bounds[idx, 0]
        gap = np.concatenate([[True], (np.diff(idx) != 1) | (old_seg_start[1:] != old_seg_start[:-1])])
        seg_ids = np.cumsum(gap)
        return replace(
            self,
            name=name or self.name,
            positions=self.positions[idx],
            descriptors=None if self.descriptors is None else self.descriptors[idx],
            image_paths=None if self.image_paths is None else tuple(self.image_paths[i] for i in idx),
            timestamps=None if self.timestamps is None else self.timestamps[idx],
            segments=segment_bounds_from_ids(seg_ids),
            meta={**self.meta, "source_indices": idx},
        )

    def with_descriptors(self, descriptors: np.ndarray, tag: str | None = None) -> Traverse:
        """The same frames with other per-frame descriptors (e.g. extracted or learned)."""
        meta = dict(self.meta)
        if tag:
            meta["descriptor_tag"] = tag
        return replace(self, descriptors=descriptors, meta=meta)
