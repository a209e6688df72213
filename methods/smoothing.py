"""Smoothing: the mean of a window's descriptors as one sequential descriptor."""

from __future__ import annotations

import numpy as np

from vprbench.method import MethodInfo, WindowWeightedDescriptor


def smoothing_weights(seq_len: int) -> np.ndarray:
    """[L] weights 1/L (the mean; the scale is irrelevant after L2 normalisation)."""
    return np.full(seq_len, 1.0 / seq_len, dtype=np.float32)


class Smoothing(WindowWeightedDescriptor):
    """Sequential descriptor = L2-normalised mean of the window's L2-normalised frame descriptors.

    Garg & Milford, "SeqNet: Learning descriptors for sequence-based hierarchical place
    recognition", RA-L 2021 (the "Smoothing" baseline; also in SeqMatchNet, CoRL 2021). Each
    query/reference window (centred on its frame, see :mod:`vprbench.data.windows`) becomes one unit
    vector; references are ranked by Euclidean distance (exact faiss inner-product search).
    Decisions where the sources are silent: per-frame descriptors are normalised before averaging
    (the paper's NetVLAD descriptors already are); windows follow the run's boundary policy; under
    "drop", references without a full window are not indexed and queries without one get no
    match (-1). L = 1 is single-image retrieval.
    """

    info = MethodInfo(
        name="smoothing",
        family="sequential-descriptor",
        summary="mean of the window's descriptors, L2-normalised, then nearest neighbour",
        paper="Garg & Milford, SeqNet: Learning descriptors for sequence-based hierarchical place recognition, RA-L 2021",
        needs=("descriptors",),
    )

    weights = staticmethod(smoothing_weights)
