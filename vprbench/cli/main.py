"""Command line: ``vprbench list | run | report | check | datasets``.

Exit codes: 0 success; 1 some jobs failed or results could not be written (the others' results
are kept); 2 bad arguments or configuration; 3 bad data; 130 interrupted (finished jobs are kept;
re-run to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from tabulate import tabulate

from vprbench.core.errors import ConfigError, DataError, OutputError, VPRBenchError

log = logging.getLogger("vprbench")

EXAMPLES = """\
examples:
  vprbench list                                  methods and datasets
  vprbench run --methods all                     every method on the built-in default dataset
  vprbench run --methods netvlad,seqmatch --seq-len 10 --seeds 0,1,2
  vprbench run --methods "seqmatch[variant=meanOfPairs|centerOnly]"    a parameter grid
  vprbench run --methods seqmatch --param seqmatch.variant=centerOnly
  vprbench report                                tables and plots from finished runs (results/runs)
  vprbench report --html results/runs            ... and one self-contained results page (report.html)
"""


def _seed_list(text: str) -> list[int]:
    """Comma-separated seeds, each an integer in [0, 2**63)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers (no empty entries), got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    bad = [v for v in values if not 0 <= v < 2**63]
    if bad:
        raise argparse.ArgumentTypeError(f"seeds must be integers in [0, 2**63), got {bad}")
    return values


def _device(text: str) -> str:
    import re

    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


