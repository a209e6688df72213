"""``vprbench export pairs [DIR] | descriptors --dataset NAME`` (see :mod:`vprbench.reporting.export`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("vprbench")


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``export`` command (``pairs`` / ``descriptors``) to ``subparsers``."""
    p = subparsers.add_parser("export", help="export predictions as pairs files (CSV, kapture) or a dataset's descriptors as .npy")
    sub = p.add_subparsers(dest="export_command", metavar="WHAT", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=None, help="data directory (default: $VPRBENCH_DATA_DIR)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors")
    common.add_argument("--dataset-param", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset parameter override, as given to `vprbench run` (repeatable)")
    common.add_argument("--force", action="store_true",
                        help="overwrite existing files in --out whose content differs (default: refuse; files with the same "
                        "content are left as they are)")
    pp = sub.add_parser("pairs", parents=[common], help="predictions of finished runs as pairs files: CSV (query, reference, rank, distance) and kapture")
    pp.add_argument("dir", nargs="?", type=Path, default=Path("results/runs"), help="results folder (default: ./results/runs)")
    pp.add_argument("--out", type=Path, default=None, help="output folder (default: DIR/exports)")
    pp.add_argument("--format", default="csv,kapture", help="comma-separated: csv, kapture (default: both)")
    pp.add_argument("--dataset", default=None,
                    help="dataset name or definition file that names the frames (default: each record's dataset name)")
    pd_ = sub.add_parser("descriptors", parents=[common], help="a dataset's per-frame descriptors as <traverse>.npy with frame names")
    pd_.add_argument("--dataset", required=True, help="dataset name or definition file")
    pd_.add_argument("--out", type=Path, required=True, help="output folder")
    pd_.add_argument("--method", default=None, metavar="SPEC",
                     help="export this frontend's per-frame outputs instead (e.g. seqnet-s1, seqmatchnet); learned ones train first")
    pd_.add_argument("--train-dataset", default=None, metavar="NAME", help="dataset whose train split --method trains on (default: --dataset)")
    pd_.add_argument("--seed", type=int, default=0, help="training seed of --method (default: 0)")
    pd_.add_argument("--seq-len", type=int, default=5, metavar="L", help="sequence length --method trains with (default: 5)")
    pd_.add_argument("--cache", type=Path, default=None, metavar="DIR", help="model cache folder (default: OUT/cache)")
    p.set_defaults(handler=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    """Handler of ``vprbench export``; prints the files written (and those left unchanged).

    An existing file with other content is refused (exit 2) unless ``--force``.
    """
    from vprbench.cli.main import _key_values
    from vprbench.core.errors import ConfigError
    from vprbench.data.catalog import load_dataset
    from vprbench.reporting.export import check_out_folder, export_descriptors, export_pairs

    params = _key_values(args.dataset_param) or None
    if args.out is not None:
        check_out_folder(args.out)  # before loading or training anything
    if args.export_command == "pairs":
        formats = tuple(f.strip() for f in args.format.split(","))
        if not all(formats):
            raise ConfigError(f"--format {args.format!r}: expected a comma-separated list of csv, kapture")
        files = export_pairs(args.dir, args.out, formats, args.dataset, args.data_dir, params, force=args.force)
    elif args.method is None:
        files = export_descriptors(load_dataset(args.dataset, args.data_dir, params), args.out, force=args.force)
    else:
        from vprbench.plugins.api import RunContext
        from vprbench.plugins.registry import discover
        from vprbench.plugins.specs import parse_spec
        from vprbench.reporting.export import export_frontend_descriptors

        registry = discover(args.plugins)
        method = registry.create(parse_spec(args.method, registry))
        ds = load_dataset(args.dataset, args.data_dir, params)
        train_ds = load_dataset(args.train_dataset, args.data_dir) if args.train_dataset else None
        ctx = RunContext(seed=args.seed, seq_len=args.seq_len, cache_dir=args.cache or args.out / "cache")
        files = export_frontend_descriptors(ds, method, args.out, ctx, train_ds, force=args.force)
    unchanged = set(getattr(files, "unchanged", ()))
    for f in files:
        print(f"{f} (unchanged)" if f in unchanged else f)
    log.info("%d file(s) written%s", len(files) - len(unchanged), f", {len(unchanged)} unchanged" if unchanged else "")
    return 0
