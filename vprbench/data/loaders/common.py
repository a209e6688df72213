"""Helpers shared by the loaders: typed definition parameters, file checks, positions, split ranges."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.dataset import SplitIndices
from vprbench.data.download import FileSpec, data_path, file_specs, missing_files_error
from vprbench.data.positions import Positions, check_unit, read_positions

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
    """DataError listing the files of ``rel_paths`` missing under ``data_dir`` (ConfigError for paths leaving it)."""
    missing = [p for p in rel_paths if not data_path(definition, data_dir, p, "path").exists()]
    if missing:
        raise missing_files_error(definition, data_dir, missing)


def _spec_for(definition: DatasetDefinition, rel: str) -> FileSpec | None:
    return next((s for s in file_specs(definition) if s.path == rel), None)


def _where(definition: DatasetDefinition, rel: str) -> str:
    spec = _spec_for(definition, rel)
    return spec.where() if spec else f"see {definition.source}"


def _path(definition: DatasetDefinition, data_dir: Path, key: str) -> Path:
    """The path in param ``key`` under the data directory (see :func:`vprbench.data.download.data_path`)."""
    return data_path(definition, data_dir, _param(definition, key), key)


#: Value of a positions parameter that means "frame-aligned: the position is the row (frame) index".
ROW = "row"


def side_positions(definition: DatasetDefinition, data_dir: Path, side: str, n: int) -> Positions:
    """Positions of traverse ``side`` ("reference" / "query") with ``n`` frames, from the definition.

    ``{side}_positions`` (or ``positions`` for both sides) is a file (see
    :func:`vprbench.data.positions.read_positions`) or ``"row"``: frame-aligned data, position =
    row index, unit "frame".
    """
    p = definition.params
    key = f"{side}_positions" if f"{side}_positions" in p else "positions"
    value = _param(definition, key)
    unit = p.get("position_unit")
    if unit is not None:
        check_unit(unit, f"dataset definition {definition.source}")
    if value == ROW:
        if unit not in (None, "frame"):
            raise ConfigError(f"dataset definition {definition.source}: {key} = \"row\" means positions in frames, but position_unit = {unit!r}")
        return Positions(np.arange(n, dtype=np.float64)[:, None], "frame", source=f"{key} = \"row\"")
    return read_positions(data_path(definition, data_dir, value, key), n, unit, what=f"{side} positions")


def evaluation_radius(definition: DatasetDefinition, unit: str, default: float | None = None) -> float:
    """The evaluation radius from ``radius`` (in the position unit) or ``tolerance`` (frames).

    ``tolerance = t`` (a whole number of frames, frame-aligned data only) means positives are the
    references with ``|frame difference| <= t``; it is stored as the radius t + 0.5 so that the
    Euclidean ground truth is exact. Giving both is an error; giving neither uses ``default`` or errors.
    """
    p = definition.params
    src = definition.source
    if "radius" in p and "tolerance" in p:
        raise ConfigError(f"dataset definition {src}: give either radius or tolerance, not both")
    if "tolerance" in p:
        return _tolerance_radius(definition, "tolerance", unit)
    if "radius" in p:
        r = p["radius"]
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not r > 0:
            raise ConfigError(f"dataset definition {src}: radius must be a number > 0 ({'metres' if unit == 'm' else 'frames'}), got {r!r}")
        return float(r)
    if default is not None:
        return float(default)
    what = "radius = R (metres)" if unit == "m" else "tolerance = T (frames: |frame difference| <= T) or radius = R (frames)"
    raise ConfigError(f"dataset definition {src}: [params] needs {what} for the ground truth")


def _tolerance_radius(definition: DatasetDefinition, key: str, unit: str) -> float:
    t = definition.params[key]
    if unit != "frame":
        raise ConfigError(f"dataset definition {definition.source}: {key} is in frames, but positions are in {unit!r}; use a radius in metres")
    if isinstance(t, bool) or not isinstance(t, int) or t < 0:
        raise ConfigError(f"dataset definition {definition.source}: {key} must be a whole number of frames >= 0, got {t!r}")
    return t + 0.5


#: Derived training radii, as multiples of the evaluation radius, when a definition with a train split gives none.
NONTRIVIAL_FACTOR = 0.5
NEGATIVE_FACTOR = 2.0


def training_radii(definition: DatasetDefinition, radius: float, unit: str, splits: dict[str, SplitIndices]) -> tuple[float | None, float | None, list[str]]:
    """(nontrivial_radius, negative_radius, notes) of a user definition.

    Given as ``nontrivial_radius`` / ``negative_radius`` (position unit) or, for frames,
    ``nontrivial_tolerance`` / ``negative_tolerance`` (t -> t + 0.5). Without them and with a
    ``train`` split, they are derived so that training never takes the evaluation radius as
    positives and adjacent near-identical frames as negatives: nontrivial = radius x 0.5, negative
    = 2 x max(radius, nontrivial) (SeqNet's Oxford protocol: 5 m / 20 m at a 10 m radius); a note
    says so.
    """
    p = definition.params
    src = definition.source
    values: dict[str, float | None] = {}
    for name in ("nontrivial", "negative"):
        rk, tk = f"{name}_radius", f"{name}_tolerance"
        if rk in p and tk in p:
            raise ConfigError(f"dataset definition {src}: give either {rk} or {tk}, not both")
        if tk in p:
            values[name] = _tolerance_radius(definition, tk, unit)
        elif rk in p:
            v = p[rk]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ConfigError(f"dataset definition {src}: {rk} must be a number > 0, got {v!r}")
            values[name] = float(v)
        else:
            values[name] = None
    notes = []
    if "train" in splits and (values["nontrivial"] is None or values["negative"] is None):
        u = "m" if unit == "m" else "frames"
        derived = []
        if values["nontrivial"] is None:
            values["nontrivial"] = radius * NONTRIVIAL_FACTOR
            derived.append(f"nontrivial_radius = {values['nontrivial']:g} {u} (radius x {NONTRIVIAL_FACTOR:g})")
        if values["negative"] is None:
            values["negative"] = NEGATIVE_FACTOR * max(radius, values["nontrivial"])
            derived.append(f"negative_radius = {values['negative']:g} {u} ({NEGATIVE_FACTOR:g} x max(radius, nontrivial_radius))")
        notes.append(
            f"training radii not given in {src}: derived {' and '.join(derived)}; set nontrivial_radius / negative_radius "
            "in [params] to choose them"
        )
    if values["nontrivial"] is not None and values["negative"] is not None and not values["negative"] > values["nontrivial"]:
        raise ConfigError(
            f"dataset definition {src}: negative radius ({values['negative']:g}) must be larger than the non-trivial positive "
            f"radius ({values['nontrivial']:g})"
        )
    return values["nontrivial"], values["negative"], notes


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


DESCRIPTOR_LAYOUTS = ("rows", "columns")


def read_descriptor_file(
    definition: DatasetDefinition, data_dir: Path, key: str, rows: int | None = None, var_key: str | None = None
) -> Any:
    """Descriptors [frames, D] from the file in param ``key``: ``.npy``, ``.npz``, MATLAB ``.mat``, dense or sparse.

    ``var_key`` names the param holding the variable name inside a ``.npz`` / ``.mat`` (default:
    the file's only variable). ``descriptor_layout`` = ``"rows"`` (default: one row per frame) or
    ``"columns"`` (one column per frame, MATLAB's usual [D, frames]). Dense arrays come back as
    C-contiguous float32, sparse ones (MATLAB ``sparse``, scipy ``save_npz``) as scipy.sparse
    without densifying. ``rows`` is the expected frame count (None: any).
    """
    from vprbench.data.arrays import is_sparse, read_array, sniff
    from vprbench.data.loaders.seqnet_files import load_descriptors

    p = definition.params
    rel = _param(definition, key)
    path = data_path(definition, data_dir, rel, key)
    layout = p.get("descriptor_layout", "rows")
    if layout not in DESCRIPTOR_LAYOUTS:
        raise ConfigError(f"dataset definition {definition.source}: descriptor_layout must be one of {DESCRIPTOR_LAYOUTS}, got {layout!r}")
    var = p.get(var_key) if var_key else None
    if var is not None and not isinstance(var, str):
        raise ConfigError(f"dataset definition {definition.source}: {var_key} must be a variable name (string), got {var!r}")
    if sniff(path) == "npy":
        arr = load_descriptors(path, dim=p.get("dim") if layout == "rows" else None, where=_where(definition, rel))
    else:
        arr = read_array(path, var, what=f"descriptors ({key})", param=var_key)
    if not is_sparse(arr):
        arr = np.asarray(arr)
        if arr.dtype.kind not in "fiub":
            raise DataError(f"{path}: descriptors have dtype {arr.dtype}, expected numbers")
    if arr.ndim != 2:
        raise DataError(f"{path}: descriptors have shape {arr.shape}, expected a 2-D [frames, D] array")
    if layout == "columns":
        arr = arr.T
    if rows is not None and arr.shape[0] != rows:
        hint = ""
        if arr.shape[1] == rows:
            other = "columns" if layout == "rows" else "rows"
            hint = f"; its other axis has {rows}: set descriptor_layout = \"{other}\" in [params]"
        raise DataError(
            f"{path}: {arr.shape[0]} descriptor rows (shape {list(arr.shape)}, descriptor_layout = \"{layout}\") but {rows} positions; "
            f"expected one descriptor per frame{hint}"
        )
    dim = p.get("dim")
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"{path}: descriptors have dimension {arr.shape[1]}, the definition says dim = {dim}")
    if is_sparse(arr):
        return arr
    return np.ascontiguousarray(arr, dtype=np.float32)
