"""Helpers shared by the loaders: declared and typed definition parameters, file checks, positions, split ranges."""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError, unknown_name
from vprbench.data.dataset import SplitIndices
from vprbench.data.download import FileSpec, data_path, file_specs, missing_files_error, param_key
from vprbench.data.positions import Positions, check_unit, read_positions

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition


#: Where the user-facing loaders' parameters are documented (named in unknown-parameter errors).
PARAMS_DOC = "docs/bring-your-own-data.md"

#: Ground-truth parameters of the loaders that take positions (:func:`evaluation_radius`, :func:`training_radii`).
RADIUS_PARAMS = ("radius", "tolerance", "nontrivial_radius", "negative_radius", "nontrivial_tolerance", "negative_tolerance")


def loader_params(*names: str, refused: dict[str, str] | None = None, doc: str = PARAMS_DOC) -> Callable:
    """Decorator of a loader function: the ``[params]`` keys it reads.

    :func:`vprbench.data.catalog.check_params` refuses every other key (with close matches and the
    page ``doc``) before the loader runs, in ``load_dataset`` and ``datasets verify``: a misspelt
    parameter never silently falls back to its default. ``refused`` maps keys the loader refuses
    on purpose (retired or meaningless for it) to the reason given.
    """

    def mark(fn: Callable) -> Callable:
        fn.params = frozenset(names)
        fn.refused_params = dict(refused or {})
        fn.params_doc = doc
        return fn

    return mark


def _param(definition: DatasetDefinition, key: str, kind: type | tuple[type, ...] = str) -> Any:
    if key not in definition.params:
        raise ConfigError(f"dataset definition {definition.source}: [params] lacks {key!r}")
    value = definition.params[key]
    if not isinstance(value, kind):
        raise ConfigError(f"dataset definition {definition.source}: param {key!r} must be {kind}, got {value!r}")
    return value


def _check_files(definition: DatasetDefinition, data_dir: Path, rel_paths: list[str]) -> None:
    """DataError listing the files of ``rel_paths`` missing under ``data_dir`` (ConfigError for paths leaving it)."""
    missing = [p for p in rel_paths if not data_path(definition, data_dir, p, param_key(definition, p)).exists()]
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
    key = positions_key(definition, side)
    value = _param(definition, key)
    unit = p.get("position_unit")
    if unit is not None:
        check_unit(unit, f"dataset definition {definition.source}")
    if value == ROW:
        if unit not in (None, "frame"):
            raise ConfigError(f"dataset definition {definition.source}: {key} = \"row\" means positions in frames, but position_unit = {unit!r}")
        return Positions(np.arange(n, dtype=np.float64)[:, None], "frame", source=f"{key} = \"row\"")
    return read_positions(data_path(definition, data_dir, value, key), n, unit, what=f"{side} positions")


def positions_key(definition: DatasetDefinition, side: str) -> str:
    """The param holding the positions of ``side``: ``{side}_positions``, else ``positions`` (both sides).

    ConfigError if neither is given, or if ``positions`` is given together with a per-side key
    (one of them would be silently ignored for one traverse).
    """
    p = definition.params
    own = [k for k in ("reference_positions", "query_positions") if k in p]
    if "positions" in p and own:
        raise ConfigError(
            f"dataset definition {definition.source}: [params] gives positions = {p['positions']!r} (for both traverses) and "
            f"{' and '.join(f'{k} = {p[k]!r}' for k in own)}; give either positions or reference_positions and query_positions"
        )
    key = f"{side}_positions" if f"{side}_positions" in p else "positions"
    if key not in p:
        raise ConfigError(
            f"dataset definition {definition.source}: [params] needs {side}_positions = \"file\" (or positions = \"row\" "
            "for frame-aligned data: the row index is the position)"
        )
    return key


def _positive_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value > 0 and math.isfinite(value)


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
        if not _positive_number(r):
            raise ConfigError(f"dataset definition {src}: radius must be a finite number > 0 ({'metres' if unit == 'm' else 'frames'}), got {r!r}")
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
            if not _positive_number(v):
                raise ConfigError(f"dataset definition {src}: {rk} must be a finite number > 0, got {v!r}")
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


#: Keys of a split table, the split names the runner gives a meaning, and the smallest split (frames per traverse).
SPLIT_KEYS = ("reference", "query")
STANDARD_SPLITS = ("train", "val", "test")
MIN_SPLIT_FRAMES = 2


