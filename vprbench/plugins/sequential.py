"""Base class of fixed-weight sequential descriptors (smoothing, delta): one vector per window."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from vprbench.data.dataset import SplitData
from vprbench.data.windows import traverse_windows
from vprbench.matching.descriptors import sequential_descriptor_topk
from vprbench.plugins.api import Method, Ranking, RunContext


class WindowWeightedDescriptor(Method):
    """A window's descriptor is the L2-normalised weighted sum of its L frame descriptors.

    Subclasses give the weights; references are ranked by nearest-neighbour search of the window
    descriptors. Windows follow the run's boundary policy; under "drop", references without a
    full window are not indexed and queries without one get no match (-1).
    """

    @staticmethod
    @abstractmethod
    def weights(seq_len: int) -> np.ndarray:
        """[L] float32 weights of the window's frames, first to last."""

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        qw = traverse_windows(split.query, ctx.seq_len, ctx.boundary)
        rw = traverse_windows(split.reference, ctx.seq_len, ctx.boundary)
        with ctx.timings("match"):
            idx, dist = sequential_descriptor_topk(
                split.query.descriptors, split.reference.descriptors, qw, rw, self.weights(ctx.seq_len), ctx.top_k
            )
        return Ranking(idx, dist)
