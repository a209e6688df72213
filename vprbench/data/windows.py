"""Sequence windows of length L centred on frames, honouring segment bounds.

A window centred on frame t covers ``t - L//2 .. t + L - L//2 - 1``: for odd L the centre is
the middle frame; for even L, ``L//2`` frames precede the centre and ``L//2 - 1`` follow it.
A window never crosses a segment bound. Two boundary policies, as in the released SeqNet/SeqMatchNet code:

* ``"shift"`` (their test time): a window that would cross a bound is shifted inward so it keeps
  L frames; the frame keeps its own index for ground truth.
* ``"drop"`` (their training time): frames whose centred window would cross a bound get no window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from vprbench.core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from vprbench.data.traverse import Traverse

BoundaryPolicy = Literal["shift", "drop"]
BOUNDARY_POLICIES: tuple[str, ...] = ("shift", "drop")


def check_seq_len(seq_len: int, segments: np.ndarray | None = None, what: str = "traverse") -> int:
    """Validate a sequence length against per-frame segment bounds [n, 2]; return it as int."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)):
        raise ConfigError(f"seq_len must be an integer >= 1, got {seq_len!r}")
    if seq_len < 1:
        raise ConfigError(f"seq_len must be >= 1, got {seq_len}")
    if segments is not None:
        longest = int((segments[:, 1] - segments[:, 0]).max())
        if seq_len > longest:
            raise DataError(
                f"{what}: sequence length {seq_len} is longer than its longest segment ({longest} frames); "
                f"use --seq-len <= {longest}"
            )
    return int(seq_len)


def window_starts(segments: np.ndarray, seq_len: int, policy: BoundaryPolicy = "shift") -> tuple[np.ndarray, np.ndarray]:
    """First frame of each frame's window.

    Args:
        segments: [n, 2] per-frame [start, end) segment bounds.
        seq_len: window length L (frames).
        policy: ``"shift"`` or ``"drop"``.

    Returns:
        starts: [n] int64 first frame of each frame's window (meaningless where not valid, but
            always inside the traverse when L <= n).
        valid: [n] bool, False for frames that get no window: under ``"drop"`` those whose centred
            window crosses a bound; under either policy those in a segment shorter than L.

    >>> s, v = window_starts(np.array([[0, 6]] * 6), 3, "shift")
    >>> s.tolist(), bool(v.all())
    ([0, 0, 1, 2, 3, 3], True)
    """
    if policy not in BOUNDARY_POLICIES:
        raise ConfigError(f"boundary policy must be one of {BOUNDARY_POLICIES}, got {policy!r}")
    seq_len = check_seq_len(seq_len)
    seg = np.asarray(segments, dtype=np.int64)
    n = seg.shape[0]
    t = np.arange(n, dtype=np.int64)
    centred = t - seq_len // 2
    long_enough = (seg[:, 1] - seg[:, 0]) >= seq_len
    if policy == "shift":
        starts = np.clip(centred, seg[:, 0], np.maximum(seg[:, 1] - seq_len, seg[:, 0]))
        valid = long_enough
    else:
        valid = (centred >= seg[:, 0]) & (centred + seq_len <= seg[:, 1]) & long_enough
        starts = np.where(valid, centred, seg[:, 0])
    # frames without a valid window still get one inside the traverse (a short last segment would
    # otherwise start a window that runs past the end), so kernels can treat every row alike
    return np.where(valid, starts, np.clip(starts, 0, max(n - seq_len, 0))), valid


def window_indices(starts: np.ndarray, seq_len: int) -> np.ndarray:
    """[n, L] frame indices of each window from its first frame [n]."""
    return np.asarray(starts, dtype=np.int64)[:, None] + np.arange(seq_len, dtype=np.int64)[None, :]


def gather_windows(descriptors: np.ndarray, starts: np.ndarray, seq_len: int) -> np.ndarray:
    """[n, L, D] descriptors of each window, from descriptors [N, D] and window starts [n]."""
    if descriptors.shape[0] == 0:
        raise DataError("cannot build sequence windows over an empty traverse")
    return descriptors[window_indices(starts, seq_len)]


def traverse_windows(traverse: Traverse, seq_len: int, policy: BoundaryPolicy = "shift") -> tuple[np.ndarray, np.ndarray]:
    """Window starts [n] and validity [n] for every frame of ``traverse`` (see :func:`window_starts`).

    Raises :class:`DataError` naming the traverse if L is longer than its longest segment.
    """
    segments = traverse.segment_bounds
    check_seq_len(seq_len, segments, what=f"traverse {traverse.name!r}")
    return window_starts(segments, seq_len, policy)
