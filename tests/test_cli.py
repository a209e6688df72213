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
    (["run", "--methods", "seqmatch", "--param", "seqmatch.variant="], "no value for seqmatch.variant"),
    (["run", "--methods", "seqmatch", "--param", "seqmatch.variant=centerOnly,,meanOfPairs"], "an empty value for seqmatch.variant"),
    (["run", "--methods", "seqslam", "--param", "seqslam.vmin=abc"], "parameter 'vmin' expects float"),
    (["run", "--methods", "seqslam[vmin=1.2,vmax=0.8]"], "empty velocity range"),
    (["run", "--methods", "seqslam[vmax=1e9]"], "parameter 'vmax'"),
    (["run", "--methods", "seqslam[vstep=1e-9]"], "4e+08 velocities; at most 1000"),
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


@pytest.mark.parametrize("args,message", [
    (["--dataset", "synth-tiny", "--dataset", "synth-seasons"], "--dataset given twice"),
    (["--seq-len", "3", "--seq-len", "5"], "--seq-len given twice"),
    (["--protocol", "default", "--protocol", "window"], "--protocol given twice"),
    (["--workers", "1", "--workers", "2"], "--workers given twice"),
    (["--dataset-param", "seed=1", "--dataset-param", "seed=2"], "--dataset-param seed is given twice"),
    (["--sweep", "seq_len=1,3", "--seq-len", "5"], "--sweep seq_len=... and --seq-len both set seq_len"),
    (["--boundary", "drop", "--sweep", "boundary=shift,drop"], "--sweep boundary=... and --boundary both set boundary"),
    (["--dataset-param", "seed=3", "--sweep", "dataset.seed=1,2"], "--dataset-param seed=... both set seed"),
    (["--methods", "seqmatch[reducer=median]", "--param", "seqmatch.reducer=max"], "reducer is set both in the spec and by --param"),
    (["--methods", "seqmatch", "--param", "seqmatch.reducer=max", "--sweep", "seqmatch.reducer=mean,max"],
     "seqmatch.reducer is given twice .by two --param options, or by --param and --sweep"),
    (["--methods", "seqmatch,,netvlad"], "has an empty entry"),
    (["--methods", "seqnet[epochs=]"], "parameter 'epochs' has an empty value"),
    (["--methods", "seqmatch[reducer=mean|]"], "parameter 'reducer' has an empty value"),
    (["--seeds", "0,"], "no empty entries"),
])
def test_conflicting_or_empty_options_are_refused(tmp_path, capsys, args, message):
    import re

    full = ["run", *([] if "--methods" in args else ["--methods", "netvlad"]), *args, "--out", str(tmp_path)]
    try:
        rc = main(full)
    except SystemExit as e:  # argparse's own usage errors
        rc = e.code
    assert rc == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "records").exists()


def _rc(argv):
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_cuda_without_cuda_is_refused_before_any_work(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert _rc(["run", "--methods", "netvlad,seqnet-s1[epochs=1]", "--dataset", "synth-tiny", "--device", "cuda",
                "--out", str(tmp_path)]) == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "records").exists()


def test_device_without_a_learned_method_says_it_has_no_effect(tmp_path, capsys):
    assert _rc(["run", "--methods", "seqmatch", "--dataset", "synth-tiny", "--device", "cuda:1", "--out", str(tmp_path), "--no-report"]) == 0
    assert "--device cuda:1: no method of this run trains a model" in capsys.readouterr().err


def _pair_definition(tmp_path, dim: int = 8, splits: str = "") -> str:
    import numpy as np

    x = np.random.default_rng(0).normal(size=(60, dim)).astype(np.float32)
    np.save(tmp_path / "r.npy", x)
    np.save(tmp_path / "q.npy", x)
    (tmp_path / "pair.toml").write_text('name = "pair"\nloader = "descriptor-pair"\nsummary = "s"\n[params]\n'
                                        'reference_descriptors = "r.npy"\nquery_descriptors = "q.npy"\npositions = "row"\n'
                                        f"tolerance = 1\n{splits}")
    return str(tmp_path / "pair.toml")


