"""Bad and suspicious dataset definitions: every one gets a clear error naming the file and field, or a warning.

Each test builds the smallest definition and data that show one problem of a new user's
definition (a misspelt parameter, a split given as integers, a GTsoft that is not a superset of
GThard, ...) and asserts the message or the warning, not only that something failed.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

from vprbench.cli.main import main
from vprbench.core.errors import ConfigError, DataError, UnknownNameError
from vprbench.data.arrays import read_array
from vprbench.data.catalog import (
    BUILTIN_LOADERS,
    DatasetDefinition,
    builtin_datasets_dir,
    check_params,
    get_definition,
    get_loader,
    load_dataset,
)
from vprbench.data.download import download_dataset
from vprbench.data.loaders.common import parse_splits
from vprbench.data.protocol import Protocol

REPO = Path(__file__).resolve().parents[1]


def _toml_value(v) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, float) and np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return json.dumps(v)


def _definition(path: Path, loader: str, top: dict | None = None, **params) -> str:
    """A definition file at ``path`` with ``params`` in [params] (and extra top-level entries ``top``)."""
    lines = [f'name = "{path.stem}"', f'loader = "{loader}"', 'summary = "test"']
    lines += [f"{k} = {_toml_value(v)}" for k, v in (top or {}).items()]
    lines += ["[params]"] + [f"{k} = {_toml_value(v)}" for k, v in params.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _pair_data(data: Path, n_ref: int = 20, n_q: int = 16, dim: int = 8, seed: int = 0) -> dict:
    """Descriptor arrays and x,y CSVs (2 m apart along x) of two traverses; the descriptor-pair params for them."""
    rng = np.random.default_rng(seed)
    (data / "d").mkdir(parents=True, exist_ok=True)
    for side, n in (("ref", n_ref), ("qry", n_q)):
        np.save(data / "d" / f"{side}.npy", rng.normal(size=(n, dim)).astype(np.float32))
        (data / "d" / f"{side}.csv").write_text("x,y\n" + "".join(f"{2.0 * i},0\n" for i in range(n)))
    return {"reference_descriptors": "d/ref.npy", "query_descriptors": "d/qry.npy",
            "reference_positions": "d/ref.csv", "query_positions": "d/qry.csv", "radius": 3.0}


def _tutorial_data(data: Path, soft: np.ndarray | None, n_ref: int = 12, n_q: int = 10) -> None:
    """S (random) and GThard = the diagonal, optionally GTsoft, in VPR_Tutorial's [n_ref, n_query] layout."""
    data.mkdir(parents=True, exist_ok=True)
    np.save(data / "S.npy", np.random.default_rng(0).uniform(2, 3, size=(n_ref, n_q)))
    hard = np.eye(n_ref, n_q, dtype=bool)
    np.savez(data / "gt.npz", GThard=hard, **({} if soft is None else {"GTsoft": soft}))


# 1. unknown keys ------------------------------------------------------------------------------


def test_misspelt_parameter_is_refused_with_a_suggestion(tmp_path):
    params = _pair_data(tmp_path)
    path = _definition(tmp_path / "typo.toml", "descriptor-pair", **params, nontrivial_raduis=50.0)
    with pytest.raises(UnknownNameError, match=r"typo\.toml.*'nontrivial_raduis'.*Did you mean 'nontrivial_radius'") as e:
        load_dataset(path, tmp_path)
    assert "bring-your-own-data.md" in str(e.value)
    # the CLI check the docs recommend fails (exit 2) instead of loading with the default radius
    assert main(["datasets", "verify", path, "--data-dir", str(tmp_path), "--load"]) == 2
    # a dataset override is a parameter too
    good = _definition(tmp_path / "good.toml", "descriptor-pair", **params)
    with pytest.raises(UnknownNameError, match="'raduis'.*Did you mean 'radius'"):
        load_dataset(good, tmp_path, {"raduis": 9.0})


def test_image_folders_parameter_typo_is_refused(tmp_path):
    path = _definition(tmp_path / "img.toml", "image-folders", root="r", reference="a", queries=["b"], tolerance=1, extractr="cnn")
    with pytest.raises(UnknownNameError, match=r"img\.toml.*'extractr'.*Did you mean 'extractor'"):
        load_dataset(path, tmp_path)


