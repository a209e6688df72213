"""Content hashes: canonical JSON of configurations and the short sha256 keys built from it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, numpy scalars/arrays converted) for hashing and writing."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, tuples, Paths and NaN/inf into JSON-safe values (NaN/inf -> None)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def stable_hash(obj: Any, length: int = 16) -> str:
    """Short sha256 hex digest of ``obj``'s canonical JSON."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


class ContentHash:
    """The one streaming content hash (sha256) of what results depend on.

    ``add`` takes arrays (dtype, shape and bytes), text, bytes, paths (as text) or JSON-able
    objects (canonical JSON); ``add_file`` a file's bytes; ``add_file_identity`` a file's name, size and
    modification time (cheap identity for caches of derived files).
    """

    def __init__(self, *objs: Any) -> None:
        self._h = hashlib.sha256()
        self.add(*objs)

    def update(self, data: bytes) -> ContentHash:
        self._h.update(data)
        return self

    def add(self, *objs: Any) -> ContentHash:
        for obj in objs:
            if isinstance(obj, np.ndarray):
                a = np.ascontiguousarray(obj)
                self._h.update(f"{a.dtype.str}{a.shape}".encode())
                self._h.update(a.tobytes())
            elif isinstance(obj, bytes):
                self._h.update(obj)
            elif isinstance(obj, (str, Path)):
                self._h.update(str(obj).encode() + b"\0")
            else:
                self._h.update(canonical_json(obj).encode() + b"\0")
        return self

    def add_file(self, path: Path, chunk: int = 1 << 20) -> ContentHash:
        with open(path, "rb") as f:
            while block := f.read(chunk):
                self._h.update(block)
        return self

    def add_file_identity(self, path: Path) -> ContentHash:
        self._h.update(file_identity(path).encode() + b"\n")
        return self

    def hexdigest(self, length: int = 16) -> str:
        return self._h.hexdigest()[:length]


def file_identity(path: Path) -> str:
    """Name, size and modification time of a file (FileNotFoundError if it is missing)."""
    st = Path(path).stat()
    return f"{Path(path).name}:{st.st_size}:{st.st_mtime_ns}"
