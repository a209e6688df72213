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
