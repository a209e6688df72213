import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import make_toy_dataset

from vprbench.core.errors import ConfigError, DataError, OutputError
from vprbench.data.protocol import Protocol
from vprbench.plugins.api import Method, MethodInfo
from vprbench.plugins.registry import discover
from vprbench.plugins.specs import expand
from vprbench.reporting.report import report
from vprbench.running.records import SCHEMA, SCHEMA_VERSION, read_record
from vprbench.running.runner import RunConfig, Runner


class Exploding(Method):
    info = MethodInfo(name="exploding", family="single-image", summary="raises")

    def rank(self, split, ctx):
        raise RuntimeError("boom")


class CountingSeqMatch(Method):
    """Wraps seqmatch and counts rank calls (to see skipped and shared jobs)."""

    info = MethodInfo(name="counting", family="sequence-matching", summary="counts")
    calls = 0

    def rank(self, split, ctx):
        type(self).calls += 1
        return discover().create("seqmatch").rank(split, ctx)


class CountingSingle(Method):
    """Single-image netvlad that counts rank calls (uses_sequences=False)."""

    info = MethodInfo(name="counting-single", family="single-image", summary="counts", uses_sequences=False)
    calls = 0

    def rank(self, split, ctx):
        type(self).calls += 1
        return discover().create("netvlad").rank(split, ctx)


def registry_with(*extra):
    reg = discover()
    for cls in extra:
        reg.add(cls, "tests")
    return reg


def run(tmp_path, methods="netvlad,seqmatch", reg=None, dataset=None, **kw):
    reg = reg or discover()
    cfg = RunConfig(dataset="toy", out=tmp_path, **kw)
    return Runner(cfg, reg, [dataset or make_toy_dataset(n=200)]).run(expand(methods, [], reg))


def test_records_hold_config_metrics_and_environment(tmp_path):
    summary = run(tmp_path, seq_len=3, seeds=[0, 1])
    # deterministic training-free methods: one record for all seeds
    assert [o.status for o in summary.outcomes] == ["done", "done"]
    rec = read_record(summary.outcomes[1].record_path)
    assert rec["schema"] == SCHEMA and rec["schema_version"] == SCHEMA_VERSION
    assert rec["job"]["method"] == "seqmatch" and rec["job"]["seed"] is None and not rec["job"]["seeded"]
    assert rec["job"]["seq_len"] == 3 and rec["job"]["boundary"] == "shift" and rec["job"]["protocol"] == "default"
    assert rec["job"]["code"]["source"] and rec["job"]["code"]["vprbench"]
    assert set(rec["metrics"]["recall_at"]) == {"1", "5", "10", "20"}
    assert rec["environment"]["packages"]["numpy"] == np.__version__
    assert {"fit", "rank", "total"} - set(rec["timings_s"]) == {"fit"}
    assert rec["memory_mb"]["peak_rss"] > 0
    assert "radius 1 m" in rec["protocol"]["text"]
    with np.load(tmp_path / rec["predictions"], allow_pickle=False) as z:
        assert z["indices"].shape == (50, 20)
    # recall in the record equals recall recomputed from the saved predictions
    ds = make_toy_dataset(n=200).split("test")
    with np.load(tmp_path / rec["predictions"]) as z:
        hits = ds.ground_truth.hits(z["indices"])
    assert rec["metrics"]["recall_at"]["5"] == pytest.approx(hits[:, :5].any(1)[ds.ground_truth.has_positive].mean())
    with np.load(tmp_path / rec["per_query"]) as z:
        first = z["first_hit"]
        assert ((first >= 0) & (first < 5))[z["evaluated"]].mean() == pytest.approx(rec["metrics"]["recall_at"]["5"])


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


