"""Helpers shared by several test modules: fitting a method by name, recall of a ranking, dataset definition files."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vprbench.data.dataset import BenchmarkDataset, SplitData
from vprbench.metrics.recall import recall_at_n
from vprbench.plugins.api import Method, Ranking, RunContext
from vprbench.plugins.registry import Registry, default_registry

#: Hyperparameters that make a learned method train in well under a second on the toy datasets.
FAST: dict[str, int] = {"epochs": 2, "batch_size": 8}


def fit(name: str, ds: BenchmarkDataset, ctx: RunContext | None = None, registry: Registry | None = None, **params: Any) -> Method:
    """Method ``name`` (a spec; ``params`` may be strings, as the CLI passes them) fitted on ``ds``'s train / val splits."""
    m = (registry or default_registry()).create(name, **params)
    m.fit(ds.split("train"), ds.split("val") if "val" in ds.splits else None, ctx or RunContext())
    return m


def recall(split: SplitData, ranking: Ranking, n: int = 1) -> float:
    """Recall@n of ``ranking`` on ``split`` (queries without a positive excluded)."""
    gt = split.ground_truth
    return float(recall_at_n(gt.hits(ranking.indices[:, :n]), (n,), gt.has_positive)[n])


# ------------------------------------------------------------------------------ dataset definitions
def toml_value(v: Any) -> str:
    """``v`` as a TOML value: booleans, numbers, strings, arrays, inline tables for dicts."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)


def definition_text(loader: str, params: Mapping[str, Any] | None = None, *, name: str = "test-dataset", summary: str = "test definition",
                    top: Mapping[str, Any] | None = None, files: Sequence[Mapping[str, Any]] = ()) -> str:
    """The text of a dataset definition: top-level keys (``name``, ``loader``, ``summary``, ``top``),
    a ``[params]`` table (when ``params`` is given) and one ``[[files]]`` table per entry of ``files``."""
    lines = [f"{k} = {toml_value(v)}" for k, v in {**(top or {}), "name": name, "loader": loader, "summary": summary}.items()]
    if params is not None:
        lines += ["", "[params]", *(f"{k} = {toml_value(v)}" for k, v in params.items())]
    for entry in files:
        lines += ["", "[[files]]", *(f"{k} = {toml_value(v)}" for k, v in entry.items())]
    return "\n".join(lines) + "\n"


def write_definition(path: Path, loader: str, params: Mapping[str, Any] | None = None, *, name: str | None = None, **kw: Any) -> Path:
    """Write :func:`definition_text` to ``path`` (the dataset is named after the file unless ``name`` is given); return ``path``."""
    path.write_text(definition_text(loader, params, name=name or path.stem, **kw))
    return path