def _scheduler(text: str) -> str:
    import re

    if text == "local" or re.fullmatch(r"(tcp|tls|ucx)://[^\s/:]+:\d+|[^\s/:]+:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"expected a Dask scheduler address (tcp://HOST:PORT or HOST:PORT) or 'local', got {text!r}")


class _Once(argparse.Action):
    """An option that may be given only once (a second --dataset would silently replace the first).

    Every single-valued option of every command is one (:func:`_only_once`); the options given are
    recorded in ``namespace._given_once`` (to tell an explicit ``--seq-len 5`` from the default).
    """

    def __call__(self, parser, namespace, values, option_string=None):  # noqa: ANN001
        given = namespace.__dict__.setdefault("_given_once", set())
        if self.dest in given:
            hint = " (a comma-separated list makes several)" if self.dest in ("methods", "seeds") else ""
            parser.error(f"{option_string} given twice; give it once{hint}")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


def _only_once(parser: argparse.ArgumentParser) -> None:
    """Make every single-valued option of ``parser`` and its commands an :class:`_Once` option."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _only_once(sub)
        elif type(action) is argparse._StoreAction and action.option_strings:
            action.__class__ = _Once


def explicitly_given(args: argparse.Namespace, dest: str) -> bool:
    """Whether option ``dest`` was given on the command line (not left at its default)."""
    return dest in getattr(args, "_given_once", set())


def _key_values(items: list[str], option: str = "--dataset-param") -> dict[str, object]:
    """Parse KEY=VALUE options; values are read as TOML scalars (numbers, true/false) or kept as text."""
    import tomllib

    out: dict[str, object] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"{option} {item!r}: expected KEY=VALUE")
        if key.strip() in out:
            raise ConfigError(f"{option} {key.strip()} is given twice; give it once")
        if value.strip().lower() in ("true", "false"):
            out[key.strip()] = value.strip().lower() == "true"
            continue
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    from vprbench.data.catalog import DEFAULT_DATASET

    parser = argparse.ArgumentParser(
        prog="vprbench",
        description="Benchmark suite for sequence-based visual place recognition: every method on one "
        "dataset and ground-truth interface, one runner, Recall@N tables and plots.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    parser.add_argument("--plugins", action="append", default=[], metavar="DIR",
                        help="extra folder of method plugin files (repeatable; also $VPRBENCH_PLUGIN_PATH)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p_list = sub.add_parser("list", help="list methods (and plugins that failed to load) and datasets")
    p_list.add_argument("what", nargs="?", choices=("methods", "datasets", "all"), default="all")
    p_list.add_argument("-v", "--verbose", action="store_true", help="show each method's parameters and paper")

    p_run = sub.add_parser("run", help="run methods on a dataset and print the Recall@N table",
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p_run.add_argument("--methods", default="all", action=_Once, help="'all' or comma-separated names, each optionally with "
                       "parameters name[key=value,key=v1|v2] (default: all)")
    p_run.add_argument("--dataset", default=DEFAULT_DATASET, help=f"dataset name or definition file (default: {DEFAULT_DATASET})")
    p_run.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=V[,V...]",
                       help="set a method parameter; several values make a grid (repeatable)")
    p_run.add_argument("--seq-len", type=int, default=5, metavar="L", help="sequence length in frames (default: 5)")
    p_run.add_argument("--boundary", choices=("shift", "drop"), default="shift",
                       help="windows at segment bounds: shift inward (released test code) or drop the frame (default: shift)")
    p_run.add_argument("--seeds", type=_seed_list, default=[0], action=_Once, metavar="S[,S...]",
                       help="random seeds, integers in [0, 2**63) (default: 0)")
    p_run.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p_run.add_argument("--query", default=None, help="query traverse name, for datasets with several (default: the first)")
    p_run.add_argument("--train-dataset", default=None, metavar="NAME",
                       help="train learned methods on this dataset's train split (cross-dataset protocol)")
    p_run.add_argument("--dataset-param", action="append", default=[], metavar="KEY=VALUE",
                       help="override a parameter of the dataset definition, e.g. extractor=patchnorm (repeatable)")
    p_run.add_argument("--data-dir", default=None, help="folder with downloaded datasets (default: $VPRBENCH_DATA_DIR)")
    p_run.add_argument("--out", type=Path, default=Path("results/runs"), help="results folder (default: ./results/runs)")
    p_run.add_argument("--top-k", type=int, default=20, help="references ranked per query (default: 20)")
    p_run.add_argument("--device", default="cpu", type=_device, help="torch device for learned methods, e.g. cpu or cuda (default: cpu)")
    p_run.add_argument("--memory-mb", type=float, default=512.0, help="memory budget of one distance block in MiB (default: 512)")
    p_run.add_argument("--sweep", action="append", default=[], metavar="AXIS=V1,V2",
                       help="sweep a run setting (seq_len, boundary), a method parameter (METHOD.KEY), a dataset parameter "
                       "(dataset.KEY) or a protocol field (protocol.radius|tolerance); several make a grid (repeatable)")
    p_run.add_argument("--workers", type=int, default=1, metavar="N", help="run independent jobs on N local processes (default: 1)")
    p_run.add_argument("--scheduler", default=None, metavar="ADDRESS", type=_scheduler,
                       help="run jobs on a Dask cluster at ADDRESS, or 'local' to start a LocalCluster of --workers processes")
    p_run.add_argument("--protocol", default=None, metavar="NAME",
                       help="evaluation protocol of the dataset (default: its 'default'; see `vprbench datasets info NAME`)")
    p_run.add_argument("--force", action="store_true", help="recompute jobs whose results exist (default: skip them)")
    p_run.add_argument("--no-report", action="store_true", help="do not regenerate tables and plots in --out")
    p_run.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                       help="progress bars (default: auto = only on a terminal)")

    p_chk = sub.add_parser("check", help="conformance check of method plugins on a tiny generated dataset (mock run)")
    p_chk.add_argument("names", nargs="+", help="method names, or 'all'")

    p_rep = sub.add_parser("report", help="aggregate results into tables (Markdown, CSV, LaTeX) and plots")
    p_rep.add_argument("dir", nargs="?", type=Path, default=Path("results/runs"), help="results folder (default: ./results/runs)")
    p_rep.add_argument("--no-plots", action="store_true", help="tables only (with --html the page still gets its plots)")
    p_rep.add_argument("--protocol", default=None, metavar="NAME",
                       help="recompute every metric under this protocol of the datasets from the stored predictions (no method runs)")
    p_rep.add_argument("--compare", default=None, metavar="EXPERIMENT",
                       help="an experiment (see `vprbench reproduce --list`, or its .toml) whose published numbers to show beside ours")
    p_rep.add_argument("--html", action="store_true", help="also write DIR/report.html: one self-contained page with tables, "
                       "confidence intervals, plots and provenance")
    p_rep.add_argument("--block-length", type=int, default=None, metavar="Q",
                       help="queries per block of the bootstrap behind the confidence intervals (default: chosen per table "
                       "from the data, at least the sequence length)")

    from vprbench.cli.datasets import add_datasets_parser
    from vprbench.cli.export import add_export_parser
    from vprbench.cli.reproduce import add_reproduce_parser

    add_datasets_parser(sub)
    add_export_parser(sub)
    add_reproduce_parser(sub)
    for sub_parser in sub.choices.values():  # -q and --plugins work after the command too
        sub_parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors")
        sub_parser.add_argument("--plugins", action="append", dest="plugins_after", default=[], metavar="DIR",
                                help="extra folder of method plugin files (repeatable; also $VPRBENCH_PLUGIN_PATH)")
    _only_once(parser)
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    from vprbench.data.catalog import definitions
    from vprbench.plugins.registry import discover

    if args.what in ("methods", "all"):
        registry = discover(args.plugins)
        rows = []
        for name in registry.names():
            info = registry.methods[name].info
            rows.append([name, info.family, "yes" if info.trains else "", info.summary])
        print(tabulate(rows, headers=["method", "family", "trains", "description"], tablefmt="simple"))
        if args.verbose:
            for name in registry.names():
                info = registry.methods[name].info
                print(f"\n{name} ({info.family}{', trains' if info.trains else ''}): {info.summary}")
                if info.paper:
                    print(f"  paper: {info.paper}")
                print(f"  source: {registry.methods[name].source}")
                params = [[k, "none" if p.default is None else repr(p.default), p.describe(), p.help] for k, p in info.params.items()]
                if params:
                    text = tabulate(params, headers=["parameter", "default", "values", "meaning"], tablefmt="plain")
                    print("\n".join("  " + line for line in text.splitlines()))
        if registry.failures:
            print("\nplugins that failed to load:")
            for source, err in sorted(registry.failures.items()):
                print(f"  {source}: {err}")
    if args.what in ("datasets", "all"):
        if args.what == "all":
            print()
        rows = [[d.name, d.loader, d.summary] for d in definitions().values()]
        print(tabulate(rows, headers=["dataset", "loader", "description"], tablefmt="simple"))
        from vprbench.cli.datasets import print_definition_failures

        print_definition_failures()
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from vprbench.core.progress import progress_enabled
    from vprbench.plugins.registry import discover
    from vprbench.plugins.specs import expand
    from vprbench.reporting.report import report
    from vprbench.reporting.tables import format_table, records_frame, summary_table
    from vprbench.running.executors import plan_tasks, run_tasks
    from vprbench.running.runner import RunConfig
    from vprbench.running.sweeps import expand_configs, method_param_options, parse_sweep

    registry = discover(args.plugins)
    axes = [parse_sweep(s, registry) for s in args.sweep]
    dataset_params = _key_values(args.dataset_param, "--dataset-param")
    for axis in axes:  # a swept setting that is also fixed by an option would silently ignore one of them
        if axis.target == "run" and explicitly_given(args, axis.key):
            raise ConfigError(f"--sweep {axis.name}=... and --{axis.key.replace('_', '-')} both set {axis.key}; give one of them")
        if axis.target == "dataset" and axis.key in dataset_params:
            raise ConfigError(f"--sweep {axis.name}=... and --dataset-param {axis.key}=... both set {axis.key}; give one of them")
    specs = expand(args.methods, [*args.param, *method_param_options(axes)], registry)
    base = RunConfig(
        dataset=args.dataset, out=args.out, seq_len=args.seq_len, boundary=args.boundary, seeds=args.seeds,
        split=args.split, query=args.query, train_dataset=args.train_dataset, data_dir=args.data_dir,
        dataset_params=dataset_params, protocol=args.protocol,
        top_k=args.top_k, device=args.device, memory_mb=args.memory_mb, force=args.force,
        progress=progress_enabled({"auto": None, "on": True, "off": False}[args.progress]),
    )
    configs = expand_configs(base, axes)
    tasks = plan_tasks(configs, specs, registry, args.plugins)  # every job validated before any work
    if len(configs) > 1:
        log.info("sweep: %d run configurations, %d computations", len(configs), len(tasks))
    summary = run_tasks(tasks, workers=args.workers, scheduler=args.scheduler, progress=base.progress)
    records = [o.record for o in summary.outcomes if o.record is not None]
    this_run = summary_table(records_frame(records)) if records else None
    if records:
        print(format_table(this_run, "github"))
    if records and not args.no_report:
        everything, paths = report(base.out, html=True)
        log.info("tables and plots written to %s", ", ".join(sorted({str(p.parent) for p in paths.values() if p != paths["html"]})))
        print(f"results page: {paths['html']}" + (f" (all {len(everything)} result rows in {base.out}, not only this run's)"
                                                  if len(everything) > len(this_run) else ""))
    for o in summary.outcomes:
        if o.status in ("unsupported", "busy"):
            log.warning("not run: %s (%s)", o.spec.label, o.error)
    warned = sorted({w for r in records for w in r.get("warnings", [])})
    if warned:
        log.warning("%d warning(s) about this run's data or results are stored in its records; the first: %s", len(warned), warned[0])
    if summary.failed:
        for o in summary.failed:
            log.error("failed: %s seed %d: %s", o.spec.label, o.seed, o.error)
        return 1
    if summary.outcomes and all(o.status == "unsupported" for o in summary.outcomes):
        log.error("vprbench: error: none of the requested methods can run on dataset %s (see 'not run' above)", args.dataset)
        return 2
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vprbench.reporting.report import report
    from vprbench.reporting.tables import format_table

    experiment = registry = None
    if args.compare is not None:
        from vprbench.plugins.registry import discover
        from vprbench.reporting.experiment_tables import load_published
        from vprbench.running.experiments import get_experiment

        experiment = get_experiment(args.compare)
        load_published(experiment)  # a bad published file: exit 2 before the report is made
        registry = discover(args.plugins)
    if args.block_length is not None and args.block_length < 1:
        raise ConfigError(f"--block-length must be >= 1 (queries), got {args.block_length}")
    summary, paths = report(args.dir, plots=not args.no_plots, html=args.html, experiment=experiment, registry=registry,
                            block_length=args.block_length, protocol=args.protocol)
    print(format_table(summary, "github"))
    if experiment is not None:
        from vprbench.reporting.published import compare, format_comparison
        from vprbench.reporting.tables import load_records

        table = format_comparison(compare(experiment, load_records(args.dir), registry))
        from vprbench.reporting.report import writing

        path = Path(args.dir) / "tables" / f"published-{experiment.name}.md"
        with writing(path.parent):
            path.write_text(table, encoding="utf-8")
        paths["published"] = path
        print(table)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    if "html" in paths:
        print(f"results page: {paths['html']}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from vprbench.plugins.conformance import checks_for, run_check
    from vprbench.plugins.registry import discover

    registry = discover(args.plugins)
    names = registry.names() if args.names == ["all"] else args.names
    for name in names:
        registry.get(name)  # unknown names: exit 2 before any work
    failed = 0
    for name in names:
        checks = checks_for(registry.get(name).info)
        problems = {}
        for check in checks:
            problem = run_check(check, name, registry)
            if problem is not None:
                problems[check.name] = problem
        print(f"{name}: {'ok' if not problems else 'FAILED'} ({len(checks) - len(problems)}/{len(checks)} checks passed)")
        for check_name, problem in problems.items():
            print(f"  - {check_name}: {problem}")
        failed += bool(problems)
    return 1 if failed else 0


_SHOWN: set[str] = set()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """Python warnings on the command line: one ``warning: ...`` line per distinct message."""
    text = str(message)
    if text not in _SHOWN:
        _SHOWN.add(text)
        log.warning("warning: %s", text)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.plugins = [*args.plugins, *getattr(args, "plugins_after", [])]
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    log.propagate = False
    if args.command is None:
        parser.print_help()
        return 2
    shown, warnings.showwarning = warnings.showwarning, _show_warning  # "warning: ..." lines, not file:line + source
    try:
        return _dispatch(args)
    finally:
        warnings.showwarning = shown


def _dispatch(args: argparse.Namespace) -> int:
    commands = {"list": cmd_list, "run": cmd_run, "report": cmd_report, "check": cmd_check}
    command = commands.get(args.command) or getattr(args, "handler", None)
    try:
        return command(args)
    except OutputError as e:
        print(f"vprbench: cannot write results: {e}", file=sys.stderr)
        return 1
    except ConfigError as e:
        print(f"vprbench: error: {e}", file=sys.stderr)
        return 2
    except DataError as e:
        print(f"vprbench: data error: {e}", file=sys.stderr)
        return 3
    except VPRBenchError as e:
        print(f"vprbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vprbench: interrupted; finished jobs are saved, run the same command again to resume", file=sys.stderr)
        return 130