def test_one_record_per_resolved_job(tmp_path):
    summary = run(tmp_path, "seqmatch,seqmatch[variant=meanOfPairs]")
    assert len(summary.outcomes) == 1
    rec = summary.outcomes[0].record
    assert rec["job"]["label"] == "seqmatch" and rec["job"]["user_labels"] == ["seqmatch", "seqmatch[variant=meanOfPairs]"]
    assert len(list(tmp_path.glob("records/toy/seqmatch/*.json"))) == 1
    summary2 = run(tmp_path, "seqmatch[variant=meanOfPairs]")
    assert summary2.outcomes[0].status == "skipped"
    table, _ = report(tmp_path, plots=False)
    assert len(table) == 1


def test_jobs_that_cannot_differ_are_not_recomputed(tmp_path):
    reg = registry_with(CountingSeqMatch, CountingSingle)
    CountingSeqMatch.calls = CountingSingle.calls = 0
    run(tmp_path, "counting,counting-single", reg, seeds=[0, 1, 2])
    assert CountingSeqMatch.calls == 1 and CountingSingle.calls == 1  # deterministic: once for all seeds
    for L in (3, 7):
        run(tmp_path, "counting,counting-single", reg, seq_len=L)
    assert CountingSeqMatch.calls == 3  # a sequence method reruns per L
    assert CountingSingle.calls == 1  # a single-image method does not; its records still exist per L
    assert len(list(tmp_path.glob("records/toy/counting-single/*.json"))) == 3
    table, _ = report(tmp_path, plots=False)
    assert sorted(table[table["method"] == "counting-single"]["seq_len"]) == [3, 5, 7]


def test_learned_methods_run_per_seed(tmp_path):
    summary = run(tmp_path, "seqnet-s1[epochs=1]", seeds=[0, 1])
    assert [o.record["job"]["seed"] for o in summary.outcomes] == [0, 1]
    table, _ = report(tmp_path, plots=False)
    assert len(table) == 1 and int(table["seeds"].iloc[0]) == 2


def test_editing_a_plugin_never_serves_the_old_record(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    source = """
from vprbench.kernels import nearest_neighbours
from vprbench.method import Method, MethodInfo, Ranking

SCALE = {scale}

class Mine(Method):
    info = MethodInfo(name="mine", family="single-image", summary="x", uses_sequences=False)

    def rank(self, split, ctx):
        return Ranking(*nearest_neighbours(split.query.descriptors * SCALE, split.reference.descriptors, ctx.top_k))
"""
    (folder / "mine.py").write_text(source.format(scale=1.0))
    out = tmp_path / "out"
    assert run(out, "mine", discover([folder])).outcomes[0].status == "done"
    assert run(out, "mine", discover([folder])).outcomes[0].status == "skipped"
    (folder / "mine.py").write_text(source.format(scale=-1.0))
    os.utime(folder / "mine.py", ns=(1, 1))  # a different modification time is not what changes the key
    second = run(out, "mine", discover([folder])).outcomes[0]
    assert second.status == "done"
    table, _ = report(out, plots=False)
    assert len(table) == 2 and all("(code " in d for d in table["label"])


HELPER_PLUGIN = """
from vprbench.kernels import nearest_neighbours
from vprbench.method import Method, MethodInfo, Ranking

{imp}

class Mine(Method):
    info = MethodInfo(name="mine", family="single-image", summary="x", uses_sequences=False)

    def rank(self, split, ctx):
        return Ranking(*nearest_neighbours(split.query.descriptors * {scale}, split.reference.descriptors, ctx.top_k))
"""


@pytest.mark.parametrize("imp,scale", [("from ._helpers import SCALE", "SCALE"), ("from . import _helpers", "_helpers.SCALE"),
                                       ("from ._sub.consts import SCALE", "SCALE")])
def test_editing_a_plugins_helper_module_never_serves_the_old_record(tmp_path, imp, scale):
    folder = tmp_path / "plugins"
    (folder / "_sub").mkdir(parents=True)
    (folder / "mine.py").write_text(HELPER_PLUGIN.format(imp=imp, scale=scale))
    helper = folder / ("_sub/consts.py" if "_sub" in imp else "_helpers.py")
    helper.write_text("SCALE = 1.0\n")
    out = tmp_path / "out"
    first = run(out, "mine", discover([folder])).outcomes[0]
    assert first.status == "done" and first.record["metrics"]["recall_at"]["1"] > 0.5
    assert run(out, "mine", discover([folder])).outcomes[0].status == "skipped"
    helper.write_text("SCALE = -1.0\n")  # the plugin file itself is unchanged
    second = run(out, "mine", discover([folder])).outcomes[0]
    assert second.status == "done" and second.record["metrics"]["recall_at"]["1"] < first.record["metrics"]["recall_at"]["1"]


def test_an_entry_point_packages_own_modules_are_part_of_its_code_identity(tmp_path, monkeypatch):
    import importlib
    import sys

    from vprbench.core.codehash import class_code_hash

    pkg = tmp_path / "site" / "myvpr"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "consts.py").write_text("SCALE = 1.0\n")
    (pkg / "methods.py").write_text(HELPER_PLUGIN.format(imp="from myvpr.consts import SCALE", scale="SCALE"))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in [m for m in sys.modules if m.split(".")[0] == "myvpr"]:
        monkeypatch.delitem(sys.modules, name)
    before = class_code_hash(importlib.import_module("myvpr.methods").Mine)
    (pkg / "consts.py").write_text("SCALE = -1.0\n")
    assert class_code_hash(importlib.import_module("myvpr.methods").Mine) != before
    (pkg / "consts.py").write_text("SCALE = 1.0\n")
    assert class_code_hash(importlib.import_module("myvpr.methods").Mine) == before


