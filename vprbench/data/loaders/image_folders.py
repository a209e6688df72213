"""Datasets made of folders of images: one folder per traverse, descriptors from a front-end.

Loader ``image-folders`` (params):

* ``root``: folder under the data directory holding one sub-folder per traverse.
* ``reference`` (traverse name) and ``queries`` (list of names; the first is the default).
* ``pattern``: glob for the images in each folder (default ``*.png``); files are ordered by name.
* ``alignment``: ``"frame"`` — every folder holds the same file names and the same name is the
  same place (positions = frame index, unit "frame"); or ``"csv"`` — ``positions = {traverse =
  "file.csv"}`` (paths relative to ``root``) with a header row and columns ``image`` plus ``x``,
  ``y`` (or ``frame``) and optionally ``timestamp``; the CSV's row order is the frame order.
* ``position_unit`` ("m" | "frame"), ``radius`` (in that unit), optional ``nontrivial_radius``,
  ``negative_radius``.
* ``splits``: ``{name = {reference = [a, b], query = [a, b]}}`` frame ranges or fractions
  (see :func:`vprbench.data.loaders.common.parse_splits`); default one ``test`` split over everything.
* ``extractor`` (``patchnorm`` | ``cnn`` | ``netvlad-checkpoint`` | ``precomputed``) and
  ``extractor_params``; ``precomputed`` reads ``descriptors = {traverse = "file.npy"}``.

Loader ``nordland-64x32``: the Nordland 64x32 release (``shared/data/nordland-64x32``), see
:func:`load_nordland_64x32` for the filtering rule and its counts."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.core.progress import progress_enabled
from vprbench.data.dataset import BenchmarkDataset
from vprbench.data.download import missing_files_error, require_data_dir
from vprbench.data.loaders.common import parse_splits
from vprbench.data.loaders.seqnet_files import load_descriptors
from vprbench.data.traverse import Traverse
from vprbench.features.cache import cached_descriptors
from vprbench.features.extractors import make_extractor

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")


def list_images(folder: Path, pattern: str = "*") -> list[Path]:
    """Image files in ``folder`` matching ``pattern``, sorted by name; DataError if none."""
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images matching {pattern!r}")
    return files


def read_positions_csv(path: Path, folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray | None]:
    """Images, positions [n, P] and timestamps [n] (or None) from a CSV with a header row.

    Columns: ``image`` (file name in ``folder``), then ``x`` and ``y`` (or a single ``frame``),
    optional ``timestamp``. DataError for missing columns, unknown images, NaN or non-numbers.
    """
    if not path.is_file():
        raise DataError(f"{path}: positions CSV not found")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(f"{path}: no rows (expected a header and one row per image)")
    cols = set(rows[0])
    if "image" not in cols:
        raise DataError(f"{path}: needs a column 'image' (found {sorted(cols)})")
    pos_cols = ["x", "y"] if {"x", "y"} <= cols else ["frame"] if "frame" in cols else None
    if pos_cols is None:
        raise DataError(f"{path}: needs position columns 'x' and 'y' (metres) or 'frame' (found {sorted(cols)})")
    try:
        pos = np.array([[float(r[c]) for c in pos_cols] for r in rows], dtype=np.float64)
        ts = np.array([float(r["timestamp"]) for r in rows]) if "timestamp" in cols else None
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: positions and timestamps must be numbers ({e})") from None
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        raise DataError(f"{path}: positions hold NaN or infinite values at rows {np.flatnonzero(bad)[:5].tolist()} (images {[rows[i]['image'] for i in np.flatnonzero(bad)[:3]]})")
    images = [folder / r["image"] for r in rows]
    missing = [p.name for p in images if not p.is_file()]
    if missing:
        raise DataError(f"{path}: {len(missing)} listed image(s) not found in {folder} (first: {missing[:3]})")
    return images, pos, ts


def _extract(definition: DatasetDefinition, data_dir: Path, traverse: str, paths: list[Path], progress: bool) -> np.ndarray:
    p = definition.params
    name = p.get("extractor", "patchnorm")
    eparams = dict(p.get("extractor_params", {}))
    if name == "precomputed":
        files = p.get("descriptors", {})
        if traverse not in files:
            raise ConfigError(f"dataset {definition.name!r}: extractor 'precomputed' needs descriptors = {{{traverse} = \"file.npy\"}}")
        return load_descriptors(data_dir / files[traverse], rows=len(paths), where=f"one row per image of traverse {traverse!r}, in file-name order")
    extractor = make_extractor(name, **eparams)
    return cached_descriptors(definition.name, traverse, extractor, paths, progress=progress)


def _names(definition: DatasetDefinition) -> tuple[str, list[str]]:
    p = definition.params
    ref = p.get("reference")
    queries = p.get("queries")
    if not isinstance(ref, str) or not isinstance(queries, list) or not queries or not all(isinstance(q, str) for q in queries):
        raise ConfigError(f"dataset definition {definition.source}: needs reference = \"folder\" and queries = [\"folder\", ...]")
    if ref in queries:
        raise ConfigError(f"dataset definition {definition.source}: reference {ref!r} is also listed as a query")
    return ref, queries


def load(definition: DatasetDefinition, data_dir: Path | None) -> BenchmarkDataset:
    """Loader ``image-folders`` (see the module docstring)."""
    data_dir = require_data_dir(definition, data_dir)
    p = definition.params
    root = data_dir / p.get("root", definition.name)
    ref_name, q_names = _names(definition)
    alignment = p.get("alignment", "frame")
    unit = p.get("position_unit", "frame" if alignment == "frame" else "m")
    missing = [f"{p.get('root', definition.name)}/{t}" for t in (ref_name, *q_names) if not (root / t).is_dir()]
    if missing:
        raise missing_files_error(definition, data_dir, missing)
    progress = progress_enabled(p.get("progress"))
    traverses: dict[str, Traverse] = {}
    if alignment == "frame":
        ref_files = list_images(root / ref_name, p.get("pattern", "*.png"))
        names = [f.name for f in ref_files]
        for t in q_names:
            other = [f.name for f in list_images(root / t, p.get("pattern", "*.png"))]
            if other != names:
                only = sorted(set(names) ^ set(other))[:3]
                raise DataError(
                    f"{root / t}: {len(other)} images but reference {ref_name!r} has {len(names)}; frame-aligned folders must hold "
                    f"the same file names (first differences: {only})"
                )
        for t in (ref_name, *q_names):
            paths = [root / t / n for n in names]
            traverses[t] = Traverse(t, np.arange(len(paths), dtype=np.float64), unit, _extract(definition, data_dir, t, paths, progress), tuple(paths))
    elif alignment == "csv":
        pos_files = p.get("positions")
        if not isinstance(pos_files, dict):
            raise ConfigError(f"dataset {definition.name!r}: alignment 'csv' needs positions = {{traverse = \"file.csv\"}}")
        for t in (ref_name, *q_names):
            if t not in pos_files:
                raise ConfigError(f"dataset {definition.name!r}: no positions CSV for traverse {t!r}")
            paths, pos, ts = read_positions_csv(root / pos_files[t], root / t)
            traverses[t] = Traverse(t, pos, unit, _extract(definition, data_dir, t, paths, progress), tuple(paths), ts)
    else:
        raise ConfigError(f"dataset {definition.name!r}: alignment must be 'frame' or 'csv', got {alignment!r}")
    ref = traverses[ref_name]
    n_q = min(len(traverses[q]) for q in q_names)
    radius = p.get("radius")
    if not isinstance(radius, (int, float)):
        raise ConfigError(f"dataset definition {definition.source}: needs a numeric 'radius' ({unit})")
    return BenchmarkDataset(
        name=definition.name,
        reference=ref,
        queries={q: traverses[q] for q in q_names},
        splits=parse_splits(p.get("splits"), len(ref), n_q, f"dataset {definition.name!r}"),
        radius=float(radius),
        nontrivial_radius=p.get("nontrivial_radius"),
        negative_radius=p.get("negative_radius"),
        description=definition.summary,
        meta={"loader": "image-folders", "extractor": p.get("extractor", "patchnorm"), "extractor_params": dict(p.get("extractor_params", {}))},
    )
