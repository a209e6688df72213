"""Loader ``vpr-methods-evaluation``: descriptor dumps of the single-image VPR benchmark.

gmberton/VPR-methods-evaluation evaluates 25 single-image methods (NetVLAD to SALAD, BoQ,
MegaLoc) on datasets in the layout of gmberton/VPR-datasets-downloader; with
``--save_descriptors`` it writes ``database_descriptors.npy`` and ``queries_descriptors.npy``
(float32 [images, D]). This loader turns such a dump plus its dataset folder into a vprbench
dataset, so that every sequence method runs on top of any of those methods.

What the tool does, and what is reproduced here (its ``test_dataset.read_images_paths`` and
``TestDataset``):

* Images of a folder (``database/``, ``queries/``): if ``<folder>_images_paths.txt`` exists beside
  the folder, its lines (paths relative to the folder) in file order; otherwise
  ``sorted(glob("<folder>/**/*", recursive=True))`` keeping files whose extension, lower-cased, is
  .jpg, .jpeg or .png. Descriptor row i belongs to image i of that list.
* Names follow ``@UTM_east@UTM_north@UTM_zone_number@UTM_zone_letter@latitude@longitude@pano_id
  @tile_num@heading@pitch@roll@height@timestamp@note@extension`` (fields may be empty; only the
  UTM pair is required). The tool splits the whole path at "@"; here the file name is split, so
  an "@" in a folder name does not shift the fields.
* Positives: database images within 25 m (``positive_dist_threshold``) of the query; param
  ``radius`` overrides.

What vprbench adds (the tool has no notion of sequences):

* Frame order (param ``order``): ``"auto"`` (default) orders by the ``timestamp`` field
  (``YYYYMMDD_hhmmss``, trailing parts optional, read as UTC) when every image of the traverse has
  one, else keeps the tool's name order; ``"name"`` always keeps it; ``"timestamp"`` requires
  timestamps; any other name field (e.g. ``"pano_id"``, ``"tile_num"``) orders by that field read as
  a number. Ties keep name order. Names start with the easting, so name order is sorted by
  easting, not drive order: without timestamps (or a frame-number field) sequence results are
  only meaningful for drives along increasing easting, and the dataset's warnings say so.
* Segments (:func:`vprbench.data.order.segments_from_steps`): frames are consecutive, and may
  share a sequence window, unless the step to the previous frame exceeds
  ``segment_step_factor`` (default 10) x the median non-zero step, or (when ordered by
  timestamp) the time gap exceeds ``segment_max_gap_s`` (default: ``segment_step_factor`` x the
  median non-zero time step).
* UTM zones: easting/northing of different zones are not comparable; a dataset whose names
  carry more than one zone number gets a warning.

Params (paths relative to the data directory): ``descriptors`` (the folder holding the two
``.npy`` files), ``dataset`` (the folder holding ``database/`` and ``queries/``),
``database_folder`` / ``queries_folder`` (default ``database`` / ``queries``), ``reference`` /
``query`` (traverse names, default ``database`` / ``queries``), ``order``, ``segment_step_factor``,
``segment_max_gap_s``, ``radius`` (metres, default 25), ``nontrivial_radius``, ``negative_radius``,
``splits`` (:func:`vprbench.data.loaders.common.parse_splits`, over the frames in frame order;
default one ``test`` split over everything).
"""

from __future__ import annotations

import glob
import re
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.dataset import BenchmarkDataset
from vprbench.data.download import data_path, missing_files_error, require_data_dir
from vprbench.data.loaders.common import RADIUS_PARAMS, evaluation_radius, loader_params, parse_splits, training_radii
from vprbench.data.loaders.seqnet_files import load_descriptors
from vprbench.data.order import JUMP_FACTOR, fragmented_warning, segments_from_steps
from vprbench.data.traverse import Traverse

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition

#: The name fields of VPR-datasets-downloader, in order (field 0 is the empty text before the first "@").
NAME_FIELDS = (
    "utm_east", "utm_north", "utm_zone_number", "utm_zone_letter", "latitude", "longitude", "pano_id",
    "tile_num", "heading", "pitch", "roll", "height", "timestamp", "note", "extension",
)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_RADIUS_M = 25.0
DESCRIPTOR_FILES = {"reference": "database_descriptors.npy", "query": "queries_descriptors.npy"}
_TIMESTAMP = re.compile(r"^(\d{4})(?:(\d{2})(?:(\d{2})(?:_(\d{2})(\d{2})?(\d{2})?)?)?)?$")


