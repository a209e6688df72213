"""Dataset definitions that cannot silently mislead: each case here misbehaved before (wrong numbers or tracebacks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from helpers import write_definition

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.catalog import DATASET_PATH_ENV, definition_failures, definitions, get_definition, load_dataset
from vprbench.data.dataset import BenchmarkDataset, SplitIndices
from vprbench.data.order import order_warning, segments_from_steps, spacing
from vprbench.data.traverse import Traverse


def _pair_files(root: Path, n: int = 60) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for side in ("ref", "qry"):
        np.save(root / f"{side}.npy", rng.normal(size=(n, 8)).astype(np.float32))
        (root / f"{side}.csv").write_text("x,y\n" + "".join(f"{i * 2.0},0\n" for i in range(n)))


#: The [params] of a descriptor-pair definition reading the files of _pair_files.
PAIR = {"reference_descriptors": "ref.npy", "query_descriptors": "qry.npy", "reference_positions": "ref.csv",
        "query_positions": "qry.csv", "radius": 4.0}


# frame order --------------------------------------------------------------------------------


def test_shuffled_frames_are_detected_in_metres_and_frames():
    n = 200
    pos = np.stack([np.arange(n) * 2.0, np.zeros(n)], axis=1)
    ordered = Traverse("t", pos)
    assert order_warning(ordered) is None
    rng = np.random.default_rng(0)
    shuffled = Traverse("t", pos[rng.permutation(n)])
    w = order_warning(shuffled)
    assert w is not None and "shuffled" in w and "'t'" in w
    frames = Traverse("f", np.arange(n, dtype=float)[rng.permutation(n)], "frame")
    assert "shuffled" in order_warning(frames)
    # a dataset collects it, so the runner can print and record it
    ds = BenchmarkDataset("d", ordered, {"q": shuffled}, {"test": SplitIndices.from_ranges((0, n), (0, n))}, radius=3.0)
    assert len(ds.meta["warnings"]) == 1 and "'t'" in ds.meta["warnings"][0]
    # one jump inside a segment is reported too; the same jump at a segment bound is not
    jumpy = pos.copy()
    jumpy[100:, 0] += 500.0
    assert "segments may need breaking" in order_warning(Traverse("j", jumpy))
    assert order_warning(Traverse("f", np.concatenate([np.arange(100), np.arange(165, 265)]).astype(float), "frame")) is None  # filtered frames
    seg = segments_from_steps(jumpy)
    assert seg[99].tolist() == [0, 100] and seg[100].tolist() == [100, 200]
    assert order_warning(Traverse("j", jumpy, segments=seg)) is None


def test_stops_and_time_gaps_in_segments():
    pos = np.concatenate([np.zeros(5), np.arange(1, 50) * 2.0])[:, None]  # standing still, then driving
    assert spacing(pos) == 2.0
    ts = np.arange(54, dtype=float)
    ts[30:] += 100.0  # a 100 s gap: the drive stopped recording
    seg = segments_from_steps(pos, ts)
    assert seg[29].tolist() == [0, 30] and seg[30].tolist() == [30, 54]


def test_degrees_given_as_metres_are_flagged():
    lat = 59.91 + np.arange(30) * 1e-4
    ds = BenchmarkDataset("d", Traverse("r", np.stack([lat, np.full(30, 10.75)], 1)), {"q": Traverse("q", np.stack([lat, np.full(30, 10.75)], 1))},
                          {"test": SplitIndices.from_ranges((0, 30), (0, 30))}, radius=5.0)
    assert any("latitude/longitude" in w for w in ds.meta["warnings"])


# training radii -----------------------------------------------------------------------------


def test_training_definition_without_radii_gets_derived_radii_and_a_note(tmp_path):
    _pair_files(tmp_path)
    splits = {"train": {"reference": [0, 30], "query": [0, 30]}, "test": {"reference": [35, 60], "query": [35, 60]}}
    ds = load_dataset(str(write_definition(tmp_path / "t.toml", "descriptor-pair", {**PAIR, "splits": splits})), tmp_path)
    # before: nontrivial = negative = None, i.e. the 4 m evaluation radius as positives and the very next frames as negatives
    assert (ds.nontrivial_radius, ds.negative_radius) == (2.0, 8.0)
    assert any("derived nontrivial_radius = 2 m" in n and "negative_radius = 8 m" in n for n in ds.meta["notes"])
    train = ds.split("train")
    assert train.training_non_negatives().positives(10).tolist() == list(range(6, 15))  # within 8 m: not negatives
    radii = {**PAIR, "splits": splits, "nontrivial_radius": 1.0, "negative_radius": 10.0}
    ds2 = load_dataset(str(write_definition(tmp_path / "t2.toml", "descriptor-pair", radii)), tmp_path)
    assert (ds2.nontrivial_radius, ds2.negative_radius, ds2.meta["notes"]) == (1.0, 10.0, [])
    with pytest.raises(ConfigError, match="must be larger"):
        bad = {**PAIR, "splits": splits, "nontrivial_radius": 5.0, "negative_radius": 3.0}
        load_dataset(str(write_definition(tmp_path / "t3.toml", "descriptor-pair", bad)), tmp_path)
    # without a train split nothing is derived
    ds4 = load_dataset(str(write_definition(tmp_path / "t4.toml", "descriptor-pair", PAIR)), tmp_path)
    assert (ds4.nontrivial_radius, ds4.negative_radius, ds4.meta["notes"]) == (None, None, [])


# paths ----------------------------------------------------------------------------------------


def test_paths_stay_inside_the_data_directory(tmp_path):
    data = tmp_path / "data"
    _pair_files(data)
    _pair_files(tmp_path / "elsewhere")
    outside = str(tmp_path / "elsewhere" / "ref.npy")
    for value in ("../elsewhere/ref.npy", outside):
        with pytest.raises(ConfigError, match="outside the data directory.*allow_absolute_paths"):
            load_dataset(str(write_definition(tmp_path / "o.toml", "descriptor-pair", {**PAIR, "reference_descriptors": value})), data)
    params = {**PAIR, "reference_descriptors": outside}
    ds = load_dataset(str(write_definition(tmp_path / "o.toml", "descriptor-pair", params, top={"allow_absolute_paths": True})), data)
    assert len(ds.reference) == 60
    with pytest.raises(ConfigError, match="TOML boolean"):
        load_dataset(str(write_definition(tmp_path / "o.toml", "descriptor-pair", params, top={"allow_absolute_paths": "yes"})), data)


def test_download_never_writes_outside_the_data_directory(tmp_path):
    from vprbench.data.catalog import DatasetDefinition
    from vprbench.data.download import download_dataset

    src = tmp_path / "src.bin"
    src.write_bytes(b"x" * 10)
    data = tmp_path / "a" / "data"
    data.mkdir(parents=True)
    text = f'name = "x"\nloader = "synthetic"\nsummary = "s"\n[[files]]\npath = "../../x.bin"\nurl = "{src.as_uri()}"\n'
    with pytest.raises(ConfigError, match="outside the data directory"):
        download_dataset(DatasetDefinition.from_toml(text, "x.toml"), data, progress=None)
    # the flag allows reading elsewhere, never writing there
    with pytest.raises(ConfigError, match="download writes only inside"):
        download_dataset(DatasetDefinition.from_toml("allow_absolute_paths = true\n" + text, "x.toml"), data, progress=None)
    assert not (tmp_path / "x.bin").exists()


def test_malformed_files_entries_are_config_errors():
    from vprbench.data.catalog import DatasetDefinition
    from vprbench.data.download import file_specs

    base = 'name = "x"\nloader = "synthetic"\nsummary = "s"\n[[files]]\npath = "a.npy"\n'
    for extra, match in (('shape = ["big"]', "shape must be a list of integers"), ('size = "1 MB"', "size must be a whole number"),
                         ('optional = "no"', "optional must be true or false"), ("url = 3", "url must be a string"),
                         ('sha256 = "abc"', "sha256 must be 64 hexadecimal digits"),
                         (f'sha256 = "{"g" * 64}"', "sha256 must be 64 hexadecimal digits")):
        with pytest.raises(ConfigError, match=match):
            file_specs(DatasetDefinition.from_toml(base + extra + "\n", "x.toml"))


# catalog ------------------------------------------------------------------------------------


def test_a_broken_user_definition_does_not_block_the_others(tmp_path, monkeypatch, capsys):
    from vprbench.cli.main import main

    (tmp_path / "broken.toml").write_text('name = "broken"\nloader = \n')
    (tmp_path / "nofields.toml").write_text('name = "nofields"\n')
    (tmp_path / "dup.toml").write_text('name = "synth-tiny"\nloader = "synthetic"\nsummary = "again"\n')
    (tmp_path / "good.toml").write_text('name = "good"\nloader = "synthetic"\nsummary = "fine"\n')
    monkeypatch.setenv(DATASET_PATH_ENV, str(tmp_path))
    defs = definitions()
    assert "good" in defs and defs["synth-tiny"].source == "datasets/synth-tiny.toml"
    failures = definition_failures()
    assert set(map(Path, failures)) == {tmp_path / "broken.toml", tmp_path / "nofields.toml", tmp_path / "dup.toml"}
    assert "invalid TOML" in failures[str(tmp_path / "broken.toml")] and "already defined" in failures[str(tmp_path / "dup.toml")]
    assert load_dataset("synth-tiny").name == "synth-tiny"
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    assert "good" in out and "failed to load" in out and "broken.toml" in out
    with pytest.raises(ConfigError, match="failed to load.*broken.toml"):
        get_definition("broken")


def test_examples_are_not_builtin_datasets():
    from vprbench.data.catalog import builtin_datasets_dir

    examples = sorted((builtin_datasets_dir() / "examples").glob("*.toml"))
    assert examples, "datasets/examples/ holds one example definition per loader"
    names = {get_definition(str(p)).name for p in examples}
    assert not names & set(definitions())
    loaders = {get_definition(str(p)).loader for p in examples}
    from vprbench.data.catalog import BUILTIN_LOADERS

    assert loaders == set(BUILTIN_LOADERS)


# datasets verify ------------------------------------------------------------------------------


def test_verify_without_files_section_checks_what_the_loader_reads(tmp_path, capsys):
    from vprbench.cli.main import main

    data = tmp_path / "data"
    _pair_files(data)
    toml = write_definition(tmp_path / "v.toml", "descriptor-pair", PAIR)
    assert main(["datasets", "verify", str(toml), "--data-dir", str(data)]) == 0
    assert "every file the loader reads is present" in capsys.readouterr().out
    (data / "qry.npy").unlink()
    assert main(["datasets", "verify", str(toml), "--data-dir", str(data)]) == 3  # before: "no data files needed"
    assert "qry.npy" in capsys.readouterr().err
    # a MATLAB file where a .npy is expected is named as what it is (it was reported as "pickled")
    scipy.io.savemat(data / "S.npy", {"S": np.eye(3)})
    np.save(data / "gt.npy", np.eye(3, dtype=bool))
    tut = tmp_path / "tut.toml"
    tut.write_text('name = "tut"\nloader = "vpr-tutorial"\nsummary = "s"\n[params]\nsimilarity = "S.npy"\nground_truth = "gt.npy"\n')
    assert main(["datasets", "verify", str(tut), "--data-dir", str(data)]) == 0
    assert "MATLAB v5 .mat file" in capsys.readouterr().out
    ds = load_dataset(str(tut), data)  # and it loads as the MATLAB file it is
    assert ds.distances.shape == (3, 3)


def test_download_with_a_wrong_recorded_size_says_so(tmp_path):
    import hashlib

    from vprbench.data.download import download_file

    payload = b"abc" * 1000
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    dest = tmp_path / "f.bin"
    for _ in range(2):  # before: "run again to resume", forever
        with pytest.raises(DataError, match="complete file, 3000 bytes, but the definition records size = 4000") as e:
            download_file(src.as_uri(), dest, size=4000)
        assert "run again" not in str(e.value)
    # with a matching checksum the content is verified: kept, the size mismatch only warned about
    got = download_file(src.as_uri(), dest, size=4000, sha256=hashlib.sha256(payload).hexdigest())
    assert got.read_bytes() == payload
