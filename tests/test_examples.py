"""Every example definition in datasets/examples/ works on data laid out as its comments and docs/bring-your-own-data.md say."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
from PIL import Image

from vprbench.cli.main import main
from vprbench.data.catalog import builtin_datasets_dir, load_dataset

EXAMPLES = builtin_datasets_dir() / "examples"
N = 60
RNG = np.random.default_rng(0)


def _drive(n: int = N, dim: int = 16, noise: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    base = np.cumsum(RNG.normal(size=(n, dim)), axis=0) * 0.3
    return (base + noise * RNG.normal(size=(n, dim))).astype(np.float32), (base + noise * RNG.normal(size=(n, dim))).astype(np.float32)


def _images(folder: Path, n: int = N, names=None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i:05d}.png" for i in range(n)]
    for i, name in enumerate(names):
        Image.fromarray(((np.arange(512).reshape(16, 32) * (i + 3)) % 251).astype(np.uint8)).save(folder / name)
    return names


def build_vpr_methods_evaluation(data: Path) -> None:
    from test_vpr_methods_evaluation import write_dump

    write_dump(data / "vpr-eval" / "tmp", images=True)
    shutil.move(data / "vpr-eval" / "tmp" / "dump", data / "vpr-eval" / "megaloc")
    shutil.move(data / "vpr-eval" / "tmp" / "data", data / "vpr-eval" / "msls-val")


def build_descriptor_pair(data: Path) -> None:
    d = data / "my-drives"
    d.mkdir(parents=True)
    ref, qry = _drive()
    np.save(d / "day.npy", ref)
    np.save(d / "night.npy", qry)
    (d / "day.csv").write_text("x,y\n" + "".join(f"{i * 2.0},0\n" for i in range(N)))
    (d / "night.csv").write_text("timestamp,x,y\n" + "".join(f"{i},{i * 2.0 + 0.5},1\n" for i in range(N)))


def build_descriptor_pair_mat(data: Path) -> None:
    d = data / "my-mat"
    d.mkdir(parents=True)
    ref, qry = _drive()
    scipy.io.savemat(d / "summer.mat", {"Y": sp.csr_matrix(np.where(np.abs(ref) > 0.5, ref, 0.0))})
    scipy.io.savemat(d / "winter.mat", {"Y": qry.astype(np.float64)})


def _csv_images(root: Path) -> None:
    for t in ("day", "night"):
        names = _images(root / t)
        (root / f"{t}.csv").write_text("image,x,y\n" + "".join(f"{n},{i * 3.0},0\n" for i, n in enumerate(names)))


def build_image_folders(data: Path) -> None:
    _csv_images(data / "my-images")


def build_image_folders_names(data: Path) -> None:
    build_vpr_methods_evaluation(data)


def build_nordland_64x32(data: Path) -> None:
    names = [f"images-{10 * (i + 1):05d}.png" for i in range(N)]
    for t in ("summer", "winter"):
        _images(data / "my-nordland" / t, names=names)


def build_seqnet(data: Path) -> None:
    from test_seqnet_format import _cell

    d = data / "my-seqnet"
    d.mkdir(parents=True)
    names = [f"img{i:04d}.png" for i in range(N)]
    (d / "imagenames.txt").write_text("\n".join(names) + "\n")
    ref, qry = _drive()
    np.save(d / "summer.npy", ref)
    np.save(d / "winter.npy", qry)
    for split, rows in (("train", np.arange(0, 30)), ("test", np.arange(35, N))):
        s = {"whichSet": split, "dataset": "nordland", "dbImageFns": _cell([names[i] for i in rows]),
             "qImageFns": _cell([names[i] for i in rows]), "numImages": rows.size, "numQueries": rows.size,
             "posDistThr": 2.0, "posDistSqThr": 4.0, "nonTrivPosDistSqThr": 1.0,
             "utmDb": rows[None, :].astype(float), "utmQ": rows[None, :].astype(float)}
        scipy.io.savemat(d / f"{split}.db", {"dbStruct": s})


def build_vpr_tutorial(data: Path) -> None:
    d = data / "my-tutorial"
    d.mkdir(parents=True)
    ref, qry = _drive()
    s = ref @ qry.T
    hard = np.eye(N, dtype=bool)
    soft = hard | np.eye(N, k=1, dtype=bool) | np.eye(N, k=-1, dtype=bool)
    np.save(d / "S.npy", s)
    np.savez(d / "GT.npz", GThard=hard, GTsoft=soft)


def build_vpr_bench(data: Path) -> None:
    from test_importers import _vpr_bench_files

    _vpr_bench_files(data)
    dest = data / "my-vpr-bench"
    (dest / "precomputed_matches" / "GardensPoint" / "NetVLAD").mkdir(parents=True)
    shutil.move(data / "ds", dest / "GardensPoint")
    shutil.move(data / "pm" / "precomputed_data_corrected.npy", dest / "precomputed_matches" / "GardensPoint" / "NetVLAD")


def build_synthetic(data: Path) -> None:
    pass


BUILDERS = {p.stem: globals()[f"build_{p.stem.replace('-', '_')}"] for p in sorted(EXAMPLES.glob("*.toml"))}


@pytest.mark.parametrize("stem", sorted(BUILDERS))
def test_example_definition_loads(stem, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    BUILDERS[stem](data)
    toml = EXAMPLES / f"{stem}.toml"
    params = {"trust": True} if stem == "vpr-bench" else None  # the example ships trust = false on purpose
    args = ["datasets", "verify", str(toml), "--data-dir", str(data), "--load"]
    if params is None:
        assert main(args) == 0, capsys.readouterr().err
        assert "loaded" in capsys.readouterr().out
    ds = load_dataset(str(toml), data, params)
    assert ds.name == f"example-{stem}"
    assert "test" in ds.splits and ds.split("test").ground_truth.has_positive.any()


def test_vpr_bench_example_needs_trust(tmp_path):
    from vprbench.core.errors import DataError

    build_vpr_bench(tmp_path)
    with pytest.raises(DataError, match="trust = true"):
        load_dataset(str(EXAMPLES / "vpr-bench.toml"), tmp_path)
