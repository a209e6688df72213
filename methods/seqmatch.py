"""Sequence matching over single-image distances ("NetVLAD + SeqMatch")."""

from __future__ import annotations

from vprbench.kernels import mask_queries, sequence_topk_from, split_distance_source, traverse_windows
from vprbench.method import Method, MethodInfo, Param, Ranking, RunContext, SplitData


class SeqMatch(Method):
    """Sequence-matching distance over single-image descriptors (SeqMatchNet's "SeqMatch").

    Garg & Milford, "SeqMatchNet: Contrastive learning with sequence matching for place
    recognition & relocalization", CoRL 2021. The distance between the query window at t and the
    reference window at s is the mean of the L aligned single-image Euclidean distances
    ("meanOfPairs"), or only the centre term ("centerOnly", offset L//2 of the window: the frame itself, except where a "shift" window was moved inward at a segment bound; also
    for even L, see :mod:`vprbench.data.windows`). Computed as one distance matrix per block of queries
    aggregated along diagonals (:func:`vprbench.matching.sequence.sequence_topk_from`), from descriptors or
    from the dataset's imported single-image distance matrix.

    Decisions where the sources are silent: descriptors are L2-normalised first (not rejected when
    not unit length); windows follow the run's boundary policy and never cross segment bounds;
    under "drop", references without a full window are never returned and queries without one
    get no match (-1).
    """

    info = MethodInfo(
        name="seqmatch",
        family="sequence-matching",
        summary="mean of aligned single-image distances over the window (NetVLAD + SeqMatch)",
        paper="Garg & Milford, SeqMatchNet, CoRL 2021",
        needs=("distances",),
        params={"variant": Param("meanOfPairs", "aggregate all L aligned pairs or the centre only", ("meanOfPairs", "centerOnly"))},
    )

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        q_starts, q_valid = traverse_windows(split.query, ctx.seq_len, ctx.boundary)
        r_starts, r_valid = traverse_windows(split.reference, ctx.seq_len, ctx.boundary)
        source = split_distance_source(split)
        ctx.notes["distance"] = source.distance_note
        with ctx.timings("match"):
            idx, dist = sequence_topk_from(
                source,
                q_starts,
                r_starts,
                ctx.seq_len,
                ctx.top_k,
                variant=self.params["variant"],
                memory_mb=ctx.memory_mb,
                r_valid=r_valid,
                progress=ctx.progress,
            )
        return Ranking(*mask_queries(idx, dist, q_valid))