def read_images_paths(folder: Path) -> list[str]:
    """Image paths of ``folder`` (relative to it, "/"-separated) in VPR-methods-evaluation's order.

    ``<folder>_images_paths.txt`` beside the folder if it exists (its lines, in order), else the
    sorted recursive glob of files with a .jpg / .jpeg / .png extension (any case). DataError if
    the folder is missing or has no images, or a listed image does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: image folder not found")
    listing = folder.parent / f"{folder.name}_images_paths.txt"
    if listing.is_file():
        rels = [ln.strip() for ln in listing.read_text(encoding="utf-8").splitlines() if ln.strip()]
        missing = [r for r in rels if not (folder / r).is_file()]
        if missing:
            raise DataError(f"{listing}: {len(missing)} listed image(s) do not exist in {folder} (first: {missing[:3]})")
    else:
        rels = sorted(
            r for r in glob.glob("**/*", root_dir=folder, recursive=True)
            if (folder / r).is_file() and Path(r).suffix.lower() in IMAGE_EXTENSIONS
        )
        rels = [PurePosixPath(Path(r).as_posix()).as_posix() for r in rels]
    if not rels:
        raise DataError(f"{folder}: no .jpg / .jpeg / .png images (VPR-methods-evaluation reads those)")
    return rels


def parse_name(name: str) -> dict[str, str]:
    """The "@"-separated fields of an image's file name (see :data:`NAME_FIELDS`); DataError without UTM."""
    parts = PurePosixPath(name).name.split("@")
    fields = dict(zip(NAME_FIELDS, parts[1:]))
    try:
        float(fields["utm_east"])
        float(fields["utm_north"])
    except (KeyError, ValueError):
        raise DataError(
            f"image {name!r}: names must be @UTM_east@UTM_north@...@.jpg (VPR-datasets-downloader convention); "
            "this one carries no UTM coordinates"
        ) from None
    return fields


def parse_timestamp(text: str) -> float | None:
    """Seconds since 1970 (UTC) of a ``YYYYMMDD_hhmmss`` field (trailing parts optional); None if empty.

    >>> parse_timestamp("20190101_000001") - parse_timestamp("20190101")
    1.0
    """
    if not text:
        return None
    m = _TIMESTAMP.match(text)
    if not m:
        raise DataError(f"timestamp field {text!r} is not YYYYMMDD_hhmmss (trailing parts optional)")
    y, mo, d, h, mi, s = (int(g) if g else default for g, default in zip(m.groups(), (0, 1, 1, 0, 0, 0)))
    try:
        return datetime(y, mo, d, h, mi, s, tzinfo=timezone.utc).timestamp()
    except ValueError as e:
        raise DataError(f"timestamp field {text!r}: {e}") from None


def name_traverse(
    folder: Path, rels: list[str], order: str = "auto", factor: float = JUMP_FACTOR, max_gap_s: float | None = None
) -> dict:
    """Positions, frame order and segments of images named in the VPR-datasets-downloader convention.

    Args:
        folder: the image folder (for messages).
        rels: image paths in the tool's (descriptor row) order.
        order: frame-order rule (module docstring).
    Returns:
        dict with ``rows`` [n] (descriptor row of each frame, in frame order), ``positions`` [n, 2]
        UTM metres, ``timestamps`` [n] or None, ``segments`` [n, 2], ``names`` (in frame order),
        ``zones`` (the set of zone numbers found), ``order`` (the rule applied), ``warnings`` (texts:
        an ``order`` field with one value for every image, which leaves the name order).
    Raises:
        DataError naming ``folder`` and the image for a name without UTM coordinates or a bad timestamp.
    """
    fields, ts_raw = [], []
    for r in rels:
        try:
            f = parse_name(r)
            fields.append(f)
            ts_raw.append(parse_timestamp(f.get("timestamp", "")))
        except DataError as e:
            text = str(e)
            raise DataError(f"{folder}: {text if text.startswith('image ') else f'image {r!r}: {text}'}") from None
    pos = np.array([[float(f["utm_east"]), float(f["utm_north"])] for f in fields], dtype=np.float64)
    warnings = []
    have_ts = all(t is not None for t in ts_raw)
    if order == "auto":
        order = "timestamp" if have_ts else "name"
    if order == "name":
        rows = np.arange(len(rels))
    elif order == "timestamp":
        if not have_ts:
            missing = [rels[i] for i, t in enumerate(ts_raw) if t is None][:3]
            raise DataError(f"{folder}: order = \"timestamp\" but {sum(t is None for t in ts_raw)} image(s) have no timestamp field (first: {missing})")
        rows = np.argsort(np.array(ts_raw, dtype=np.float64), kind="stable")
    elif order in NAME_FIELDS:
        try:
            key = np.array([float(f.get(order, "")) for f in fields])
        except ValueError:
            raise DataError(f"{folder}: order = {order!r} needs a number in that name field for every image") from None
        rows = np.argsort(key, kind="stable")
        if key.size > 1 and (key == key[0]).all():
            warnings.append(
                f"{folder}: order = {order!r} but every image has {order} {fields[0].get(order)!r}: the frames stay in name "
                "order (sorted by easting), not in drive order; choose a field that numbers the frames"
            )
    else:
        raise ConfigError(f"{folder}: order must be 'auto', 'name', 'timestamp' or a name field {list(NAME_FIELDS)}, got {order!r}")
    timestamps = np.array(ts_raw, dtype=np.float64)[rows] if have_ts else None
    positions = pos[rows]
    segments = segments_from_steps(positions, timestamps if order == "timestamp" else None, factor, max_gap_s)
    zones = {f.get("utm_zone_number", "") for f in fields} - {""}
    return {
        "rows": rows.astype(np.int64), "positions": positions, "timestamps": timestamps, "segments": segments,
        "names": [rels[i] for i in rows], "zones": zones, "order": order, "warnings": warnings,
    }


