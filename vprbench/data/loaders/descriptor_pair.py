"""Loader ``descriptor-pair``: two user-supplied descriptor arrays with positions (e.g. Brisbane day/night)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vprbench.core.errors import ConfigError
from vprbench.data.dataset import BenchmarkDataset
from vprbench.data.download import require_data_dir
from vprbench.data.loaders.common import (
    RADIUS_PARAMS,
    ROW,
    _check_files,
    _param,
    evaluation_radius,
    loader_params,
    parse_splits,
    positions_key,
    read_descriptor_file,
    side_positions,
    training_radii,
)
from vprbench.data.positions import Positions, to_metres
from vprbench.data.traverse import Traverse

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition

SIDES = ("reference", "query")


def needed_files(definition: DatasetDefinition) -> list[str]:
    """The files this loader reads (relative to the data directory)."""
    p = definition.params
    out = []
    for side in SIDES:
        out.append(_param(definition, f"{side}_descriptors"))
        value = p.get(positions_key(definition, side))
        if value != ROW:
            out.append(value)
    return out


@loader_params(
    "reference_descriptors", "query_descriptors", "reference_key", "query_key", "descriptor_layout", "dim",
    "reference_positions", "query_positions", "positions", "position_unit", *RADIUS_PARAMS, "splits", "reference", "query",
)
def load_descriptor_pair(definition: DatasetDefinition, data_dir: Path | None) -> BenchmarkDataset:
    """Loader ``descriptor-pair``: two descriptor arrays with positions (user-supplied).

    Params (paths relative to the data directory):

    * ``reference_descriptors``, ``query_descriptors``: ``.npy`` [n, D], ``.npz`` or MATLAB ``.mat``
      (v5; v7.3 with h5py), dense or sparse (sparse stays sparse). ``reference_key`` /
      ``query_key``: the variable inside a ``.npz`` / ``.mat`` (default: its only variable);
      ``descriptor_layout`` = "rows" (default) or "columns" (MATLAB's [D, frames]); ``dim``.
    * ``reference_positions``, ``query_positions`` (or ``positions`` for both): a ``.npy`` [n, P] or a
      CSV with named columns (:mod:`vprbench.data.positions`: x,y / east,north / utm_e,utm_n metres,
      lat,lon degrees, frame; optional image, timestamp), or ``"row"``: frame-aligned traverses, the
      row index is the position (unit "frame").
    * ``position_unit`` ("m" | "frame"; default from the columns, "m" for ``.npy``), ``radius`` (in
      that unit) or ``tolerance`` (frames: ``|i - j| <= tolerance``); ``nontrivial_radius``,
      ``negative_radius`` (or ``*_tolerance``), derived with a note when a ``train`` split lacks them
      (:func:`vprbench.data.loaders.common.training_radii`).
    * ``splits`` (see :func:`parse_splits`), ``reference`` / ``query`` traverse names.
    """
    data_dir = require_data_dir(definition, data_dir)
    p = definition.params
    keys = [f"{side}_descriptors" for side in SIDES]
    for k in keys:
        _param(definition, k)
    _check_files(definition, data_dir, needed_files(definition))
    positions: dict[str, Positions | None] = {}
    for side in SIDES:  # files first, so that the row count checks the descriptors' orientation
        key = positions_key(definition, side)
        positions[side] = None if p[key] == ROW else side_positions(definition, data_dir, side, None)
    files = [t for t in positions.values() if t is not None]
    projected, note = to_metres(files)
    by_id = {id(a): b for a, b in zip(files, projected)}
    descs, tables = {}, {}
    for side in SIDES:
        pos = positions[side]
        descs[side] = read_descriptor_file(definition, data_dir, f"{side}_descriptors", None if pos is None else len(pos), f"{side}_key")
        tables[side] = by_id[id(pos)] if pos is not None else side_positions(definition, data_dir, side, descs[side].shape[0])
    units = {t.unit for t in tables.values()}
    if len(units) != 1:
        raise ConfigError(f"dataset definition {definition.source}: reference positions are in {tables['reference'].unit!r}, query positions in {tables['query'].unit!r}")
    unit = units.pop()
    traverses = []
    for side in SIDES:
        t = tables[side]
        meta = {"descriptor_file": p[f"{side}_descriptors"]}
        if t.images is not None:
            meta["image_names"] = list(t.images)
        traverses.append(
            Traverse(name=p.get(side, side), positions=t.values, position_unit=unit, descriptors=descs[side], timestamps=t.timestamps, meta=meta)
        )
    reference, query = traverses
    warnings: list[str] = []
    splits = parse_splits(p.get("splits"), len(reference), len(query), f"dataset {definition.name!r}", warnings)
    radius = evaluation_radius(definition, unit)
    nontrivial, negative, notes = training_radii(definition, radius, unit, splits)
    if note:
        notes.append(note)
    return BenchmarkDataset(
        name=definition.name,
        reference=reference,
        queries={query.name: query},
        splits=splits,
        radius=radius,
        nontrivial_radius=nontrivial,
        negative_radius=negative,
        description=definition.summary,
        meta={"loader": "descriptor-pair", "notes": notes, "warnings": warnings},
    )

