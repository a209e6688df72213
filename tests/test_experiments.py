"""Experiments as data: the experiment file format, the specs rows run, `vprbench reproduce` end to end on
a tiny dataset (table structure, the published join), and matching of records to rows by identity."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from vprbench.cli.main import main
from vprbench.core.errors import ConfigError
from vprbench.plugins.registry import discover
from vprbench.running.experiments import effective_spec, experiment_files, get_experiment, load_experiment

ROOT = Path(__file__).resolve().parents[1]
REG = discover()
PUBLISHED = ROOT / "experiments" / "seqmatchnet-published.csv"


def tiny_experiment(folder: Path, seeds=(0,)) -> Path:
    """The seqmatchnet experiment's tables on synth-tiny (one epoch), compared with the published Oxford numbers."""
    real = (ROOT / "experiments" / "seqmatchnet.toml").read_text()
    tables = real[real.index("\n[[tables]]") + 1:]
    (folder / PUBLISHED.name).write_bytes(PUBLISHED.read_bytes())  # a published file must lie in the experiment's folder
    text = f"""name = "tiny"
summary = "test"
published = "{PUBLISHED.name}"
seeds = {list(seeds)}
seq_len = 5
[[datasets]]
name = "synth-tiny"
published = "oxford"
tables = ["1", "2"]
[datasets.method_params]
seqnet = {{ epochs = 1 }}
seqnet-s1 = {{ epochs = 1 }}
seqmatchnet = {{ epochs = 1 }}

{tables}"""
    path = folder / "tiny.toml"
    path.write_text(text)
    return path


def test_the_shipped_experiment_parses_and_its_rows_are_valid_specs():
    assert "seqmatchnet" in experiment_files()
    exp = get_experiment("seqmatchnet")
    assert [t.id for t in exp.tables] == ["1", "2"] and len(exp.table("2").rows) == 11
    for d in exp.datasets:
        for t in d.tables:
            for row in exp.table(t).rows:
                REG.create(effective_spec(row.spec, d, exp.preset, REG))  # every row is a valid job on every dataset
    pub = pd.read_csv(exp.published, dtype={"table": str, "loss": str, "mining": str}, keep_default_na=False)
    for t in exp.tables:  # every published row of the paper has a row here
        keys = {(r.published.get("method"), r.published.get("loss", ""), r.published.get("mining", "")) for r in t.rows}
        paper = {tuple(x) for x in pub[pub["table"] == t.id][["method", "loss", "mining"]].drop_duplicates().to_numpy()}
        assert paper <= keys, paper - keys


def test_dataset_method_params_reach_stages_and_the_preset_reaches_learned_methods():
    exp = get_experiment("seqmatchnet")
    nordland = exp.dataset("nordland-sw")
    assert effective_spec("seqnet", nordland, "cpu", REG) == "seqnet[filter_width=5,train_seq_len=10]"
    assert effective_spec("hvpr[shortlister=seqnet,reranker=seqnet-s1]", nordland, "cpu", REG) == \
        "hvpr[reranker=seqnet-s1,shortlister=seqnet[filter_width=5,train_seq_len=10]]"
    assert effective_spec("hvpr", nordland, "cpu", REG) == "hvpr[shortlister=seqnet[filter_width=5,train_seq_len=10]]"
    assert effective_spec("gism[frontend=seqnet-s1]", nordland, "paper", REG) == "gism[frontend=seqnet-s1[preset=paper]]"
    assert effective_spec("netvlad", nordland, "paper", REG) == "netvlad"


@pytest.mark.parametrize("damage,message", [
    (lambda t: t.replace('name = "tiny"', ""), "field 'name' is missing"),
    (lambda t: t.replace('tables = ["1", "2"]', 'tables = ["1", "9"]'), r"tables \['9'\] are not defined"),
    (lambda t: t.replace(PUBLISHED.name, "nope.csv"), "published file .* does not exist"),
    (lambda t: t.replace('spec = "netvlad"', 'spec = "netvlad[k=1|2]"'), None),
    (lambda t: t + "\n[[[broken", "invalid TOML"),
    (lambda t: t.replace('seq_len = 5', 'seq_len = 5\nseq_lenn = 3'), "unknown key 'seq_lenn'"),
    (lambda t: t.replace('published = "oxford"', 'published = "oxford"\nprotocl = "x"'), r"\[\[datasets\]\] #1: unknown key 'protocl'"),
    (lambda t: t.replace('seq_len = 5', 'seq_len = 5\n[[sweeps]]\nvalues = [1, 2]'), r"\[\[sweeps\]\] #1: field 'axis' is missing"),
    (lambda t: t.replace('seq_len = 5', 'seq_len = 5\n[[sweeps]]\naxis = "seq_len"\nvalues = []'), "field 'values' is empty"),
])
def test_bad_experiment_files_are_config_errors(tmp_path, damage, message):
    path = tiny_experiment(tmp_path)
    path.write_text(damage(path.read_text()))
    if message is None:  # a row that is a grid: found when the rows are planned
        exp = load_experiment(path)
        with pytest.raises(ConfigError):
            effective_spec(exp.table("2").rows[0].spec, exp.datasets[0], "cpu", REG)
        return
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)


