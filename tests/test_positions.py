"""Positions files are read by column name, in one reader for every loader (each case failed before)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.catalog import load_dataset
from vprbench.data.positions import read_positions, to_metres

N = 40


def _pair(tmp_path: Path, ref_pos: str, qry_pos: str, **params) -> str:
    """A descriptor-pair definition over random descriptors (so recall is at chance level)."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "ref.npy", rng.normal(size=(N, 8)).astype(np.float32))
    np.save(tmp_path / "qry.npy", rng.normal(size=(N, 8)).astype(np.float32))
    p = {"reference_descriptors": "ref.npy", "query_descriptors": "qry.npy", "reference_positions": ref_pos,
         "query_positions": qry_pos, **({} if "tolerance" in params else {"radius": 5.0}), **params}
    text = 'name = "pos"\nloader = "descriptor-pair"\nsummary = "s"\n[params]\n' + "".join(f"{k} = {json.dumps(v)}\n" for k, v in p.items())
    (tmp_path / "pos.toml").write_text(text)
    return str(tmp_path / "pos.toml")


def _route(n: int = N) -> np.ndarray:
    """Positions of a route 3 m per frame along x, drifting in y."""
    return np.stack([np.arange(n) * 3.0, np.arange(n) * 0.5], axis=1)


def _write(path: Path, header: list[str], rows: np.ndarray | list) -> str:
    path.write_text(",".join(header) + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path.name


def test_column_order_does_not_change_the_ground_truth(tmp_path):
    xy = _route()
    _write(tmp_path / "xy.csv", ["x", "y"], xy)
    _write(tmp_path / "yx.csv", ["y", "x"], xy[:, ::-1])
    t = np.arange(N) * 0.1
    _write(tmp_path / "txy.csv", ["timestamp", "x", "y"], np.column_stack([t, xy]))
    _write(tmp_path / "en.csv", ["Easting", "Northing"], xy)
    a = read_positions(tmp_path / "xy.csv")
    for f in ("yx.csv", "txy.csv", "en.csv"):
        b = read_positions(tmp_path / f)
        assert np.array_equal(a.values, b.values) and b.unit == "m"
    assert np.allclose(read_positions(tmp_path / "txy.csv").timestamps, t)
    # through a loader: the same ground truth whichever column order the query file uses
    q_shifted = xy + [1.0, 0.0]
    _write(tmp_path / "q_xy.csv", ["x", "y"], q_shifted)
    _write(tmp_path / "q_yx.csv", ["y", "x"], q_shifted[:, ::-1])
    gt1 = load_dataset(_pair(tmp_path, "xy.csv", "q_xy.csv"), tmp_path).split("test").ground_truth
    gt2 = load_dataset(_pair(tmp_path, "xy.csv", "q_yx.csv"), tmp_path).split("test").ground_truth
    assert np.array_equal(gt1.indptr, gt2.indptr) and np.array_equal(gt1.indices, gt2.indices)
    assert gt1.positives(10).tolist() == [9, 10, 11]  # 3 m apart, radius 5 m, query 1 m ahead


def test_lat_lon_are_converted_to_metres_not_taken_as_metres(tmp_path):
    """Degrees read as metres made every reference a positive (R@1 1.000 on random descriptors)."""
    lat0, lon0 = 59.91, 10.75  # Oslo; 1e-4 degrees of latitude is about 11.1 m
    ll = np.stack([lat0 + np.arange(N) * 1e-4, np.full(N, lon0)], axis=1)
    _write(tmp_path / "ref_ll.csv", ["lat", "lon"], ll)
    _write(tmp_path / "qry_ll.csv", ["latitude", "longitude"], ll)
    ds = load_dataset(_pair(tmp_path, "ref_ll.csv", "qry_ll.csv"), tmp_path)
    steps = np.linalg.norm(np.diff(ds.reference.positions, axis=0), axis=1)
    assert np.allclose(steps, 11.13, atol=0.05)  # metres between 1e-4 degree steps
    gt = ds.split("test").ground_truth
    assert gt.counts.max() == 1  # each query only its own place (radius 5 m)
    assert any("UTM" in n and "zone 32N" in n for n in ds.meta["notes"])


def test_one_zone_for_every_traverse_across_a_zone_boundary():
    from vprbench.data.positions import Positions

    a = Positions(np.array([[50.0, 5.999], [50.0, 5.9995]]), "deg", source="a")
    b = Positions(np.array([[50.0, 6.0005], [50.0, 6.001]]), "deg", source="b")  # 6 deg E: zone 32 starts
    (pa, pb), note = to_metres([a, b])
    # one projection: the four points stay about 36 m apart along a line, not hundreds of km
    allpts = np.concatenate([pa.values, pb.values])
    assert np.allclose(np.linalg.norm(np.diff(allpts, axis=0), axis=1), [35.8, 71.6, 35.8], atol=0.5)
    assert "one zone" in note


def test_bad_position_files_give_clear_errors(tmp_path):
    _write(tmp_path / "extra.csv", ["x", "y", "speed"], np.zeros((3, 3)))
    with pytest.raises(DataError, match=r"unknown column\(s\) \['speed'\]"):
        read_positions(tmp_path / "extra.csv")
    _write(tmp_path / "noheader.csv", ["0.0", "1.0"], np.zeros((3, 2)))
    with pytest.raises(DataError, match="header row"):
        read_positions(tmp_path / "noheader.csv")
    _write(tmp_path / "half.csv", ["x", "lat"], np.zeros((3, 2)))
    with pytest.raises(DataError, match="exactly one complete group"):
        read_positions(tmp_path / "half.csv")
    _write(tmp_path / "deg.csv", ["lat", "lon"], [[95.0, 0.0]])
    with pytest.raises(DataError, match=r"\[-90, 90\]"):
        read_positions(tmp_path / "deg.csv")
    scipy.io.savemat(tmp_path / "pos.mat", {"utm": np.zeros((2, 5))})
    with pytest.raises(DataError, match="MATLAB v5 .mat file"):  # was a UnicodeDecodeError traceback
        read_positions(tmp_path / "pos.mat")
    _write(tmp_path / "frames.csv", ["frame"], np.arange(5)[:, None])
    assert read_positions(tmp_path / "frames.csv").unit == "frame"
    with pytest.raises(ConfigError, match="position_unit"):
        read_positions(tmp_path / "frames.csv", unit="m")
    with pytest.raises(DataError, match="5 position rows, expected 4"):
        read_positions(tmp_path / "frames.csv", n=4)


def test_row_positions_and_tolerance_in_frames(tmp_path):
    """Frame-aligned pairs need no position files: positions = "row", tolerance in frames."""
    path = _pair(tmp_path, "row", "row", tolerance=1)
    ds = load_dataset(path, tmp_path)
    assert ds.position_unit == "frame" and ds.radius == 1.5
    assert ds.split("test").ground_truth.positives(7).tolist() == [6, 7, 8]  # |i - j| <= 1
    text = Path(path).read_text().replace("tolerance = 1\n", "tolerance = 1.5\n")
    Path(path).write_text(text)
    with pytest.raises(ConfigError, match="whole number of frames"):
        load_dataset(path, tmp_path)
    Path(path).write_text(text.replace("tolerance = 1.5\n", "tolerance = 1\nposition_unit = \"m\"\n"))
    with pytest.raises(ConfigError, match="position_unit"):
        load_dataset(path, tmp_path)


def test_image_folders_csv_reads_columns_by_name(tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    for t in ("day", "night"):
        (root / t).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((16, 32), i * 20, np.uint8)).save(root / t / f"{i:05d}.png")
    xy = _route(12)
    (root / "day.csv").write_text("y,image,x\n" + "".join(f"{y},{i:05d}.png,{x}\n" for i, (x, y) in enumerate(xy)))
    (root / "night.csv").write_text("image,x,y\n" + "".join(f"{i:05d}.png,{x},{y}\n" for i, (x, y) in enumerate(xy)))
    toml = tmp_path / "f.toml"
    toml.write_text('name = "f"\nloader = "image-folders"\nsummary = "s"\n[params]\nroot = "imgs"\nreference = "day"\n'
                    'queries = ["night"]\nalignment = "csv"\npositions = {day = "day.csv", night = "night.csv"}\nradius = 2.0\n'
                    'extractor_params = {width = 32, height = 16, patch = 8}\n')
    ds = load_dataset(str(toml), tmp_path)
    assert np.array_equal(ds.reference.positions, ds.queries["night"].positions)
    assert ds.reference.meta["image_names"][3] == "00003.png"
