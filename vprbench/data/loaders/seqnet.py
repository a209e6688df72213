"""The dataset format the SeqNet / SeqMatchNet authors publish, and loaders for their datasets.

Published files (see ``shared/data/README.md`` and the definitions in ``datasets/``): the ``.db``
structs, Oxford's split indices, MSLS sequence bounds, image-name lists and descriptor arrays,
read by :mod:`vprbench.data.loaders.seqnet_files` (which documents each format).

Loaders (registered in :data:`vprbench.data.catalog.BUILTIN_LOADERS`): ``seqnet`` (Nordland, Oxford
RobotCar, MSLS cities) and ``descriptor-pair`` (any two user-supplied descriptor arrays with
positions, e.g. Brisbane day/night). How a dataset is assembled:

* A traverse holds the union of the rows its splits use, in row order; its positions come from
  the structs (Nordland: row index in the 27,592-frame nordland-clean sequence, unit "frame";
  Oxford / MSLS: UTM easting/northing in metres). Segments break wherever rows are not
  consecutive, and for MSLS at the published per-frame sequence bounds.
* Radii: evaluation ``radius`` = posDistThr of the test struct; ``nontrivial_radius`` =
  sqrt(nonTrivPosDistSqThr) and ``negative_radius`` = posDistThr of the train struct (what the
  released training code uses for positives / negatives).
* Oxford: the published ``valInds`` equal ``testInds`` (the authors evaluate on test during
  training); splits must be disjoint here, so only ``train`` and ``test`` are offered.
* MSLS: one city per dataset and one split over all its frames, named by the city's published
  role (``whichSet``: melbourne ``train``, austin ``val``, amman ``test``; param ``split``
  overrides), so that the cross-city protocol reads e.g. ``--dataset msls-amman
  --train-dataset msls-melbourne``; the role is also in ``meta["published_role"]``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.dataset import BenchmarkDataset, SplitIndices
from vprbench.data.download import data_path, require_data_dir
from vprbench.data.loaders.common import _check_files, _param, _path, _where, loader_params
from vprbench.data.loaders.seqnet_files import (
    DbStruct,
    load_db_struct,
    load_descriptors,
    load_image_names,
    load_seq_bounds,
    load_split_indices,
)
from vprbench.data.traverse import Traverse, segment_bounds_from_ids

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition


def _assemble_side(split_rows: dict[str, np.ndarray], split_pos: dict[str, np.ndarray], n_rows: int, what: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Union of split rows (ascending), positions per union row, and split indices into the union."""
    for s, r in split_rows.items():
        if r.size and (r.min() < 0 or r.max() >= n_rows):
            raise DataError(f"{what}: split {s!r} rows out of range 0..{n_rows - 1}")
        if split_pos[s].shape[0] != r.size:
            raise DataError(f"{what}: split {s!r} has {r.size} rows but {split_pos[s].shape[0]} positions")
    rows = np.unique(np.concatenate(list(split_rows.values())))
    pos = np.full((rows.size, next(iter(split_pos.values())).shape[1]), np.nan)
    index = {}
    for s, r in split_rows.items():
        ix = np.searchsorted(rows, r)
        prev = pos[ix]
        known = ~np.isnan(prev[:, 0])
        if known.any() and not np.allclose(prev[known], split_pos[s][known]):
            raise DataError(f"{what}: split {s!r} gives other positions for rows already used by another split")
        pos[ix] = split_pos[s]
        index[s] = np.sort(ix)
    return rows, pos, index


def _gap_segments(rows: np.ndarray, extra_ids: np.ndarray | None = None) -> np.ndarray:
    """Per-frame [start, end) segments broken where ``rows`` are not consecutive (and at changes of ``extra_ids``)."""
    brk = np.concatenate([[True], np.diff(rows) != 1])
    if extra_ids is not None:
        brk |= np.concatenate([[True], extra_ids[1:] != extra_ids[:-1]])
    return segment_bounds_from_ids(np.cumsum(brk))


@loader_params(
    "family", "structs", "image_names", "reference_names", "query_names", "split_indices", "reference_seq_bounds",
    "query_seq_bounds", "reference_descriptors", "query_descriptors", "dim", "descriptors", "reference", "query", "split",
)
def load(definition: DatasetDefinition, data_dir: Path | None) -> BenchmarkDataset:
    """Loader ``seqnet``: dispatch on ``params.family`` (``nordland`` | ``oxford`` | ``msls``)."""
    family = _param(definition, "family")
    loaders = {"nordland": _load_nordland, "oxford": _load_oxford, "msls": _load_msls}
    if family not in loaders:
        raise ConfigError(f"dataset definition {definition.source}: family {family!r} unknown; expected one of {sorted(loaders)}")
    return loaders[family](definition, require_data_dir(definition, data_dir))


