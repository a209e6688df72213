"""Loader ``descriptor-pair``: two user-supplied descriptor arrays with positions (e.g. Brisbane day/night)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vprbench.data.dataset import BenchmarkDataset
from vprbench.data.download import require_data_dir
from vprbench.data.loaders.common import _check_files, _param, _where, load_positions, parse_splits
from vprbench.data.loaders.seqnet_files import load_descriptors
from vprbench.data.traverse import Traverse

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition


def load_descriptor_pair(definition: DatasetDefinition, data_dir: Path | None) -> BenchmarkDataset:
    """Loader ``descriptor-pair``: two descriptor arrays with positions (user-supplied).

    Params: ``reference_descriptors``, ``query_descriptors`` (.npy [n, D]), ``reference_positions``,
    ``query_positions`` (.npy or .csv [n, P]), ``position_unit`` ("m" | "frame"), ``radius``,
    optional ``nontrivial_radius``, ``negative_radius``, ``splits`` (see :func:`parse_splits`),
    ``reference`` / ``query`` traverse names. Paths are relative to the data directory.
    """
    data_dir = require_data_dir(definition, data_dir)
    p = definition.params
    keys = ["reference_descriptors", "query_descriptors", "reference_positions", "query_positions"]
    for k in keys:
        _param(definition, k)
    _check_files(definition, data_dir, [p[k] for k in keys])
    unit = p.get("position_unit", "m")
    traverses = []
    for side in ("reference", "query"):
        rel = p[f"{side}_descriptors"]
        desc = load_descriptors(data_dir / rel, dim=p.get("dim"), where=_where(definition, rel))
        pos = load_positions(data_dir / p[f"{side}_positions"], desc.shape[0])
        traverses.append(Traverse(name=p.get(side, side), positions=pos, position_unit=unit, descriptors=desc, meta={"descriptor_file": rel}))
    reference, query = traverses
    return BenchmarkDataset(
        name=definition.name,
        reference=reference,
        queries={query.name: query},
        splits=parse_splits(p.get("splits"), len(reference), len(query), f"dataset {definition.name!r}"),
        radius=float(_param(definition, "radius", (int, float))),
        nontrivial_radius=p.get("nontrivial_radius"),
        negative_radius=p.get("negative_radius"),
        description=definition.summary,
        meta={"loader": "descriptor-pair"},
    )
