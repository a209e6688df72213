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
    args = ["run", "--methods", "netvlad,seqmatch,seqnet-s1[epochs=1]", "--dataset", "synth-tiny", "--seeds", "0,1", "--out", str(tmp_path)]
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


def test_every_help_example_is_a_valid_command(capsys):
    """The examples printed by --help parse and their method specs expand (they would run)."""
    import shlex

    from vprbench.cli.main import EXAMPLES, build_parser
    from vprbench.plugins.registry import discover
    from vprbench.plugins.specs import expand

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert EXAMPLES.splitlines()[1].strip() in capsys.readouterr().out
    lines = [line.split("  ")[0].strip() for line in EXAMPLES.splitlines()[1:] if line.strip().startswith("vprbench")]
    assert len(lines) >= 5
    parser, reg = build_parser(), discover()
    for line in lines:
        args = parser.parse_args(shlex.split(line)[1:])
        if args.command == "run":
            assert expand(args.methods, args.param, reg), line


@pytest.mark.parametrize("argv,message", [
    (["run", "--methods", "netvlad", "--methods", "seqmatch"], "--methods given twice"),
    (["run", "--seeds", "0", "--seeds", "1"], "--seeds given twice"),
    (["run", "--seeds", "-1"], "seeds must be integers in [0, 2**63)"),
    (["run", "--device", "gpu"], "expected cpu, cuda or cuda:N"),
    (["run", "--methods", "netvlad", "--param", "seqmatch.variant=centerOnly"], "not in --methods"),
    (["run", "--methods", "seqslam[vmin=-5]"], "parameter 'vmin'"),
    (["run", "--methods", "seqslam", "--param", "seqslam.vmin=abc"], "parameter 'vmin' expects float"),
    (["run", "--methods", "seqslam[vmin=1.2,vmax=0.8]"], "empty velocity range"),
    (["run", "--methods", "hvpr[shortlist_k=0]"], "parameter 'shortlist_k'"),
    (["run", "--methods", "seqnet[epochs=0]"], "parameter 'epochs'"),
    (["run", "--top-k", "many"], "invalid int value"),
])
def test_bad_arguments_exit_2_before_any_work(tmp_path, capsys, argv, message):
    try:
        code = main([*argv, "--out", str(tmp_path / "out")])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not (tmp_path / "out" / "records").exists()


def test_dataset_directory_is_a_config_error(tmp_path, capsys):
    assert main(["run", "--methods", "netvlad", "--dataset", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_dataset_params_parse_booleans_strictly():
    from vprbench.cli.main import _key_values

    assert _key_values(["trust=False", "dim=8", "extractor=patchnorm", "x=TRUE"]) == {
        "trust": False, "dim": 8, "extractor": "patchnorm", "x": True}


def test_trust_must_be_a_real_boolean(tmp_path):
    from vprbench.core.errors import ConfigError
    from vprbench.features.networks import _load_state_dict

    with pytest.raises(ConfigError, match="trust must be True or False"):
        _load_state_dict(tmp_path / "x.pt", "False")


def test_list_verbose_shows_parameter_types_ranges_and_help(capsys):
    import re

    assert main(["list", "-v"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("\nseqmatch (sequence-matching)"):]
    block = block[: block.index("\n\n", 1)]
    assert "source: methods/seqmatch.py" in block
    assert re.search(r"per_frame_k\s+32\s+int >= 1, <= 4096\s+candidate reference frames", block)
    assert re.search(r"variant\s+'meanOfPairs'\s+one of \['meanOfPairs', 'centerOnly'\]", block)
    assert re.search(r"\nseqnet \(sequential-descriptor, trains\).*\n(.*\n)*?\s+epochs\s+none\s+int >= 1 or none\s+maximum training epochs", out)
