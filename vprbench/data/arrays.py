"""Arrays from the files other tools write: ``.npy``, ``.npz``, scipy sparse ``.npz`` and MATLAB ``.mat``.

Nothing here unpickles: ``.npy`` / ``.npz`` load with ``allow_pickle=False``, MATLAB v5 files with
``scipy.io.loadmat`` (which reads data, never code), MATLAB v7.3 files (HDF5) with ``h5py`` when
it is installed (``pip install "vprbench[hdf5]"``), else a clear error. The file kind is sniffed
from the content, not the suffix, so a file with the wrong extension is read as what it is (or
reported as what it is).

Sparse matrices (MATLAB ``sparse``, scipy's ``save_npz``) come back as scipy.sparse matrices and
are never densified here.
"""

from __future__ import annotations

import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError, VPRBenchError
from vprbench.core.fileio import read_npy_header

#: What reading a broken .npz raises (zip, deflate, .npy header and truncation errors).
_NPZ_ERRORS = (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)

#: What each sniffed kind is, for messages.
KIND_NAMES = {
    "npy": "a NumPy .npy array",
    "npz": "a NumPy .npz archive",
    "mat5": "a MATLAB v5 .mat file",
    "mat73": "a MATLAB v7.3 .mat file (HDF5)",
    "hdf5": "an HDF5 file",
    "pickle": "a Python pickle",
    "text": "a text file",
    "binary": "a binary file of unknown format",
    "empty": "an empty file",
    "folder": "a folder",
    "missing": "missing",
}


def sniff(path: str | Path) -> str:
    """The kind of file at ``path`` from its first bytes: one of :data:`KIND_NAMES`."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    if not path.is_file():
        return "missing"
    with open(path, "rb") as f:
        head = f.read(1024)
    if not head:
        return "empty"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "npz"
    if head.startswith(b"MATLAB 7.3"):
        return "mat73"
    if head.startswith(b"MATLAB"):
        return "mat5"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in range(2, 6):
        return "pickle"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # not just a multi-byte character cut at the end
            return "binary"
    return "binary" if b"\x00" in head else "text"


def describe(path: str | Path) -> str:
    """What the file at ``path`` is, in words (e.g. "a MATLAB v5 .mat file")."""
    return KIND_NAMES[sniff(path)]


def is_sparse(x: Any) -> bool:
    """True for a scipy.sparse matrix or array (without importing scipy when nothing could be one)."""
    sp = sys.modules.get("scipy.sparse")
    return sp is not None and sp.issparse(x)


def _mat5_variables(path: Path) -> list[str]:
    from scipy.io import whosmat

    try:
        return [name for name, _, _ in whosmat(str(path))]
    except Exception as e:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: not a readable MATLAB v5 .mat file ({type(e).__name__}: {e})") from None


def _h5py(path: Path):
    try:
        import h5py
    except ImportError:
        raise DataError(
            f"{path}: is a MATLAB v7.3 .mat file (HDF5 inside). Reading it needs h5py: pip install \"vprbench[hdf5]\" "
            "(or h5py), or save the variable from MATLAB with save(..., '-v7') instead"
        ) from None
    return h5py


def variables(path: str | Path) -> list[str]:
    """Names of the arrays in a ``.npz`` or ``.mat`` file (a ``.npy`` holds one unnamed array: [])."""
    path = Path(path)
    kind = sniff(path)
    if kind == "npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                return list(z.files)
        except _NPZ_ERRORS as e:
            raise _corrupt_npz(path, "archive", e) from None
    if kind == "mat5":
        return _mat5_variables(path)
    if kind in ("mat73", "hdf5"):
        h5py = _h5py(path)
        with h5py.File(path, "r") as f:
            return [k for k in f.keys() if not k.startswith("#")]
    return []


def _corrupt_npz(path: Path, what: str, e: BaseException) -> DataError:
    return DataError(f"{path}: {what}: the .npz archive is corrupt or unreadable ({type(e).__name__}: {e}); write it again (np.savez)")


def _npz_member(z: Any, name: str, path: Path, what: str) -> np.ndarray:
    """Array ``name`` of an open .npz; DataError saying whether it holds pickled objects or is corrupt."""
    try:
        return z[name]
    except _NPZ_ERRORS as e:
        try:
            with z.zip.open(f"{name}.npy" if f"{name}.npy" in z.zip.namelist() else name) as f:
                _, _, dtype = read_npy_header(f)
        except _NPZ_ERRORS:
            dtype = None
        if dtype is not None and dtype.hasobject:
            raise DataError(f"{path}: {what}: variable {name!r} holds pickled Python objects, which vprbench does not load; save plain numeric arrays") from None
        raise _corrupt_npz(path, f"{what} (variable {name!r})", e) from None


def _choose(path: Path, names: list[str], key: str | None, what: str, param: str | None) -> str:
    if key is not None:
        if key not in names:
            raise DataError(f"{path}: no variable {key!r} for the {what} (the file holds {names})")
        return key
    if len(names) == 1:
        return names[0]
    hint = f"; set {param} = \"NAME\" in the definition's [params]" if param else ""
    raise ConfigError(f"{path}: holds {len(names)} variables {names}; say which one is the {what}{hint}")


def _read_mat73(path: Path, key: str | None, what: str, param: str | None):
    """A variable of a v7.3 file in MATLAB's orientation (h5py sees the transpose); sparse as CSC."""
    h5py = _h5py(path)
    with h5py.File(path, "r") as f:
        names = [k for k in f.keys() if not k.startswith("#")]
        name = _choose(path, names, key, what, param)
        obj = f[name]
        if isinstance(obj, h5py.Group):
            if "MATLAB_sparse" not in obj.attrs or not {"ir", "jc"} <= set(obj.keys()):
                raise DataError(f"{path}: variable {name!r} is a MATLAB struct or cell, expected a numeric (or sparse) matrix for the {what}")
            from scipy.sparse import csc_matrix

            jc = np.asarray(obj["jc"], dtype=np.int64)
            ir = np.asarray(obj["ir"], dtype=np.int64)
            data = np.asarray(obj["data"]) if "data" in obj else np.ones(ir.size, dtype=np.float64)
            n_rows = int(np.asarray(obj.attrs["MATLAB_sparse"]).ravel()[0])
            return csc_matrix((data, ir, jc), shape=(n_rows, jc.size - 1))
        arr = np.asarray(obj)
        if arr.dtype.kind in "OV" or obj.attrs.get("MATLAB_class", b"") in (b"cell", b"struct"):
            raise DataError(f"{path}: variable {name!r} is not a numeric matrix (MATLAB class {obj.attrs.get('MATLAB_class')!r})")
        return arr.T


