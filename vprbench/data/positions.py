"""Frame positions from files: one reader for every loader, columns read by name.

A positions file is either a ``.npy`` array [frames] or [frames, P] (no column names: its unit is
the definition's ``position_unit``), or a text table (``.csv``, ``.txt``; comma, semicolon, tab
or whitespace separated) whose first line names the columns. Columns are matched by name, never by
position, case-insensitively:

* positions, exactly one group: ``x, y`` / ``east, north`` / ``easting, northing`` /
  ``utm_e, utm_n`` (metres), ``lat, lon`` / ``latitude, longitude`` (degrees, WGS84: projected
  to UTM metres, every traverse of a dataset into the same zone, see :func:`to_metres`), or
  ``frame`` (a frame index; unit "frame");
* optional ``image`` (the frame's image file name) and ``timestamp`` (seconds);
* any other column is an error (a misnamed column would otherwise be silently ignored).

So ``y,x`` reads the same ground truth as ``x,y``, and a ``lat,lon`` file can no longer be taken
as metres (which made every reference a positive).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.arrays import describe, read_array, sniff

#: Position column groups (names in file order of the coordinates) and their unit.
POSITION_GROUPS: dict[tuple[str, ...], str] = {
    ("x", "y"): "m",
    ("east", "north"): "m",
    ("easting", "northing"): "m",
    ("utm_e", "utm_n"): "m",
    ("lat", "lon"): "deg",
    ("latitude", "longitude"): "deg",
    ("frame",): "frame",
}
OTHER_COLUMNS = ("image", "timestamp")
KNOWN_COLUMNS = tuple(c for g in POSITION_GROUPS for c in g) + OTHER_COLUMNS


@dataclass(frozen=True, eq=False)
class Positions:
    """Positions read from one file.

    Attributes:
        values: [n, P] float64, in ``unit``.
        unit: ``"m"``, ``"frame"`` or ``"deg"`` (latitude, longitude; :func:`to_metres` projects it).
        timestamps: [n] seconds, or None.
        images: n image names (the ``image`` column), or None.
        source: the file, for messages.
    """

    values: np.ndarray
    unit: str
    timestamps: np.ndarray | None = None
    images: tuple[str, ...] | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.values.shape[0])


def _split_lines(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        return [], []
    first = lines[0]
    delim = next((d for d in (",", ";", "\t") if d in first), None)
    if delim is None:
        rows = [ln.split() for ln in lines]
    else:
        rows = [[c.strip() for c in r] for r in csv.reader(io.StringIO("\n".join(lines)), delimiter=delim)]
    return [c.strip().lower() for c in rows[0]], rows[1:]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_table(path: Path, what: str) -> Positions:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: {what}: not UTF-8 text (byte {e.start}); save the table as UTF-8 CSV") from None
    header, rows = _split_lines(text)
    if not header:
        raise DataError(f"{path}: {what}: the file is empty; expected a header row and one row per frame")
    if all(_is_number(c) for c in header):
        raise DataError(
            f"{path}: {what}: the first line is numbers, not column names; the file needs a header row naming its "
            f"columns (x,y or east,north or utm_e,utm_n in metres; lat,lon in degrees; frame; optional image, timestamp), "
            "so that columns are never guessed from their position"
        )
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise DataError(f"{path}: {what}: column(s) {dup} appear twice in the header")
    unknown = [c for c in header if c not in KNOWN_COLUMNS]
    if unknown:
        raise DataError(
            f"{path}: {what}: unknown column(s) {unknown}; known columns: positions {' | '.join(','.join(g) for g in POSITION_GROUPS)}, "
            f"and optionally {', '.join(OTHER_COLUMNS)}"
        )
    groups = [g for g in POSITION_GROUPS if any(c in header for c in g)]
    if len(groups) != 1 or not all(c in header for c in groups[0]):
        found = [c for c in header if c not in OTHER_COLUMNS]
        raise DataError(
            f"{path}: {what}: needs exactly one complete group of position columns "
            f"({' | '.join(','.join(g) for g in POSITION_GROUPS)}), found {found}"
        )
    group = groups[0]
    bad_len = [i for i, r in enumerate(rows) if len(r) != len(header)]
    if bad_len:
        raise DataError(f"{path}: {what}: row(s) {[i + 2 for i in bad_len[:5]]} (line numbers) have another number of fields than the header ({len(header)})")
    if not rows:
        raise DataError(f"{path}: {what}: no rows after the header (expected one row per frame)")
    col = {c: i for i, c in enumerate(header)}

    def numbers(names: Sequence[str]) -> np.ndarray:
        try:
            return np.array([[float(r[col[c]]) for c in names] for r in rows], dtype=np.float64)
        except ValueError as e:
            raise DataError(f"{path}: {what}: columns {list(names)} must be numbers ({e})") from None

    values = numbers(group)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise DataError(f"{path}: {what}: positions hold NaN or infinite values at rows {np.flatnonzero(bad)[:5].tolist()}")
    ts = numbers(["timestamp"])[:, 0] if "timestamp" in col else None
    if ts is not None and not np.isfinite(ts).all():
        raise DataError(f"{path}: {what}: timestamps hold NaN or infinite values at rows {np.flatnonzero(~np.isfinite(ts))[:5].tolist()}")
    images = tuple(r[col["image"]] for r in rows) if "image" in col else None
    unit = POSITION_GROUPS[group]
    if unit == "deg":
        lat, lon = values[:, 0], values[:, 1]
        if (np.abs(lat) > 90).any() or (np.abs(lon) > 180).any():
            raise DataError(f"{path}: {what}: latitude must lie in [-90, 90] and longitude in [-180, 180] degrees")
    return Positions(values, unit, ts, images, str(path))


def read_positions(path: str | Path, n: int | None = None, unit: str | None = None, what: str = "positions") -> Positions:
    """Positions of one traverse from ``path`` (see the module docstring for the formats).

    Args:
        n: expected number of frames (rows), or None.
        unit: the definition's ``position_unit`` ("m" | "frame"), or None. For ``.npy`` files it
            is the unit (default "m"); for tables it must agree with the columns' unit.
    Raises:
        DataError naming the file for a missing file, another format (e.g. a MATLAB file), a
        missing header, unknown columns, non-numbers, NaN or a wrong row count; ConfigError when
        ``unit`` contradicts the columns.
    """
    path = Path(path)
    kind = sniff(path)
    if kind == "missing":
        raise DataError(f"{path}: position file not found")
    if kind == "npy":
        arr = np.asarray(read_array(path, what=f"{what} positions"))
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"{path}: {what}: positions have shape {arr.shape} and dtype {arr.dtype}, expected numbers [frames, P]")
        values = np.asarray(arr, dtype=np.float64)
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise DataError(f"{path}: {what}: positions hold NaN or infinite values at rows {np.flatnonzero(bad)[:5].tolist()}")
        pos = Positions(values, unit or "m", source=str(path))
    elif kind == "text":
        pos = _read_table(path, what)
        if unit is not None and {"deg": "m"}.get(pos.unit, pos.unit) != unit:
            raise ConfigError(
                f"{path}: {what}: its columns are in {'degrees (converted to metres)' if pos.unit == 'deg' else repr(pos.unit)} "
                f"but the definition says position_unit = {unit!r}; remove position_unit or make them agree"
            )
    else:
        raise DataError(
            f"{path}: {what}: is {describe(path)}; positions must be a .npy array [frames, P] or a text table (.csv) "
            "with a header row (x,y | east,north | utm_e,utm_n | lat,lon | frame)"
        )
    if pos.unit == "frame" and pos.values.shape[1] != 1:
        raise ConfigError(
            f"{path}: {what}: position_unit = \"frame\" but the array has {pos.values.shape[1]} columns; frame positions are "
            "1-D (one frame index per row): give [frames] or [frames, 1], or positions in metres"
        )
    if n is not None and len(pos) != n:
        raise DataError(f"{path}: {what}: {len(pos)} position rows, expected {n} (one per frame / descriptor row)")
    return pos


def utm_zone(lat: np.ndarray, lon: np.ndarray) -> tuple[int, bool]:
    """The UTM zone number and hemisphere (True = north) of the mean of the points (degrees)."""
    import utm

    _, _, number, _ = utm.from_latlon(float(np.mean(lat)), float(np.mean(lon)))
    return int(number), bool(np.mean(lat) >= 0)


def to_metres(tables: Sequence[Positions]) -> tuple[list[Positions], str | None]:
    """Project every ``deg`` table (lat, lon) to UTM easting/northing metres in one common zone.

    The zone is that of the mean of all the tables' points (with the ``utm`` library), so that
    reference and query positions stay comparable; a note says which zone was used. Mixing
    degree tables with metre tables is refused (their frames of reference are unknown to each other).
    Returns the tables (others unchanged) and the note (None if nothing was projected).
    """
    deg = [t for t in tables if t.unit == "deg"]
    if not deg:
        return list(tables), None
    other = [t for t in tables if t.unit != "deg"]
    if other:
        raise DataError(
            f"positions: {', '.join(t.source for t in deg)} are latitude/longitude but {', '.join(t.source for t in other)} "
            "are not; give every traverse of a dataset in the same kind of columns"
        )
    import utm

    all_lat = np.concatenate([t.values[:, 0] for t in deg])
    all_lon = np.concatenate([t.values[:, 1] for t in deg])
    number, north = utm_zone(all_lat, all_lon)
    out = []
    for t in tables:
        try:
            e, n, _, _ = utm.from_latlon(t.values[:, 0], t.values[:, 1], force_zone_number=number, force_northern=north)
        except utm.error.OutOfRangeError as err:
            raise DataError(f"{t.source}: cannot project latitude/longitude to UTM ({err}); give positions in metres (x,y)") from None
        out.append(replace(t, values=np.stack([np.asarray(e, np.float64), np.asarray(n, np.float64)], axis=1), unit="m"))
    note = f"latitude/longitude converted to UTM metres in zone {number}{'N' if north else 'S'} (one zone for every traverse)"
    return out, note


def check_unit(unit: object, what: str) -> str:
    """``unit`` if it is "m" or "frame", else ConfigError naming ``what``."""
    if unit not in ("m", "frame"):
        raise ConfigError(f"{what}: position_unit must be \"m\" or \"frame\", got {unit!r}")
    return str(unit)


__all__ = ["KNOWN_COLUMNS", "POSITION_GROUPS", "Positions", "check_unit", "read_positions", "to_metres", "utm_zone"]
