"""The dataset format the SeqNet / SeqMatchNet authors publish, and loaders for their datasets.

Published files (see ``shared/data/README.md`` and the definitions in ``datasets/``):

* ``*.db``: MATLAB v5 files with a struct ``dbStruct`` (whichSet, dataset, dbImageFns, qImageFns,
  numImages, numQueries, posDistThr, posDistSqThr, nonTrivPosDistSqThr, utmDb / utmQ as
  [P, N], gpsDb / gpsQ for Nordland). Read with :func:`load_db_struct`.
* ``*_splitInds.npz`` (Oxford): per split a length-2 object array [reference rows, query rows]
  into the descriptor arrays. It is pickled; :func:`load_split_indices` reads it with an
  unpickler that only rebuilds plain NumPy arrays, so no trust flag is needed.
* ``seqBoundsFiles/*.txt`` (MSLS): one ``start end`` row per frame, [start, end) of the frame's
  sequence. Read with :func:`load_seq_bounds`.
* ``imageNamesFiles/*.txt``: the image names in descriptor-row order.
* descriptor arrays ``.npy``: float32 [rows, 4096], a separate download. Read with
  :func:`load_descriptors` (``allow_pickle=False``, memory-mapped, shape checked).

Loaders (registered in :data:`vprbench.catalog.BUILTIN_LOADERS`): ``seqnet`` (Nordland, Oxford
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
  --train-dataset msls-melbourne``; the role is also in ``meta["published_role"]``.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .dataset import BenchmarkDataset, SplitIndices
from .download import FileSpec, file_specs, missing_files_error, require_data_dir
from .errors import ConfigError, DataError
from .traverse import Traverse, segment_bounds_from_ids

if TYPE_CHECKING:
    from .catalog import DatasetDefinition

DB_FIELDS = ("whichSet", "dataset", "dbImageFns", "qImageFns", "numImages", "numQueries", "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr", "utmDb", "utmQ")


# ---------------------------------------------------------------------------------------------
# file readers


@dataclass(frozen=True, eq=False)
class DbStruct:
    """A parsed ``dbStruct``.

    Attributes:
        utm_db, utm_q: [n, P] float64 positions (metres; Nordland: [n, 1] row indices).
        gps_db, gps_q: [n, 2] (lat, lon) or None.
        pos_dist_thr: positive radius (metres or frames); ``pos_dist_sq_thr`` its square.
        nontriv_pos_dist_sq_thr: squared radius of non-trivial training positives.
    """

    path: Path
    which_set: str
    dataset: str
    db_image_fns: tuple[str, ...]
    q_image_fns: tuple[str, ...]
    utm_db: np.ndarray
    utm_q: np.ndarray
    pos_dist_thr: float
    pos_dist_sq_thr: float
    nontriv_pos_dist_sq_thr: float
    gps_db: np.ndarray | None = None
    gps_q: np.ndarray | None = None

    @property
    def num_images(self) -> int:
        return len(self.db_image_fns)

    @property
    def num_queries(self) -> int:
        return len(self.q_image_fns)

    @property
    def nontrivial_radius(self) -> float:
        return float(np.sqrt(self.nontriv_pos_dist_sq_thr))


def _strings(x: np.ndarray) -> tuple[str, ...]:
    """A MATLAB cell array of strings (loadmat: object array of 1-element str arrays) as a tuple."""
    out = []
    for e in np.asarray(x, dtype=object).ravel():
        e = np.asarray(e)
        out.append(str(e.ravel()[0]) if e.size else "")
    return tuple(out)


def _scalar(x: np.ndarray, what: str) -> float:
    a = np.asarray(x).ravel()
    if a.size != 1:
        raise DataError(f"{what}: expected a scalar, got shape {np.asarray(x).shape}")
    return float(a[0])


def _text(x: np.ndarray) -> str:
    a = np.asarray(x).ravel()
    return str(a[0]) if a.size else ""


def load_db_struct(path: str | Path) -> DbStruct:
    """Read a SeqNet ``.db`` file (MATLAB v5 ``dbStruct``); DataError naming the file on any problem."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: structure file not found")
    try:
        mat = loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except Exception as e:  # scipy raises several types for non-MATLAB input
        raise DataError(f"{path}: not a readable MATLAB v5 .db file ({type(e).__name__}: {e})") from None
    if "dbStruct" not in mat:
        raise DataError(f"{path}: no variable 'dbStruct' (found {sorted(k for k in mat if not k.startswith('__'))})")
    s = mat["dbStruct"]
    names = s.dtype.names or ()
    missing = [f for f in DB_FIELDS if f not in names]
    if missing:
        raise DataError(f"{path}: dbStruct lacks field(s) {missing}; expected {list(DB_FIELDS)}")
    v = s.ravel()[0]
    db_fns, q_fns = _strings(v["dbImageFns"]), _strings(v["qImageFns"])

    def positions(field: str, n: int) -> np.ndarray:
        a = np.asarray(v[field], dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != n:
            raise DataError(f"{path}: {field} has shape {a.shape}, expected [P, {n}] (one column per image)")
        return np.ascontiguousarray(a.T)

    num_images = int(_scalar(v["numImages"], f"{path}: numImages"))
    num_queries = int(_scalar(v["numQueries"], f"{path}: numQueries"))
    if num_images != len(db_fns) or num_queries != len(q_fns):
        raise DataError(
            f"{path}: numImages={num_images}, numQueries={num_queries} but {len(db_fns)} dbImageFns and "
            f"{len(q_fns)} qImageFns; expected equal counts"
        )
    gps = {f: positions(f, n) for f, n in (("gpsDb", num_images), ("gpsQ", num_queries)) if f in names}
    return DbStruct(
        path=path,
        which_set=_text(v["whichSet"]),
        dataset=_text(v["dataset"]),
        db_image_fns=db_fns,
        q_image_fns=q_fns,
        utm_db=positions("utmDb", num_images),
        utm_q=positions("utmQ", num_queries),
        pos_dist_thr=_scalar(v["posDistThr"], f"{path}: posDistThr"),
        pos_dist_sq_thr=_scalar(v["posDistSqThr"], f"{path}: posDistSqThr"),
        nontriv_pos_dist_sq_thr=_scalar(v["nonTrivPosDistSqThr"], f"{path}: nonTrivPosDistSqThr"),
        gps_db=gps.get("gpsDb"),
        gps_q=gps.get("gpsQ"),
    )


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Rebuilds NumPy arrays and dtypes only; any other global is refused (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in (("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")):
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct, whatever its module
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain NumPy arrays are allowed in this file")


def _read_npy_member(data: bytes, what: str) -> np.ndarray:
    f = io.BytesIO(data)
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if dtype.hasobject:
        try:
            arr = _ArraysOnlyUnpickler(f, encoding="latin1").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
            raise DataError(f"{what}: cannot read object array safely ({e})") from None
        return np.asarray(arr, dtype=object).reshape(shape)
    f.seek(0)
    return np.lib.format.read_array(f, allow_pickle=False)


def load_split_indices(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read an Oxford ``*_splitInds.npz``: {"train"|"val"|"test": (reference rows, query rows)}.

    Keys ``trainInds`` / ``valInds`` / ``testInds`` become ``train`` / ``val`` / ``test``; each value
    is a pair of 1-D int64 arrays (ascending rows into the descriptor arrays).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split index file not found")
    out = {}
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise DataError(f"{path}: not a .npz (zip) file") from None
    with zf:
        for member in zf.namelist():
            key = member.removesuffix(".npy")
            arr = _read_npy_member(zf.read(member), f"{path}:{key}")
            if arr.shape[0] != 2:
                raise DataError(f"{path}: {key} has shape {arr.shape}, expected 2 entries [reference rows, query rows]")
            pair = []
            for side, a in zip(("reference", "query"), arr):
                a = np.asarray(a)
                if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
                    raise DataError(f"{path}: {key} {side} rows must be a 1-D integer array, got {a.dtype} {a.shape}")
                pair.append(a.astype(np.int64))
            out[key.removesuffix("Inds")] = (pair[0], pair[1])
    return out


def load_seq_bounds(path: str | Path, n: int | None = None) -> np.ndarray:
    """Read a seqBounds file: [n, 2] int64 per-frame [start, end), validated (start <= i < end <= n)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: sequence bounds file not found")
    try:
        b = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except ValueError as e:
        raise DataError(f"{path}: expected two integers per line ({e})") from None
    if b.ndim != 2 or b.shape[1] != 2:
        raise DataError(f"{path}: expected one 'start end' row per frame, got shape {b.shape}")
    if n is not None and b.shape[0] != n:
        raise DataError(f"{path}: {b.shape[0]} rows of sequence bounds, expected {n} (one per frame)")
    i = np.arange(b.shape[0])
    bad = ~((b[:, 0] <= i) & (i < b[:, 1]) & (b[:, 1] <= b.shape[0]))
    if bad.any():
        raise DataError(f"{path}: bounds must satisfy start <= frame < end <= {b.shape[0]}; violated at frames {np.flatnonzero(bad)[:5].tolist()}")
    return b


def load_image_names(path: str | Path) -> list[str]:
    """Read an image-name list (one name per line, blank lines ignored)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image-name list not found")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_descriptors(path: str | Path, rows: int | None = None, dim: int | None = None, where: str = "", take: np.ndarray | None = None) -> np.ndarray:
    """Load a descriptor array ``.npy`` [rows, dim] as float32 (``allow_pickle=False``).

    The file is memory-mapped and only the rows ``take`` (all if None) are read into memory.
    DataError naming the file, the expected shape and ``where`` to get it on any mismatch.
    """
    path = Path(path)
    hint = f" ({where})" if where else ""
    expected = f"[{rows if rows is not None else 'rows'}, {dim if dim is not None else 'D'}]"
    if not path.is_file():
        raise DataError(f"{path}: descriptor file not found; expected a float32 .npy of shape {expected}{hint}")
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            raise DataError(f"{path}: not a .npy file (corrupt, or another format); expected a float32 .npy of shape {expected}{hint}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        pickled = "pickle" in str(e) or "Python objects" in str(e)
        reason = "it holds pickled Python objects, which vprbench does not load" if pickled else f"corrupt or truncated: {e}"
        raise DataError(f"{path}: not a plain .npy array ({reason}); expected a float32 array of shape {expected}{hint}") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise DataError(f"{path}: descriptor array has shape {getattr(arr, 'shape', '?')}, expected {expected}{hint}")
    if (rows is not None and arr.shape[0] != rows) or (dim is not None and arr.shape[1] != dim):
        raise DataError(
            f"{path}: descriptor array has shape {list(arr.shape)}, expected {expected} "
            f"(one row per image of the published image list, in that order){hint}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{path}: descriptors have dtype {arr.dtype}, expected float32")
    out = np.asarray(arr if take is None else arr[np.asarray(take)], dtype=np.float32)
    return np.ascontiguousarray(out)


# ---------------------------------------------------------------------------------------------
# assembling datasets


def _param(definition: DatasetDefinition, key: str, kind: type | tuple[type, ...] = str) -> Any:
    if key not in definition.params:
        raise ConfigError(f"dataset definition {definition.source}: [params] lacks {key!r}")
    value = definition.params[key]
    if not isinstance(value, kind):
        raise ConfigError(f"dataset definition {definition.source}: param {key!r} must be {kind}, got {value!r}")
    return value


def _check_files(definition: DatasetDefinition, data_dir: Path, rel_paths: list[str]) -> None:
    missing = [p for p in rel_paths if not (data_dir / p).exists()]
    if missing:
        raise missing_files_error(definition, data_dir, missing)


def _spec_for(definition: DatasetDefinition, rel: str) -> FileSpec | None:
    return next((s for s in file_specs(definition) if s.path == rel), None)


def _where(definition: DatasetDefinition, rel: str) -> str:
    spec = _spec_for(definition, rel)
    return spec.where() if spec else f"see {definition.source}"


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
        desc = load_descriptors(data_dir / desc_rel, rows=n_rows, dim=dim, where=_where(definition, desc_rel), take=rows)
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
    return {split: load_db_struct(data_dir / rel) for split, rel in structs.items()}


def _load_nordland(definition: DatasetDefinition, data_dir: Path) -> BenchmarkDataset:
    with_desc = _descriptor_mode(definition) == "required"
    _check_files(definition, data_dir, _needed_files(definition, ["structs", "image_names"], with_desc))
    names = load_image_names(data_dir / _param(definition, "image_names"))
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
    with_desc = _descriptor_mode(definition) == "required"
    _check_files(definition, data_dir, _needed_files(definition, ["structs", "reference_names", "query_names", "split_indices"], with_desc))
    ref_names = load_image_names(data_dir / _param(definition, "reference_names"))
    q_names = load_image_names(data_dir / _param(definition, "query_names"))
    inds = load_split_indices(data_dir / _param(definition, "split_indices"))
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
    with_desc = _descriptor_mode(definition) == "required"
    _check_files(definition, data_dir, _needed_files(definition, ["structs", "reference_names", "query_names", "reference_seq_bounds", "query_seq_bounds"], with_desc))
    structs = _load_structs(definition, data_dir)
    if len(structs) != 1:
        raise ConfigError(f"dataset definition {definition.source}: an MSLS city has one struct, got {sorted(structs)}")
    split, st = next(iter(structs.items()))
    ref_names = load_image_names(data_dir / _param(definition, "reference_names"))
    q_names = load_image_names(data_dir / _param(definition, "query_names"))
    r_rows, q_rows = np.arange(len(ref_names)), np.arange(len(q_names))
    _check_names(st, ref_names, q_names, r_rows, q_rows)
    p = definition.params
    traverses = []
    for name_key, desc_key, sb_key, names, rows, pos in (
        ("reference", "reference_descriptors", "reference_seq_bounds", ref_names, r_rows, st.utm_db),
        ("query", "query_descriptors", "query_seq_bounds", q_names, q_rows, st.utm_q),
    ):
        bounds = load_seq_bounds(data_dir / p[sb_key], len(names))
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


# ---------------------------------------------------------------------------------------------
# user-supplied descriptor pairs (e.g. Brisbane day/night)


def load_positions(path: Path, n: int | None = None) -> np.ndarray:
    """Positions [n, P] float64 from ``.npy`` (allow_pickle=False) or ``.csv``/``.txt`` (numbers only, optional header)."""
    if not path.is_file():
        raise DataError(f"{path}: position file not found")
    if path.suffix == ".npy":
        try:
            pos = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise DataError(f"{path}: not a plain .npy array ({e})") from None
    else:
        text = path.read_text(encoding="utf-8").splitlines()
        delim = "," if text and "," in text[0] else None
        skip = 1 if text and any(c.isalpha() for c in text[0].replace("nan", "").replace("NaN", "")) else 0
        try:
            pos = np.loadtxt(path, delimiter=delim, skiprows=skip, ndmin=2, dtype=np.float64)
        except ValueError as e:
            raise DataError(f"{path}: positions must be numbers, one row per frame ({e})") from None
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim == 1:
        pos = pos[:, None]
    if pos.ndim != 2:
        raise DataError(f"{path}: positions have shape {pos.shape}, expected [frames, P]")
    if n is not None and pos.shape[0] != n:
        raise DataError(f"{path}: {pos.shape[0]} position rows, expected {n} (one per descriptor row)")
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        raise DataError(f"{path}: positions hold NaN or infinite values at rows {np.flatnonzero(bad)[:5].tolist()}")
    return pos


def parse_splits(spec: Any, n_ref: int, n_query: int, what: str) -> dict[str, SplitIndices]:
    """Split ranges from a definition: ``{name = {reference = [a, b], query = [a, b]}}``.

    ``a, b`` are frame indices (ints) or fractions of the traverse (floats in [0, 1]); [a, b) is
    half-open. Missing ``spec`` means one split ``test`` over everything.
    """
    if spec is None:
        return {"test": SplitIndices.from_ranges((0, n_ref), (0, n_query))}
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"{what}: 'splits' must be a table of split names")

    def rng(v: Any, n: int, side: str, name: str) -> tuple[int, int]:
        if not (isinstance(v, (list, tuple)) and len(v) == 2):
            raise ConfigError(f"{what}: split {name!r} {side} must be [start, end), got {v!r}")
        a, b = (int(round(x * n)) if isinstance(x, float) else int(x) for x in v)
        if not 0 <= a < b <= n:
            raise ConfigError(f"{what}: split {name!r} {side} range {v!r} is empty or outside 0..{n}")
        return a, b

    out = {}
    for name, s in spec.items():
        if not isinstance(s, dict) or "reference" not in s:
            raise ConfigError(f"{what}: split {name!r} needs reference = [start, end) (and optionally query)")
        out[name] = SplitIndices.from_ranges(rng(s["reference"], n_ref, "reference", name), rng(s.get("query", s["reference"]), n_query, "query", name))
    return out


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
