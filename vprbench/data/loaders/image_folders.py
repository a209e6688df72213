"""Datasets made of folders of images: one folder per traverse, descriptors from a front-end.

Loader ``image-folders`` (params):

* ``root``: folder under the data directory holding one sub-folder per traverse.
* ``reference`` (traverse name) and ``queries`` (list of names; the first is the default).
* ``pattern``: glob for the images in each folder (default ``*.png``); files are ordered by name.
* ``alignment``: ``"frame"`` — every folder holds the same file names and the same name is the
  same place (positions = frame index, unit "frame"); ``"csv"`` — ``positions = {traverse =
  "file.csv"}`` (paths relative to ``root``) with a header row naming the columns: ``image`` plus
  one position group (x,y / east,north / utm_e,utm_n metres, lat,lon degrees, or frame) and
  optionally ``timestamp`` (:mod:`vprbench.data.positions`); the CSV's row order is the frame
  order; or ``"names"`` — images named in the VPR-datasets-downloader convention
  (``@UTM_east@UTM_north@...@timestamp@note@.jpg``, as read by VPR-methods-evaluation): positions
  from the names, frame order and segments by the rules (and params ``order``,
  ``segment_step_factor``, ``segment_max_gap_s``) of
  :mod:`vprbench.data.loaders.vpr_methods_evaluation`.
* ``position_unit`` ("m" | "frame"), ``radius`` (in that unit) or ``tolerance`` (frames:
  ``|i - j| <= tolerance``), optional ``nontrivial_radius``, ``negative_radius`` (derived with a
  note when a ``train`` split lacks them).
* ``splits``: ``{name = {reference = [a, b], query = [a, b]}}`` frame ranges or fractions
  (see :func:`vprbench.data.loaders.common.parse_splits`); default one ``test`` split over everything.
* ``extractor`` (``patchnorm`` | ``cnn`` | ``netvlad-checkpoint`` | ``precomputed``) and
  ``extractor_params``; ``precomputed`` reads ``descriptors = {traverse = "file.npy"}`` (relative
  to the data directory; one row per image in file-name order for "frame", CSV row order for
  "csv", VPR-methods-evaluation's order for "names").

Loader ``nordland-64x32``: the Nordland 64x32 release (``shared/data/nordland-64x32``), see
:func:`load_nordland_64x32` for the filtering rule and its counts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.core.progress import progress_enabled
from vprbench.data.dataset import BenchmarkDataset
from vprbench.data.download import data_path, missing_files_error, require_data_dir
from vprbench.data.loaders.common import RADIUS_PARAMS, evaluation_radius, loader_params, parse_splits, training_radii
from vprbench.data.loaders.seqnet_files import load_descriptors
from vprbench.data.order import JUMP_FACTOR, fragmented_warning
from vprbench.data.positions import Positions, check_unit, read_positions, to_metres
from vprbench.data.traverse import Traverse
from vprbench.features.cache import cached_descriptors
from vprbench.features.extractors import make_extractor

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm")
#: The image order of precomputed descriptor rows per alignment, for messages.
ORDER_OF_ROWS = {"frame": "sorted file names", "csv": "the positions CSV's row order", "names": "VPR-methods-evaluation's image order"}


def list_images(folder: Path, pattern: str = "*") -> list[Path]:
    """Image files in ``folder`` matching ``pattern``, sorted by name; DataError if none."""
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no images matching {pattern!r}")
    return files


def read_positions_csv(path: Path, folder: Path, unit: str | None = None) -> tuple[list[Path], Positions]:
    """Images (in ``folder``) and their positions from a positions CSV with an ``image`` column.

    Columns are read by name (:func:`vprbench.data.positions.read_positions`). DataError for a
    missing ``image`` column or images that do not exist.
    """
    pos = read_positions(path, unit=unit, what="positions CSV")
    if pos.images is None:
        raise DataError(f"{path}: needs a column 'image' (the file name of each frame in {folder})")
    rows: dict[str, list[int]] = {}
    for i, name in enumerate(pos.images):
        rows.setdefault(name, []).append(i + 1)
    dup = {name: r for name, r in rows.items() if len(r) > 1}
    if dup:
        listed = "; ".join(f"{name!r} at rows {r}" for name, r in list(dup.items())[:3])
        raise DataError(
            f"{path}: {len(dup)} image(s) listed more than once ({listed}; rows counted from 1 after the header); "
            "each row is one frame, so each image appears once"
        )
    images = [folder / name for name in pos.images]
    missing = [p.name for p in images if not p.is_file()]
    if missing:
        raise DataError(f"{path}: {len(missing)} listed image(s) not found in {folder} (first: {missing[:3]})")
    return images, pos


def unlisted_warning(path: Path, folder: Path, images: list[Path]) -> str | None:
    """A warning text if ``folder`` holds images (by suffix) that the positions CSV ``path`` does not list."""
    listed = {p.name for p in images}
    extra = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.name not in listed)
    if not extra:
        return None
    return (
        f"{path}: {len(extra)} image(s) in {folder} are not listed (first: {extra[:3]}) and are not used; the CSV lists "
        f"{len(images)} frames"
    )


def _extract(definition: DatasetDefinition, data_dir: Path, traverse: str, paths: list[Path], progress: bool, take: np.ndarray | None = None) -> np.ndarray:
    """Descriptors of the images ``paths``; for ``precomputed``, rows ``take`` of the file (all if None)."""
    p = definition.params
    name = p.get("extractor", "patchnorm")
    eparams = dict(p.get("extractor_params", {}))
    if name == "precomputed":
        files = p.get("descriptors", {})
        if not isinstance(files, dict) or traverse not in files:
            raise ConfigError(f"dataset {definition.name!r}: extractor 'precomputed' needs descriptors = {{{traverse} = \"file.npy\"}}")
        path = data_path(definition, data_dir, files[traverse], f"descriptors.{traverse}")
        return load_descriptors(path, rows=len(paths), where=f"one row per image of traverse {traverse!r}, in {ORDER_OF_ROWS.get(p.get('alignment', 'frame'), 'the loader image order')}", take=take)
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


def needed_files(definition: DatasetDefinition) -> list[str]:
    """The folders and files this loader (or ``nordland-64x32``) reads (relative to the data directory)."""
    p = definition.params
    root = p.get("root", "nordland-64x32" if definition.loader == "nordland-64x32" else definition.name)
    ref, queries = _names(definition)
    out = [f"{root}/{t}" for t in (ref, *queries)]
    if p.get("alignment") == "csv" and isinstance(p.get("positions"), dict):
        out += [f"{root}/{p['positions'][t]}" for t in (ref, *queries) if isinstance(p["positions"].get(t), str)]
    if p.get("extractor") == "precomputed" and isinstance(p.get("descriptors"), dict):
        out += [v for v in p["descriptors"].values() if isinstance(v, str)]
    return out


#: Params of the image front-ends (shared with ``nordland-64x32``).
EXTRACTOR_PARAMS = ("extractor", "extractor_params", "descriptors", "progress")


@loader_params(
    "root", "reference", "queries", "pattern", "alignment", "positions", "position_unit", *RADIUS_PARAMS, "splits",
    *EXTRACTOR_PARAMS, "order", "segment_step_factor", "segment_max_gap_s",
)
def load(definition: DatasetDefinition, data_dir: Path | None) -> BenchmarkDataset:
    """Loader ``image-folders`` (see the module docstring)."""
    data_dir = require_data_dir(definition, data_dir)
    p = definition.params
    root_rel = p.get("root", definition.name)
    root = data_path(definition, data_dir, root_rel, "root")
    ref_name, q_names = _names(definition)
    alignment = p.get("alignment", "frame")
    if alignment not in ("frame", "csv", "names"):
        raise ConfigError(f"dataset {definition.name!r}: alignment must be 'frame', 'csv' or 'names', got {alignment!r}")
    unit = p.get("position_unit")
    if unit is not None:
        check_unit(unit, f"dataset definition {definition.source}")
    missing = [f"{root_rel}/{t}" for t in (ref_name, *q_names) if not (root / t).is_dir()]
    if missing:
        raise missing_files_error(definition, data_dir, missing)
    progress = progress_enabled(p.get("progress"))
    traverses: dict[str, Traverse] = {}
    notes: list[str] = []
    warnings: list[str] = []
    if alignment == "frame":
        unit = unit or "frame"
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
            traverses[t] = Traverse(t, np.arange(len(paths), dtype=np.float64), unit, _extract(definition, data_dir, t, paths, progress), tuple(paths), meta={"image_names": names})
    elif alignment == "csv":
        pos_files = p.get("positions")
        if not isinstance(pos_files, dict):
            raise ConfigError(f"dataset {definition.name!r}: alignment 'csv' needs positions = {{traverse = \"file.csv\"}}")
        read = {}
        for t in (ref_name, *q_names):
            if t not in pos_files:
                raise ConfigError(f"dataset {definition.name!r}: no positions CSV for traverse {t!r}")
            rel = pos_files[t]
            if not isinstance(rel, str):
                raise ConfigError(f"dataset definition {definition.source}: positions.{t} must be a path inside root {root_rel!r}, got {rel!r}")
            csv_path = data_path(definition, root, rel, f"positions.{t}")
            read[t] = read_positions_csv(csv_path, root / t, unit)
            w = unlisted_warning(csv_path, root / t, read[t][0])
            if w:
                warnings.append(w)
        tables, note = to_metres([pos for _, pos in read.values()])
        if note:
            notes.append(note)
        units = {tb.unit for tb in tables}
        if len(units) != 1:
            raise ConfigError(f"dataset {definition.name!r}: the positions CSVs mix units {sorted(units)}")
        unit = units.pop()
        for (t, (paths, raw)), tb in zip(read.items(), tables):
            traverses[t] = Traverse(t, tb.values, unit, _extract(definition, data_dir, t, paths, progress), tuple(paths), tb.timestamps, meta={"image_names": list(raw.images)})
    else:
        from vprbench.data.loaders.vpr_methods_evaluation import name_traverse, read_images_paths

        if unit not in (None, "m"):
            raise ConfigError(f"dataset definition {definition.source}: alignment 'names' gives UTM positions in metres, not {unit!r}")
        unit = "m"
        factor = float(p.get("segment_step_factor", JUMP_FACTOR))
        for t in (ref_name, *q_names):
            rels = read_images_paths(root / t)
            info = name_traverse(root / t, rels, p.get("order", "auto"), factor, p.get("segment_max_gap_s"))
            warnings += info["warnings"]
            paths = [root / t / r for r in info["names"]]
            desc = _extract(definition, data_dir, t, paths, progress, take=info["rows"]) if p.get("extractor") == "precomputed" else _extract(definition, data_dir, t, paths, progress)
            traverses[t] = Traverse(
                t, info["positions"], unit, desc, tuple(paths), info["timestamps"], info["segments"],
                meta={"image_names": info["names"], "source_rows": info["rows"]},
            )
    if alignment == "names":
        warnings += [w for t in traverses.values() for w in [fragmented_warning(t)] if w]
    ref = traverses[ref_name]
    n_q = min(len(traverses[q]) for q in q_names)
    splits = parse_splits(p.get("splits"), len(ref), n_q, f"dataset {definition.name!r}", warnings)
    radius = evaluation_radius(definition, unit)
    nontrivial, negative, more = training_radii(definition, radius, unit, splits)
    return BenchmarkDataset(
        name=definition.name,
        reference=ref,
        queries={q: traverses[q] for q in q_names},
        splits=splits,
        radius=radius,
        nontrivial_radius=nontrivial,
        negative_radius=negative,
        description=definition.summary,
        meta={"loader": "image-folders", "extractor": p.get("extractor", "patchnorm"), "extractor_params": dict(p.get("extractor_params", {})), "notes": more + notes, "warnings": warnings},
    )