def test_a_training_dataset_of_another_dimension_is_refused_before_training(tmp_path, capsys):
    pair = _pair_definition(tmp_path, 8, "nontrivial_tolerance = 1\nnegative_tolerance = 5\n"
                                         "splits = { train = { reference = [0.0, 0.5], query = [0.0, 0.5] }, "
                                         "test = { reference = [0.5, 1.0], query = [0.5, 1.0] } }\n")
    rc = _rc(["run", "--methods", "netvlad,seqnet-s1[epochs=1]", "--dataset", "synth-tiny", "--train-dataset", pair,
              "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 3 and "training dataset 'pair' has D=8 descriptors but dataset 'synth-tiny' has D=" in err
    assert not (tmp_path / "out" / "records").exists() and not (tmp_path / "out" / "cache").exists()


def test_a_run_where_no_method_can_run_fails(tmp_path, capsys):
    pair = _pair_definition(tmp_path)
    assert _rc(["run", "--methods", "seqnet-s1", "--dataset", pair, "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not run: seqnet-s1 (trains, but dataset 'pair' has no 'train' split" in err and "none of the requested methods" in err


def test_a_bad_scheduler_address_is_an_argument_error(tmp_path, capsys):
    assert _rc(["run", "--methods", "netvlad", "--scheduler", "bogus", "--out", str(tmp_path)]) == 2
    assert "expected a Dask scheduler address (tcp://HOST:PORT or HOST:PORT) or 'local'" in capsys.readouterr().err


def test_small_argument_mistakes_are_named(tmp_path, capsys):
    (tmp_path / "notes.md").write_text("x")
    cases = [
        (["report", str(tmp_path / "notes.md")], "is a file; expected a results folder"),
        (["reproduce", "--list", "extra"], "reproduce --list takes no experiment name"),
        (["reproduce", "reference", "--seeds", "0,"], "no empty entries"),
        (["reproduce", "reference", "--device", "gpu"], "expected cpu, cuda or cuda:N"),
        (["export", "pairs", str(tmp_path), "--format", ""], "expected a comma-separated list of csv, kapture"),
    ]
    for argv, message in cases:
        assert _rc(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_an_untrained_learned_stage_is_marked_everywhere(tmp_path, capsys):
    """synth-tiny is so easy that S_1's identity initialisation is already perfect on validation: the kept model is
    the untrained one, inside HVPR too — its record warns, and the table and the page mark the row."""
    out = tmp_path / "out"
    assert main(["run", "--methods", "hvpr[shortlister=smoothing,reranker=seqnet-s1[epochs=1]]", "--dataset", "synth-tiny",
                 "--out", str(out)]) == 0
    record = json.loads(next((out / "records").rglob("*.json")).read_text())
    assert record["job"]["training"]["reranker"]["untrained"]
    assert any("its reranker stage is no better than its initialisation" in w for w in record["warnings"])
    assert "\u2020" in (out / "tables" / "recall.md").read_text()
    assert "\u2020</span>" in (out / "report.html").read_text()


def test_datasets_info_lists_the_protocols_run_accepts(capsys):
    assert main(["datasets", "info", "nordland-64x32"]) == 0
    out = capsys.readouterr().out
    assert "protocols (run/report --protocol NAME):" in out
    assert "    seqnet: tolerance +-1 frames, centre frame" in out and "    patchnetvlad: tolerance +-10 frames" in out
    assert main(["datasets", "info", "synth-seasons"]) == 0
    out = capsys.readouterr().out
    assert "    window: the dataset's own radius, any frame of the window" in out
    assert "    vpr-methods-evaluation: radius 25, centre frame, queries without a positive counted as misses" in out


@pytest.mark.parametrize("dim", ['"16"', "0", "true", "8.5"])
def test_a_definition_dim_that_is_not_a_whole_number_is_a_config_error(tmp_path, capsys, dim):
    pair = _pair_definition(tmp_path, 8, f"dim = {dim}\n")
    assert _rc(["run", "--methods", "netvlad", "--dataset", pair, "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "[params] dim must be a positive whole number" in capsys.readouterr().err