def test_report_never_averages_different_identities(tmp_path):
    reg = discover()
    ds = make_toy_dataset(n=200)
    other = make_toy_dataset(n=200, seed=5, name="other")
    Runner(RunConfig(dataset="toy", out=tmp_path), reg, [ds]).run(expand("seqnet-s1[epochs=1]", [], reg))
    Runner(RunConfig(dataset="toy", out=tmp_path), reg, [ds]).run(expand("seqnet-s1[epochs=1,lr=0.001]", [], reg))
    Runner(RunConfig(dataset="toy", out=tmp_path, train_dataset="other"), reg, [ds, other]).run(expand("seqnet-s1[epochs=1]", [], reg))
    Runner(RunConfig(dataset="toy", out=tmp_path, seq_len=3), reg, [ds]).run(expand("seqnet-s1[epochs=1]", [], reg))
    table, paths = report(tmp_path, plots=False)
    l5 = table[table["seq_len"] == 5]
    assert len(l5) == 3 and (l5["seeds"] == 1).all()
    assert sorted(l5["label"]) == ["seqnet-s1[epochs=1,lr=0.001]", "seqnet-s1[epochs=1]", "seqnet-s1[epochs=1] (trained on other)"]
    assert len(table[table["seq_len"] == 3]) == 1
    assert "learned rows trained on other, toy" in paths["md"].read_text()


def test_report_never_averages_different_data(tmp_path):
    reg = discover()
    for seed in (0, 1):  # same dataset name, different content
        Runner(RunConfig(dataset="toy", out=tmp_path), reg, [make_toy_dataset(n=200, seed=seed)]).run(expand("netvlad", [], reg))
    summary, paths = report(tmp_path, plots=True)
    assert len(summary) == 2 and (summary["seeds"] == 1).all()
    assert paths["md"].read_text().count("### toy / test") == 2
    assert len(list((tmp_path / "plots").glob("*distance-matrix.png"))) == 2


def test_corrupt_record_is_set_aside_and_recomputed(tmp_path):
    run(tmp_path, "netvlad")
    path = next(tmp_path.glob("records/toy/netvlad/*.json"))
    path.write_text('{"schema": "vprbench.res')  # truncated
    summary = run(tmp_path, "netvlad")
    assert summary.outcomes[0].status == "done"
    assert json.loads(path.read_text())["schema"] == SCHEMA
    assert len(list(path.parent.glob("*.invalid-*"))) == 1


