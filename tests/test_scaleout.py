"""Sweeps and executors: a grid on --workers 2 and on a Dask LocalCluster (loopback) gives the records of the
in-process run; a crashed worker loses only its own job and a rerun finishes; shared training happens once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vprbench.cli.main import main
from vprbench.core.errors import ConfigError
from vprbench.plugins.registry import discover
from vprbench.plugins.specs import expand
from vprbench.reporting.report import report
from vprbench.running.executors import plan_tasks, run_tasks
from vprbench.running.runner import RunConfig
from vprbench.running.sweeps import expand_configs, method_param_options, parse_sweep

REG = discover()
METHODS = "netvlad,seqmatch,seqslam,seqnet-s1[epochs=1]"


def grid(out: Path, methods: str = METHODS, sweeps=("seq_len=3,5",), plugins=(), reg=REG, **kw):
    axes = [parse_sweep(s, reg) for s in sweeps]
    specs = expand(methods, method_param_options(axes), reg)
    configs = expand_configs(RunConfig(dataset="synth-tiny", out=out), axes)
    return plan_tasks(configs, specs, reg, plugins), kw


def metrics_by_key(out: Path) -> dict[str, dict]:
    out_ = {}
    for p in sorted(out.glob("records/**/*.json")):
        r = json.loads(p.read_text())
        out_[r["key"]] = {"metrics": r["metrics"], "label": r["job"]["label"], "seq_len": r["job"]["seq_len"]}
    return out_


def test_sweep_axes_are_parsed_and_validated():
    assert parse_sweep("seq_len=1,3", REG).target == "run"
    assert parse_sweep("seqslam.vmin=0.6,0.8", REG).method == "seqslam"
    assert parse_sweep("protocol.radius=5,25", REG).target == "protocol"
    assert parse_sweep("dataset.query_noise=0.3,0.6", REG).target == "dataset"
    for bad, message in [("seq_len", "expected AXIS"), ("sideways=1", "unknown axis"), ("seqslam.nope=1", "Did you mean"),
                         ("protocol.colour=red", "protocol field"), ("seq_len=3,3", "given twice"),
                         ("seq_len=3,,5", "an empty value"), ("seq_len=3,", "an empty value")]:
        with pytest.raises(ConfigError, match=message):
            parse_sweep(bad, REG)


def test_workers_and_local_cluster_give_the_in_process_records(tmp_path):
    tasks, _ = grid(tmp_path / "serial")
    run_tasks(tasks)
    serial = metrics_by_key(tmp_path / "serial")
    assert len(serial) == 8 and {v["seq_len"] for v in serial.values()} == {3, 5}

    tasks, _ = grid(tmp_path / "pool")
    summary = run_tasks(tasks, workers=2)
    assert not summary.failed and metrics_by_key(tmp_path / "pool") == serial

    pytest.importorskip("distributed")
    tasks, _ = grid(tmp_path / "dask")
    summary = run_tasks(tasks, workers=2, scheduler="local")
    assert not summary.failed and metrics_by_key(tmp_path / "dask") == serial


def _wait_for(path: str) -> str:
    import time as _time

    while not Path(path).exists():
        _time.sleep(0.05)
    return "released"


def test_dask_progress_counts_the_tasks_workers_are_running(tmp_path):
    """The progress line's "running" is what the scheduler says its workers are processing, of this run's tasks."""
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    from vprbench.running.executors import _dask_running

    gate = tmp_path / "gate"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        fut = client.submit(_wait_for, str(gate), key="vprbench-task-0-test", pure=False)
        other = client.submit(_wait_for, str(gate), key="someone-elses-task", pure=False)
        mine = {fut.key: 0}
        import time

        deadline = time.monotonic() + 30
        while _dask_running(client, mine) != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _dask_running(client, mine) == 1
        gate.write_text("go")
        assert fut.result(timeout=30) == "released" and other.result(timeout=30) == "released"
        assert _dask_running(client, mine) == 0
    assert _dask_running(object(), mine) == 0  # a scheduler that cannot say: 0, never an error


CRASHER = """
import os
from pathlib import Path
from vprbench.kernels import nearest_neighbours
from vprbench.method import Method, MethodInfo, Ranking

MARKER = Path({marker!r})


class Crasher(Method):
    info = MethodInfo(name="crasher", family="single-image", summary="kills its worker process the first time", uses_sequences=False)

    def rank(self, split, ctx):
        if not MARKER.exists():
            MARKER.write_text("crashed once")
            os._exit(17)  # a worker dying mid-grid (no exception, no cleanup)
        return Ranking(*nearest_neighbours(split.query.descriptors, split.reference.descriptors, ctx.top_k))
