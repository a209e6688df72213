"""Single-image nearest-neighbour retrieval over the dataset's per-frame descriptors."""

from __future__ import annotations

from vprbench.kernels import nearest_neighbours, split_distance_source, topk_from
from vprbench.method import Method, MethodInfo, Ranking, RunContext, SplitData


class NetVLAD(Method):
    """Single-image baseline ("NetVLAD" row of the SeqMatchNet paper's tables).

    Arandjelovic et al., "NetVLAD: CNN architecture for weakly supervised place recognition",
    CVPR 2016. Ranks reference frames by the Euclidean distance of L2-normalised per-frame
    descriptors, exact search with a faiss flat inner-product index. On datasets given as
    descriptors these are the published NetVLAD descriptors; otherwise whatever per-frame
    descriptors the dataset provides. Descriptors that are not unit length are normalised
    (not rejected): the paper's descriptors are unit length and the metric assumes it.
    On a dataset that carries an imported single-image distance matrix (``SplitData.distances``)
    that matrix is ranked instead (blocked top-K within ``ctx.memory_mb``); ties go to the lower
    reference index there (faiss's tie order is its own but deterministic).
    The sequence length does not change the ranking; with the "drop" boundary policy the set
    of evaluated queries still follows L so that every method is scored on the same queries.
    """

    info = MethodInfo(
        name="netvlad",
        family="single-image",
        summary="single-image nearest neighbour over per-frame descriptors (exact, faiss)",
        paper="Arandjelovic et al., NetVLAD: CNN architecture for weakly supervised place recognition, CVPR 2016",
        needs=("distances",),
        uses_sequences=False,
    )

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        with ctx.timings("match"):
            if split.distances is None and split.query.descriptors is not None and split.reference.descriptors is not None:
                idx, dist = nearest_neighbours(split.query.descriptors, split.reference.descriptors, ctx.top_k)
            else:
                source = split_distance_source(split)
                ctx.notes["distance"] = source.distance_note
                idx, dist = topk_from(source, ctx.top_k, memory_mb=ctx.memory_mb)
        return Ranking(idx, dist)
