"""Readers of the files the SeqNet / SeqMatchNet authors publish.

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
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vprbench.core.errors import DataError
from vprbench.core.fileio import read_npy_header

if TYPE_CHECKING:
    pass


DB_FIELDS = ("whichSet", "dataset", "dbImageFns", "qImageFns", "numImages", "numQueries", "posDistThr", "posDistSqThr", "nonTrivPosDistSqThr", "utmDb", "utmQ")


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
    shape, fortran, dtype = read_npy_header(f)
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
            f"{path}: descriptor array has shape {list(arr.shape)}, expected {expected}{hint}"
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"{path}: descriptors have dtype {arr.dtype}, expected float32")
    out = np.asarray(arr if take is None else arr[np.asarray(take)], dtype=np.float32)
    return np.ascontiguousarray(out)
