"""Delta: the difference of a window's later and earlier halves as one sequential descriptor."""

from __future__ import annotations

import numpy as np

from vprbench.method import MethodInfo, WindowWeightedDescriptor


def delta_weights(seq_len: int) -> np.ndarray:
    """[L] weights: -1/(L/2) on the first L//2 frames, +1/(L/2) on the rest (as SeqNet's code).

    >>> delta_weights(4).tolist()
    [-0.5, -0.5, 0.5, 0.5]
    """
    w = np.full(seq_len, 1.0 / (seq_len / 2.0), dtype=np.float32)
    w[: seq_len // 2] *= -1.0
    return w


class Delta(WindowWeightedDescriptor):
    """Delta descriptor: L2-normalised weighted sum with weights -1/(L/2) (first L//2 frames), +1/(L/2) (rest).

    Garg & Milford, "SeqNet: Learning descriptors for sequence-based hierarchical place
    recognition", RA-L 2021 (the "Delta" baseline, after "Delta descriptors", Garg et al., RA-L
    2020; also in SeqMatchNet, CoRL 2021). For even L this is the difference of the later and
    earlier halves' means; for odd L the later part has one frame more (the weights are those of the
    released code, not two means). References are ranked by Euclidean distance of the unit
    vectors (exact faiss inner-product search).
    Decisions where the sources are silent: per-frame descriptors are L2-normalised first; a
    window whose delta is zero (identical frames) stays the zero vector (distance sqrt(2) to every
    unit vector); L = 1 degenerates to the single frame (weight +2, as in the released code);
    boundary policy and "drop" handling as for smoothing.
    """

    info = MethodInfo(
        name="delta",
        family="sequential-descriptor",
        summary="difference of the window's later and earlier halves, L2-normalised, then nearest neighbour",
        paper="Garg, Harwood & Milford, Delta descriptors, RA-L 2020; as in Garg & Milford, SeqNet, RA-L 2021",
        needs=("descriptors",),
    )

    weights = staticmethod(delta_weights)
