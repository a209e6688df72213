"""GISM-DP: exact dynamic programming on GISM's data-association graph (not a published method)."""

from __future__ import annotations

from vprbench.dataset import SplitData
from vprbench.graph_search import GRAPH_PARAMS, CostRows, dp_search, graph_ranking_arrays
from vprbench.kernels import split_distance_source
from vprbench.method import Method, MethodInfo, Ranking, RunContext


class GISMDP(Method):
    """Exact online shortest paths on GISM's graph, one match per query (a reference variant).

    Same graph and node costs as :class:`GISM` (Vysotska & Stachniss, RA-L 2016) but without the
    lazy heuristic: acc(q, r) = c(q, r) + min over |r' - r| <= fanOut of acc(q-1, r'), and query q
    is matched to the first argmin_r acc(q, r) (the end of the cheapest path found so far, online).
    Hidden (-1) when that node's own cost exceeds nonMatchCost. It shows what the lazy search
    loses; it is not in the papers. Vectorised over references, one step per query.
    """

    info = MethodInfo(
        name="gism-dp",
        family="sequence-matching",
        summary="exact dynamic programming on GISM's graph (reference variant, one match per query)",
        paper="variant of Vysotska & Stachniss, RA-L 2016 (exact search instead of the lazy heuristic)",
        needs=("distances",),
        params={k: v for k, v in GRAPH_PARAMS.items() if k != "expansionRate"},  # exact search: no lazy rule
        single_match=True,
        uses_sequences=False,
    )

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        p = self.params
        with ctx.timings("match"):
            costs = CostRows(split_distance_source(split), p["similarity"], ctx.memory_mb)
            res = dp_search(costs, p["fanOut"], p["nonMatchCost"])
        return Ranking(*graph_ranking_arrays(res))
