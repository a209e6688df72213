"""Base class of the graph matchers (gism, gism-dp, grh): node costs, one search, one match per query."""

from __future__ import annotations

from abc import abstractmethod

from vprbench.core.params import Param
from vprbench.data.dataset import SplitData
from vprbench.matching.distances import split_distance_source
from vprbench.matching.graph import SIMILARITIES, CostRows, GraphResult, graph_ranking_arrays
from vprbench.plugins.api import Method, Ranking, RunContext

#: Parameters shared by the graph matchers, with the released code's defaults.
GRAPH_PARAMS: dict[str, Param] = {
    "fanOut": Param(5, "children of (q, r) are (q+1, r-fanOut..r+fanOut)", lo=0),
    "expansionRate": Param(0.7, "weight of the lazy expansion rule", lo=0.0),
    "nonMatchCost": Param(6.0, "nodes with cost 1/similarity above this are hidden (no match)", lo=0.0),
    "similarity": Param("cosine", "similarity behind the node cost 1/s: raw cosine or (1+cos)/2", SIMILARITIES),
}


class GraphMatcher(Method):
    """A graph search over node costs 1 / similarity of the split's single-image distances.

    Subclasses implement :meth:`search`; :meth:`rank` builds the cost rows (in blocks within
    ``ctx.memory_mb``), runs it and returns one match per query (K = 1; -1 where hidden;
    distance = the matched node's cost, confidence = minus that cost).
    """

    @abstractmethod
    def search(self, costs: CostRows, split: SplitData, ctx: RunContext) -> GraphResult:
        """The search over ``costs`` (rows: queries, columns: references)."""

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        with ctx.timings("match"):
            costs = CostRows(split_distance_source(split), self.params["similarity"], ctx.memory_mb)
            result = self.search(costs, split, ctx)
        return Ranking(*graph_ranking_arrays(result))