def split_name_warning(name: str) -> str | None:
    """A warning text for a split name other than train / val / test (which the runner uses by name)."""
    if name in STANDARD_SPLITS:
        return None
    low = name.lower()
    close = [s for s in STANDARD_SPLITS if low.startswith(s) or s.startswith(low)] or difflib.get_close_matches(low, STANDARD_SPLITS, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"split {name!r} is not one of {', '.join(STANDARD_SPLITS)}: learned methods train on 'train' and pick their epoch on "
        f"'val', and runs evaluate 'test'; {name!r} is used only when a run names it (--split {name}).{hint}"
    )


def parse_splits(spec: Any, n_ref: int, n_query: int, what: str, warnings_out: list[str] | None = None) -> dict[str, SplitIndices]:
    """Split ranges from a definition: ``{name = {reference = [a, b], query = [a, b]}}``.

    ``a, b`` are frame indices (ints) or fractions of the traverse (floats in [0, 1]); [a, b) is
    half-open. Missing ``spec`` means one split ``test`` over everything. A split needs at least
    :data:`MIN_SPLIT_FRAMES` frames per traverse (``query = [0, 1]`` is one frame: integers are
    indices, so the message suggests ``[0.0, 1.0]``); keys other than ``reference`` / ``query``
    are errors. Legal but suspicious: a split without ``query`` (it reuses the reference range,
    right only for frame-aligned traverses) and names other than train / val / test; these go to
    ``warnings_out`` (the loader's ``meta["warnings"]``, printed and recorded with the dataset's
    name), or are issued with :func:`warnings.warn` (prefixed with ``what``) without it.
    """
    if spec is None:
        return {"test": SplitIndices.from_ranges((0, n_ref), (0, n_query))}
    if not isinstance(spec, dict) or not spec:
        raise ConfigError(f"{what}: 'splits' must be a table of split names")
    found: list[str] = []

    def rng(v: Any, n: int, side: str, name: str) -> tuple[int, int]:
        numbers = isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
        if not numbers or not all(math.isfinite(x) for x in v):
            raise ConfigError(f"{what}: split {name!r} {side} must be [start, end) with two frame indices (integers) or fractions (floats in [0, 1]), got {v!r}")
        a, b = (int(round(x * n)) if isinstance(x, float) else int(x) for x in v)
        ints = [x for x in v if isinstance(x, int)]
        ints_01 = 1 in ints and all(x in (0, 1) for x in ints) and n > MIN_SPLIT_FRAMES  # [0, 1], [0.5, 1]: fractions meant?
        hint = "; integers are frame indices: write fractions as floats, e.g. [0.0, 1.0] for the whole traverse" if ints_01 else ""
        if not 0 <= a < b <= n:
            raise ConfigError(f"{what}: split {name!r} {side} range {v!r} is empty or outside 0..{n}{hint}")
        if b - a < MIN_SPLIT_FRAMES:
            raise ConfigError(f"{what}: split {name!r} {side} range {v!r} holds {b - a} frame (at least {MIN_SPLIT_FRAMES} needed){hint}")
        return a, b

    out = {}
    for name, s in spec.items():
        if not isinstance(s, dict) or "reference" not in s:
            raise ConfigError(f"{what}: split {name!r} needs reference = [start, end) (and query = [start, end))")
        for key in s:
            if key not in SPLIT_KEYS:
                raise ConfigError(f"{what}: {unknown_name(f'key of split {name!r}', key, SPLIT_KEYS)}")
        if "query" not in s:
            found.append(
                f"split {name!r} gives no query range: it reuses the reference range {s['reference']!r} for the query traverse "
                "(right only if the traverses are frame-aligned); give query = [start, end) to say so"
            )
        w = split_name_warning(name)
        if w:
            found.append(w)
        out[name] = SplitIndices.from_ranges(rng(s["reference"], n_ref, "reference", name), rng(s.get("query", s["reference"]), n_query, "query", name))
    for text in found:
        if warnings_out is not None:
            warnings_out.append(text)
        else:
            warnings.warn(f"{what}: {text}", stacklevel=2)
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
    dim = p.get("dim")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ConfigError(f"dataset definition {definition.source}: [params] dim must be a positive whole number "
                          f"(the descriptor dimension), got {dim!r}")
    if sniff(path) == "npy":
        arr = load_descriptors(path, dim=dim if layout == "rows" else None, where=_where(definition, rel))
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
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"{path}: descriptors have dimension {arr.shape[1]}, the definition says dim = {dim}")
    if is_sparse(arr):
        return arr
    return np.ascontiguousarray(arr, dtype=np.float32)
