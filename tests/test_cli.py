import json

import pytest

from vprbench.cli.main import main


def test_list_shows_methods_datasets_and_broken_plugins(tmp_path, capsys):
    (tmp_path / "broken.py").write_text("raise ImportError('missing dependency xyz')\n")
    assert main(["--plugins", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "netvlad" in out and "seqmatch" in out and "synth-seasons" in out
    assert "failed to load" in out and "missing dependency xyz" in out


def test_unknown_method_and_dataset_exit_2_with_suggestions(tmp_path, capsys):
    assert main(["run", "--methods", "seqmach", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'seqmatch'" in capsys.readouterr().err
    assert main(["run", "--methods", "netvlad", "--dataset", "synth-seasonz", "--out", str(tmp_path)]) == 2
    assert "Did you mean 'synth-seasons'" in capsys.readouterr().err


def test_bad_parameter_exit_2(tmp_path, capsys):
    assert main(["run", "--methods", "seqmatch[variant=sideways]", "--out", str(tmp_path)]) == 2
    assert "must be one of ['meanOfPairs', 'centerOnly']" in capsys.readouterr().err


def test_seq_len_longer_than_traverse_exit_3(tmp_path, capsys):
    assert main(["run", "--methods", "seqmatch", "--dataset", "synth-tiny", "--seq-len", "100000", "--out", str(tmp_path)]) == 3
    assert "longer than its longest segment" in capsys.readouterr().err


def test_run_prints_table_writes_records_and_resumes(tmp_path, capsys):
    args = ["run", "--methods", "netvlad,seqmatch", "--dataset", "synth-tiny", "--seeds", "0,1", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| single-image" in out and "| sequence-matching" in out and "R@1 std" in out
    records = sorted(tmp_path.glob("records/synth-tiny/*/*.json"))
    assert len(records) == 4
    assert json.loads(records[0].read_text())["job"]["dataset"] == "synth-tiny"
    assert (tmp_path / "tables" / "recall.md").exists() and list((tmp_path / "plots").glob("*.png"))
    assert main(args) == 0
    assert capsys.readouterr().err.count("done already") == 4


def test_report_without_results_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "run `vprbench run" in capsys.readouterr().err


def test_help_mentions_examples(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "vprbench run --methods all" in capsys.readouterr().out


def test_dataset_params_parse_booleans_strictly():
    from vprbench.cli.main import _key_values

    assert _key_values(["trust=False", "dim=8", "extractor=patchnorm", "x=TRUE"]) == {
        "trust": False, "dim": 8, "extractor": "patchnorm", "x": True}


def test_trust_must_be_a_real_boolean(tmp_path):
    from vprbench.core.errors import ConfigError
    from vprbench.features.networks import _load_state_dict

    with pytest.raises(ConfigError, match="trust must be True or False"):
        _load_state_dict(tmp_path / "x.pt", "False")