@pytest.mark.slow
def test_reproduce_end_to_end_writes_tables_joined_with_the_published_numbers(tmp_path, capsys):
    path = tiny_experiment(tmp_path)
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Table 1: SeqMatchNet's loss x mining ablation" in printed and "results page:" in printed
    t1 = pd.read_csv(out / "tables" / "synth-tiny-table1.csv", keep_default_na=False)
    t2 = pd.read_csv(out / "tables" / "synth-tiny-table2.csv", keep_default_na=False)
    assert list(t1["row"]) == ["loss single, mining single", "loss seqmatch, mining single", "loss single, mining seqmatch",
                               "loss seqmatch, mining seqmatch"]
    assert len(t2) == 11 and {"R@1", "R@1 paper", "R@1 diff", "R@10 paper"} <= set(t2.columns)
    pub = pd.read_csv(PUBLISHED, dtype={"table": str}, keep_default_na=False)
    want = pub[(pub.table == "1") & (pub.dataset == "oxford") & (pub.loss == "single") & (pub.mining == "seqmatch") & (pub.recall_at == 20)]
    row = t1[t1["row"] == "loss single, mining seqmatch"].iloc[0]
    assert row["R@20 paper"] == pytest.approx(float(want["value"].iloc[0]))
    assert row["R@20 diff"] == pytest.approx(row["R@20"] - row["R@20 paper"], abs=1e-4)
    gism = t2[t2["row"] == "S_1 + GISM"].iloc[0]
    assert gism["R@5"] == "" and gism["R@1 paper"] == pytest.approx(0.65)  # one match per query: Recall@1 only
    # every row is backed by exactly the record of its job (one seed)
    assert (t1["records"] == 1).all() and (t2["records"] == 1).all()
    records = [json.loads(p.read_text()) for p in (out / "records").rglob("*.json")]
    composed = [r for r in records if r["job"]["method"] == "seqnet-s1+gism"]
    assert composed and composed[0]["job"]["label"] == "seqnet-s1[epochs=1]+gism"
    readme = (out / "README.md").read_text()
    assert "vprbench reproduce" in readme and "seeds: [0]" in readme and "wall time" in readme
    assert (out / "plots" / "synth-tiny-table1.png").is_file() and (out / "report.html").is_file()
    page = (out / "report.html").read_text()
    assert "R@1 paper" in page and "tiny: Table 2" in page  # the page has the experiment's tables beside the published numbers
    # records of another configuration of the same method (here: another preset) never join a row
    assert main(["run", "--methods", "seqmatchnet[epochs=1,lr=0.5]", "--dataset", "synth-tiny", "--out", str(out), "--no-report"]) == 0
    assert main(["reproduce", str(path), "--out", str(out)]) == 0
    again = pd.read_csv(out / "tables" / "synth-tiny-table2.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(again, t2)


def test_an_experiment_sweeps_method_parameters_like_run(tmp_path):
    path = tmp_path / "sw.toml"
    path.write_text('name = "sw"\nsummary = "s"\nseq_len = 5\n[[sweeps]]\naxis = "seqslam.vmin"\nvalues = [0.6, 0.9]\n'
                    '[[datasets]]\nname = "synth-tiny"\n[[tables]]\nid = "1"\n[[tables.rows]]\nlabel = "SeqSLAM"\nspec = "seqslam"\n'
                    '[[tables.rows]]\nlabel = "single image"\nspec = "netvlad"\n')
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--out", str(out), "--no-plots"]) == 0
    records = [json.loads(p.read_text()) for p in (out / "records").rglob("*.json")]
    swept = sorted(r["job"]["sweep"]["seqslam.vmin"] for r in records if r["job"]["method"] == "seqslam")
    assert swept == [0.6, 0.9]
    assert "R@1 vs seqslam.vmin" in (out / "tables" / "sweeps.md").read_text()
    readme = (out / "README.md").read_text()
    assert "- sweeps: seqslam.vmin = 0.6, 0.9" in readme and "seeds: [0]" in readme and "L = 5," in readme


COMMITTED = sorted(p.parent.parent for p in (ROOT / "results").glob("*/tables/*-table*.csv"))


def test_every_shipped_experiment_has_committed_results():
    """The committed-tables check below has something to check: each experiment that ships has its results folder."""
    shipped = set(experiment_files())
    assert shipped <= {p.name for p in COMMITTED}, f"no committed results/<name>/tables for {sorted(shipped - {p.name for p in COMMITTED})}"


@pytest.mark.parametrize("folder", sorted(set(COMMITTED)), ids=lambda p: p.name)
def test_committed_tables_match_the_records_they_were_made_from(folder, tmp_path):
    """The tables committed under results/<experiment>/ are what its committed records give (no stale or hand-edited table)."""
    from vprbench.reporting.experiment_tables import write_experiment_tables
    from vprbench.reporting.published import runs_from_records
    from vprbench.reporting.tables import load_records

    exp = get_experiment(folder.name)
    records = load_records(folder)
    runs = runs_from_records(exp, records)
    assert runs, f"{folder}: no records of experiment {exp.name}"
    write_experiment_tables(exp, runs, records, tmp_path, REG, plots=False)
    committed = sorted((folder / "tables").glob("*-table*.csv"))
    assert committed and sorted(p.name for p in committed) == sorted(p.name for p in (tmp_path / "tables").glob("*-table*.csv"))
    for path in committed:
        pd.testing.assert_frame_equal(pd.read_csv(path, keep_default_na=False), pd.read_csv(tmp_path / "tables" / path.name, keep_default_na=False),
                                      obj=str(path.relative_to(ROOT)))
