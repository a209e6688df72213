"""``vprbench reproduce NAME``: run an experiment file and write its tables (``--list``: the ones that ship)."""

from __future__ import annotations

import argparse
import logging
import platform
import shlex
import sys
import time
from pathlib import Path

from tabulate import tabulate

from vprbench.core.errors import ConfigError, DataError

log = logging.getLogger("vprbench")


def add_reproduce_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from vprbench.cli.main import _device, _scheduler, _seed_list

    p = subparsers.add_parser("reproduce", help="run an experiment file (a paper's tables) and write its tables, plots and page")
    p.add_argument("name", nargs="?", help="experiment name (see --list) or a .toml file")
    p.add_argument("--list", action="store_true", help="list the experiments that ship")
    p.add_argument("--dataset", action="append", default=[], metavar="NAME",
                   help="only these datasets of the experiment (repeatable; default: every dataset whose data is present)")
    p.add_argument("--seeds", default=None, type=_seed_list, metavar="S[,S...]", help="seeds of the learned rows (default: the experiment's)")
    p.add_argument("--preset", default=None, choices=("cpu", "paper"), help="preset of the learned rows (default: the experiment's)")
    p.add_argument("--device", default="cpu", type=_device, help="torch device: cpu, cuda or cuda:N")
    p.add_argument("--data-dir", default=None, help="folder with downloaded datasets (default: $VPRBENCH_DATA_DIR)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: results/<experiment>)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="local worker processes (default: 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", type=_scheduler, help="Dask scheduler address, or 'local'")
    p.add_argument("--force", action="store_true", help="recompute jobs whose results exist")
    p.add_argument("--no-plots", action="store_true", help="tables only")
    p.set_defaults(handler=cmd_reproduce)
    return p


def cmd_reproduce(args: argparse.Namespace) -> int:
    from vprbench.core.progress import progress_enabled
    from vprbench.data.catalog import load_dataset
    from vprbench.plugins.registry import discover
    from vprbench.plugins.specs import expand, parse_spec
    from vprbench.reporting.experiment_tables import DatasetRun, load_published, write_experiment_tables
    from vprbench.reporting.report import report
    from vprbench.reporting.tables import load_records
    from vprbench.running.executors import plan_tasks, run_tasks
    from vprbench.running.experiments import effective_spec, experiment_files, get_experiment, resolve_train_dataset
    from vprbench.running.runner import RunConfig, check_device
    from vprbench.running.sweeps import expand_configs, method_param_options, parse_sweep

    if args.list:
        if args.name:
            raise ConfigError(f"reproduce --list takes no experiment name (got {args.name!r}); drop one of them")
        rows = []
        for name, path in experiment_files().items():
            exp = get_experiment(str(path))
            rows.append([name, exp.summary, ", ".join(d.name for d in exp.datasets)])
        print(tabulate(rows, headers=["experiment", "summary", "datasets"], tablefmt="simple"))
        return 0
    if not args.name:
        raise ConfigError("reproduce: give an experiment name (vprbench reproduce --list shows them)")
    exp = get_experiment(args.name)
    load_published(exp)  # a bad published file: exit 2 now, not after every job ran
    check_device(args.device)
    registry = discover(args.plugins)
    seeds = exp.seeds if args.seeds is None else tuple(args.seeds)
    preset = args.preset or exp.preset
    out = args.out or Path("results") / exp.name
    wanted = args.dataset or [d.name for d in exp.datasets]
    for name in wanted:
        exp.dataset(name)  # unknown names: exit 2 now

    def available(name: str) -> bool:
        try:
            load_dataset(name, data_dir=args.data_dir)
            return True
        except DataError:
            return False

    runs, skipped, configs_by_run = [], [], []
    for name in wanted:
        d = exp.dataset(name)
        if not available(name):
            if args.dataset:
                load_dataset(name, data_dir=args.data_dir)  # asked for explicitly: its error (exit 3)
            skipped.append(name)
            continue
        train = resolve_train_dataset(d, available)
        if d.train_dataset and train != d.train_dataset[0] and d.train_dataset[0] != name:
            log.warning("%s: training dataset %s is not available; learned rows are trained on %s instead", name, d.train_dataset[0],
                        train or name)
        run = DatasetRun(d, train, d.protocol or "default", exp.seq_len, exp.boundary, preset)
        runs.append(run)
        axes = [parse_sweep(f"{axis}={','.join(map(str, values))}", registry) for axis, values in exp.sweeps]
        specs = sorted({effective_spec(row.spec, d, preset, registry) for t in d.tables for row in exp.table(t).rows})
        base = RunConfig(dataset=name, out=out, seq_len=exp.seq_len, boundary=exp.boundary, seeds=list(seeds), train_dataset=train,
                         data_dir=args.data_dir, dataset_params=dict(d.dataset_params), protocol=d.protocol, device=args.device,
                         force=args.force, progress=progress_enabled(None))
        method_axes = method_param_options(axes)  # METHOD.KEY axes: a grid of specs, like `run --sweep`
        expanded = expand(",".join(specs), method_axes, registry) if method_axes else [parse_spec(s, registry) for s in specs]
        configs_by_run.append((base, expanded, axes))
    if skipped:
        log.warning("not run (their data is not in the data directory; `vprbench datasets verify NAME` says what is missing): %s",
                    ", ".join(skipped))
    if not runs:
        raise DataError(f"experiment {exp.name}: none of its datasets is available ({', '.join(skipped)})")
    t0 = time.perf_counter()
    failed = computed = 0
    for base, specs, axes in configs_by_run:
        tasks = plan_tasks(expand_configs(base, axes), specs, registry, args.plugins)
        summary = run_tasks(tasks, workers=args.workers, scheduler=args.scheduler, progress=base.progress)
        failed += len(summary.failed)
        computed += sum(o.status == "done" for o in summary.outcomes)
        for o in summary.failed:
            log.error("failed: %s seed %d: %s", o.spec.label, o.seed, o.error)
    wall = time.perf_counter() - t0
    records = load_records(out)
    paths = write_experiment_tables(exp, runs, records, out, registry, plots=not args.no_plots)
    _, rpaths = report(out, plots=not args.no_plots, html=True, experiment=exp, registry=registry)
    write_readme(exp, runs, out, records, wall, skipped, computed, seeds=seeds)
    print(paths["all"].read_text(encoding="utf-8"))
    print(f"tables: {out / 'tables'}\nresults page: {rpaths['html']}")
    return 1 if failed else 0


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def write_readme(exp, runs, out: Path, records: list[dict], wall_s: float, skipped: list[str], computed: int | None = None,
                 seeds: list[int] | None = None) -> Path:
    """README.md of a reproduction folder: the command, seeds, versions, run time and the tables."""
    from vprbench.running.experiments import experiment_files

    env = next((r.get("environment") for r in records if r.get("environment")), {}) or {}
    pkgs = env.get("packages", {})
    shipped = experiment_files().get(exp.name) == Path(exp.source)
    command = ("vprbench " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv and "vprbench" in sys.argv[0]
               else f"vprbench reproduce {exp.name if shipped else shlex.quote(str(exp.source))}")
    fit_total = sum(r.get("timings_s", {}).get("fit", 0.0) for r in records)
    # each ranking once (records of other protocols or seeds of a deterministic method share it)
    compute_total = sum({r.get("ranking_key"): r.get("timings_s", {}).get("total", 0.0) for r in records}.values())
    now = ("" if computed is None else f"all {computed} records computed now" if computed == len(records)
           else f"{computed} of {len(records)} records computed now, the others reused")
    if seeds is None:
        seeds = sorted({r["job"].get("seed") for r in records if r["job"].get("seed") is not None})
    swept = dict(exp.sweeps)
    seq_len = (f"L = {', '.join(map(str, swept['seq_len']))} (swept; tables at L = {runs[0].seq_len})" if "seq_len" in swept
               else f"L = {runs[0].seq_len}")
    lines = [
        f"# {exp.name}: {exp.summary}", "",
        f"{exp.paper}" if exp.paper else "", "",
        "Regenerate (resumable; finished jobs are kept):", "", "```", command, "```", "",
        f"- datasets: {', '.join(r.dataset.name for r in runs)}" + (f" (not run, data absent: {', '.join(skipped)})" if skipped else ""),
        f"- seeds: {list(seeds)} (a deterministic training-free method is computed once for all seeds); preset: {runs[0].preset}; "
        f"{seq_len}, boundary {runs[0].boundary}",
        *([f"- sweeps: {'; '.join(f'{axis} = ' + ', '.join(map(str, values)) for axis, values in exp.sweeps)} (one job per combination)"]
          if exp.sweeps else []),
        f"- vprbench {env.get('vprbench')}, Python {env.get('python')}, numpy {pkgs.get('numpy')}, torch {pkgs.get('torch')}, "
        f"on {env.get('platform', platform.platform())} ({env.get('cpu_count')} CPUs)",
        f"- computation time of the results, summed over their rankings: {_duration(compute_total)} (training: "
        f"{_duration(fit_total)}); wall time of the last invocation: {_duration(wall_s)}" + (f" ({now})" if now else ""),
        "", "Tables (Markdown, CSV, LaTeX): `tables/`; plots: `plots/`; the results page: `report.html`.", "",
    ]
    for run in runs:
        for t in run.dataset.tables:
            lines.append(f"- [{run.dataset.name}, table {t}](tables/{run.dataset.name}-table{t}.md)")
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
