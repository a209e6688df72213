"""Sequence matching over single-image distances ("NetVLAD + SeqMatch")."""

from __future__ import annotations

from vprbench.kernels import (
    REDUCERS,
    CandidateSearch,
    candidate_topk,
    mask_queries,
    sequence_topk_from,
    split_distance_source,
    traverse_windows,
)
from vprbench.method import ConfigError, Method, MethodInfo, Param, Ranking, RunContext, SplitData


class SeqMatch(Method):
    """Sequence-matching distance over single-image descriptors (SeqMatchNet's "SeqMatch").

    Garg & Milford, "SeqMatchNet: Contrastive learning with sequence matching for place
    recognition & relocalization", CoRL 2021. The distance between the query window at t and the
    reference window at s is the mean of the L aligned single-image Euclidean distances
    ("meanOfPairs"), or only the centre term ("centerOnly", offset L//2 of the window: the frame itself, except where a "shift" window was moved inward at a segment bound; also
    for even L, see :mod:`vprbench.data.windows`). Computed as one distance matrix per block of queries
    aggregated along diagonals (:func:`vprbench.matching.sequence.sequence_topk_from`), from descriptors or
    from the dataset's imported single-image distance matrix.

    ``search=ivf|hnsw`` is for maps too large for exhaustive matching
    (:mod:`vprbench.matching.candidates`): each query frame gets its ``per_frame_k`` nearest
    reference frames from a faiss IVF-Flat (``nlist``, ``nprobe``) or HNSW-Flat (``hnsw_m``,
    ``ef_search``, ``ef_construction``) index, and only reference windows proposed by at least
    ``min_votes`` offsets of the query window are scored (exactly). It needs per-frame descriptors,
    and may miss windows that no offset proposes; ``exact`` (the default) compares every pair.

    Decisions where the sources are silent: descriptors are L2-normalised first (not rejected when
    not unit length); windows follow the run's boundary policy and never cross segment bounds;
    under "drop", references without a full window are never returned and queries without one
    get no match (-1); the IVF training sample and k-means start come from the run's seed.
    """

    info = MethodInfo(
        name="seqmatch",
        family="sequence-matching",
        summary="mean of aligned single-image distances over the window (NetVLAD + SeqMatch)",
        paper="Garg & Milford, SeqMatchNet, CoRL 2021",
        needs=("distances",),
        params={
            "variant": Param("meanOfPairs", "aggregate all L aligned pairs or the centre only", ("meanOfPairs", "centerOnly")),
            "reducer": Param("mean", "how the L aligned distances become one: mean (the papers'), median, trimmed-mean (without "
                             "the largest and smallest), max", tuple(REDUCERS)),
            "search": Param("exact", "exhaustive matching, or candidate windows from a faiss index over reference frames", ("exact", "ivf", "hnsw")),
            "per_frame_k": Param(32, "candidate reference frames per query frame (K; search=ivf|hnsw)", lo=1, hi=4096),
            "min_votes": Param(1, "window offsets that must propose a reference window (1..L; search=ivf|hnsw)", lo=1),
            "nlist": Param(None, "IVF lists (none: sqrt of the reference frames; search=ivf)", type=int, lo=1, optional=True),
            "nprobe": Param(16, "IVF lists scanned per query frame (search=ivf)", lo=1),
            "hnsw_m": Param(32, "HNSW neighbours per node, M (search=hnsw)", lo=2, hi=256),
            "ef_search": Param(64, "HNSW search beam, efSearch (raised to per_frame_k if lower; search=hnsw)", lo=1),
            "ef_construction": Param(40, "HNSW construction beam, efConstruction (search=hnsw)", lo=1),
        },
    )

    def check_params(self) -> None:
        if self.params["reducer"] != "mean" and self.params["search"] != "exact":
            raise ConfigError("method 'seqmatch': reducer other than mean needs search=exact")
        p = self.params
        if p["nlist"] is not None and p["nprobe"] > p["nlist"]:
            raise ConfigError(f"method 'seqmatch': parameter 'nprobe' ({p['nprobe']}) must be <= 'nlist' ({p['nlist']})")

    def candidate_search(self, seed: int = 0) -> CandidateSearch:
        """The index settings of ``search=ivf|hnsw``."""
        p = self.params
        return CandidateSearch(
            kind=p["search"], k=p["per_frame_k"], nlist=p["nlist"], nprobe=p["nprobe"], hnsw_m=p["hnsw_m"],
            ef_search=p["ef_search"], ef_construction=p["ef_construction"], min_votes=p["min_votes"], seed=seed,
        )

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        if self.params["search"] != "exact" and self.params["min_votes"] > ctx.seq_len:
            raise ConfigError(
                f"method 'seqmatch': parameter 'min_votes' ({self.params['min_votes']}) must be <= the sequence length ({ctx.seq_len})"
            )
        q_starts, q_valid = traverse_windows(split.query, ctx.seq_len, ctx.boundary)
        r_starts, r_valid = traverse_windows(split.reference, ctx.seq_len, ctx.boundary)
        source = split_distance_source(split)
        ctx.notes["distance"] = source.distance_note
        with ctx.timings("match"):
            if self.params["search"] == "exact":
                idx, dist = sequence_topk_from(
                    source, q_starts, r_starts, ctx.seq_len, ctx.top_k, variant=self.params["variant"],
                    memory_mb=ctx.memory_mb, r_valid=r_valid, progress=ctx.progress, reducer=self.params["reducer"],
                )
            else:
                idx, dist = candidate_topk(
                    source, q_starts, r_starts, ctx.seq_len, ctx.top_k, self.candidate_search(ctx.seed),
                    variant=self.params["variant"], memory_mb=ctx.memory_mb, r_valid=r_valid, progress=ctx.progress,
                )
        return Ranking(*mask_queries(idx, dist, q_valid))
