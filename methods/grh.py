"""GRH: graph-based matching with hashing-based relocalisation (Vysotska & Stachniss, 2017)."""

from __future__ import annotations

import dataclasses
import warnings

from vprbench.kernels import DimensionHash, lazy_search
from vprbench.method import GRAPH_PARAMS, GraphMatcher, MethodInfo, Param

#: Values of the preset-able parameters: no preset (the GISM defaults of online_place_recognition)
#: and ``released``, the sample configuration shipped with vpr_relocalization (examples/config_file.yaml).
GRH_PRESETS: dict[str | None, dict[str, object]] = {
    None: {"fanOut": 5, "expansionRate": 0.7, "nonMatchCost": 6.0},
    "released": {"fanOut": 5, "expansionRate": 0.7, "nonMatchCost": 3.7},
}


def _from_preset(p: Param) -> Param:
    return dataclasses.replace(p, default=None, type=type(p.default), optional=True, help=p.help + " (none: from the preset)")


class GRH(GraphMatcher):
    """GISM's lazy search plus lost detection and hash-based relocalisation; one match per query.

    Vysotska & Stachniss, "Relocalization under substantial appearance changes using hashing",
    IROS 2017 workshop / released code vpr_relocalization. As :class:`GISM` (same node costs
    1 / cosine similarity, expansion rule and hidden labels), plus: the matcher is lost at query 0
    and whenever more than ``lostRatio`` of the last ``lostWindow`` path nodes are hidden
    (defaults 0.8 over 5, i.e. all 5); the next query is then relocalised: the queue is cleared
    and the search continues from the lowest-cost candidate in that query's row proposed by the
    dimension hash (:class:`vprbench.matching.graph.DimensionHash`: min-max scale to 0..255, bit
    where >= 127, IDF-weighted inverted index, candidates >= min + 0.7 (max - min)), linked to the
    previous best. With no hash candidate the released code keeps the same reference (from the
    source at query 0 every reference is a candidate).

    Presets (``preset``; fanOut, expansionRate and nonMatchCost default to none = from the preset,
    an explicit value overrides it; the values used are ``self.resolved_params``):

    * none: fanOut 5, expansionRate 0.7, nonMatchCost 6.0 (the GISM defaults, so that gism and grh
      compare like for like).
    * ``released``: the sample configuration of vpr_relocalization (examples/config_file.yaml):
      fanOut 5, expansionRate 0.7, nonMatchCost 3.7. That file also names data files of its own
      sample (a precomputed hash table, which vprbench computes itself from the reference
      descriptors, and ``simPlaces``, pairs of reference frames its estimate_similar_places tool
      found alike, which add successors around similar places; vprbench has no similar places,
      which is what the released code does when the file is not given) and two settings that do
      not change the result (bufferSize: features kept in memory; querySize: the query count).

    Decisions where the sources are silent: the hash needs per-frame descriptors; on datasets that
    carry only an imported matrix (or with ``hash=false``) every reference is a candidate, i.e.
    relocalisation jumps to the row's lowest-cost reference; on an imported matrix this is
    announced by a warning and ``ctx.notes["relocalisation"]``. Segment bounds and L unused.
    """

    info = MethodInfo(
        name="grh",
        family="sequence-matching",
        summary="graph-based online matching with lost detection and hash-based relocalisation (one match per query)",
        paper="Vysotska & Stachniss, Relocalization under substantial appearance changes using hashing, IROS 2017 Workshop",
        needs=("distances",),
        params={
            "preset": Param(None, "released: vpr_relocalization's sample configuration (nonMatchCost 3.7); none: GISM defaults",
                            ("released",), type=str, optional=True),
            **{k: _from_preset(v) if k in GRH_PRESETS[None] else v for k, v in GRAPH_PARAMS.items()},
            "lostWindow": Param(5, "path nodes checked for the lost test", lo=1),
            "lostRatio": Param(0.8, "lost when the hidden fraction of those nodes exceeds this", lo=0.0, hi=1.0, hi_open=True),
            "hash": Param(True, "propose relocalisation candidates with the dimension hash (needs descriptors)"),
            "hashAccept": Param(0.7, "hash candidates score >= min + hashAccept (max - min)", lo=0.0, hi=1.0),
        },
        single_match=True,
        uses_sequences=False,
    )

    def check_params(self) -> None:
        p = self.params
        table = GRH_PRESETS[p["preset"]]
        self.resolved_params = {k: (table[k] if k in table and v is None else v) for k, v in p.items()}

    def search(self, costs, split, ctx):
        p = self.settings
        hasher = qd = None
        if p["hash"] and split.query.descriptors is not None and split.reference.descriptors is not None:
            hasher = DimensionHash(split.reference.descriptors, p["hashAccept"])
            qd = split.query.descriptors
            ctx.notes["relocalisation"] = "dimension hash of the per-frame descriptors proposes the candidates"
        elif p["hash"]:
            ctx.notes["relocalisation"] = "no per-frame descriptors for the hash: every reference is a relocalisation candidate"
            warnings.warn(
                f"method 'grh' on dataset {split.dataset!r}: the relocalisation hash needs per-frame descriptors, the dataset "
                "has only an imported matrix; relocalisation candidates are all references (the row's cheapest node)",
                stacklevel=2,
            )
        else:
            ctx.notes["relocalisation"] = "hash off: every reference is a relocalisation candidate"
        return lazy_search(
            costs, p["fanOut"], p["expansionRate"], p["nonMatchCost"], relocalise=True,
            hasher=hasher, query_descriptors=qd, lost_window=p["lostWindow"], lost_ratio=p["lostRatio"],
        )
