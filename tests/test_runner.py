import json
import os

import numpy as np
import pytest
from conftest import make_toy_dataset

from vprbench.core.errors import ConfigError
from vprbench.plugins.api import Method, MethodInfo
from vprbench.plugins.registry import discover
from vprbench.plugins.specs import expand
from vprbench.reporting.report import report
from vprbench.running.records import SCHEMA, read_record
from vprbench.running.runner import RunConfig, Runner


class Exploding(Method):
    info = MethodInfo(name="exploding", family="single-image", summary="raises")

    def rank(self, split, ctx):
        raise RuntimeError("boom")


class CountingSeqMatch(Method):
    """Wraps seqmatch and counts rank calls (to see skipped jobs)."""

    info = MethodInfo(name="counting", family="sequence-matching", summary="counts")
    calls = 0

    def rank(self, split, ctx):
        type(self).calls += 1
        return discover().create("seqmatch").rank(split, ctx)


def registry_with(*extra):
    reg = discover()
    for cls in extra:
        reg.add(cls, "tests")
    return reg


def run(tmp_path, methods="netvlad,seqmatch", reg=None, **kw):
    reg = reg or discover()
    cfg = RunConfig(dataset="toy", out=tmp_path, **kw)
    return Runner(cfg, reg, [make_toy_dataset(n=200)]).run(expand(methods, [], reg))


def test_records_hold_config_metrics_and_environment(tmp_path):
    summary = run(tmp_path, seq_len=3, seeds=[0, 1])
    assert [o.status for o in summary.outcomes] == ["done"] * 4
    rec = read_record(summary.outcomes[2].record_path)
    assert rec["schema"] == SCHEMA and rec["job"]["method"] == "seqmatch" and rec["job"]["seed"] == 0
    assert rec["job"]["seq_len"] == 3 and rec["job"]["boundary"] == "shift"
    assert set(rec["metrics"]["recall_at"]) == {"1", "5", "10", "20"}
    assert rec["environment"]["packages"]["numpy"] == np.__version__
    assert {"fit", "rank", "total"} - set(rec["timings_s"]) == {"fit"}
    assert rec["memory_mb"]["peak_rss"] > 0
    with np.load(tmp_path / rec["predictions"], allow_pickle=False) as z:
        assert z["indices"].shape == (50, 20)
    # recall in the record equals recall recomputed from the saved predictions
    ds = make_toy_dataset(n=200).split("test")
    with np.load(tmp_path / rec["predictions"]) as z:
        hits = ds.ground_truth.hits(z["indices"])
    assert rec["metrics"]["recall_at"]["5"] == pytest.approx(hits[:, :5].any(1)[ds.ground_truth.has_positive].mean())


def test_rerun_skips_finished_jobs_and_force_recomputes(tmp_path):
    reg = registry_with(CountingSeqMatch)
    CountingSeqMatch.calls = 0
    run(tmp_path, "counting", reg)
    path = next(tmp_path.glob("records/toy/counting/*.json"))
    mtime = os.stat(path).st_mtime_ns
    summary = run(tmp_path, "counting", reg)
    assert summary.outcomes[0].status == "skipped" and CountingSeqMatch.calls == 1
    assert os.stat(path).st_mtime_ns == mtime
    run(tmp_path, "counting", reg, force=True)
    assert CountingSeqMatch.calls == 2
    run(tmp_path, "counting", reg, seq_len=7)  # another configuration is another job
    assert CountingSeqMatch.calls == 3 and len(list(tmp_path.glob("records/toy/counting/*.json"))) == 2


def test_corrupt_record_is_kept_aside_and_recomputed(tmp_path):
    run(tmp_path, "netvlad")
    path = next(tmp_path.glob("records/toy/netvlad/*.json"))
    path.write_text('{"schema": "vprbench.res')  # truncated
    summary = run(tmp_path, "netvlad")
    assert summary.outcomes[0].status == "done"
    assert json.loads(path.read_text())["schema"] == SCHEMA
    assert len(list(path.parent.glob("*.corrupt-*"))) == 1


def test_failing_method_does_not_stop_others(tmp_path):
    reg = registry_with(Exploding)
    summary = run(tmp_path, "exploding,netvlad", reg)
    assert [o.status for o in summary.outcomes] == ["failed", "done"]
    assert "boom" in summary.failed[0].error
    assert not list(tmp_path.glob("records/toy/exploding/*"))


def test_drop_policy_evaluates_fewer_queries(tmp_path):
    shift = run(tmp_path / "a", "seqmatch", seq_len=5, boundary="shift").outcomes[0].record
    drop = run(tmp_path / "b", "seqmatch", seq_len=5, boundary="drop").outcomes[0].record
    assert shift["metrics"]["n_queries"] == 50 and drop["metrics"]["n_queries"] == 46


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="output directory .*a-file/out.* is not writable"):
        Runner(RunConfig(dataset="toy", out=blocker / "out"), discover())


def test_bad_run_config():
    with pytest.raises(ConfigError, match="seq_len must be >= 1"):
        RunConfig(dataset="toy", out=".", seq_len=0)
    with pytest.raises(ConfigError, match="--boundary"):
        RunConfig(dataset="toy", out=".", boundary="wrap")


def test_seq_len_longer_than_split(tmp_path):
    from vprbench.core.errors import DataError

    with pytest.raises(DataError, match="longer than its longest segment"):
        run(tmp_path, "seqmatch", seq_len=80)


def test_report_tables_group_by_family(tmp_path):
    run(tmp_path, "seqmatch,netvlad", seeds=[0, 1])
    summary, paths = report(tmp_path, plots=True)
    md = paths["md"].read_text()
    assert md.index("single-image") < md.index("sequence-matching")  # paper order, not input order
    assert "R@1 std" in md
    assert paths["csv"].read_text().count("\n") == 3
    assert "\\toprule" in paths["tex"].read_text()
    assert any(p.name.endswith("distance-matrix.png") for p in paths.values())
    assert (summary["seeds"] == 2).all()


def test_atomic_write_leaves_no_partial_file(tmp_path):
    from vprbench.core.fileio import atomic_path

    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) != "0o600"


class Interrupting(Method):
    info = MethodInfo(name="interrupting", family="single-image", summary="Ctrl-C during rank")

    def rank(self, split, ctx):
        raise KeyboardInterrupt


def test_interrupted_run_resumes(tmp_path):
    reg = registry_with(Interrupting)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "netvlad,interrupting,seqmatch", reg)
    assert len(list(tmp_path.glob("records/toy/netvlad/*.json"))) == 1
    assert not list(tmp_path.glob("records/toy/seqmatch/*.json")) and not list(tmp_path.rglob("*.tmp"))
    summary = run(tmp_path, "netvlad,seqmatch", reg)
    assert [o.status for o in summary.outcomes] == ["skipped", "done"]


def test_report_never_averages_different_data(tmp_path):
    reg = discover()
    for seed in (0, 1):  # same dataset name, different content
        Runner(RunConfig(dataset="toy", out=tmp_path), reg, [make_toy_dataset(n=200, seed=seed)]).run(expand("netvlad", [], reg))
    summary, paths = report(tmp_path, plots=True)
    assert len(summary) == 2 and (summary["seeds"] == 1).all()
    assert paths["md"].read_text().count("### toy / test") == 2
    assert len(list((tmp_path / "plots").glob("*distance-matrix.png"))) == 2


def test_memory_budget_must_be_positive():
    with pytest.raises(ConfigError, match="--memory-mb must be > 0"):
        RunConfig(dataset="toy", out=".", memory_mb=0)