def _descriptor_mode(definition: DatasetDefinition) -> str:
    mode = definition.params.get("descriptors", "required")
    if mode not in ("required", "none"):
        raise ConfigError(f"dataset {definition.name!r}: param 'descriptors' must be 'required' or 'none', got {mode!r}")
    return mode


def _traverse(definition, data_dir, name, desc_rel, n_rows, rows, positions, unit, segments, names, extra_meta=None) -> Traverse:
    desc = None
    if _descriptor_mode(definition) == "required":
        dim = definition.params.get("dim")
        desc = load_descriptors(data_path(definition, data_dir, desc_rel, "descriptors"), rows=n_rows, dim=dim, where=f"one row per image of the published image list, in that order; {_where(definition, desc_rel)}", take=rows)
    return Traverse(
        name=name,
        positions=positions,
        position_unit=unit,
        descriptors=desc,
        segments=segments,
        meta={"descriptor_file": desc_rel, "source_rows": rows, "image_names": [names[i] for i in rows], **(extra_meta or {})},
    )


def _needed_files(definition: DatasetDefinition, keys: list[str], with_descriptors: bool) -> list[str]:
    out = []
    for k in keys:
        v = definition.params.get(k)
        values = list(v.values()) if isinstance(v, dict) else [] if v is None else [v]
        for item in values:
            if not isinstance(item, str):
                raise ConfigError(f"dataset definition {definition.source}: param {k!r} must hold file paths (strings), got {item!r}")
        out.extend(values)
    if with_descriptors:
        out += [_param(definition, "reference_descriptors"), _param(definition, "query_descriptors")]
    return out


#: Per family: the params holding file paths (the descriptors come on top unless descriptors = "none").
FAMILY_FILE_KEYS = {
    "nordland": ["structs", "image_names"],
    "oxford": ["structs", "reference_names", "query_names", "split_indices"],
    "msls": ["structs", "reference_names", "query_names", "reference_seq_bounds", "query_seq_bounds"],
}


def needed_files(definition: DatasetDefinition) -> list[str]:
    """The files this loader reads for the definition's family (relative to the data directory)."""
    family = _param(definition, "family")
    if family not in FAMILY_FILE_KEYS:
        raise ConfigError(f"dataset definition {definition.source}: family {family!r} unknown; expected one of {sorted(FAMILY_FILE_KEYS)}")
    return _needed_files(definition, FAMILY_FILE_KEYS[family], _descriptor_mode(definition) == "required")


def _check_names(struct: DbStruct, ref_names: list[str], qry_names: list[str], ref_rows: np.ndarray, qry_rows: np.ndarray) -> None:
    for side, fns, names, rows in (("dbImageFns", struct.db_image_fns, ref_names, ref_rows), ("qImageFns", struct.q_image_fns, qry_names, qry_rows)):
        got = [names[i] for i in rows]
        if list(fns) != got:
            bad = next(i for i, (a, b) in enumerate(zip(fns, got)) if a != b) if len(fns) == len(got) else min(len(fns), len(got))
            raise DataError(
                f"{struct.path}: {side} disagree with the image-name list at the split's rows "
                f"(first difference at entry {bad}); the structure file and image lists do not belong together"
            )


def _radii(structs: dict[str, DbStruct]) -> dict[str, float | None]:
    test = structs.get("test") or next(iter(structs.values()))
    train = structs.get("train")
    nontriv = train.nontrivial_radius if train else test.nontrivial_radius
    negative = train.pos_dist_thr if train else None
    if negative is not None and not negative > nontriv:
        negative = None
    return {"radius": test.pos_dist_thr, "nontrivial_radius": nontriv, "negative_radius": negative}


def _load_structs(definition, data_dir) -> dict[str, DbStruct]:
    structs = _param(definition, "structs", dict)
    return {split: load_db_struct(data_path(definition, data_dir, rel, f"structs.{split}")) for split, rel in structs.items()}