@pytest.mark.parametrize("damage", [
    lambda r: r.pop("metrics"),
    lambda r: r["metrics"]["recall_at"].update({"1": 1.7}),
    lambda r: r["metrics"].update({"n_evaluated": "many"}),
    lambda r: r["job"].update({"seq_len": "five"}),
])
def test_structurally_wrong_record_is_set_aside_with_a_warning(tmp_path, damage, caplog):
    run(tmp_path, "netvlad,seqmatch")
    path = next(tmp_path.glob("records/toy/netvlad/*.json"))
    rec = json.loads(path.read_text())
    damage(rec)
    path.write_text(json.dumps(rec))
    table, _ = report(tmp_path, plots=False)  # does not crash, reports the rest
    assert list(table["method"]) == ["seqmatch"]
    assert "structurally invalid" in caplog.text and path.name in caplog.text
    assert not path.exists() and len(list(path.parent.glob("*.invalid-*"))) == 1
    assert run(tmp_path, "netvlad,seqmatch").outcomes[0].status == "done"  # and later runs recompute it


@pytest.mark.parametrize("damage,message", [
    (lambda r, root: r["metrics"]["recall_at"].update({"1": 0.5}), "edited after it was written"),
    (lambda r, root: r["job"].update({"seq_len": 7}), "job.seq_len = 7 differs from its identity's 5"),
    (lambda r, root: r.update({"per_query": "../../../../etc/passwd"}), "leaves the results folder"),
    (lambda r, root: r.update({"key": "0" * 16}), "is not its file name"),
    (lambda r, root: (root / r["per_query"]).write_bytes(b"junk"), "per_query file .* changed after the record was written"),
    (lambda r, root: (root / r["predictions"]).unlink(), "predictions file .* is missing or unreadable"),
])
def test_a_record_not_as_it_was_written_is_set_aside_and_recomputed(tmp_path, damage, message, caplog):
    """Hand edits, inconsistent fields, paths leaving the folder and changed or lost files: never reported."""
    first = run(tmp_path, "netvlad,seqmatch").outcomes[0].record
    path = next(tmp_path.glob("records/toy/netvlad/*.json"))
    rec = json.loads(path.read_text())
    if damage(rec, tmp_path) is None and rec != json.loads(path.read_text()):
        path.write_text(json.dumps(rec))
    table, _ = report(tmp_path, plots=True)  # neither crashes nor shows the damaged record
    assert list(table["method"]) == ["seqmatch"]
    assert re.search(message, caplog.text), caplog.text
    assert not path.exists() and len(list(path.parent.glob("*.invalid-*"))) == 1
    again = run(tmp_path, "netvlad,seqmatch").outcomes[0]
    assert again.status == "done" and again.record["metrics"]["recall_at"] == first["metrics"]["recall_at"]
    table, _ = report(tmp_path, plots=False)
    assert sorted(table["method"]) == ["netvlad", "seqmatch"]


def test_newer_schema_record_is_left_untouched(tmp_path, caplog):
    run(tmp_path, "netvlad,seqmatch")
    path = next(tmp_path.glob("records/toy/netvlad/*.json"))
    rec = json.loads(path.read_text())
    rec["schema_version"] = SCHEMA_VERSION + 1
    path.write_text(json.dumps(rec))
    table, _ = report(tmp_path, plots=False)
    assert list(table["method"]) == ["seqmatch"] and "newer than this vprbench" in caplog.text
    assert path.exists() and json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION + 1


def test_failing_method_does_not_stop_others(tmp_path):
    reg = registry_with(Exploding)
    summary = run(tmp_path, "exploding,netvlad", reg)
    assert [o.status for o in summary.outcomes] == ["failed", "done"]
    assert "boom" in summary.failed[0].error
    assert not list(tmp_path.glob("records/toy/exploding/*"))


