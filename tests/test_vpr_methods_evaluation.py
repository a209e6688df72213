"""VPR-methods-evaluation descriptor dumps and VPR-datasets-downloader image names, built here in the tools' layouts."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from helpers import write_definition
from PIL import Image

from vprbench.core.errors import DataError
from vprbench.data.catalog import load_dataset
from vprbench.data.loaders.vpr_methods_evaluation import parse_name, parse_timestamp, read_images_paths

#: A small synthetic route (about 250 frames per traverse) with train / val / test stretches.
SMALL = {"train_length_m": 200.0, "val_length_m": 80.0, "test_length_m": 200.0, "alias_per_km": 0.0}
T0 = datetime(2021, 5, 4, 10, 0, 0, tzinfo=timezone.utc)
EAST0, NORTH0 = 500000.0, 6000000.0


def image_name(east: float, north: float, t: datetime | None, pano: str = "") -> str:
    """A file name in the VPR-datasets-downloader convention (coordinates formatted as its util.format_coord)."""
    ts = t.strftime("%Y%m%d_%H%M%S") if t is not None else ""
    return f"@{east:010.2f}@{north:010.2f}@33@V@@@{pano}@@@@@@{ts}@@.jpg"


def write_dump(root: Path, timestamps: bool = True, images: bool = True, seed_offset: int = 0):
    """A dataset folder (database/, queries/) and a descriptor dump of a synthetic route, as the tools write them.

    Positions are the route's metres shifted into UTM; the route runs west (decreasing easting), so
    the tool's sorted-name order is the reverse of the drive order. Each frame's timestamp is one
    second after the previous one. Returns the synthetic dataset and, per side, the descriptor
    rows in the tool's order.
    """
    ds = load_dataset("synth-tiny", overrides=SMALL)
    out = {}
    for folder, t in (("database", ds.reference), ("queries", ds.queries[ds.default_query])):
        (root / "data" / folder).mkdir(parents=True, exist_ok=True)
        names = [
            image_name(EAST0 + x, NORTH0 + y, T0 + timedelta(seconds=i + seed_offset) if timestamps else None, pano=str(i))
            for i, (x, y) in enumerate(t.positions)
        ]
        assert len(set(names)) == len(names)
        for i, n in enumerate(names):
            if images:
                pattern = t.descriptors[i, :32].reshape(4, 8)
                pixels = np.clip(128 + 100 * pattern / (np.abs(pattern).max() + 1e-9), 0, 255).astype(np.uint8)
                Image.fromarray(np.kron(pixels, np.ones((8, 8), np.uint8))).convert("RGB").save(root / "data" / folder / n)
            else:
                (root / "data" / folder / n).write_bytes(b"")
        order = sorted(range(len(names)), key=lambda i: f"{root}/data/{folder}/{names[i]}")  # the tool: sorted(glob(...))
        out[folder] = (t, order)
        (root / "dump").mkdir(exist_ok=True)
        np.save(root / "dump" / f"{folder}_descriptors.npy", t.descriptors[order])
    return ds, out


#: The [params] of a definition reading write_dump's folders (descriptors under dump/, images under data/).
DUMP = {"descriptors": "dump", "dataset": "data"}
LOADER = "vpr-methods-evaluation"


def test_names_and_timestamps_parse_like_the_downloader():
    f = parse_name("sub/@0543256.96@5278561.85@32@U@47.65@009.17@panoX@03@090@@@@20190101_123000@day@.jpg")
    assert (f["utm_east"], f["utm_north"], f["utm_zone_number"], f["pano_id"], f["timestamp"], f["note"]) == (
        "0543256.96", "5278561.85", "32", "panoX", "20190101_123000", "day")
    assert parse_timestamp("20190101_123000") - parse_timestamp("20190101") == 12.5 * 3600
    assert parse_timestamp("") is None
    with pytest.raises(DataError, match="UTM"):
        parse_name("frame_0001.jpg")
    with pytest.raises(DataError, match="YYYYMMDD"):
        parse_timestamp("2019-01-01")


def test_image_order_is_the_tools(tmp_path):
    """Sorted recursive glob of .jpg/.jpeg/.png (any case), or the <folder>_images_paths.txt list as written."""
    d = tmp_path / "database"
    (d / "b").mkdir(parents=True)
    for rel in ("@2@0@.jpg", "@1@0@.JPG", "b/@0@0@.png", "@3@0@.txt", ".@9@9@.jpg", "@1@0@.jpeg"):
        (d / rel).write_bytes(b"")
    expected = sorted(["@2@0@.jpg", "@1@0@.JPG", "b/@0@0@.png", "@1@0@.jpeg"])
    assert read_images_paths(d) == expected
    (tmp_path / "database_images_paths.txt").write_text("b/@0@0@.png\n@2@0@.jpg\n")
    assert read_images_paths(d) == ["b/@0@0@.png", "@2@0@.jpg"]
    (tmp_path / "database_images_paths.txt").write_text("@404@0@.jpg\n")
    with pytest.raises(DataError, match="do not exist"):
        read_images_paths(d)


def test_dump_loads_in_drive_order_with_the_tools_ground_truth(tmp_path):
    ds_syn, dumps = write_dump(tmp_path, images=False)
    ds = load_dataset(str(write_definition(tmp_path / "vme.toml", LOADER, DUMP, name="vme-test")), tmp_path)
    for folder, traverse in (("database", ds.reference), ("queries", ds.queries["queries"])):
        t_syn, order = dumps[folder]
        # the tool's rows are sorted by name (= by easting, reversed drive order); frames come back in drive order
        assert order != sorted(order)
        assert np.array_equal(traverse.descriptors, t_syn.descriptors)
        assert np.allclose(traverse.positions, t_syn.positions + [EAST0, NORTH0], atol=0.006)
        assert np.array_equal(traverse.meta["source_rows"], np.argsort(order))
        assert traverse.meta["image_names"][0].startswith("@")
    assert ds.meta["frame_order"] == {"database": "timestamp", "queries": "timestamp"}
    assert ds.meta["warnings"] == []
    # positives: database images within 25 m (the tool's positive_dist_threshold), brute force
    gt = ds.split("test").ground_truth
    q, r = ds.queries["queries"].positions, ds.reference.positions
    for i in (0, 17, len(q) - 1):
        assert gt.positives(i).tolist() == np.flatnonzero(np.linalg.norm(r - q[i], axis=1) <= 25.0).tolist()
    # no split given: one test split; sequence segments only where frames are consecutive
    assert list(ds.splits) == ["test"]
    assert ds.reference.segment_bounds[0].tolist() == [0, len(ds.reference)]


def test_dump_without_timestamps_keeps_name_order_and_warns(tmp_path):
    write_dump(tmp_path, timestamps=False, images=False)
    ds = load_dataset(str(write_definition(tmp_path / "vme.toml", LOADER, DUMP, name="vme-test")), tmp_path)
    assert ds.meta["frame_order"]["database"] == "name"
    assert any("name order" in n for n in ds.meta["notes"])
    # order by the pano_id field (the frame number here) restores drive order
    ds2 = load_dataset(str(write_definition(tmp_path / "vme.toml", LOADER, {**DUMP, "order": "pano_id"}, name="vme-test")), tmp_path)
    syn = load_dataset("synth-tiny", overrides=SMALL)
    assert np.array_equal(ds2.reference.descriptors, syn.reference.descriptors)


def test_dump_errors_name_the_file(tmp_path):
    write_dump(tmp_path, images=False)
    np.save(tmp_path / "dump" / "queries_descriptors.npy", np.zeros((3, 32), np.float32))
    with pytest.raises(DataError, match=r"queries_descriptors.npy.*expected \[\d+, D\].*VPR-methods-evaluation"):
        load_dataset(str(write_definition(tmp_path / "vme.toml", LOADER, DUMP, name="vme-test")), tmp_path)
    (tmp_path / "dump" / "queries_descriptors.npy").unlink()
    with pytest.raises(DataError, match="dump/queries_descriptors.npy"):
        load_dataset(str(write_definition(tmp_path / "vme.toml", LOADER, DUMP, name="vme-test")), tmp_path)


def test_shuffled_dump_segments_at_jumps_and_is_flagged(tmp_path):
    """Names in a random order without timestamps: segments break at the jumps, and the dataset says so."""
    write_dump(tmp_path, timestamps=False, images=False)
    # shuffle by giving every image a random pano_id to order by
    rng = np.random.default_rng(0)
    for folder in ("database", "queries"):
        for p in sorted((tmp_path / "data" / folder).iterdir()):
            fields = p.name.split("@")
            fields[7] = str(rng.integers(1_000_000))
            p.rename(p.with_name("@".join(fields)))
    ds = load_dataset(str(write_definition(tmp_path / "vme.toml", LOADER, {**DUMP, "order": "pano_id"}, name="vme-test")), tmp_path)
    seg = ds.reference.segment_bounds
    assert len(np.unique(seg[:, 0])) > len(ds.reference) // 4  # shuffled frames are rarely neighbours
    assert any("does not follow the drive" in w and "'database'" in w for w in ds.meta["warnings"])
    # the same folders in drive order: one segment, no warning
    # name order = by easting = the reverse drive
    ordered = load_dataset(str(write_definition(tmp_path / "vme.toml", LOADER, DUMP, name="vme-test")), tmp_path)
    assert np.unique(ordered.reference.segment_bounds[:, 0]).size == 1 and ordered.meta["warnings"] == []


@pytest.mark.slow
def test_every_method_runs_on_a_dump(tmp_path, capsys):
    """A dump in the tool's layout, with train / val / test stretches, runs through `vprbench run --methods all`."""
    from vprbench.cli.main import main

    ds_syn, _ = write_dump(tmp_path, images=True)
    ranges = {k: {"reference": [int(s.reference[0]), int(s.reference[-1]) + 1], "query": [int(s.query[0]), int(s.query[-1]) + 1]}
              for k, s in ds_syn.splits.items()}
    toml = write_definition(tmp_path / "vme.toml", LOADER, DUMP, name="vme-test")
    toml.write_text(toml.read_text() + "radius = 10.0\nnontrivial_radius = 5.0\nnegative_radius = 25.0\n"
                    + "".join(f"splits.{k}.reference = {v['reference']}\nsplits.{k}.query = {v['query']}\n" for k, v in ranges.items()))
    out = tmp_path / "runs"
    code = main(["run", "--methods", "all", "--dataset", str(toml), "--data-dir", str(tmp_path), "--out", str(out), "--no-report"])
    err = capsys.readouterr().err
    assert code == 0, err
    records = [json.loads(p.read_text()) for p in out.glob("records/vme-test/*/*.json")]
    from vprbench.plugins.registry import default_registry

    assert sorted(r["job"]["method"] for r in records) == sorted(default_registry().names())
    recall = {r["job"]["method"]: r["metrics"]["recall_at"]["1"] for r in records}
    # the sequence methods see the frames in drive order: they beat the single-image baseline
    assert recall["seqmatch"] > recall["netvlad"] and recall["seqmatch"] > 0.8
    # export: the pairs name the tool's image files, and round-trip through a reader written here
    assert main(["export", "pairs", str(out), "--dataset", str(toml), "--data-dir", str(tmp_path), "--format", "csv"]) == 0
    pairs = next((out / "exports" / "vme-test" / "seqmatch").glob("*.pairs.csv"))
    with open(pairs, newline="") as f:
        rows = list(csv.DictReader(f))
    ds = load_dataset(str(toml), tmp_path)
    q_names = ds.queries["queries"].meta["image_names"]
    first = rows[0]
    assert first["query"] == q_names[int(ds_syn.splits["test"].query[0])] and first["rank"] == "1"
    assert (tmp_path / "data" / "database" / first["reference"]).is_file()
