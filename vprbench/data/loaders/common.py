"""Helpers shared by the loaders: typed definition parameters, file checks, positions, split ranges."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.dataset import SplitIndices
from vprbench.data.download import FileSpec, file_specs, missing_files_error

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition


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