def test_drop_policy_evaluates_fewer_queries_and_warns(tmp_path):
    shift = run(tmp_path / "a", "seqmatch", seq_len=5, boundary="shift").outcomes[0].record
    drop = run(tmp_path / "b", "seqmatch", seq_len=5, boundary="drop").outcomes[0].record
    assert shift["metrics"]["n_queries"] == 50 and drop["metrics"]["n_queries"] == 46
    assert not shift["warnings"]
    assert any("4 of 50 queries" in w and "not evaluated" in w for w in drop["warnings"])


def test_short_segments_drop_queries_with_a_warning(tmp_path, caplog):
    ds = make_toy_dataset(n=200)
    q = ds.queries["qry"]
    seg = np.where(np.arange(len(q))[:, None] < 195, [[0, 195]], [[195, 200]])  # the last 5 frames: a short segment
    ds = replace(ds, queries={"qry": replace(q, segments=seg)})
    rec = run(tmp_path, "seqmatch", dataset=ds, seq_len=7).outcomes[0].record
    assert rec["metrics"]["n_queries"] == 45
    assert any("5 of 50 queries" in w for w in rec["warnings"]) and "5 of 50 queries" in caplog.text


def test_queries_without_a_positive_are_counted_in_a_warning(tmp_path):
    """A reference traverse shorter than the query's (e.g. frame-aligned data of unequal length) leaves
    queries without a positive: excluded by the default protocol, and said so."""
    from vprbench.data.dataset import SplitIndices

    ds = make_toy_dataset(n=200)
    ds = replace(ds, splits={**ds.splits, "test": SplitIndices.from_ranges((150, 190), (150, 200))})
    rec = run(tmp_path, "netvlad", dataset=ds).outcomes[0].record
    assert rec["metrics"]["n_without_positive"] == 9 and rec["metrics"]["n_evaluated"] == 41
    assert any("9 of 50 queries have no positive reference and are not evaluated" in w for w in rec["warnings"])
    assert not [w for w in run(tmp_path / "full", "netvlad").outcomes[0].record["warnings"] if "no positive" in w]


def test_evaluating_on_the_training_split_warns(tmp_path):
    rec = run(tmp_path, "seqnet-s1[epochs=1]", split="train").outcomes[0].record
    assert any("which it was trained on" in w for w in rec["warnings"])


def test_checkpoint_paths_are_relative_to_the_output_folder(tmp_path):
    rec = run(tmp_path, "seqnet-s1[epochs=1]").outcomes[0].record
    ckpt = rec["job"]["training"]["checkpoint"]
    assert not os.path.isabs(ckpt) and ckpt.startswith("cache/models/") and (tmp_path / ckpt).is_file()


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="output directory .*a-file/out.* is not writable"):
        Runner(RunConfig(dataset="toy", out=blocker / "out"), discover())


def test_full_disk_is_a_named_error_and_finished_jobs_are_kept(tmp_path, monkeypatch):
    import vprbench.running.runner as runner_module

    real = runner_module.save_npz_atomic
    calls = {"n": 0}

    def flaky(path, **arrays):
        if "predictions" in str(path):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(28, "No space left on device")
        return real(path, **arrays)

    monkeypatch.setattr(runner_module, "save_npz_atomic", flaky)
    with pytest.raises(OutputError, match="No space left on device.*finished jobs are kept"):
        run(tmp_path, "netvlad,seqmatch")
    assert len(list(tmp_path.glob("records/toy/netvlad/*.json"))) == 1
    assert not list(tmp_path.glob("claims/*.claim"))
    monkeypatch.setattr(runner_module, "save_npz_atomic", real)
    assert [o.status for o in run(tmp_path, "netvlad,seqmatch").outcomes] == ["skipped", "done"]


