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
    common.add_argument("--dataset-param", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset parameter override, as given to `vprbench run` (repeatable)")
    pp = sub.add_parser("pairs", parents=[common], help="predictions of finished runs as pairs files: CSV (query, reference, rank, distance) and kapture")
    pp.add_argument("dir", nargs="?", type=Path, default=Path("results/runs"), help="results folder (default: ./results/runs)")
    pp.add_argument("--out", type=Path, default=None, help="output folder (default: DIR/exports)")
    pp.add_argument("--format", default="csv,kapture", help="comma-separated: csv, kapture (default: both)")
    pp.add_argument("--dataset", default=None,
                    help="dataset name or definition file that names the frames (default: each record's dataset name)")
    pd_ = sub.add_parser("descriptors", parents=[common], help="a dataset's per-frame descriptors as <traverse>.npy with frame names")
    pd_.add_argument("--dataset", required=True, help="dataset name or definition file")
    pd_.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(handler=cmd_export)
    return p


def cmd_export(args: argparse.Namespace) -> int:
    """Handler of ``vprbench export``; prints the files written."""
    from vprbench.cli.main import _key_values
    from vprbench.core.errors import ConfigError
    from vprbench.data.catalog import load_dataset
    from vprbench.reporting.export import export_descriptors, export_pairs

    params = _key_values(args.dataset_param) or None
    if args.export_command == "pairs":
        formats = tuple(f.strip() for f in args.format.split(","))
        if not all(formats):
            raise ConfigError(f"--format {args.format!r}: expected a comma-separated list of csv, kapture")
        files = export_pairs(args.dir, args.out, formats, args.dataset, args.data_dir, params)
    else:
        files = export_descriptors(load_dataset(args.dataset, args.data_dir, params), args.out)
    for f in files:
        print(f)
    log.info("%d file(s) written", len(files))
    return 0
