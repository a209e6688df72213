"""GISM: online graph-based image sequence matching (Vysotska & Stachniss, RA-L 2016)."""

from __future__ import annotations

from vprbench.dataset import SplitData
from vprbench.graph_search import GRAPH_PARAMS, CostRows, graph_ranking_arrays, lazy_search
from vprbench.kernels import split_distance_source
from vprbench.method import Method, MethodInfo, Ranking, RunContext



class GISM(Method):
    """Lazy best-first search in the query x reference data-association graph, one match per query.

    Vysotska & Stachniss, "Lazy data association for image sequences matching under substantial
    appearance changes", RA-L 2016 (released code: online_place_recognition). Behaviour as in
    :func:`vprbench.graph_search.lazy_search` (expansion rule, online output per query, hidden
    labels for node costs above ``nonMatchCost``); defaults fanOut 5, expansionRate 0.7,
    nonMatchCost 6.0.

    Decisions where the sources are silent:
    * Node cost = 1 / similarity with similarity = cosine 1 - d^2/2 of the L2-normalised
      descriptors (or of the imported distances, scaled to [0, 2] if they exceed it).
      ``similarity="cosine"`` is the released code (similarities below 1e-9 cost 1e12 instead of
      DBL_MAX); ``"shifted"`` maps to (1 + cos) / 2 in [0, 1] so every node cost is finite (note
      that nonMatchCost then has a different meaning: cost 6 is cos = -2/3).
    * Ties in the priority queue go to the node pushed first; the released code's order is
      unspecified there. If the frontier empties (the released code aborts) the best is expanded.
    * The graph spans the whole traverses: segment bounds and the sequence length are not used
      (uses_sequences=False); the window policy therefore does not apply.
    * Output: one reference per query (Ranking K = 1, -1 when hidden); distance = the matched node's
      cost; confidence = minus that cost.
    """

    info = MethodInfo(
        name="gism",
        family="sequence-matching",
        summary="graph-based online sequence matching, lazy best-first search (one match per query)",
        paper="Vysotska & Stachniss, Lazy data association for image sequences matching under substantial appearance changes, RA-L 2016",
        needs=("distances",),
        params=GRAPH_PARAMS,
        single_match=True,
        uses_sequences=False,
    )

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        p = self.params
        with ctx.timings("match"):
            costs = CostRows(split_distance_source(split), p["similarity"], ctx.memory_mb)
            res = lazy_search(costs, p["fanOut"], p["expansionRate"], p["nonMatchCost"])
        return Ranking(*graph_ranking_arrays(res))
