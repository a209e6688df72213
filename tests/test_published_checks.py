"""Bad published-value files and bad experiment fields: a ConfigError (exit 2) naming the file, line or field, before any
job runs; published lines that match no table cell are warned about; loss and mining columns are optional."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vprbench.cli.main import main
from vprbench.core.errors import ConfigError
from vprbench.plugins.registry import discover
from vprbench.reporting.experiment_tables import load_published
from vprbench.reporting.published import compare
from vprbench.running.experiments import get_experiment, load_experiment

REG = discover()
HEADER = "table,group,method,loss,mining,dataset,recall_at,value\n"
GOOD = HEADER + "1,single-image,netvlad,,,tiny,1,0.8\n1,single-image,netvlad,,,tiny,5,0.9\n1,sequence-matching,seqmatch,,,tiny,1,0.95\n"


def experiment(folder: Path, csv: str | bytes | None = GOOD, published: str = "pub.csv", recall_at: str = "[1, 5]") -> Path:
    if csv is not None:
        (folder / "pub.csv").write_bytes(csv.encode() if isinstance(csv, str) else csv)
    path = folder / "mini.toml"
    path.write_text(f'name = "mini"\nsummary = "mini"\npublished = "{published}"\nseeds = [0]\nseq_len = 5\n'
                    '[[datasets]]\nname = "synth-tiny"\npublished = "tiny"\ntables = ["1"]\n'
                    f'[[tables]]\nid = "1"\ntitle = "t1"\nrecall_at = {recall_at}\n'
                    '[[tables.rows]]\ngroup = "single-image"\nlabel = "single image"\nspec = "netvlad"\npublished = { method = "netvlad" }\n'
                    '[[tables.rows]]\ngroup = "sequence-matching"\nlabel = "SeqMatch"\nspec = "seqmatch"\npublished = { method = "seqmatch" }\n')
    return path


def record(label, r1, r5):
    return {"job": {"method": label, "label": label, "dataset": "synth-tiny", "split": "test", "seq_len": 5, "boundary": "shift",
                    "protocol": "default", "seed": None, "train_dataset": None, "trains": False, "dataset_fingerprint": "f"},
            "metrics": {"recall_at": {"1": r1, "5": r5, "10": r5, "20": r5}}, "protocol": {"text": "protocol default"}}


@pytest.fixture
def warnings_seen(monkeypatch, caplog):
    monkeypatch.setattr(logging.getLogger("vprbench"), "propagate", True)  # main() turns it off for its own handler
    caplog.set_level(logging.WARNING, logger="vprbench")
    return caplog


@pytest.mark.parametrize("csv,message", [
    (HEADER + "1,single-image,netvlad,,,tiny,1,80\n", r"pub.csv' line 2: value '80' is not a recall in \[0, 1\]; percentages must be given as fractions"),
    (HEADER + "1,single-image,netvlad,,,tiny,1,0.8\n1,single-image,netvlad,,,tiny,5,-0.5\n", r"line 3: value '-0.5' is not a recall in \[0, 1\]"),
    (HEADER + "1,single-image,netvlad,,,tiny,1,nan\n", r"line 2: value 'nan' is not a recall"),
    (HEADER + "1,single-image,netvlad,,,tiny,1,abc\n", r"line 2: value 'abc' is not a number"),
    (HEADER + "1,single-image,netvlad,,,tiny,1,\n", r"line 2: value '' is not a number"),
    (HEADER + "1,single-image,netvlad,,,tiny,1,0.8\n1,other-group,netvlad,,,tiny,1,0.7\n", r"line 3: the same published value as line 2"),
    (HEADER + "1,single-image,netvlad,,,tiny,0,0.8\n", r"line 2: recall_at '0' is not a positive integer"),
    (HEADER + "1,single-image,netvlad,,,tiny,x,0.8\n", r"line 2: recall_at 'x' is not a positive integer"),
    (HEADER + "1,single-image,netvlad,,,tiny,1.5,0.8\n", r"line 2: recall_at '1.5' is not a positive integer"),
    (HEADER + "1,single-image,netvlad\n", r"line 2: 3 field\(s\), expected 8"),
    (HEADER + "1,single-image,netvlad,,,tiny,1,0.8,9,9\n", r"line 2: 10 field\(s\), expected 8"),
    ("", r"pub.csv' is empty; expected a header line"),
    ("\n\n", r"is empty"),
    ("1,single-image,netvlad,,,tiny,1,0.8\n", r"line 1: the header lacks column\(s\)"),
    (HEADER.replace("value", "value,zzz") + "1,single-image,netvlad,,,tiny,1,0.8,1\n", r"line 1: unknown or repeated column\(s\) \['zzz'\]"),
    (b"\x00\x01\xff\xfe\n", r"pub.csv': not UTF-8 text.*expected a CSV file"),
    (b"table,value\n\x00\x00\n", r"pub.csv'"),
])
def test_bad_published_files_are_config_errors_naming_the_file_and_line(tmp_path, csv, message):
    exp = load_experiment(experiment(tmp_path, csv))
    with pytest.raises(ConfigError, match=message):
        load_published(exp)


def test_a_duplicate_names_both_lines(tmp_path):
    exp = load_experiment(experiment(tmp_path, GOOD + "1,single-image,netvlad,,,tiny,1,0.7\n"))
    with pytest.raises(ConfigError, match=r"line 5: the same published value as line 2 \(table 1, method netvlad, dataset tiny, R@1\)"):
        load_published(exp)


def test_reproduce_refuses_a_bad_published_file_before_any_job(tmp_path, capsys):
    path = experiment(tmp_path, HEADER + "1,single-image,netvlad,,,tiny,1,0.8\n1,single-image,netvlad,,,tiny,5,90\n")
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--out", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "line 3: value '90' is not a recall in [0, 1]" in err and "Traceback" not in err
    assert not out.exists()  # no job ran


def test_report_compare_refuses_a_bad_published_file_before_the_report(tmp_path, capsys):
    path = experiment(tmp_path, HEADER + "1,single-image,netvlad,,,tiny,1,oops\n")
    (tmp_path / "res").mkdir()
    assert main(["report", str(tmp_path / "res"), "--compare", str(path), "--no-plots"]) == 2
    assert "pub.csv' line 2: value 'oops' is not a number" in capsys.readouterr().err
    assert list((tmp_path / "res").iterdir()) == []  # nothing written


@pytest.mark.parametrize("line,what", [
    ("1,single-image,netvladd,,,tiny,1,0.8", "line 5: method 'netvladd' of table 1"),
    ("9,single-image,netvlad,,,tiny,1,0.8", "line 5: table '9'"),
    ("1,single-image,netvlad,,,tinyy,1,0.8", "line 5: dataset 'tinyy' of table 1"),
    ("1,single-image,netvlad,single,,tiny,1,0.8", "line 5: method 'netvlad, loss single' of table 1"),
    ("1,single-image,netvlad,,,tiny,20,0.8", "line 5: R@20 of table 1"),
])
def test_published_lines_that_match_no_cell_are_warned_about_once(tmp_path, warnings_seen, line, what):
    exp = load_experiment(experiment(tmp_path, GOOD + line + "\n"))
    load_published(exp)
    load_published(exp)  # reproduce reads it at plan time and again for the tables: one warning
    warned = [r.getMessage() for r in warnings_seen.records if "match no cell" in r.getMessage()]
    assert len(warned) == 1 and what in warned[0] and "pub.csv" in warned[0] and "line 2" not in warned[0]


def test_matching_published_files_are_not_warned_about(tmp_path, warnings_seen):
    load_published(load_experiment(experiment(tmp_path)))
    load_published(get_experiment("seqmatchnet"))  # every line of the shipped file is a cell of its tables
    assert not [r for r in warnings_seen.records if "match no cell" in r.getMessage()]


def test_the_shipped_published_file_reads_as_before():
    exp = get_experiment("seqmatchnet")
    ours = load_published(exp)
    before = pd.read_csv(exp.published, dtype={"table": str, "loss": str, "mining": str}, keep_default_na=False)
    pd.testing.assert_frame_equal(ours[list(before.columns)], before)


def test_loss_and_mining_columns_are_optional(tmp_path):
    csv = "table,method,dataset,recall_at,value\n1,netvlad,tiny,1,0.8\n1,netvlad,tiny,5,0.9\n1,seqmatch,tiny,1,0.95\n"
    exp = load_experiment(experiment(tmp_path, csv))
    pub = load_published(exp)
    assert list(pub["loss"]) == ["", "", ""] and list(pub["mining"]) == ["", "", ""]
    ((_, _, frame, _),) = compare(exp, [record("netvlad", 0.7, 0.95), record("seqmatch", 1.0, 1.0)], REG)
    frame = frame.set_index("row")
    assert frame.loc["single image", "R@1 paper"] == 0.8 and frame.loc["single image", "R@5 paper"] == 0.9
    assert frame.loc["single image", "R@1 diff"] == pytest.approx(-0.1)
    assert frame.loc["SeqMatch", "R@1 paper"] == 0.95 and np.isnan(frame.loc["SeqMatch", "R@5 paper"])


@pytest.mark.parametrize("published", ["../outside.csv", "sub/../../outside.csv", "{outside}", "/etc/passwd"])
def test_a_published_path_outside_the_experiment_folder_is_refused(tmp_path, published):
    folder = tmp_path / "exp"
    folder.mkdir()
    (tmp_path / "outside.csv").write_text(GOOD)
    path = experiment(folder, published=published.format(outside=tmp_path / "outside.csv"))
    with pytest.raises(ConfigError, match=r"mini.toml'.*field 'published' .* outside the experiment's folder"):
        load_experiment(path)


def test_a_published_path_below_the_experiment_folder_is_fine(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "p.csv").write_text(GOOD)
    exp = load_experiment(experiment(tmp_path, None, published="sub/p.csv"))
    assert len(load_published(exp)) == 3


@pytest.mark.parametrize("recall_at,bad", [("[3, 0]", "has 3"), ("[1, 0]", "has 0"), ('[1, "a"]', "has 'a'"), ("[1, 1.5]", "has 1.5"),
                                           ("[1, true]", "has True"), ("[]", "must be a non-empty list"), ("5", "must be a non-empty list"),
                                           ("[1, 5, 1]", "repeats")])
def test_table_recall_at_must_be_computed_ns(tmp_path, recall_at, bad):
    path = experiment(tmp_path, recall_at=recall_at)
    with pytest.raises(ConfigError, match=rf"mini.toml' table '1': field 'recall_at' {bad}"):
        load_experiment(path)


def test_table_recall_at_accepts_every_computed_n(tmp_path):
    assert load_experiment(experiment(tmp_path, recall_at="[1, 5, 10, 20]")).table("1").recall_at == (1, 5, 10, 20)
