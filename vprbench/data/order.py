"""Frame order: where consecutive frames are neighbours along the route, and warnings where they are not.

Every sequence method assumes that consecutive frames of a segment are consecutive places. Data
whose rows are sorted by something else (file names that start with coordinates, a shuffled
export) makes every sequence result meaningless without any error. The rule used throughout:

* the *step* of a frame is the Euclidean distance of its position to the previous frame's
  (metres or frames, whatever the traverse's unit), within a segment;
* the *median step* is the median of the non-zero steps (standing still is not a step); the
  *spacing* is the smaller of the median step and the median distance of a frame to its nearest
  other place (:func:`spacing`), because in shuffled data the steps themselves are long and
  their median says nothing;
* for breaking segments (:func:`segments_from_steps`) a step larger than ``factor`` x the
  spacing (default :data:`JUMP_FACTOR` = 10) is a *jump*: consecutive frames there are not
  neighbours. :func:`order_warning` checks recorded segments: a median step above ``factor`` x
  the nearest-place distance means a shuffled order, single steps above ``factor`` x the median
  step are gaps (metres only).

:func:`segments_from_steps` breaks segments at jumps (and at time gaps), for data whose drive
segments are not recorded; :func:`order_warning` reports jumps inside recorded segments, and
:func:`dataset_warnings` collects it for a dataset, with the other checks of data that is legal but
suspicious: positions in "metres" that look like degrees, identical or all-zero descriptors, and a
radius that makes every reference a positive of every query.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vprbench.data.arrays import is_sparse
from vprbench.data.traverse import Traverse, segment_bounds_from_ids

#: A step more than this many median steps long is a jump.
JUMP_FACTOR = 10.0


def steps(positions: np.ndarray) -> np.ndarray:
    """[n - 1] Euclidean distances between consecutive rows of ``positions`` [n, P]."""
    pos = np.asarray(positions, dtype=np.float64).reshape(len(positions), -1)
    return np.linalg.norm(np.diff(pos, axis=0), axis=1)


def median_step(step: np.ndarray) -> float:
    """Median of the non-zero ``step`` values (0.0 if every step is zero)."""
    moving = step[step > 0]
    return float(np.median(moving)) if moving.size else 0.0


def spacing(positions: np.ndarray, step: np.ndarray | None = None) -> float:
    """The typical distance between neighbouring places of a traverse (module docstring); 0.0 if all coincide.

    min(median non-zero step, median distance of each distinct position to its nearest other one).
    """
    st = steps(positions) if step is None else step
    med = median_step(st)
    near = nearest_spacing(positions)
    if near == 0:
        return med
    return min(med, near) if med > 0 else near


def segments_from_steps(
    positions: np.ndarray,
    timestamps: np.ndarray | None = None,
    factor: float = JUMP_FACTOR,
    max_time_gap: float | None = None,
) -> np.ndarray:
    """Per-frame [start, end) segment bounds [n, 2], broken where consecutive frames are not neighbours.

    A new segment starts at frame i when the step from frame i-1 exceeds ``factor`` x the
    :func:`spacing`, or, with ``timestamps`` [n] (seconds, in frame order), when the time gap exceeds
    ``max_time_gap`` seconds (default: ``factor`` x the median non-zero time step). ``factor``
    <= 0 disables the position rule.
    """
    n = len(positions)
    brk = np.zeros(max(n - 1, 0), dtype=bool)
    if n > 1 and factor > 0:
        st = steps(positions)
        scale = spacing(positions, st)
        if scale > 0:
            brk |= st > factor * scale
    if timestamps is not None and n > 1:
        dt = np.diff(np.asarray(timestamps, dtype=np.float64))
        gap = max_time_gap
        if gap is None:
            med_dt = median_step(np.abs(dt))
            gap = factor * med_dt if med_dt > 0 and factor > 0 else None
        if gap is not None:
            brk |= np.abs(dt) > gap
    return segment_bounds_from_ids(np.cumsum(np.concatenate([[True], brk])))


def nearest_spacing(positions: np.ndarray) -> float:
    """Median distance of each distinct position to its nearest other one (0.0 for fewer than two)."""
    from scipy.spatial import cKDTree

    pos = np.asarray(positions, dtype=np.float64).reshape(len(positions), -1)
    uniq = np.unique(pos, axis=0)
    if uniq.shape[0] < 2:
        return 0.0
    return float(np.median(cKDTree(uniq).query(uniq, k=2)[0][:, 1]))


def order_warning(traverse: Traverse, factor: float = JUMP_FACTOR) -> str | None:
    """A warning text if consecutive frames of ``traverse`` are not neighbours, else None.

    Two checks, within segments: *shuffled* — the median step exceeds ``factor`` x the median
    distance to the nearest other place (consecutive frames are typically not neighbours: a
    shuffled or coordinate-sorted order); *jumps* (positions in metres) — steps longer than
    ``factor`` x the median step (a gap the segments do not record). Jumps in frame indices are
    not reported: there a gap in the index usually means filtered frames (e.g. Nordland's
    stationary runs), not distance.
    """
    n = len(traverse)
    if n < 3:
        return None
    st = steps(traverse.positions)
    same = traverse.segment_bounds[1:, 0] == traverse.segment_bounds[:-1, 0]
    st = st[same]
    med = median_step(st)
    if med == 0:
        return None
    unit = "m" if traverse.position_unit == "m" else "frames"
    near = nearest_spacing(traverse.positions)
    if near > 0 and med > factor * near:
        return (
            f"traverse {traverse.name!r}: consecutive frames are typically {med:.3g} {unit} apart (median step within segments) "
            f"while the nearest other place is typically {near:.3g} {unit} away: the frames look shuffled or sorted by something "
            "other than drive order. Sequence methods assume consecutive frames are neighbours: check the frame order"
        )
    if traverse.position_unit != "m":
        return None
    jump = st > factor * med
    if not jump.any():
        return None
    pairs = np.flatnonzero(same)[jump]
    worst = pairs[np.argmax(st[jump])]
    return (
        f"traverse {traverse.name!r}: {int(jump.sum())} of {st.size} consecutive frame pairs within a segment are more than "
        f"{factor:g}x the median step ({med:.3g} {unit}) apart (largest: {float(np.max(st[jump])):.3g} {unit}, frames "
        f"{int(worst)}->{int(worst) + 1}); the segments may need breaking there (sequence windows bridge those gaps)"
    )


def degrees_warning(traverse: Traverse) -> str | None:
    """A warning text if positions in metres span less than 1 m over 10+ frames (degrees taken as metres?)."""
    if traverse.position_unit != "m" or len(traverse) < 10:
        return None
    pos = traverse.positions
    extent = float(np.max(pos.max(axis=0) - pos.min(axis=0)))
    if extent >= 1.0 or extent == 0.0 or np.abs(pos).max() > 180:
        return None
    return (
        f"traverse {traverse.name!r}: its {len(traverse)} positions (metres) span only {extent:.3g} m and lie within +-180: "
        "they look like latitude/longitude degrees; give them as lat,lon columns (converted to metres) or in metres"
    )


def descriptor_warning(traverse: Traverse, block: int = 4096) -> str | None:
    """A warning text if the traverse's descriptors are degenerate: all rows equal, or rows of zeros.

    Identical descriptors make every reference equally close to every query (rankings are ties
    broken by index); an all-zero row has no direction (cosine / normalised distances are
    undefined for it). Dense descriptors are scanned in blocks of ``block`` rows; sparse ones
    per column. None for traverses without descriptors.
    """
    x = traverse.descriptors
    if x is None or x.shape[0] == 0:
        return None
    n = x.shape[0]
    if is_sparse(x):
        a = abs(x)
        zero = np.asarray(a.max(axis=1).todense()).ravel() == 0
        constant = n > 1 and bool((np.asarray(x.max(axis=0).todense()) == np.asarray(x.min(axis=0).todense())).all())
    else:
        zero = np.zeros(n, dtype=bool)
        constant = n > 1
        first = np.asarray(x[0])
        for start in range(0, n, block):
            chunk = np.asarray(x[start : start + block])
            zero[start : start + chunk.shape[0]] = ~chunk.any(axis=1)
            constant = constant and not (chunk != first).any()
    if constant:
        return (
            f"traverse {traverse.name!r}: all {n} descriptors are identical (every row equals row 0): every reference is "
            "equally close to every query, so rankings are ties and Recall@N measures nothing; check the descriptor file"
        )
    if zero.any():
        rows = np.flatnonzero(zero)
        return (
            f"traverse {traverse.name!r}: {rows.size} of {n} descriptor rows are all zero (first rows: {rows[:5].tolist()}); "
            "a zero descriptor has no direction (cosine and normalised distances are undefined for it): frames that failed "
            "to encode? check the descriptor file"
        )
    return None


def radius_warning(reference: Traverse, queries: Iterable[Traverse], radius: float) -> str | None:
    """A warning text if ``radius`` makes every reference a positive of every query.

    The test is exact for 1-D positions and conservative otherwise: the radius reaches the
    farthest corner of the reference positions' bounding box from every query.
    """
    ref = reference.positions.reshape(len(reference), -1)
    if len(reference) < 2 or ref.shape[1] > 3:
        return None
    lo, hi = ref.min(axis=0), ref.max(axis=0)
    corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(ref.shape[1], -1).T  # [2^P, P]
    far = 0.0
    for q in queries:
        pos = q.positions.reshape(len(q), -1)
        far = max(far, float(np.linalg.norm(pos[:, None, :] - corners[None], axis=2).max()))
    if radius < far:
        return None
    unit = "m" if reference.position_unit == "m" else "frames"
    return (
        f"the localisation radius {radius:g} {unit} covers the whole map (no query is farther than {far:.4g} {unit} from any "
        "reference): every reference is a positive of every query and every method scores Recall@N = 1; check radius / "
        "tolerance and the position unit"
    )


def dataset_warnings(reference: Traverse, queries: Iterable[Traverse], factor: float = JUMP_FACTOR, radius: float | None = None) -> list[str]:
    """Warnings about the frame order, positions and descriptors of a dataset's traverses, and about
    a ``radius`` (None: explicit ground truth, not checked) covering the whole map (empty if none)."""
    queries = list(queries)
    out = []
    for t in (reference, *queries):
        for w in (order_warning(t, factor), degrees_warning(t), descriptor_warning(t)):
            if w:
                out.append(w)
    if radius is not None:
        w = radius_warning(reference, queries, radius)
        if w:
            out.append(w)
    return out


def fragmented_warning(traverse: Traverse, min_frames: int = 3, share: float = 0.2) -> str | None:
    """A warning text if more than ``share`` of the frames lie in segments shorter than ``min_frames``.

    For segments derived from the frame order (:func:`segments_from_steps`): many tiny segments
    mean consecutive frames are rarely neighbours, i.e. the order is not the drive's.
    """
    b = traverse.segment_bounds
    short = (b[:, 1] - b[:, 0]) < min_frames
    if short.mean() <= share:
        return None
    n_seg = np.unique(b[:, 0]).size
    return (
        f"traverse {traverse.name!r}: breaking segments where consecutive frames are not neighbours left {n_seg} segments, "
        f"{short.mean():.0%} of the frames in segments shorter than {min_frames}: the frame order does not follow the "
        "drive (names sorted by coordinates without timestamps? a shuffled export?); sequence methods get few windows"
    )
