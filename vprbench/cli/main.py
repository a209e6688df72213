"""Command line: ``vprbench list | run | report``.

Exit codes: 0 success; 1 some jobs failed (the others' results are kept); 2 bad arguments or
configuration; 3 bad data; 130 interrupted (finished jobs are kept; re-run to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tabulate import tabulate

from vprbench.core.errors import ConfigError, DataError, VPRBenchError

log = logging.getLogger("vprbench")

EXAMPLES = """\
examples:
  vprbench list                                  methods and datasets
  vprbench run --methods all                     every method on the built-in default dataset
  vprbench run --methods netvlad,seqmatch --seq-len 10 --seeds 0,1,2
  vprbench run --methods "seqmatch[variant=meanOfPairs|centerOnly]"    a parameter grid
  vprbench run --methods seqmatch --param seqmatch.variant=centerOnly
  vprbench report                                tables and plots from finished runs (results/runs)
"""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def _key_values(items: list[str]) -> dict[str, object]:
    """Parse KEY=VALUE options; values are read as TOML scalars (numbers, true/false) or kept as text."""
    import tomllib

    out: dict[str, object] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--dataset-param {item!r}: expected KEY=VALUE")
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
    p_run.add_argument("--methods", default="all", help="'all' or comma-separated names, each optionally with "
                       "parameters name[key=value,key=v1|v2] (default: all)")
    p_run.add_argument("--dataset", default=DEFAULT_DATASET, help=f"dataset name or definition file (default: {DEFAULT_DATASET})")
    p_run.add_argument("--param", action="append", default=[], metavar="METHOD.KEY=V[,V...]",
                       help="set a method parameter; several values make a grid (repeatable)")
    p_run.add_argument("--seq-len", type=int, default=5, metavar="L", help="sequence length in frames (default: 5)")
    p_run.add_argument("--boundary", choices=("shift", "drop"), default="shift",
                       help="windows at segment bounds: shift inward (released test code) or drop the frame (default: shift)")
    p_run.add_argument("--seeds", type=_int_list, default=[0], metavar="S[,S...]", help="random seeds (default: 0)")
    p_run.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p_run.add_argument("--query", default=None, help="query traverse name, for datasets with several (default: the first)")
    p_run.add_argument("--train-dataset", default=None, metavar="NAME",
                       help="train learned methods on this dataset's train split (cross-dataset protocol)")
    p_run.add_argument("--dataset-param", action="append", default=[], metavar="KEY=VALUE",
                       help="override a parameter of the dataset definition, e.g. extractor=patchnorm (repeatable)")
    p_run.add_argument("--data-dir", default=None, help="folder with downloaded datasets (default: $VPRBENCH_DATA_DIR)")
    p_run.add_argument("--out", type=Path, default=Path("results/runs"), help="results folder (default: ./results/runs)")
    p_run.add_argument("--top-k", type=int, default=20, help="references ranked per query (default: 20)")
    p_run.add_argument("--device", default="cpu", help="torch device for learned methods, e.g. cpu or cuda (default: cpu)")
    p_run.add_argument("--memory-mb", type=float, default=512.0, help="memory budget of one distance block in MiB (default: 512)")
    p_run.add_argument("--force", action="store_true", help="recompute jobs whose results exist (default: skip them)")
    p_run.add_argument("--no-report", action="store_true", help="do not regenerate tables and plots in --out")
    p_run.add_argument("--progress", choices=("auto", "on", "off"), default="auto",
                       help="progress bars (default: auto = only on a terminal)")

    p_chk = sub.add_parser("check", help="conformance check of method plugins on a tiny generated dataset (mock run)")
    p_chk.add_argument("names", nargs="+", help="method names, or 'all'")

    p_rep = sub.add_parser("report", help="aggregate results into tables (Markdown, CSV, LaTeX) and plots")
    p_rep.add_argument("dir", nargs="?", type=Path, default=Path("results/runs"), help="results folder (default: ./results/runs)")
    p_rep.add_argument("--no-plots", action="store_true", help="tables only")
    p_rep.add_argument("--compare", type=Path, default=None, metavar="CSV",
                       help="published numbers to show beside ours, e.g. results/published/seqmatchnet.csv")

    for sub_parser in sub.choices.values():  # -q works after the command too
        sub_parser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors")
    try:
        from vprbench.cli.datasets import add_datasets_parser
    except ImportError:  # pragma: no cover - optional module
        pass
    else:
        add_datasets_parser(sub)
    from vprbench.cli.export import add_export_parser

    add_export_parser(sub)
    return parser


def cmd_list(args: argparse.Namespace) -> int:
    from vprbench.data.catalog import definitions
    from vprbench.plugins.registry import discover

    if args.what in ("methods", "all"):
        registry = discover(args.plugins)
        rows = []
        for name in registry.names():
            info = registry.methods[name].info
            row = [name, info.family, "yes" if info.trains else "", info.summary]
            if args.verbose:
                row += [", ".join(f"{k}={p.default!r}" for k, p in info.params.items()), info.paper]
            rows.append(row)
        headers = ["method", "family", "trains", "description"] + (["parameters", "paper"] if args.verbose else [])
        print(tabulate(rows, headers=headers, tablefmt="simple"))
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
    from vprbench.running.runner import RunConfig, Runner

    registry = discover(args.plugins)
    specs = expand(args.methods, args.param, registry)
    config = RunConfig(
        dataset=args.dataset, out=args.out, seq_len=args.seq_len, boundary=args.boundary, seeds=args.seeds,
        split=args.split, query=args.query, train_dataset=args.train_dataset, data_dir=args.data_dir,
        dataset_params=_key_values(args.dataset_param),
        top_k=args.top_k, device=args.device, memory_mb=args.memory_mb, force=args.force,
        progress=progress_enabled({"auto": None, "on": True, "off": False}[args.progress]),
    )
    summary = Runner(config, registry).run(specs)
    records = [o.record for o in summary.outcomes if o.record is not None]
    if records:
        print(format_table(summary_table(records_frame(records)), "github"))
    if records and not args.no_report:
        _, paths = report(config.out)
        log.info("tables and plots written to %s", ", ".join(sorted({str(p.parent) for p in paths.values()})))
    skipped = [o for o in summary.outcomes if o.status == "unsupported"]
    for o in skipped:
        log.warning("not run: %s (%s)", o.spec.label, o.error)
    if summary.failed:
        for o in summary.failed:
            log.error("failed: %s seed %d: %s", o.spec.label, o.seed, o.error)
        return 1
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vprbench.reporting.report import report
    from vprbench.reporting.tables import format_table

    summary, paths = report(args.dir, plots=not args.no_plots)
    print(format_table(summary, "github"))
    if args.compare is not None:
        from vprbench.reporting.published import compare, format_comparison, load_published
        from vprbench.reporting.tables import load_records

        published, mapping = load_published(args.compare)
        table = format_comparison(compare(published, mapping, load_records(args.dir)))
        path = Path(args.dir) / "tables" / f"published-{args.compare.stem}.md"
        path.write_text(table, encoding="utf-8")
        paths["published"] = path
        print(table)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from vprbench.plugins.conformance import check_method
    from vprbench.plugins.registry import discover

    registry = discover(args.plugins)
    names = registry.names() if args.names == ["all"] else args.names
    failed = 0
    for name in names:
        problems = check_method(registry.get(name))
        print(f"{name}: {'ok' if not problems else 'FAILED'}")
        for p in problems:
            print(f"  - {p}")
        failed += bool(problems)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    log.propagate = False
    if args.command is None:
        parser.print_help()
        return 2
    commands = {"list": cmd_list, "run": cmd_run, "report": cmd_report, "check": cmd_check}
    command = commands.get(args.command) or getattr(args, "handler", None)
    try:
        return command(args)
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
