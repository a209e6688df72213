"""On-disk cache of extracted descriptors, keyed by dataset, traverse, front-end and image files."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vprbench.core.cache import cached_array
from vprbench.core.codehash import package_modules_hash
from vprbench.core.errors import DataError
from vprbench.core.hashing import ContentHash, file_identity

if TYPE_CHECKING:
    from vprbench.features.extractors import Extractor

CACHE_ENV = "VPRBENCH_CACHE_DIR"


def cache_root() -> Path:
    """$VPRBENCH_CACHE_DIR, else ~/.cache/vprbench (never inside the read-only data directory)."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "vprbench"


def _file_id(path: Path) -> str:
    """Name, size and modification time of a file (cheap identity for cache keys)."""
    return file_identity(path)


def cache_key(dataset: str, traverse: str, extractor: Extractor, paths: Sequence[Path]) -> str:
    """16 hex digits identifying (dataset, traverse, extractor, its params, the image files)."""
    h = ContentHash({"dataset": dataset, "traverse": traverse, "extractor": extractor.name, "params": extractor.params(),
                     "code": package_modules_hash("features")})  # an edited front-end never serves old descriptors
    for p in paths:
        try:
            h.add_file_identity(Path(p))
        except FileNotFoundError:
            raise DataError(f"{p}: image file not found") from None
    return h.hexdigest()


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
