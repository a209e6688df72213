"""Export of predictions (pairs CSV, kapture pairs) and descriptors; read back with readers written here."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import write_definition

from vprbench.cli.main import main
from vprbench.core.errors import DataError
from vprbench.data.catalog import load_dataset


def read_kapture_pairs(path: Path) -> list[tuple[str, str, float]]:
    """kapture's pairs text: '#' lines are comments, fields separated by commas (kapture.io.csv.table_from_file)."""
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        q, m, s = (f.strip() for f in line.split(","))
        out.append((q, m, float(s)))
    return out


@pytest.fixture
def run_dir(tmp_path):
    from test_vpr_methods_evaluation import DUMP, LOADER, write_dump

    write_dump(tmp_path, images=False)
    toml = write_definition(tmp_path / "vme.toml", LOADER, DUMP, name="vme-test")
    out = tmp_path / "runs"
    assert main(["run", "--methods", "netvlad,seqmatch", "--dataset", str(toml), "--data-dir", str(tmp_path), "--out", str(out), "--no-report", "-q"]) == 0
    return tmp_path, toml, out


def test_pairs_round_trip_to_names_and_predictions(run_dir):
    root, toml, out = run_dir
    assert main(["export", "pairs", str(out), "--dataset", str(toml), "--data-dir", str(root)]) == 0
    ds = load_dataset(str(toml), root)
    split = ds.split("test")
    for method in ("netvlad", "seqmatch"):
        rec_path = next((out / "records" / "vme-test" / method).glob("*.json"))
        rec = json.loads(rec_path.read_text())
        with np.load(out / rec["predictions"]) as z:
            idx, dist = z["indices"], z["distances"]
        stem = rec_path.with_suffix("").name
        with open(out / "exports" / "vme-test" / method / f"{stem}.pairs.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["query", "reference", "rank", "distance"]
        q_names = split.query.meta["image_names"]
        r_names = split.reference.meta["image_names"]
        expected = [(q_names[q], r_names[idx[q, k]], k + 1, dist[q, k]) for q in range(idx.shape[0]) for k in range(idx.shape[1]) if idx[q, k] >= 0]
        assert len(rows) == len(expected)
        for row, (qn, rn, rank, d) in zip(rows, expected):
            assert (row["query"], row["reference"], int(row["rank"])) == (qn, rn, rank)
            assert float(row["distance"]) == pytest.approx(float(d), rel=1e-6)
        # the names are the tool's image files
        assert (root / "data" / "database" / rows[0]["reference"]).is_file()
        kap = read_kapture_pairs(out / "exports" / "vme-test" / method / f"{stem}.kapture-pairs.txt")
        assert [(q, m) for q, m, _ in kap] == [(r["query"], r["reference"]) for r in rows]
        assert [s for _, _, s in kap] == pytest.approx([-float(r["distance"]) for r in rows])
        assert (out / "exports" / "vme-test" / method / f"{stem}.kapture-pairs.txt").read_text().startswith("# kapture format: 1.1\n# query_image, map_image, score\n")


def test_pairs_refuse_a_changed_dataset(run_dir):
    root, toml, out = run_dir
    np.save(root / "dump" / "database_descriptors.npy", np.load(root / "dump" / "database_descriptors.npy") * 2)
    with pytest.raises(DataError, match="fingerprint"):
        from vprbench.reporting.export import export_pairs

        export_pairs(out, dataset=str(toml), data_dir=str(root))


def test_pairs_without_image_names_use_frame_indices(tmp_path):
    out = tmp_path / "runs"
    assert main(["run", "--methods", "netvlad", "--dataset", "synth-tiny", "--out", str(out), "--no-report", "-q"]) == 0
    assert main(["export", "pairs", str(out), "--format", "kapture"]) == 0
    path = next((out / "exports" / "synth-tiny" / "netvlad").glob("*.kapture-pairs.txt"))
    pairs = read_kapture_pairs(path)
    ds = load_dataset("synth-tiny")
    first_query = int(ds.splits["test"].query[0])
    assert pairs[0][0] == f"frame:{first_query}" and pairs[0][1].startswith("frame:")
    assert not list((out / "exports").rglob("*.pairs.csv"))


def test_descriptors_export_round_trip(tmp_path):
    out = tmp_path / "desc"
    assert main(["export", "descriptors", "--dataset", "synth-tiny", "--out", str(out), "-q"]) == 0  # -q after the subcommand too
    ds = load_dataset("synth-tiny")
    for t in (ds.reference, *ds.queries.values()):
        assert np.array_equal(np.load(out / f"{t.name}.npy", allow_pickle=False), t.descriptors)
        names = (out / f"{t.name}.images.txt").read_text().splitlines()
        assert names == [f"frame:{i}" for i in range(len(t))]


def test_export_a_learned_frontends_descriptors(tmp_path, capsys):
    """`export descriptors --method seqnet-s1` writes S_1's per-frame outputs: what the trained model encodes, row by row."""
    from vprbench.cli.main import main
    from vprbench.data.catalog import load_dataset
    from vprbench.plugins.api import RunContext
    from vprbench.plugins.registry import default_registry

    out = tmp_path / "out"
    assert main(["export", "descriptors", "--dataset", "synth-tiny", "--method", "seqnet-s1[epochs=1]", "--out", str(out)]) == 0
    ds = load_dataset("synth-tiny")
    method = default_registry().create("seqnet-s1", epochs=1)
    ctx = RunContext(seed=0, seq_len=5, cache_dir=tmp_path / "fresh-cache")
    method.fit(ds.split("train"), ds.split("val"), ctx)
    for t in (ds.reference, *ds.queries.values()):
        exported = np.load(out / f"{t.name}.npy", allow_pickle=False)
        assert exported.shape[0] == len(t) and (out / f"{t.name}.images.txt").read_text().count("\n") == len(t)
        np.testing.assert_allclose(exported, method.encode(t, ctx), atol=1e-6)
    assert main(["export", "descriptors", "--dataset", "synth-tiny", "--method", "seqmatch", "--out", str(tmp_path / "x")]) == 2
    assert "provides no per-frame representation" in capsys.readouterr().err


def test_descriptors_export_refuses_to_overwrite_other_content(tmp_path, capsys):
    out = tmp_path / "exd"
    assert main(["export", "descriptors", "--dataset", "synth-tiny", "--out", str(out)]) == 0
    before = (out / "summer.npy").read_bytes()
    capsys.readouterr()
    # the same export again: left as it is
    assert main(["export", "descriptors", "--dataset", "synth-tiny", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "(unchanged)" in captured.out and "0 file(s) written, 4 unchanged" in captured.err
    # another dataset with the same traverse names: refused, nothing written
    assert main(["export", "descriptors", "--dataset", "synth-seasons", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "summer.npy" in err and "--force" in err and "Traceback" not in err
    assert (out / "summer.npy").read_bytes() == before
    assert main(["export", "descriptors", "--dataset", "synth-seasons", "--out", str(out), "--force"]) == 0
    assert (out / "summer.npy").read_bytes() != before
    assert np.array_equal(np.load(out / "summer.npy"), load_dataset("synth-seasons").reference.descriptors)


def test_pairs_export_refuses_to_overwrite_other_content(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "pairs"
    assert main(["run", "--methods", "netvlad,seqmatch", "--dataset", "synth-tiny", "--out", str(runs), "--no-report", "-q"]) == 0
    assert main(["export", "pairs", str(runs), "--out", str(out)]) == 0
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) == 4
    capsys.readouterr()
    assert main(["export", "pairs", str(runs), "--out", str(out)]) == 0  # a rerun: nothing rewritten
    assert capsys.readouterr().out.count("(unchanged)") == 4
    files[0].write_text("edited\n")
    assert main(["export", "pairs", str(runs), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(files[0]) in err and "--force" in err
    assert files[0].read_text() == "edited\n"
    assert main(["export", "pairs", str(runs), "--out", str(out), "--force"]) == 0
    assert files[0].read_text() != "edited\n"


@pytest.mark.parametrize("what", ["descriptors", "pairs", "pairs-inside"])
def test_export_out_an_existing_file_is_a_clean_error(tmp_path, capsys, what):
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    if what == "descriptors":
        argv = ["export", "descriptors", "--dataset", "synth-tiny", "--out", str(afile)]
    else:
        runs = tmp_path / "runs"
        assert main(["run", "--methods", "netvlad", "--dataset", "synth-tiny", "--out", str(runs), "--no-report", "-q"]) == 0
        argv = ["export", "pairs", str(runs), "--out", str(afile if what == "pairs" else afile / "sub")]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "expected a folder" in err and "Traceback" not in err
    assert afile.read_text() == "not a folder\n"


def test_export_to_an_unwritable_folder_is_an_output_error(tmp_path, capsys, monkeypatch):
    import errno

    import vprbench.reporting.export as export

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "exd"))

    monkeypatch.setattr(export, "atomic_path", read_only)
    assert main(["export", "descriptors", "--dataset", "synth-tiny", "--out", str(tmp_path / "exd")]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and "exd" in err and "Read-only file system" in err and "Traceback" not in err
