"""Image-folder datasets (hand-made images) and the real Nordland 64x32 release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import data_dir
from helpers import write_definition
from PIL import Image

from vprbench.core.errors import DataError
from vprbench.data.catalog import load_dataset
from vprbench.data.loaders.nordland import nordland_filter, tunnel_segments

REPO = Path(__file__).resolve().parents[1]
DATA = data_dir()
NORDLAND = DATA / "nordland-64x32"


@pytest.fixture(autouse=True, scope="module")
def _cache(tmp_path_factory):
    """One descriptor cache for this module (the real-data tests share extracted descriptors)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VPRBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def _make_folders(root: Path, n: int = 24, traverses=("day", "night"), seed: int = 0) -> np.ndarray:
    """Frame-aligned folders of 32x16 grey images: place i looks alike in every traverse."""
    rng = np.random.default_rng(seed)
    places = rng.integers(0, 255, size=(n, 16, 32))
    for k, t in enumerate(traverses):
        (root / t).mkdir(parents=True)
        for i in range(n):
            img = np.clip(places[i] * (1.0 - 0.3 * k) + rng.normal(0, 10, size=(16, 32)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / t / f"{i:05d}.png")
    return places


def test_frame_aligned_folders(tmp_path):
    _make_folders(tmp_path / "data" / "folders")
    path = write_definition(tmp_path / "def.toml", "image-folders", {
        "reference": "day", "queries": ["night"], "radius": 0.5, "extractor_params": {"width": 32, "height": 16, "patch": 8},
        "splits": {"train": {"reference": [0, 12]}, "test": {"reference": [12, 24]}},
    }, name="folders")
    ds = load_dataset(str(path), tmp_path / "data")
    assert len(ds.reference) == 24 and ds.reference.dim == 32 * 16
    assert ds.reference.image_paths[3].name == "00003.png"
    test = ds.split("test")
    assert test.ground_truth.positives(0).tolist() == [0]
    # patch-normalised pixels match places despite the darker night images
    d = ((test.query.descriptors[:, None] - test.reference.descriptors[None]) ** 2).sum(-1)
    assert (d.argmin(1) == np.arange(12)).all()


def test_csv_positions_and_errors(tmp_path):
    root = tmp_path / "data" / "folders"
    _make_folders(root, n=6)
    for t, off in (("day", 0.0), ("night", 0.4)):
        rows = "".join(f"{i:05d}.png,{i * 10.0 + off},{5.0},{100 + i}\n" for i in range(6))
        (root / f"{t}.csv").write_text("image,x,y,timestamp\n" + rows)
    kw = dict(reference="day", queries=["night"], alignment="csv", radius=3.0, position_unit="m",
              positions={"day": "day.csv", "night": "night.csv"}, extractor_params={"width": 32, "height": 16, "patch": 8})
    ds = load_dataset(str(write_definition(tmp_path / "def.toml", "image-folders", kw, name="folders")), tmp_path / "data")
    q = ds.queries["night"]
    assert q.positions[2].tolist() == [20.4, 5.0] and q.timestamps[2] == 102
    assert ds.split("test").ground_truth.positives(2).tolist() == [2]
    # NaN position
    (root / "night.csv").write_text("image,x,y\n00000.png,0,0\n00001.png,nan,0\n")
    with pytest.raises(DataError, match=r"NaN.*rows \[1\]"):
        load_dataset(str(write_definition(tmp_path / "def.toml", "image-folders", kw, name="folders")), tmp_path / "data")
    # unknown image
    (root / "night.csv").write_text("image,x,y\n00000.png,0,0\n99999.png,1,0\n")
    with pytest.raises(DataError, match="99999.png"):
        load_dataset(str(write_definition(tmp_path / "def.toml", "image-folders", kw, name="folders")), tmp_path / "data")


def test_mismatched_folders_and_descriptors(tmp_path):
    root = tmp_path / "data" / "folders"
    _make_folders(root, n=8)
    (root / "night" / "00007.png").unlink()
    base = dict(reference="day", queries=["night"], radius=0.5, extractor_params={"width": 32, "height": 16, "patch": 8})
    with pytest.raises(DataError, match="7 images but reference 'day' has 8"):
        load_dataset(str(write_definition(tmp_path / "def.toml", "image-folders", base, name="folders")), tmp_path / "data")
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(root / "night" / "00007.png")
    # precomputed descriptors with the wrong row count
    np.save(root.parent / "day.npy", np.zeros((8, 4), np.float32))
    np.save(root.parent / "night.npy", np.zeros((9, 4), np.float32))
    pre = dict(base, extractor="precomputed", descriptors={"day": "day.npy", "night": "night.npy"})
    with pytest.raises(DataError, match=r"night.npy.*\[9, 4\], expected \[8, D\]"):
        load_dataset(str(write_definition(tmp_path / "def.toml", "image-folders", pre, name="folders")), tmp_path / "data")
    # an unreadable image names the file
    (root / "night" / "00003.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match="00003.png: cannot read image"):
        load_dataset(str(write_definition(tmp_path / "def.toml", "image-folders", base, name="folders")), tmp_path / "data")


def test_missing_folder_message(tmp_path):
    (tmp_path / "data").mkdir()
    params = {"reference": "day", "queries": ["night"], "radius": 0.5}
    with pytest.raises(DataError, match=r"(?s)2 file\(s\) missing.*folders/day"):
        load_dataset(str(write_definition(tmp_path / "def.toml", "image-folders", params, name="folders")), tmp_path / "data")


def test_nordland_filter_rule_hand_case():
    # 8 frames: frame 2 dark in the reference (tunnel), frame 5 repeats frame 4 in the query only
    rng = np.random.default_rng(0)
    ref = rng.integers(60, 200, size=(8, 4, 4)).astype(np.float32)
    qry = rng.integers(60, 200, size=(8, 4, 4)).astype(np.float32)
    ref[2] = 5.0
    qry[5] = qry[4] + 0.5
    keep, tunnel, stationary = nordland_filter({"s": ref, "w": qry}, "s", "clean", 30.0, 1.0)
    assert tunnel.tolist() == [i == 2 for i in range(8)]
    assert stationary.tolist() == [i == 5 for i in range(8)]
    assert keep.tolist() == [i not in (2, 5) for i in range(8)]
    keep_t, _, _ = nordland_filter({"s": ref, "w": qry}, "s", "tunnels", 30.0, 1.0)
    assert keep_t.tolist() == [i != 2 for i in range(8)]


def test_tunnel_segments_break_only_long_runs():
    removed = np.array([0, 1, 0, 0, 1, 1, 1, 0, 0, 0], bool)
    kept = np.flatnonzero(~removed)  # 0, 2, 3, 7, 8, 9
    seg = tunnel_segments(removed, kept, 3)
    assert seg.tolist() == [[0, 3], [0, 3], [0, 3], [3, 6], [3, 6], [3, 6]]
    assert tunnel_segments(removed, kept, 1)[0].tolist() == [0, 1]
    assert (tunnel_segments(removed, kept, 0) == [0, 6]).all()


needs_nordland = pytest.mark.skipif(not NORDLAND.is_dir(), reason=f"real data not found at {NORDLAND}")


@pytest.mark.data
@needs_nordland
def test_real_nordland_64x32_counts_and_splits():
    ds = load_dataset("nordland-64x32", DATA)
    m = ds.meta
    # the counts, independently of the loader: a plain loop over the files with PIL applying the documented rule
    # (tunnel: summer mean grey < 30; stationary: mean |difference| to the previous kept-or-not frame < 1 grey level
    # in either season; the data README says "about 225" tunnels and "about 400" stationary pairs)
    from PIL import Image

    names = sorted(p.name for p in (NORDLAND / "summer").glob("*.png"))
    grey = {s: [np.asarray(Image.open(NORDLAND / s / n).convert("L"), dtype=np.float64) for n in names] for s in ("summer", "winter")}
    tunnel = [g.mean() < 30 for g in grey["summer"]]
    stationary = [i > 0 and any(np.abs(grey[s][i] - grey[s][i - 1]).mean() < 1 for s in grey) for i in range(len(names))]
    independent = (len(names), sum(tunnel), sum(s and not t for s, t in zip(stationary, tunnel)))
    assert (m["frames_total"], m["tunnel_frames"], m["stationary_frames"]) == independent
    assert (m["frames_total"], m["tunnel_frames"], m["stationary_frames"], m["frames_kept"]) == (3576, 229, 400, 2947)
    assert len(ds.reference) == len(ds.queries["winter"]) == 2947
    assert ds.reference.dim == 2048 and ds.radius == 0.5
    sizes = {s: v.reference.size for s, v in ds.splits.items()}
    assert sum(sizes.values()) == 2947 and set(sizes) == {"train", "val", "test"}
    # splits are disjoint stretches of the route
    tr, va, te = (ds.reference.positions[ds.splits[s].reference, 0] for s in ("train", "val", "test"))
    assert tr.max() < va.min() and va.max() < te.min()
    assert len(np.unique(ds.reference.segment_bounds[:, 0])) == 20
    # ground truth is same-frame
    sd = ds.split("test")
    assert (sd.ground_truth.counts == 1).all()


@pytest.mark.data
@needs_nordland
def test_real_nordland_64x32_baseline():
    """The data README's sanity baseline: tunnels dropped, tolerance 0, all frames, no segment breaks."""
    from vprbench.plugins.api import RunContext
    from vprbench.plugins.registry import default_registry

    ds = load_dataset("nordland-64x32", DATA, {"filter": "tunnels", "break_min_frames": 0, "splits": {"test": [0.0, 1.0]}})
    sd = ds.split("test")
    assert len(sd.query) == 3347
    reg = default_registry()
    r1 = reg.create("netvlad").rank(sd, RunContext(seq_len=1, top_k=1))
    rec1 = sd.ground_truth.hits(r1.indices)[:, 0].mean()
    r5 = reg.create("seqmatch").rank(sd, RunContext(seq_len=5, top_k=1))
    rec5 = sd.ground_truth.hits(r5.indices)[:, 0].mean()
    assert abs(rec1 - 0.13) < 0.01 and abs(rec5 - 0.43) < 0.01
