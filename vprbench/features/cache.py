"""On-disk cache of extracted descriptors, keyed by dataset, traverse, front-end and image files."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.cache import cached_array
from vprbench.core.errors import DataError

if TYPE_CHECKING:
    from vprbench.features.extractors import Extractor

CACHE_ENV = "VPRBENCH_CACHE_DIR"


def cache_root() -> Path:
    """$VPRBENCH_CACHE_DIR, else ~/.cache/vprbench (never inside the read-only data directory)."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "vprbench"


def _file_id(path: Path) -> str:
    """Name, size and modification time of a file (cheap identity for cache keys)."""
    st = Path(path).stat()
    return f"{Path(path).name}:{st.st_size}:{st.st_mtime_ns}"


def cache_key(dataset: str, traverse: str, extractor: Extractor, paths: Sequence[Path]) -> str:
    """16 hex digits identifying (dataset, traverse, extractor, its params, the image files)."""
    h = hashlib.sha256()
    h.update(json.dumps({"dataset": dataset, "traverse": traverse, "extractor": extractor.name, "params": extractor.params()}, sort_keys=True).encode())
    for p in paths:
        try:
            h.update(_file_id(Path(p)).encode() + b"\n")
        except FileNotFoundError:
            raise DataError(f"{p}: image file not found") from None
    return h.hexdigest()[:16]


def cached_descriptors(
    dataset: str,
    traverse: str,
    extractor: Extractor,
    paths: Sequence[Path],
    cache_dir: Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Descriptors [len(paths), D] of the images, from the cache or extracted and stored.

    The cache file is ``<cache_dir>/descriptors/<dataset>/<traverse>-<extractor>-<key>.npy``
    (written to a temporary name, then renamed). A cached file with the wrong number of rows is
    ignored and rewritten.
    """
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    key = cache_key(dataset, traverse, extractor, paths)
    safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "_" for c in s)  # noqa: E731
    target = root / "descriptors" / safe(dataset) / f"{safe(traverse)}-{safe(extractor.name)}-{key}.npy"
    return cached_array(
        target,
        lambda x: x.ndim == 2 and x.shape[0] == len(paths) and x.dtype == np.float32,
        lambda: extractor.extract(paths, progress=progress, desc=f"{dataset}/{traverse}: {extractor.name}"),
    )
