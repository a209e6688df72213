"""Hierarchical VPR: shortlist with one method, re-rank the shortlist with another (SeqNet paper)."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np

from vprbench.method import ConfigError, Method, MethodInfo, MethodSpec, Param, Ranking, Registry, RunContext, SplitData, Stage

log = logging.getLogger("vprbench")


class HVPR(Method):
    """Hierarchical place recognition: a shortlist of K references per query, then re-ranking.

    Stage 1 ranks all references with the ``shortlister`` (default SeqNet S_5, ``seqnet``) and keeps
    the top ``shortlist_k`` (paper K = 20). Stage 2 re-orders that shortlist by the ``reranker``'s
    distance (default SeqMatch over S_1, ``seqnet-s1``; the seed paper's variant is
    ``reranker=seqmatchnet``). Any two registered methods compose by name. Re-rankers that expose
    ``score_candidates`` (the learned methods) score only the shortlist; any other re-ranker ranks
    all references and its distances are looked up (memory n_query x n_ref; fine for test splits).
    Shortlisted references the re-ranker cannot score (no window) go last. The returned list has
    min(top_k, shortlist_k) entries. Both stages use the run's seq_len and boundary. A stage is a
    full method spec with its own parameters, e.g.
    ``hvpr[shortlister=seqnet[pca_dim=0],reranker=seqnet-s1[pca_dim=0]]``, resolved in the run's
    registry (plugins compose like built-ins); ``preset`` is passed to every stage that has that
    parameter and does not set it itself.
    """

    info = MethodInfo(
        name="hvpr",
        family="hierarchical",
        summary="hierarchical: shortlist K references with one method (SeqNet S_5), re-rank with another (S_1 + SeqMatch)",
        paper="Garg & Milford, SeqNet: Learning descriptors for sequence-based hierarchical place recognition, RA-L 2021",
        trains=True,
        needs=("descriptors",),
        params={
            "shortlister": Param("seqnet", "method that shortlists references (a method spec)", type=Stage),
            "reranker": Param("seqnet-s1", "method that re-ranks the shortlist (a method spec)", type=Stage),
            "shortlist_k": Param(20, "references shortlisted per query (paper: 20)", lo=1),
            "preset": Param("cpu", "preset passed to learned stages that do not set one", ("cpu", "cpu-small", "cpu-medium", "cpu-large", "paper")),
        },
        smoke_params={"shortlister": "seqnet[epochs=2]", "reranker": "seqnet-s1[epochs=2]"},
    )

    def configure_stage(self, key: str, spec: MethodSpec, registry: Registry) -> MethodSpec:
        preset = registry.get(spec.name).info.params.get("preset")
        if preset is not None and "preset" not in spec.params and self.params["preset"] in (preset.choices or ()):
            return MethodSpec(spec.name, {**spec.params, "preset": self.params["preset"]})
        return spec

    def bind(self, registry: Registry) -> None:
        for stage, method in self.stages.items():
            if method.info.name == "hvpr":
                raise ConfigError(f"method 'hvpr': {stage} cannot be 'hvpr' itself")
        short, rerank = self.stages.get("shortlister"), self.stages.get("reranker")
        if short is not None and short.info.single_match:
            raise ConfigError(f"method 'hvpr': shortlister {short.label!r} returns one match per query (single_match), a "
                              "shortlist of one; the shortlister must rank the references (e.g. seqnet, smoothing, netvlad)")
        if rerank is not None and rerank.info.single_match:
            log.warning("hvpr: re-ranker %r returns one match per query: it moves that one candidate first, the rest of "
                        "the shortlist keeps its order", rerank.label)
        # trains (needs a training split, runs per seed) only when a stage does
        stages = list(self.stages.values())
        self.info = replace(type(self).info, trains=any(m.info.trains for m in stages),
                            seeded=any(m.info.depends_on_seed for m in stages))
        self.resolved_params = {
            stage: {"method": m.info.name, **getattr(m, "resolved_params", m.params)} for stage, m in self.stages.items()
        }
        self.training_info: dict[str, object] = {}

    def observe(self, split: SplitData) -> None:
        """Pass the evaluation split's reference map on to stages that use one (see TrainedSeqNetMethod.observe)."""
        for method in self.stages.values():
            if hasattr(method, "observe"):
                method.observe(split)

    def fit(self, train: SplitData, val: SplitData | None, ctx: RunContext) -> None:
        for stage, method in self.stages.items():
            if method.info.trains:
                method.fit(train, val, ctx)
                self.training_info[stage] = getattr(method, "training_info", {})
        # learned stages resolve preset=cpu by the training set's size in fit
        self.resolved_params = {
            stage: {"method": m.info.name, **getattr(m, "resolved_params", m.params)} for stage, m in self.stages.items()
        }

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        k = self.params["shortlist_k"]
        short = self.stages["shortlister"].rank(split, replace(ctx, top_k=k))
        cand = short.indices
        reranker = self.stages["reranker"]
        if hasattr(reranker, "score_candidates"):
            d = reranker.score_candidates(split, ctx, cand)
        else:
            full = reranker.rank(split, replace(ctx, top_k=len(split.reference)))
            dense = np.full((len(split.query), len(split.reference) + 1), np.inf, dtype=np.float32)
            rows = np.repeat(np.arange(len(split.query)), full.k)
            ok = full.indices.reshape(-1) >= 0
            dense[rows[ok], full.indices.reshape(-1)[ok]] = full.distances.reshape(-1)[ok]
            d = dense[np.arange(len(split.query))[:, None], np.where(cand >= 0, cand, len(split.reference))]
        d = np.where(cand >= 0, d, np.inf)
        # the project's tie rule among scored candidates (equal distances: ascending reference index);
        # candidates the re-ranker cannot score (inf) keep their shortlist order, padding (-1) last
        pos = np.arange(cand.shape[1])[None, :] + len(split.reference)
        order = np.lexsort((np.where(np.isfinite(d) & (cand >= 0), cand, pos), d), axis=1)
        idx = np.take_along_axis(cand, order, axis=1)
        dist = np.take_along_axis(d, order, axis=1)
        keep = min(ctx.top_k, cand.shape[1])
        return Ranking(idx[:, :keep], dist[:, :keep])
