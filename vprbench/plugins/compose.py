"""Composition of a per-frame representation (a ``frontend``) with any method that takes one.

``gism[frontend=seqnet-s1]`` is :class:`Composed`: SeqNet S_1 is fitted on the training split (its
model is cached like any learned model), its per-frame outputs (:meth:`Method.encode`) replace the
descriptors of every split the matcher sees (training and evaluation), and the matcher runs on
them unchanged. Records and tables name the composition ``seqnet-s1+gism``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from vprbench.core.errors import ConfigError
from vprbench.data.dataset import SplitData
from vprbench.plugins.api import Method, MethodInfo, Ranking, RunContext
from vprbench.plugins.specs import format_spec


def check_frontend(frontend: Method, matcher: Method) -> None:
    """ConfigError naming both methods when ``frontend`` cannot serve ``matcher``."""
    if not frontend.info.provides_frontend:
        raise ConfigError(
            f"method {matcher.info.name!r}: frontend {frontend.label!r} provides no per-frame representation "
            "(frontends are methods with a per-frame model, e.g. seqnet-s1, seqmatchnet, netvlad-trained)"
        )
    if not matcher.info.accepts_frontend:
        raise ConfigError(f"method {matcher.info.name!r} does not take a frontend (it is not a training-free method on descriptors)")


class Composed(Method):
    """``frontend`` then ``matcher`` (see the module docstring). Created by the registry."""

    def __init__(self, frontend: Method, matcher: Method) -> None:  # noqa: D107 - not created by keyword parameters
        check_frontend(frontend, matcher)
        self.frontend, self.matcher = frontend, matcher
        m = matcher.info
        self.info = MethodInfo(
            name=f"{frontend.info.name}+{m.name}", family=m.family, summary=f"{frontend.info.name} per-frame outputs, then {m.name}",
            paper=m.paper, trains=frontend.info.trains or m.trains, needs=frontend.info.needs, params=m.params,
            single_match=m.single_match, uses_sequences=m.uses_sequences or frontend.info.uses_sequences,
            seeded=bool((frontend.info.seeded if frontend.info.seeded is not None else frontend.info.trains)
                        or (m.seeded if m.seeded is not None else m.trains)),
            accepts_frontend=False,
        )
        self.params = dict(matcher.params)
        self.stages = {"frontend": frontend, **{k: v for k, v in matcher.stages.items() if k != "frontend"}}
        self.code_class = type(matcher)
        self.resolved_params = {"frontend": {"method": frontend.info.name, **getattr(frontend, "resolved_params", frontend.params)},
                                **getattr(matcher, "resolved_params", {})}
        self.training_info: dict[str, Any] = {}

    def prepare(self, train: SplitData | None, ctx: RunContext) -> None:
        self.frontend.prepare(train if self.frontend.info.trains else None, ctx)
        self.matcher.prepare(train if self.matcher.info.trains else None, ctx)
        self.resolved_params = {"frontend": {"method": self.frontend.info.name,
                                             **getattr(self.frontend, "resolved_params", self.frontend.params)},
                                **getattr(self.matcher, "resolved_params", {})}

    @property
    def label(self) -> str:
        m = self.matcher
        changed = {}
        for key, value in m.params.items():
            if key == "frontend":
                continue
            default = m.info.params[key].default
            if key in m.stages:
                if m.stages[key].label != str(default):
                    changed[key] = m.stages[key].label
            elif value != default:
                changed[key] = value
        return f"{self.frontend.label}+{format_spec(m.info.name, changed)}"

    def _encode(self, split: SplitData | None, ctx: RunContext) -> SplitData | None:
        if split is None:
            return None
        with ctx.timings("encode"):
            q = np.ascontiguousarray(self.frontend.encode(split.query, ctx), dtype=np.float32)
            r = np.ascontiguousarray(self.frontend.encode(split.reference, ctx), dtype=np.float32)
        if q.shape[0] != len(split.query) or r.shape[0] != len(split.reference) or q.ndim != 2 or q.shape[1] != r.shape[1]:
            raise ConfigError(f"frontend {self.frontend.label!r} returned outputs of shapes {q.shape} / {r.shape} for traverses of "
                              f"{len(split.query)} / {len(split.reference)} frames; expected one row per frame")
        tag = f"frontend {self.frontend.label}"
        return replace(split, query=split.query.with_descriptors(q, tag), reference=split.reference.with_descriptors(r, tag), distances=None)

    def observe(self, split: SplitData) -> None:
        self.frontend.observe(split)

    def fit(self, train: SplitData, val: SplitData | None, ctx: RunContext) -> None:
        if self.frontend.info.trains:
            self.frontend.fit(train, val, ctx)
            self.training_info["frontend"] = getattr(self.frontend, "training_info", {})
            if isinstance(self.training_info["frontend"], dict):
                for key in ("device", "untrained"):
                    if key in self.training_info["frontend"]:
                        self.training_info[key] = self.training_info["frontend"][key]
        if self.matcher.info.trains:
            self.matcher.fit(self._encode(train, ctx), self._encode(val, ctx), ctx)
            self.training_info["matcher"] = getattr(self.matcher, "training_info", {})
        ctx_notes = getattr(ctx, "notes", None)
        if isinstance(ctx_notes, dict):
            ctx_notes["frontend"] = self.frontend.label

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        return self.matcher.rank(self._encode(split, ctx), ctx)

    def __getattr__(self, name: str) -> Any:  # e.g. score_candidates of a learned matcher
        if name in ("frontend", "matcher"):
            raise AttributeError(name)
        attr = getattr(self.matcher, name)
        if name == "score_candidates":
            return lambda split, ctx, candidates: attr(self._encode(split, ctx), ctx, candidates)
        return attr