"""


@pytest.mark.parametrize("executor", ["pool", "dask"])
def test_a_crashed_worker_loses_only_its_own_job(tmp_path, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "crasher.py").write_text(CRASHER.format(marker=str(tmp_path / "marker")))
    reg = discover([plugins])
    out = tmp_path / "out"
    tasks, _ = grid(out, "netvlad,crasher,seqmatch", sweeps=("seq_len=3,5",), plugins=[str(plugins)], reg=reg)
    summary = run_tasks(tasks, workers=2, scheduler="local" if executor == "dask" else None)
    assert (tmp_path / "marker").exists()  # it did crash once
    done = {o.spec.label for o in summary.outcomes if o.status == "done"}
    assert {"netvlad", "seqmatch"} <= done
    tasks, _ = grid(out, "netvlad,crasher,seqmatch", sweeps=("seq_len=3,5",), plugins=[str(plugins)], reg=reg)
    rerun = run_tasks(tasks)
    assert not rerun.failed and all(o.status in ("done", "skipped") for o in rerun.outcomes)
    assert len(list(out.glob("records/**/*.json"))) == 6
    assert not list(out.glob("claims/*.claim"))


def test_shared_training_happens_once_across_workers(tmp_path):
    tasks, _ = grid(tmp_path, "seqnet-s1[epochs=2],hvpr[shortlister=netvlad,reranker=seqnet-s1[epochs=2]]", sweeps=())
    assert len(tasks) == 2
    summary = run_tasks(tasks, workers=2)
    assert not summary.failed
    hits = []
    for o in summary.outcomes:
        training = o.record["job"]["training"]
        hits.append(training["cache_hit"] if "cache_hit" in training else training["reranker"]["cache_hit"])
    assert sorted(hits) == [False, True]  # one trained the shared S_1 model, the other loaded it


def test_protocol_sweep_reuses_the_rankings(tmp_path, caplog):
    caplog.set_level("INFO", logger="vprbench")
    tasks, _ = grid(tmp_path, "netvlad,seqmatch", sweeps=("protocol.radius=5,10,25",))
    assert len(tasks) == 2  # two rankings serve six records
    summary = run_tasks(tasks)
    records = [o.record for o in summary.outcomes]
    assert len(records) == 6 and {r["protocol"]["radius"] for r in records} == {5.0, 10.0, 25.0}
    assert caplog.text.count("ranking computed before") == 4
    by = {(r["job"]["method"], r["protocol"]["radius"]): r["metrics"]["recall_at"]["1"] for r in records}
    assert by[("netvlad", 5.0)] <= by[("netvlad", 10.0)] <= by[("netvlad", 25.0)]  # a wider radius can only add positives


def test_method_parameter_sweep_and_report_sweep_table(tmp_path):
    tasks, _ = grid(tmp_path, "seqslam,netvlad", sweeps=("seqslam.vmin=0.6,0.8,1.0",))
    run_tasks(tasks)
    _, paths = report(tmp_path, plots=True)
    text = paths["sweeps"].read_text()
    assert "R@1 vs seqslam.vmin" in text and "| seqslam " in text and "0.6" in text and "1.0" in text
    assert any(p.name.startswith("sweep-seqslam.vmin") for p in paths.values())


def test_cli_sweep_with_workers_and_the_sweep_plot(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--methods", "netvlad,seqmatch,smoothing", "--dataset", "synth-tiny", "--sweep", "seq_len=1,3,5",
                 "--workers", "2", "--out", str(out)])
    assert code == 0
    sweep_md = (out / "tables" / "sweeps.md").read_text()
    assert "R@1 vs seq_len" in sweep_md
    row = next(line for line in sweep_md.splitlines() if line.startswith("| seqmatch"))
    values = [float(c) for c in row.strip("|").split("|")[1:]]
    assert values == sorted(values) and values[0] < values[-1]  # longer sequences help seqmatch here
    assert list((out / "plots").glob("sweep-seq_len-*.png"))
    page = (out / "report.html").read_text()
    assert "sweep: seq_len" in page  # the sweep plot is on the results page too


def test_a_two_axis_grid_keeps_every_cell_apart(tmp_path):
    """seq_len x seqslam.vmin: each sweep table shows each record's own number, never a mean over the other axis."""
    tasks, _ = grid(tmp_path, "seqslam", sweeps=("seq_len=3,5", "seqslam.vmin=0.5,0.9"))
    summary = run_tasks(tasks)
    by = {(o.record["job"]["seq_len"], o.record["job"]["sweep"]["seqslam.vmin"]): o.record["metrics"]["recall_at"]["1"]
          for o in summary.outcomes}
    assert len(by) == 4 and len(set(by.values())) > 1
    _, paths = report(tmp_path, plots=False)
    text = paths["sweeps"].read_text()
    assert "+-" not in text  # one seed: no spread anywhere
    for (seq_len, vmin), r1 in by.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| seqslam (seqslam.vmin={vmin})"))
        cells = [c.strip() for c in row.strip("|").split("|")[1:]]
        assert cells[[3, 5].index(seq_len)] == f"{r1:.3f}"


def test_report_under_another_protocol_keeps_the_default_sweep_table_and_page(tmp_path):
    tasks, _ = grid(tmp_path, "netvlad,seqmatch", sweeps=("seq_len=3,5",))
    run_tasks(tasks)
    _, default = report(tmp_path, plots=False, html=True)
    sweeps_md, page = default["sweeps"].read_text(), default["html"].read_bytes()
    _, other = report(tmp_path, plots=False, html=True, protocol="window")
    assert other["sweeps"].name == "sweeps-window.md" and other["html"].name == "report-window.html"
    assert "protocol window" in other["sweeps"].read_text() and "protocol window" not in sweeps_md
    assert default["sweeps"].read_text() == sweeps_md and default["html"].read_bytes() == page  # untouched


def test_progress_numbers_count_the_whole_grid(tmp_path, caplog):
    caplog.set_level("INFO", logger="vprbench")
    tasks, _ = grid(tmp_path, "netvlad,seqmatch", sweeps=("seq_len=3,5",))
    tags = [t for task in tasks for t in task.tags]
    assert sorted(tags, key=lambda t: int(t[1:].split("/")[0])) == [f"[{i}/4]" for i in range(1, 5)]
    run_tasks(tasks)
    assert {f"[{i}/4]" for i in range(1, 5)} <= {line.split(" ")[0] for line in caplog.messages}
    assert "[1/1]" not in caplog.text