def read_array(path: str | Path, key: str | None = None, what: str = "array", param: str | None = None) -> Any:
    """The array ``key`` of the file at ``path``: a numpy array or, for sparse data, a scipy.sparse matrix.

    ``.npy``: the array (``key`` ignored). ``.npz``: the array ``key`` (the only one if ``key`` is
    None); a scipy ``save_npz`` file gives its sparse matrix. ``.mat`` (v5, or v7.3 with h5py):
    the variable ``key`` (the only one if None) in MATLAB's orientation, sparse variables as
    scipy CSC. ``what`` and ``param`` (the definition parameter that names the key) go into
    error messages. DataError for a missing file, a pickled file or another format.
    """
    path = Path(path)
    kind = sniff(path)
    if kind == "missing":
        raise DataError(f"{path}: {what} file not found")
    if kind == "npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as e:
            reason = "it holds pickled Python objects, which vprbench does not load" if "pickle" in str(e) else f"it is corrupt or truncated: {e}"
            raise DataError(f"{path}: {what} must be a plain (non-pickled) .npy array; {reason}") from None
    if kind == "npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                if {"format", "shape", "data", "indices", "indptr"} <= set(names) and key is None:
                    from scipy.sparse import load_npz

                    return load_npz(path)
                name = _choose(path, names, key, what, param)
                return _npz_member(z, name, path, what)
        except VPRBenchError:
            raise
        except _NPZ_ERRORS as e:
            raise _corrupt_npz(path, what, e) from None
    if kind == "mat5":
        from scipy.io import loadmat

        name = _choose(path, _mat5_variables(path), key, what, param)
        try:
            arr = loadmat(str(path), variable_names=[name])[name]
        except Exception as e:  # scipy raises several types for corrupt files
            raise DataError(f"{path}: cannot read variable {name!r} ({type(e).__name__}: {e})") from None
        if not is_sparse(arr) and (arr.dtype.kind in "OV"):
            raise DataError(f"{path}: variable {name!r} is a MATLAB struct or cell array, expected a numeric (or sparse) matrix for the {what}")
        return arr
    if kind in ("mat73", "hdf5"):
        return _read_mat73(path, key, what, param)
    raise DataError(f"{path}: {what}: is {KIND_NAMES[kind]}; expected a .npy, .npz or MATLAB .mat array file")