def test_unknown_top_level_key_and_every_problem_at_once(tmp_path):
    path = tmp_path / "x.toml"
    path.write_text('name = "x"\nloader = "descriptor-pair"\nfoo = 1\nparms = 2\n')
    with pytest.raises(ConfigError) as e:
        get_definition(str(path))
    text = str(e.value)
    # a missing summary does not hide the unknown keys (and the reverse)
    assert "'summary' must be a non-empty string (required)" in text and "'foo'" in text
    assert "top-level key 'parms'. Did you mean 'params'" in text


def test_unknown_key_inside_a_split_table(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'extra' of split 'test'\. Known keys of split 'test': query, reference"):
        parse_splits({"test": {"reference": [0, 10], "query": [0, 8], "extra": [0, 1]}}, 20, 16, "x")


def test_every_builtin_loader_declares_its_parameters_and_every_shipped_definition_passes():
    for name in BUILTIN_LOADERS:
        assert isinstance(getattr(get_loader(name), "params", None), frozenset), name
    files = sorted(builtin_datasets_dir().glob("*.toml")) + sorted((REPO / "datasets" / "examples").glob("*.toml"))
    assert len(files) > 10
    for path in files:
        check_params(DatasetDefinition.from_file(path))  # raises on any key the loader does not read


#: How the loaders read [params] keys in their source.
_READS = re.compile(r"""(?:\bp\.get\(|\bp\[|\bparams\.get\(|_param\(definition, |_path\(definition, data_dir, |positions_key\(definition, )["']([a-z_]+)["']""")


def test_declared_parameters_cover_what_each_loader_module_reads():
    """A key a loader reads but does not declare would be refused: scan each module's reads against its loaders' declarations."""
    by_module: dict[str, set[str]] = {}
    for name, target in BUILTIN_LOADERS.items():
        module = target.split(":")[0]
        by_module.setdefault(module, set()).update(get_loader(name).params)
    by_module["vprbench.data.loaders.image_folders"] &= get_loader("image-folders").params  # its reads are image-folders' (and _extract's)
    for module, declared in by_module.items():
        if module.endswith("synthetic"):
            continue  # checked by SyntheticParams itself
        source = (REPO / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
        reads = set(_READS.findall(source))
        assert reads, module
        assert reads <= declared, f"{module} reads undeclared params {sorted(reads - declared)}"


# 2. fingerprints --------------------------------------------------------------------------------


def test_fingerprint_follows_gtsoft(tmp_path):
    path = _definition(tmp_path / "tut.toml", "vpr-tutorial", similarity="S.npy", ground_truth="gt.npz", similarity_kind="generic")
    soft = np.eye(12, 10, dtype=bool) | np.eye(12, 10, k=1, dtype=bool)
    _tutorial_data(tmp_path, soft)
    a = load_dataset(path, tmp_path)
    _tutorial_data(tmp_path, soft | np.eye(12, 10, k=-1, dtype=bool))  # GThard unchanged, GTsoft wider
    b = load_dataset(path, tmp_path)
    assert a.ground_truth.to_dense().tolist() == b.ground_truth.to_dense().tolist()
    assert a.fingerprint != b.fingerprint
    assert a.split("test").fingerprint != b.split("test").fingerprint
    _tutorial_data(tmp_path, soft)
    assert load_dataset(path, tmp_path).fingerprint == a.fingerprint


# 3. one-line errors instead of tracebacks ------------------------------------------------------


def test_definition_that_is_not_utf8_or_is_a_folder(tmp_path, capsys):
    bad = tmp_path / "x.toml"
    bad.write_bytes(b"\xff\xfe")
    for argv in (["datasets", "verify", str(bad)], ["datasets", "info", str(bad)],
                 ["run", "--methods", "netvlad", "--dataset", str(bad), "--out", str(tmp_path / "o")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "x.toml: not UTF-8 text" in err and "Traceback" not in err
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    assert main(["datasets", "verify", str(folder)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_split_bounds_that_are_not_numbers(tmp_path):
    for bad in (["a", "b"], [0, True], [0.0, float("nan")], [3]):
        with pytest.raises(ConfigError, match=r"split 'test' reference must be \[start, end\) with two frame indices"):
            parse_splits({"test": {"reference": bad, "query": [0, 8]}}, 20, 16, "x")


# 4. explicit ground truth: no radius -------------------------------------------------------------


def test_radius_with_explicit_ground_truth_is_refused_and_the_caption_says_explicit(tmp_path):
    _tutorial_data(tmp_path, None)
    for key, value in (("radius", 5.0), ("tolerance", 2)):
        path = _definition(tmp_path / f"{key}.toml", "vpr-tutorial", similarity="S.npy", ground_truth="gt.npz", **{key: value})
        with pytest.raises(ConfigError, match=rf"\[params\] {key}: this loader reads explicit ground truth"):
            load_dataset(path, tmp_path)
    path = _definition(tmp_path / "tut.toml", "vpr-tutorial", similarity="S.npy", ground_truth="gt.npz", similarity_kind="generic")
    ds = load_dataset(path, tmp_path)
    text = ds.protocols["default"].describe(ds.position_unit, ds.radius)  # what the runner writes into captions
    assert text.startswith("protocol default: explicit ground truth,") and "frames" not in text
    # a named protocol without radius is marked too; one with a radius is refused at load, not at evaluation
    with_proto = tmp_path / "p.toml"
    with_proto.write_text(Path(path).read_text() + '[protocols.miss]\nno_positive = "miss"\n')
    assert "explicit ground truth" in load_dataset(str(with_proto), tmp_path).protocols["miss"].describe("frame", 0.5)
    with_proto.write_text(Path(path).read_text() + "[protocols.near]\ntolerance = 3\n")
    with pytest.raises(ConfigError, match=r"\[protocols\.near\]: this dataset has explicit ground truth"):
        load_dataset(str(with_proto), tmp_path)


def test_protocols_of_radius_datasets_keep_their_stored_form():
    """Record identities hash Protocol.to_dict(): the new ``explicit`` flag appears only when true."""
    p = Protocol(description="the dataset's own radius")
    assert sorted(p.to_dict()) == ["description", "name", "no_positive", "positives", "radius", "tolerance"]
    assert Protocol.from_dict(p.to_dict()) == p
    q = Protocol(explicit=True)
    assert q.to_dict()["explicit"] is True and Protocol.from_dict(q.to_dict()) == q


# 5. degenerate data ----------------------------------------------------------------------------


def test_constant_and_zero_descriptors_warn(tmp_path):
    params = _pair_data(tmp_path)
    path = _definition(tmp_path / "c.toml", "descriptor-pair", **params)
    np.save(tmp_path / "d/ref.npy", np.ones((20, 8), np.float32))
    q = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    q[[3, 9]] = 0.0
    np.save(tmp_path / "d/qry.npy", q)
    warnings = load_dataset(path, tmp_path).meta["warnings"]
    assert any("traverse 'reference': all 20 descriptors are identical" in w for w in warnings)
    assert any("traverse 'query': 2 of 16 descriptor rows are all zero (first rows: [3, 9])" in w for w in warnings)
    _pair_data(tmp_path)
    assert not any("descriptor" in w for w in load_dataset(path, tmp_path).meta.get("warnings", []))


def test_sparse_zero_rows_warn(tmp_path):
    from scipy.sparse import csr_matrix, save_npz

    params = _pair_data(tmp_path)
    x = np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)
    x[5] = 0
    save_npz(tmp_path / "d/ref.npz", csr_matrix(x))
    path = _definition(tmp_path / "s.toml", "descriptor-pair", **{**params, "reference_descriptors": "d/ref.npz"})
    assert any("1 of 20 descriptor rows are all zero (first rows: [5])" in w for w in load_dataset(path, tmp_path).meta["warnings"])


def test_gtsoft_not_a_superset_of_gthard_warns(tmp_path):
    path = _definition(tmp_path / "tut.toml", "vpr-tutorial", similarity="S.npy", ground_truth="gt.npz", similarity_kind="generic")
    shifted = np.eye(12, 10, k=1, dtype=bool)  # misses all 10 hard positives (the diagonal)
    _tutorial_data(tmp_path, shifted)
    ds = load_dataset(path, tmp_path)
    assert any("GTsoft is not a superset of GThard: 10 of 10 hard positives are not soft-positive" in w for w in ds.meta["warnings"])
    _tutorial_data(tmp_path, shifted | np.eye(12, 10, dtype=bool))
    assert not load_dataset(path, tmp_path).meta["warnings"]


def test_radius_covering_the_whole_map(tmp_path):
    params = _pair_data(tmp_path)  # reference x = 0..38 m, query x = 0..30 m, y = 0
    path = _definition(tmp_path / "r.toml", "descriptor-pair", **{**params, "radius": float("inf")})
    with pytest.raises(ConfigError, match="radius must be a finite number > 0"):
        load_dataset(path, tmp_path)
    # the farthest reference from any query is 38 m away (query 0 to reference 38): 38 covers all, 37.9 does not
    path = _definition(tmp_path / "r.toml", "descriptor-pair", **{**params, "radius": 38.0})
    assert any("covers the whole map" in w for w in load_dataset(path, tmp_path).meta["warnings"])
    path = _definition(tmp_path / "r.toml", "descriptor-pair", **{**params, "radius": 37.9})
    assert not any("covers the whole map" in w for w in load_dataset(path, tmp_path).meta.get("warnings", []))


# 6. split pitfalls ------------------------------------------------------------------------------


def test_integer_split_bounds_meant_as_fractions():
    with pytest.raises(ConfigError, match=r"query range \[0, 1\] holds 1 frame.*write fractions as floats, e.g. \[0.0, 1.0\]"):
        parse_splits({"test": {"reference": [0.0, 1.0], "query": [0, 1]}}, 20, 16, "x")
    with pytest.raises(ConfigError, match=r"\[0.5, 1\] is empty.*integers are frame indices"):
        parse_splits({"test": {"reference": [0.5, 1], "query": [0.5, 1.0]}}, 20, 16, "x")
    assert parse_splits({"test": {"reference": [0, 2], "query": [0.0, 1.0]}}, 20, 16, "x")["test"].reference.tolist() == [0, 1]


def test_split_without_query_and_nonstandard_names_warn(tmp_path):
    params = _pair_data(tmp_path)
    splits = {"train": {"reference": [0, 10]}, "validation": {"reference": [10, 15], "query": [10, 13]}, "test": {"reference": [15, 20], "query": [13, 16]}}
    ds = load_dataset(_definition(tmp_path / "s.toml", "descriptor-pair", **params, splits=splits), tmp_path)
    w = " | ".join(ds.meta["warnings"])
    assert "split 'train' gives no query range: it reuses the reference range [0, 10]" in w
    assert "split 'validation' is not one of train, val, test" in w and "Did you mean 'val'?" in w
    assert ds.splits["train"].query.tolist() == list(range(10))  # still legal
    with pytest.warns(UserWarning, match="split 'training'.*Did you mean 'train'"):
        parse_splits({"training": {"reference": [0, 5], "query": [0, 5]}}, 10, 10, "x")


# 7. positions CSV with a byte-order mark --------------------------------------------------------


def test_positions_csv_with_utf8_bom(tmp_path):
    params = _pair_data(tmp_path)
    path = _definition(tmp_path / "b.toml", "descriptor-pair", **params)
    plain = load_dataset(path, tmp_path).reference.positions.copy()
    text = (tmp_path / "d/ref.csv").read_text()
    (tmp_path / "d/ref.csv").write_bytes("\ufeff".encode() + text.encode())  # Excel's "CSV UTF-8"
    assert np.array_equal(load_dataset(path, tmp_path).reference.positions, plain)


# 8. image-folders CSV: duplicates and unlisted images --------------------------------------------


def _image_folders(root: Path, names: dict[str, list[str]], files: int = 6) -> str:
    """Folders day/ and night/ of ``files`` empty images, positions CSVs listing ``names``, precomputed descriptors."""
    for t in ("day", "night"):
        (root / "r" / t).mkdir(parents=True, exist_ok=True)
        for i in range(files):
            (root / "r" / t / f"{i}.png").write_bytes(b"")
        (root / "r" / f"{t}.csv").write_text("image,x,y\n" + "".join(f"{n},{2.0 * i},0\n" for i, n in enumerate(names[t])))
        np.save(root / f"{t}.npy", np.random.default_rng(0).normal(size=(len(names[t]), 4)).astype(np.float32))
    return _definition(root / "img.toml", "image-folders", root="r", reference="day", queries=["night"], alignment="csv",
                       positions={"day": "day.csv", "night": "night.csv"}, radius=3.0, extractor="precomputed",
                       descriptors={"day": "day.npy", "night": "night.npy"})


def test_image_listed_twice_is_refused_and_unlisted_images_warn(tmp_path):
    path = _image_folders(tmp_path, {"day": ["0.png", "1.png", "1.png", "3.png"], "night": [f"{i}.png" for i in range(6)]})
    with pytest.raises(DataError, match=r"day\.csv: 1 image\(s\) listed more than once \('1\.png' at rows \[2, 3\]"):
        load_dataset(path, tmp_path)
    path = _image_folders(tmp_path, {"day": ["0.png", "1.png", "3.png"], "night": [f"{i}.png" for i in range(6)]})
    w = " | ".join(load_dataset(path, tmp_path).meta["warnings"])
    assert "day.csv: 3 image(s) in" in w and "['2.png', '4.png', '5.png']" in w and "night.csv" not in w


# 9. paths and downloads ----------------------------------------------------------------------------


def test_symlink_leading_out_of_the_data_directory(tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere"
    params = _pair_data(outside)
    data = tmp_path / "data"
    data.mkdir()
    (data / "d").symlink_to(outside / "d")
    path = _definition(tmp_path / "l.toml", "descriptor-pair", **params)
    with pytest.raises(ConfigError, match=r"reference_descriptors = 'd/ref\.npy' leads outside the data directory .* symbolic link"):
        load_dataset(path, data)
    assert main(["datasets", "verify", path, "--data-dir", str(data)]) == 2
    monkeypatch.setenv("VPRBENCH_ALLOW_LINKS_TO", str(outside))  # the user's consent to their own link
    assert len(load_dataset(path, data).reference) == 20
    monkeypatch.delenv("VPRBENCH_ALLOW_LINKS_TO")
    flagged = _definition(tmp_path / "f.toml", "descriptor-pair", top={"allow_absolute_paths": True}, **params)
    assert len(load_dataset(flagged, data).reference) == 20


def _files_definition(tmp_path: Path, url: str | None, sha: str) -> DatasetDefinition:
    text = f'name = "dl"\nloader = "synthetic"\nsummary = "s"\n[[files]]\npath = "sub/a.bin"\nsha256 = "{sha}"\n'
    if url:
        text += f'url = "{url}"\n'
    return DatasetDefinition.from_toml(text, str(tmp_path / "dl.toml"))


def test_download_refuses_file_urls_and_copies_from_an_explicit_mirror(tmp_path, capsys):
    import hashlib

    payload = b"vprbench mirror test"
    sha = hashlib.sha256(payload).hexdigest()
    mirror = tmp_path / "mirror"
    (mirror / "sub").mkdir(parents=True)
    (mirror / "sub/a.bin").write_bytes(payload)
    data = tmp_path / "data"
    with pytest.raises(ConfigError, match=r"files\[0\]\.url = 'file:///etc/passwd'.*only from http:// or https://.*--mirror DIR"):
        download_dataset(_files_definition(tmp_path, "file:///etc/passwd", sha), data, progress=None)
    assert not (data / "sub/a.bin").exists()
    got, manual = download_dataset(_files_definition(tmp_path, None, sha), data, progress=None, mirror=mirror)
    assert got == [data / "sub/a.bin"] and not manual and (data / "sub/a.bin").read_bytes() == payload
    (data / "sub/a.bin").unlink()
    (mirror / "sub/a.bin").write_bytes(payload + b"!")  # a mirror copy is checked like a download
    with pytest.raises(DataError, match="checksum mismatch"):
        download_dataset(_files_definition(tmp_path, None, sha), data, progress=None, mirror=mirror.as_uri())
    assert not (data / "sub/a.bin").exists()
    # the command line: --mirror
    (mirror / "sub/a.bin").write_bytes(payload)
    toml = tmp_path / "dl.toml"
    toml.write_text(f'name = "dl"\nloader = "synthetic"\nsummary = "s"\n[[files]]\npath = "sub/a.bin"\nsha256 = "{sha}"\n')
    assert main(["datasets", "download", str(toml), "--data-dir", str(data), "--mirror", str(mirror)]) == 0
    assert (data / "sub/a.bin").read_bytes() == payload


# 10. messages --------------------------------------------------------------------------------------


def test_precomputed_shape_error_names_the_loaders_image_order(tmp_path):
    path = _image_folders(tmp_path, {t: [f"{i}.png" for i in range(6)] for t in ("day", "night")})
    np.save(tmp_path / "day.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(DataError) as e:
        load_dataset(path, tmp_path)
    assert "expected [6, D]" in str(e.value) and "one row per image of traverse 'day'" in str(e.value)
    assert "published image list" not in str(e.value)


def test_npz_errors_are_accurate(tmp_path):
    np.savez(tmp_path / "two.npz", A=np.zeros((3, 2)), B=np.ones((3, 2)))
    with pytest.raises(ConfigError, match=r"holds 2 variables \['A', 'B'\].*set query_key"):  # like .mat: the definition must say which
        read_array(tmp_path / "two.npz", None, "descriptors", "query_key")
    np.savez(tmp_path / "obj.npz", A=np.array([[1], "x"], dtype=object))
    with pytest.raises(DataError, match="variable 'A' holds pickled Python objects"):
        read_array(tmp_path / "obj.npz", None, "descriptors")
    raw = (tmp_path / "two.npz").read_bytes()
    (tmp_path / "bad.npz").write_bytes(raw[:40] + b"\x00" * 30 + raw[70:])  # damaged member bytes
    with pytest.raises(DataError, match="corrupt or unreadable") as e:
        read_array(tmp_path / "bad.npz", "A", "descriptors")
    assert "pickled" not in str(e.value)
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="corrupt or unreadable"):
        read_array(tmp_path / "cut.npz", "A", "descriptors")


def test_unknown_loader_names_the_definition_file(tmp_path, capsys):
    path = _definition(tmp_path / "nl.toml", "nosuch")
    with pytest.raises(UnknownNameError, match=r"nl\.toml: unknown dataset loader 'nosuch'"):
        load_dataset(path, tmp_path)
    assert main(["datasets", "verify", path]) == 2
    assert "nl.toml: unknown dataset loader" in capsys.readouterr().err


def test_vpr_methods_evaluation_name_errors_name_the_folder(tmp_path):
    for folder, n in (("database", 4), ("queries", 3)):
        (tmp_path / "ds" / folder).mkdir(parents=True)
        for i in range(n):
            ts = "2020BAD" if (folder, i) == ("queries", 1) else f"20200101_1200{i:02d}"
            (tmp_path / "ds" / folder / f"@{500000 + 2 * i:.2f}@4100000.00@37@S@@@{i}@@@@@@{ts}@@.jpg").write_bytes(b"")
        (tmp_path / "dump").mkdir(exist_ok=True)
        np.save(tmp_path / "dump" / f"{folder}_descriptors.npy", np.zeros((n, 4), np.float32))
    path = _definition(tmp_path / "v.toml", "vpr-methods-evaluation", descriptors="dump", dataset="ds")
    with pytest.raises(DataError, match=r"ds/queries: image '@500002\.00@.*\.jpg': timestamp field '2020BAD' is not YYYYMMDD_hhmmss"):
        load_dataset(path, tmp_path)


def test_order_by_a_field_with_one_value_warns(tmp_path):
    for folder in ("database", "queries"):
        (tmp_path / "ds" / folder).mkdir(parents=True)
        for i in range(4):
            (tmp_path / "ds" / folder / f"@{500000 + 2 * i:.2f}@4100000.00@37@S@@@{i}@@0@@@@@@.jpg").write_bytes(b"")
        (tmp_path / "dump").mkdir(exist_ok=True)
        np.save(tmp_path / "dump" / f"{folder}_descriptors.npy", np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32))
    path = _definition(tmp_path / "v.toml", "vpr-methods-evaluation", descriptors="dump", dataset="ds", order="heading")
    w = " | ".join(load_dataset(path, tmp_path).meta["warnings"])
    assert "order = 'heading' but every image has heading '0'" in w
    path = _definition(tmp_path / "v.toml", "vpr-methods-evaluation", descriptors="dump", dataset="ds", order="pano_id")
    assert "every image has" not in " | ".join(load_dataset(path, tmp_path).meta["warnings"])


def test_positions_for_both_sides_and_per_side_conflict(tmp_path):
    params = _pair_data(tmp_path)
    params.pop("query_positions")
    path = _definition(tmp_path / "c.toml", "descriptor-pair", **params, positions="row", tolerance=1)
    path_text = Path(path).read_text().replace("radius = 3.0\n", "")
    Path(path).write_text(path_text)
    with pytest.raises(ConfigError, match=r"positions = 'row' \(for both traverses\) and reference_positions = 'd/ref\.csv'; give either"):
        load_dataset(path, tmp_path)


def test_frame_positions_must_be_one_dimensional(tmp_path):
    params = _pair_data(tmp_path)
    np.save(tmp_path / "d/ref_pos.npy", np.c_[np.arange(20.0), np.zeros(20)])
    np.save(tmp_path / "d/qry_pos.npy", np.arange(16.0))
    path = _definition(tmp_path / "f.toml", "descriptor-pair", **{**params, "reference_positions": "d/ref_pos.npy",
                                                                   "query_positions": "d/qry_pos.npy"}, position_unit="frame")
    with pytest.raises(ConfigError, match=r"ref_pos\.npy: reference positions: position_unit = \"frame\" but the array has 2 columns"):
        load_dataset(path, tmp_path)


def test_verify_with_a_missing_data_directory_and_download_with_nothing_to_download(tmp_path, capsys):
    params = _pair_data(tmp_path / "data")
    path = _definition(tmp_path / "p.toml", "descriptor-pair", **params)
    assert main(["datasets", "verify", path, "--data-dir", str(tmp_path / "nope")]) == 3
    err = capsys.readouterr().err
    assert "data directory" in err and "nope does not exist" in err
    assert main(["datasets", "download", path, "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "nothing to download" in out and "every file it reads is present" in out and "0 file(s)" not in out
    assert main(["datasets", "download", path, "--data-dir", str(tmp_path / "empty")]) == 1
    out = capsys.readouterr().out
    assert "nothing to download" in out and "4 file(s) it reads to get by hand" in out and "d/ref.npy" in out
    assert not (tmp_path / "empty").exists()
    assert main(["datasets", "download", "synth-tiny"]) == 0
    assert "nothing to download (loader synthetic generates its data)" in capsys.readouterr().out


def test_missing_dataset_path_folder_warns(tmp_path, monkeypatch, caplog):
    from vprbench.data import catalog

    monkeypatch.setattr(catalog, "_warned_folders", set())
    monkeypatch.setenv("VPRBENCH_DATASET_PATH", f"{tmp_path / 'gone'}::")
    with caplog.at_level(logging.WARNING, logger="vprbench"):
        assert "synth-tiny" in catalog.definitions()
    assert f"lists {tmp_path / 'gone'}, which does not exist" in caplog.text


# 11. docs -----------------------------------------------------------------------------------------


def test_docs_document_every_parameter_of_the_user_loaders():
    doc = (REPO / "docs" / "bring-your-own-data.md").read_text(encoding="utf-8")
    assert "| `similarity_to_distance`" not in doc and "| `similarity_kind`" in doc  # the parameter tables document what the loader takes
    for loader in ("descriptor-pair", "image-folders", "vpr-tutorial", "vpr-bench", "vpr-methods-evaluation", "seqnet", "nordland-64x32"):
        missing = sorted(k for k in get_loader(loader).params if f"`{k}`" not in doc)
        assert not missing, f"{loader}: {missing} undocumented"
    for key in ("descriptors", "summary", "allow_absolute_paths", "VPRBENCH_ALLOW_LINKS_TO", "--mirror"):
        assert key in doc
