"""GRH: graph-based matching with hashing-based relocalisation (Vysotska & Stachniss, 2017)."""

from __future__ import annotations

from vprbench.kernels import DimensionHash, lazy_search
from vprbench.method import GRAPH_PARAMS, GraphMatcher, MethodInfo, Param


class GRH(GraphMatcher):
    """GISM's lazy search plus lost detection and hash-based relocalisation; one match per query.

    Vysotska & Stachniss, "Relocalization under substantial appearance changes using hashing",
    IROS 2017 workshop / released code vpr_relocalization. As :class:`GISM` (same node costs,
    expansion rule and hidden labels), plus: the matcher is lost at query 0 and whenever more than
    ``lostRatio`` of the last ``lostWindow`` path nodes are hidden (defaults 0.8 over 5, i.e. all
    5); the next query is then relocalised: the queue is cleared and the search continues from the
    lowest-cost candidate in that query's row proposed by the dimension hash
    (:class:`vprbench.matching.graph.DimensionHash`: min-max scale to 0..255, bit where >= 127,
    IDF-weighted inverted index, candidates >= min + 0.7 (max - min)), linked to the previous best.
    With no hash candidate the released code keeps the same reference (from the source at query
    0 every reference is a candidate).

    Decisions where the sources are silent: the hash needs per-frame descriptors; on datasets that
    carry only an imported distance matrix (or with ``hash=false``) every reference is a candidate,
    i.e. relocalisation jumps to the row's lowest-cost reference. Defaults as GISM (the sample
    configuration of the released GRH code uses nonMatchCost 3.7). Segment bounds and L unused.
    """

    info = MethodInfo(
        name="grh",
        family="sequence-matching",
        summary="graph-based online matching with lost detection and hash-based relocalisation (one match per query)",
        paper="Vysotska & Stachniss, Relocalization under substantial appearance changes using hashing, IROS 2017 Workshop",
        needs=("distances",),
        params={
            **GRAPH_PARAMS,
            "lostWindow": Param(5, "path nodes checked for the lost test", lo=1),
            "lostRatio": Param(0.8, "lost when the hidden fraction of those nodes exceeds this", lo=0.0, hi=1.0, hi_open=True),
            "hash": Param(True, "propose relocalisation candidates with the dimension hash (needs descriptors)"),
            "hashAccept": Param(0.7, "hash candidates score >= min + hashAccept (max - min)", lo=0.0, hi=1.0),
        },
        single_match=True,
        uses_sequences=False,
    )

    def search(self, costs, split, ctx):
        p = self.params
        hasher = qd = None
        if p["hash"] and split.query.descriptors is not None and split.reference.descriptors is not None:
            hasher = DimensionHash(split.reference.descriptors, p["hashAccept"])
            qd = split.query.descriptors
        return lazy_search(
            costs, p["fanOut"], p["expansionRate"], p["nonMatchCost"], relocalise=True,
            hasher=hasher, query_descriptors=qd, lost_window=p["lostWindow"], lost_ratio=p["lostRatio"],
        )