def _folders(definition: DatasetDefinition, data_dir: Path | None) -> tuple[Path, dict[str, str], dict[str, Path]]:
    p = definition.params
    for k in ("descriptors", "dataset"):
        if not isinstance(p.get(k), str):
            raise ConfigError(f"dataset definition {definition.source}: [params] needs {k} = \"folder\" (relative to the data directory)")
    sub = {"reference": p.get("database_folder", "database"), "query": p.get("queries_folder", "queries")}
    ddir = data_path(definition, data_dir, p["dataset"], "dataset")
    desc = {side: data_path(definition, data_dir, f"{p['descriptors']}/{DESCRIPTOR_FILES[side]}", "descriptors") for side in sub}
    return ddir, sub, desc


def needed_files(definition: DatasetDefinition) -> list[str]:
    """The files and folders this loader reads (relative to the data directory)."""
    p = definition.params
    _folders(definition, None)
    sub = (p.get("database_folder", "database"), p.get("queries_folder", "queries"))
    return [f"{p['descriptors']}/{f}" for f in DESCRIPTOR_FILES.values()] + [f"{p['dataset']}/{s}" for s in sub]


@loader_params(
    "descriptors", "dataset", "database_folder", "queries_folder", "reference", "query", "order", "segment_step_factor",
    "segment_max_gap_s", *RADIUS_PARAMS, "splits",
)
def load(definition: DatasetDefinition, data_dir: Path | None) -> BenchmarkDataset:
    """Loader ``vpr-methods-evaluation`` (see the module docstring)."""
    data_dir = require_data_dir(definition, data_dir)
    p = definition.params
    ddir, sub, desc_files = _folders(definition, data_dir)
    missing = [rel for rel in needed_files(definition) if not data_path(definition, data_dir, rel, "path").exists()]
    if missing:
        raise missing_files_error(definition, data_dir, missing)
    factor = p.get("segment_step_factor", JUMP_FACTOR)
    max_gap = p.get("segment_max_gap_s")
    for k, v in (("segment_step_factor", factor), ("segment_max_gap_s", max_gap)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise ConfigError(f"dataset definition {definition.source}: {k} must be a number >= 0, got {v!r}")
    traverses, zones, orders, warnings = {}, set(), {}, []
    for side, default_name in (("reference", "database"), ("query", "queries")):
        folder = ddir / sub[side]
        rels = read_images_paths(folder)
        info = name_traverse(folder, rels, p.get("order", "auto"), float(factor), max_gap)
        warnings += info["warnings"]
        where = (
            f"written by VPR-methods-evaluation --save_descriptors: one row per image of {folder} in its order "
            "(sorted paths, or the <folder>_images_paths.txt list)"
        )
        desc = load_descriptors(desc_files[side], rows=len(rels), where=where, take=info["rows"])
        name = p.get(side, default_name)
        traverses[side] = Traverse(
            name=name, positions=info["positions"], position_unit="m", descriptors=desc,
            image_paths=tuple(folder / r for r in info["names"]), timestamps=info["timestamps"], segments=info["segments"],
            meta={"image_names": info["names"], "source_rows": info["rows"], "descriptor_file": str(desc_files[side].name)},
        )
        zones |= info["zones"]
        orders[name] = info["order"]
    ref, qry = traverses["reference"], traverses["query"]
    if ref.dim != qry.dim:
        raise DataError(f"{desc_files['query']}: descriptors have D={qry.dim}, the database's have D={ref.dim}; expected one method's dump")
    splits = parse_splits(p.get("splits"), len(ref), len(qry), f"dataset {definition.name!r}", warnings)
    radius = evaluation_radius(definition, "m", default=DEFAULT_RADIUS_M)
    nontrivial, negative, notes = training_radii(definition, radius, "m", splits)
    if len(zones) > 1:
        warnings.append(
            f"image names carry {len(zones)} UTM zones {sorted(zones)}: easting/northing of different zones are not comparable, "
            "so positives across a zone boundary are missed"
        )
    for t in (ref, qry):
        w = fragmented_warning(t)
        if w:
            warnings.append(w)
    for name, rule in orders.items():
        if rule == "name":
            notes.append(f"traverse {name!r}: no timestamps in the image names, frames kept in name order (sorted by easting)")
    return BenchmarkDataset(
        name=definition.name,
        reference=ref,
        queries={qry.name: qry},
        splits=splits,
        radius=radius,
        nontrivial_radius=nontrivial,
        negative_radius=negative,
        description=definition.summary,
        meta={"loader": "vpr-methods-evaluation", "frame_order": orders, "notes": notes, "warnings": warnings},
    )