def test_bad_run_config():
    with pytest.raises(ConfigError, match="seq_len must be >= 1"):
        RunConfig(dataset="toy", out=".", seq_len=0)
    with pytest.raises(ConfigError, match="--boundary"):
        RunConfig(dataset="toy", out=".", boundary="wrap")
    with pytest.raises(ConfigError, match="--memory-mb must be > 0"):
        RunConfig(dataset="toy", out=".", memory_mb=0)
    with pytest.raises(ConfigError, match="--device must be cpu, cuda or cuda:N"):
        RunConfig(dataset="toy", out=".", device="gpu")
    with pytest.raises(ConfigError, match=r"seeds must be integers in \[0, 2\*\*63\)"):
        RunConfig(dataset="toy", out=".", seeds=[-1])
    with pytest.raises(ConfigError, match="lists a seed twice"):
        RunConfig(dataset="toy", out=".", seeds=[1, 1])


def test_any_seed_below_2_to_63_trains(tmp_path):
    rec = run(tmp_path, "seqnet-s1[epochs=1]", seeds=[2**63 - 1]).outcomes[0].record
    assert rec["job"]["seed"] == 2**63 - 1


def test_seq_len_longer_than_split(tmp_path):
    with pytest.raises(DataError, match="longer than its longest segment"):
        run(tmp_path, "seqmatch", seq_len=80)


def test_report_tables_group_by_family(tmp_path):
    run(tmp_path, "seqmatch,netvlad,seqnet-s1[epochs=1]", seeds=[0, 1])
    summary, paths = report(tmp_path, plots=True)
    md = paths["md"].read_text()
    assert md.index("single-image") < md.index("sequence-matching")  # paper order, not input order
    assert "R@1 std" in md and "deterministic method, computed once for all seeds" in md
    assert paths["csv"].read_text().count("\n") == 4
    assert "\\toprule" in paths["tex"].read_text()
    assert any(p.name.endswith("distance-matrix.png") for p in paths.values())
    assert sorted(summary["seeds"]) == [1, 1, 2] and summary["deterministic"].sum() == 2


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
    assert not list(tmp_path.glob("claims/*.claim"))
    summary = run(tmp_path, "netvlad,seqmatch", reg)
    assert [o.status for o in summary.outcomes] == ["skipped", "done"]


def _claim_of(tmp_path, pid):
    reg = discover()
    runner = Runner(RunConfig(dataset="toy", out=tmp_path), reg, [make_toy_dataset(n=200)])
    ds = make_toy_dataset(n=200)
    (job,) = runner.plan(expand("seqmatch", [], reg), ds, ds.split("test"), ds)
    path = tmp_path / "claims" / f"{job.ranking_key}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": 0}))
    return path


