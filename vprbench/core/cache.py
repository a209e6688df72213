"""The one load-or-compute cache of arrays on disk (descriptors, features)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vprbench.core.fileio import atomic_path


def cached_array(target: Path | None, valid: Callable[[np.ndarray], bool], compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``np.load(target)`` if it holds a ``valid`` array, else ``compute()`` and store it atomically.

    ``target`` None means no caching. An unreadable or invalid cache file is recomputed and
    rewritten; a cache folder that cannot be written only costs time.
    """
    if target is not None and target.is_file():
        try:
            x = np.load(target, allow_pickle=False)
            if valid(x):
                return x
        except (ValueError, OSError):
            pass
    x = compute()
    if target is not None:
        try:
            with atomic_path(target) as tmp, open(tmp, "wb") as f:
                np.save(f, x, allow_pickle=False)
        except OSError:
            pass
    return x
