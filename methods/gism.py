"""GISM: online graph-based image sequence matching (Vysotska & Stachniss, RA-L 2016)."""

from __future__ import annotations

from vprbench.kernels import lazy_search
from vprbench.method import GRAPH_PARAMS, GraphMatcher, MethodInfo


class GISM(GraphMatcher):
    """Lazy best-first search in the query x reference data-association graph, one match per query.

    Vysotska & Stachniss, "Lazy data association for image sequences matching under substantial
    appearance changes", RA-L 2016 (released code: online_place_recognition). Behaviour as in
    :func:`vprbench.matching.graph.lazy_search` (expansion rule, online output per query, hidden
    labels for node costs above ``nonMatchCost``); defaults fanOut 5, expansionRate 0.7,
    nonMatchCost 6.0.

    Decisions where the sources are silent:
    * Node cost = 1 / similarity, the similarity the released code reads: the cosine of the
      L2-normalised descriptors, or an imported similarity matrix as is (a cosine similarity, or
      a generic similarity: the released cost-matrix mode inverts whatever similarity it is
      given). An imported generic *distance* matrix is converted by a rule (1 - d^2/2 after
      scaling into [0, 2]) with a warning. ``ctx.notes["distance"]`` says which was used.
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

    def search(self, costs, split, ctx):
        p = self.params
        return lazy_search(costs, p["fanOut"], p["expansionRate"], p["nonMatchCost"])