def _load_nordland(definition: DatasetDefinition, data_dir: Path) -> BenchmarkDataset:
    _check_files(definition, data_dir, needed_files(definition))
    names = load_image_names(_path(definition, data_dir, "image_names"))
    structs = _load_structs(definition, data_dir)
    split_rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for split, st in structs.items():
        if st.utm_db.shape[1] != 1:
            raise DataError(f"{st.path}: Nordland utmDb must be 1-D frame indices, got {st.utm_db.shape[1]}-D positions")
        r, q = st.utm_db[:, 0].astype(np.int64), st.utm_q[:, 0].astype(np.int64)
        _check_names(st, names, names, r, q)
        split_rows[split] = (r, q)
    ref_rows, ref_pos, ref_ix = _assemble_side({s: v[0] for s, v in split_rows.items()}, {s: structs[s].utm_db for s in structs}, len(names), definition.name)
    q_rows, q_pos, q_ix = _assemble_side({s: v[1] for s, v in split_rows.items()}, {s: structs[s].utm_q for s in structs}, len(names), definition.name)
    ref_name, q_name = _param(definition, "reference"), _param(definition, "query")
    p = definition.params
    reference = _traverse(definition, data_dir, ref_name, p.get("reference_descriptors"), len(names), ref_rows, ref_pos, "frame", _gap_segments(ref_rows), names)
    query = _traverse(definition, data_dir, q_name, p.get("query_descriptors"), len(names), q_rows, q_pos, "frame", _gap_segments(q_rows), names)
    splits = {s: SplitIndices(ref_ix[s], q_ix[s]) for s in structs}
    return BenchmarkDataset(
        name=definition.name,
        reference=reference,
        queries={q_name: query},
        splits=splits,
        description=definition.summary,
        meta={"loader": "seqnet", "family": "nordland", "structs": {s: str(st.path.name) for s, st in structs.items()}},
        **_radii(structs),
    )


def _load_oxford(definition: DatasetDefinition, data_dir: Path) -> BenchmarkDataset:
    _check_files(definition, data_dir, needed_files(definition))
    ref_names = load_image_names(_path(definition, data_dir, "reference_names"))
    q_names = load_image_names(_path(definition, data_dir, "query_names"))
    inds = load_split_indices(_path(definition, data_dir, "split_indices"))
    structs = _load_structs(definition, data_dir)
    for split, st in structs.items():
        if split not in inds:
            raise DataError(f"{definition.params['split_indices']}: no {split}Inds for struct {st.path.name}")
        r, q = inds[split]
        if r.size != st.num_images or q.size != st.num_queries:
            raise DataError(
                f"{st.path}: {st.num_images} reference / {st.num_queries} query images, but the split index file gives "
                f"{r.size} / {q.size} rows for {split!r}"
            )
        _check_names(st, ref_names, q_names, r, q)
    ref_rows, ref_pos, ref_ix = _assemble_side({s: inds[s][0] for s in structs}, {s: structs[s].utm_db for s in structs}, len(ref_names), definition.name)
    q_rows, q_pos, q_ix = _assemble_side({s: inds[s][1] for s in structs}, {s: structs[s].utm_q for s in structs}, len(q_names), definition.name)
    ref_name, q_name = _param(definition, "reference"), _param(definition, "query")
    p = definition.params
    reference = _traverse(definition, data_dir, ref_name, p.get("reference_descriptors"), len(ref_names), ref_rows, ref_pos, "m", _gap_segments(ref_rows), ref_names)
    query = _traverse(definition, data_dir, q_name, p.get("query_descriptors"), len(q_names), q_rows, q_pos, "m", _gap_segments(q_rows), q_names)
    return BenchmarkDataset(
        name=definition.name,
        reference=reference,
        queries={q_name: query},
        splits={s: SplitIndices(ref_ix[s], q_ix[s]) for s in structs},
        description=definition.summary,
        meta={"loader": "seqnet", "family": "oxford", "published_val_equals_test": bool(
            "val" in inds and all(np.array_equal(a, b) for a, b in zip(inds["val"], inds["test"])))},
        **_radii(structs),
    )


def _load_msls(definition: DatasetDefinition, data_dir: Path) -> BenchmarkDataset:
    _check_files(definition, data_dir, needed_files(definition))
    structs = _load_structs(definition, data_dir)
    if len(structs) != 1:
        raise ConfigError(f"dataset definition {definition.source}: an MSLS city has one struct, got {sorted(structs)}")
    split, st = next(iter(structs.items()))
    ref_names = load_image_names(_path(definition, data_dir, "reference_names"))
    q_names = load_image_names(_path(definition, data_dir, "query_names"))
    r_rows, q_rows = np.arange(len(ref_names)), np.arange(len(q_names))
    _check_names(st, ref_names, q_names, r_rows, q_rows)
    p = definition.params
    traverses = []
    for name_key, desc_key, sb_key, names, rows, pos in (
        ("reference", "reference_descriptors", "reference_seq_bounds", ref_names, r_rows, st.utm_db),
        ("query", "query_descriptors", "query_seq_bounds", q_names, q_rows, st.utm_q),
    ):
        bounds = load_seq_bounds(_path(definition, data_dir, sb_key), len(names))
        traverses.append(_traverse(definition, data_dir, _param(definition, name_key), p.get(desc_key), len(names), rows, pos, "m", bounds, names))
    reference, query = traverses
    return BenchmarkDataset(
        name=definition.name,
        reference=reference,
        queries={query.name: query},
        splits={definition.params.get("split") or st.which_set or "test": SplitIndices(r_rows, q_rows)},
        description=definition.summary,
        meta={"loader": "seqnet", "family": "msls", "published_role": st.which_set, "struct": st.path.name},
        **_radii(structs),
    )