def test_a_job_claimed_by_a_live_run_is_not_computed_twice(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        claim = _claim_of(tmp_path, other.pid)
        outcome = run(tmp_path, "seqmatch").outcomes[0]
        assert outcome.status == "busy" and f"pid {other.pid}" in outcome.error
        assert not list(tmp_path.glob("records/toy/seqmatch/*.json")) and claim.exists()
    finally:
        other.kill()
        other.wait()
    # the claimant died: its stale claim is taken over
    assert run(tmp_path, "seqmatch").outcomes[0].status == "done" and not claim.exists()


def _toy_with_protocols():
    ds = make_toy_dataset(n=200, noise=1.2)  # hard enough that no method is perfect
    protocols = {**ds.protocols, "wide": Protocol("wide", radius=3.0), "strict-miss": Protocol("strict-miss", radius=0.5, no_positive="miss"),
                 "window": Protocol("window", positives="window")}
    return replace(ds, protocols=protocols)


@pytest.mark.parametrize("protocol", ["wide", "strict-miss", "window"])
def test_report_protocol_recomputes_what_a_fresh_run_gives(tmp_path, protocol):
    methods = "netvlad,seqmatch,gism,seqnet-s1[epochs=1]"
    run(tmp_path / "a", methods, dataset=_toy_with_protocols(), seq_len=3, boundary="drop")
    recomputed, paths = report(tmp_path / "a", plots=False, protocol=protocol)
    assert paths["md"].name == f"recall-{protocol}.md" and "(recomputed)" in paths["md"].read_text()
    run(tmp_path / "b", methods, dataset=_toy_with_protocols(), seq_len=3, boundary="drop", protocol=protocol)
    fresh, _ = report(tmp_path / "b", plots=False)
    cols = ["R@1", "R@5", "R@10", "R@20", "PR-AUC", "n_evaluated", "n_without_positive"]
    a = recomputed.sort_values("label")[["label", *cols]].reset_index(drop=True)
    b = fresh.sort_values("label")[["label", *cols]].reset_index(drop=True)
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(a, b)
    default, _ = report(tmp_path / "a", plots=False)
    assert not np.allclose(default.sort_values("label")["R@1"].to_numpy(), b["R@1"].to_numpy())


def test_unknown_protocol_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown protocol 'nope' of dataset 'toy'"):
        run(tmp_path, "netvlad", dataset=_toy_with_protocols(), protocol="nope")


def test_unmatched_queries_are_counted_and_shown(tmp_path):
    rec = run(tmp_path, "gism[nonMatchCost=0.5]").outcomes[0].record
    assert rec["metrics"]["n_unmatched"] > 0
    _, paths = report(tmp_path, plots=False)
    assert "no match" in paths["md"].read_text()


def test_one_tie_rule_everywhere(tmp_path):
    """Identical reference windows: every search path returns the lower index first, and ties are counted."""
    ds = make_toy_dataset(n=200)
    r = ds.reference
    d = r.descriptors.copy()
    d[150:160] = d[150]  # ten identical frames in the test split: identical windows
    ds = replace(ds, reference=replace(r, descriptors=d))
    methods = ("netvlad,smoothing,seqmatch,seqmatch[variant=centerOnly],seqslam,"
               "hvpr[shortlister=seqmatch,reranker=seqmatch[variant=centerOnly]],hvpr[shortlister=smoothing,reranker=netvlad]")
    summary = run(tmp_path, methods, dataset=ds)
    assert len(summary.outcomes) == 7 and all(o.status == "done" for o in summary.outcomes)
    for o in summary.outcomes:
        with np.load(tmp_path / o.record["predictions"]) as z:
            idx, dist = z["indices"], z["distances"]
        tied = (dist[:, :-1] == dist[:, 1:]) & (idx[:, 1:] >= 0)
        bad = np.argwhere(tied & (idx[:, :-1] >= idx[:, 1:]))
        assert bad.size == 0, (o.record["job"]["method"], bad[:3], idx[bad[0][0]] if bad.size else None)
    ties = {o.spec.label: o.record["metrics"]["ties_at_1"] for o in summary.outcomes}
    assert ties["netvlad"] > 0 and ties["hvpr[reranker=seqmatch[variant=centerOnly],shortlister=seqmatch]"] > 0, ties


def test_a_read_only_model_cache_keeps_the_result_and_warns(tmp_path, monkeypatch):
    import vprbench.learning.checkpoints as checkpoints

    def read_only(path, state, config):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(checkpoints, "save_checkpoint", read_only)
    with pytest.warns(UserWarning, match="could not write the trained model to the cache .*Permission denied.*the result is kept"):
        outcome = run(tmp_path, "seqnet-s1[epochs=1]").outcomes[0]
    assert outcome.status == "done" and not outcome.record["job"]["training"]["cache_hit"]
    assert "checkpoint" not in outcome.record["job"]["training"]


def test_empty_reference_in_the_python_api_is_a_data_error():
    from vprbench.kernels import nearest_neighbours

    with pytest.raises(DataError, match="non-empty"):
        nearest_neighbours(np.ones((3, 4), np.float32), np.ones((0, 4), np.float32), 2)


def test_editing_the_training_code_never_serves_an_old_model(tmp_path, monkeypatch):
    import vprbench.plugins.learned as learned

    first = run(tmp_path, "seqnet-s1[epochs=1]").outcomes[0].record["job"]["training"]
    monkeypatch.setattr(learned, "method_code_hash", lambda cls: "edited")
    second = run(tmp_path, "seqnet-s1[epochs=1]", force=True).outcomes[0].record["job"]["training"]
    assert first["cache_key"] != second["cache_key"] and not second["cache_hit"]


def test_specs_that_resolve_alike_are_one_record(tmp_path):
    """Preset-filled defaults and learned presets are resolved before the identity: one job each."""
    specs = ("seqslam,seqslam[vstep=0],seqslam[preset=openseqslam],seqslam[preset=openseqslam,ds=10,distance=sad],"
             "seqnet-s1[epochs=1],seqnet-s1[epochs=1,preset=cpu-small]")
    summary = run(tmp_path, specs)
    assert [o.spec.label for o in summary.outcomes] == ["seqslam", "seqslam[preset=openseqslam]", "seqnet-s1[epochs=1]"]
    assert len(list(tmp_path.glob("records/*/*/*.json"))) == 3
    rec = summary.outcomes[2].record
    ident_params = rec["identity"]["ranking"]["method"]["params"]
    trained = rec["job"]["resolved_params"]
    assert trained["preset_resolved"] == "cpu-small"  # the toy training split is small
    assert all(ident_params[k] == trained[k] for k in ident_params), "the identity states the hyperparameters that were trained"


def test_a_filter_longer_than_the_training_windows_stops_before_training(tmp_path, capsys):
    from vprbench.cli.main import main

    assert main(["run", "--methods", "seqmatch,seqnet[filter_width=9]", "--dataset", "synth-tiny", "--seq-len", "5", "--out", str(tmp_path)]) == 2
    assert "filter_width 9 exceeds the training sequence length 5" in capsys.readouterr().err
    assert not (tmp_path / "records").exists() and not (tmp_path / "cache").exists()


def test_a_nested_frontend_is_validated_before_any_training(tmp_path, capsys):
    from vprbench.cli.main import main

    spec = "hvpr[shortlister=seqnet[epochs=1],reranker=seqmatch[frontend=netvlad-trained]]"
    assert main(["run", "--methods", spec, "--dataset", "synth-tiny", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "frontend 'netvlad-trained' needs images" in err
    assert not (tmp_path / "cache").exists()


def test_hvpr_of_training_free_stages_is_training_free(tmp_path):
    from vprbench.core.errors import ConfigError

    reg = discover()
    method = reg.create("hvpr[shortlister=smoothing,reranker=seqmatch]")
    assert not method.info.trains and not method.info.depends_on_seed and "frontend" not in method.info.params
    assert reg.create("hvpr[shortlister=smoothing,reranker=seqnet-s1]").info.trains
    summary = run(tmp_path, "hvpr[shortlister=smoothing,reranker=seqmatch]", seeds=[0, 1])
    assert len(summary.outcomes) == 1 and len(list(tmp_path.glob("records/*/*/*.json"))) == 1  # one job for both seeds
    with pytest.raises(ConfigError, match="shortlister 'gism' returns one match per query"):
        reg.create("hvpr[shortlister=gism,reranker=seqmatch]")


def test_degenerate_descriptors_and_a_radius_covering_the_map_are_warned_about(tmp_path):
    ds = make_toy_dataset(n=200)
    const = replace(ds, reference=replace(ds.reference, descriptors=np.ones_like(ds.reference.descriptors)))
    rec = run(tmp_path / "a", "netvlad", dataset=const).outcomes[0].record
    assert any("the tie rule (lower reference index) decided the match" in w for w in rec["warnings"]), rec["warnings"]
    assert not any("tie rule" in w for w in run(tmp_path / "b", "netvlad").outcomes[0].record["warnings"])
    wide = run(tmp_path / "c", "netvlad", protocol_overrides={"radius": 1e9}).outcomes[0].record
    assert any("the radius covers most of the map" in w for w in wide["warnings"]), wide["warnings"]
    assert not any("covers most of the map" in w for w in run(tmp_path / "d", "netvlad").outcomes[0].record["warnings"])
