"""GISM-DP: exact dynamic programming on GISM's data-association graph (not a published method)."""

from __future__ import annotations

from vprbench.kernels import dp_search
from vprbench.method import GRAPH_PARAMS, GraphMatcher, MethodInfo


class GISMDP(GraphMatcher):
    """Exact online shortest paths on GISM's graph, one match per query (a reference variant).

    Same graph and node costs as :class:`GISM` (Vysotska & Stachniss, RA-L 2016) but without the
    lazy heuristic: acc(q, r) = c(q, r) + min over |r' - r| <= fanOut of acc(q-1, r'), and query q
    is matched to the first argmin_r acc(q, r) (the end of the cheapest path found so far, online).
    Node costs (and the similarity behind them, per matrix kind) as GISM.
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

    def search(self, costs, split, ctx):
        return dp_search(costs, self.params["fanOut"], self.params["nonMatchCost"])
