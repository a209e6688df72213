"""Base class of the graph matchers (gism, gism-dp, grh): node costs, one search, one match per query."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from vprbench.core.params import Param
from vprbench.data.dataset import SplitData
from vprbench.matching.distances import DistanceSource, split_distance_source
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
    """A graph search over node costs 1 / similarity of the split's single-image similarities.

    Subclasses implement :meth:`search`; :meth:`rank` builds the cost rows (in blocks within
    ``ctx.memory_mb``), runs it and returns one match per query (K = 1; -1 where hidden;
    distance = the matched node's cost, confidence = minus that cost). The similarity is the one
    the released code uses: the cosine of the L2-normalised descriptors, or an imported
    similarity matrix as is (cosine or generic); an imported generic *distance* matrix has no
    such similarity and is converted by a rule (the distance source warns). ``ctx.notes["distance"]``
    records which definition was used. Parameters are read from ``self.resolved_params`` when a
    subclass resolves presets, else from ``self.params``.
    """

    @property
    def settings(self) -> dict[str, Any]:
        """The parameter values the search uses (presets resolved)."""
        return getattr(self, "resolved_params", self.params)

    @abstractmethod
    def search(self, costs: CostRows, split: SplitData, ctx: RunContext) -> GraphResult:
        """The search over ``costs`` (rows: queries, columns: references)."""

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        with ctx.timings("match"):
            src = split_distance_source(split)
            self.note_similarity(src, ctx)
            costs = CostRows(src, self.settings["similarity"], ctx.memory_mb)
            result = self.search(costs, split, ctx)
        return Ranking(*graph_ranking_arrays(result))

    def note_similarity(self, src: DistanceSource, ctx: RunContext) -> None:
        """Record the similarity definition in ``ctx.notes`` (the source warns where it is a stand-in)."""
        shifted = " mapped to (1 + s)/2" if self.settings["similarity"] == "shifted" else ""
        ctx.notes["distance"] = f"similarity s: {src.similarity_note}{shifted}; node cost 1/s"
