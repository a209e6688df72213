"""``vprbench datasets list | info NAME | verify NAME | download NAME`` (data files of dataset definitions).

The data directory comes from ``--data-dir`` or $VPRBENCH_DATA_DIR. ``verify`` checks presence,
sizes, ``.npy`` shapes and recorded SHA-256 checksums, and with ``--load`` also loads the dataset;
``download`` fetches the files that have a direct http(s) URL (resuming, verified), or copies them
from a local ``--mirror DIR``, and says where to get the others. Before any file is looked at, the
definition's parameters are checked against what its loader reads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tabulate import tabulate

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.arrays import describe
from vprbench.data.catalog import (
    check_params,
    definition_failures,
    definitions,
    get_definition,
    load_dataset,
    loader_files,
    resolve_data_dir,
)
from vprbench.data.download import data_path, download_dataset, file_specs, param_key, require_data_dir, verify_files


def add_datasets_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``datasets`` command (with list / info / verify / download) to ``subparsers``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=None, help="data directory (default: $VPRBENCH_DATA_DIR)")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors")
    p = subparsers.add_parser("datasets", help="list dataset definitions, show their files, verify or download them")
    sub = p.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    sub.add_parser("list", parents=[common], help="every dataset definition, and whether its files are present")
    p_info = sub.add_parser("info", parents=[common], help="a definition's parameters, sources and files")
    p_info.add_argument("name", help="dataset name or definition file")
    p_ver = sub.add_parser("verify", parents=[common], help="check a dataset's files (presence, size, shape, checksum)")
    p_ver.add_argument("name", help="dataset name or definition file")
    p_ver.add_argument("--no-checksums", action="store_true", help="skip SHA-256 checks (faster for large files)")
    p_ver.add_argument("--load", action="store_true", help="also load the dataset and print its sizes")
    p_dl = sub.add_parser("download", parents=[common], help="download the files that have a direct URL into the data directory")
    p_dl.add_argument("name", help="dataset name or definition file")
    p_dl.add_argument("--mirror", default=None, metavar="DIR",
                      help="copy the files from this local folder (it holds them under their paths) instead of downloading")
    p.set_defaults(handler=cmd_datasets)
    return p


def cmd_datasets(args: argparse.Namespace) -> int:
    """Handler of ``vprbench datasets``; returns the exit code (DataError when files are missing)."""
    data_dir = resolve_data_dir(args.data_dir)
    action = args.datasets_command
    if action == "list":
        return _list(data_dir)
    if action == "info":
        return _info(args.name, data_dir)
    if action == "verify":
        return _verify(args.name, data_dir, checksums=not args.no_checksums, load=args.load)
    if action == "download":
        return _download(args.name, data_dir, args.mirror)
    raise AssertionError(action)


def _list(data_dir: Path | None) -> int:
    rows = []
    for name, d in sorted(definitions().items()):
        specs = file_specs(d)
        if not specs:
            status = "built in"
        elif data_dir is None:
            status = f"{len(specs)} files (no --data-dir)"
        else:
            try:
                missing = [s for s in specs if not s.optional and not data_path(d, data_dir, s.path, "files.path").exists()]
                status = "present" if not missing else f"{len(missing)} of {len(specs)} missing"
            except ConfigError:  # e.g. a link leading out of the data directory
                status = "path refused (see datasets verify)"
        rows.append([name, d.loader, status, d.summary])
    print(tabulate(rows, headers=["dataset", "loader", "files", "summary"], tablefmt="simple", maxcolwidths=[None, None, None, 70]))
    print_definition_failures()
    return 0


def print_definition_failures() -> None:
    """Print the dataset definition files that failed to load (nothing if none)."""
    failures = definition_failures()
    if failures:
        print("\ndataset definitions that failed to load:")
        for source, err in sorted(failures.items()):
            print(f"  {source}: {err}")


def _info(name: str, data_dir: Path | None) -> int:
    d = get_definition(name)
    print(f"{d.name}: {d.summary}")
    print(f"  loader: {d.loader}   definition: {d.source}")
    for table in ("sources", "expected"):
        if isinstance(d.raw.get(table), dict):
            print(f"  {table}:")
            for k, v in d.raw[table].items():
                print(f"    {k}: {v if isinstance(v, str) else json.dumps(v)}")
    if d.params:
        print("  params:")
        for k, v in d.params.items():
            print(f"    {k} = {json.dumps(v)}")
    _print_protocols(d)
    specs = file_specs(d)
    if specs:
        status = {s.spec.path: s for s in verify_files(d, data_dir, checksums=False)} if data_dir is not None else {}
        print(f"  files (relative to the data directory{f' {data_dir}' if data_dir else ''}):")
        for s in specs:
            st = status.get(s.path)
            mark = "" if st is None else ("  [ok]" if st.ok else f"  [{'missing' if 'missing' in st.problem else st.problem}]")
            extra = []
            if s.shape:
                extra.append(f"shape {list(s.shape)}")
            if s.sha256:
                extra.append(f"sha256 {s.sha256[:12]}...")
            if s.optional:
                extra.append("optional")
            print(f"    {s.path}{mark}")
            print(f"        {s.role}{' (' + ', '.join(extra) + ')' if extra else ''}; {s.where()}")
    return 0


def _print_protocols(d) -> None:
    """The definition's evaluation protocols, as ``--protocol NAME`` takes them (without loading its data)."""
    from vprbench.data.protocol import DEFAULT_PROTOCOL, Protocol

    tables = d.raw.get("protocols") if isinstance(d.raw.get("protocols"), dict) else {}
    print("  protocols (run/report --protocol NAME):")
    print(f"    {DEFAULT_PROTOCOL}: the dataset's own radius, centre frame, queries without a positive excluded")
    for name, table in tables.items():
        unit = "frame" if isinstance(table, dict) and "tolerance" in table else "m"
        p = Protocol.from_table(name, table, unit, str(d.source or d.name))
        tol = (f"tolerance +-{p.tolerance} frames" if p.tolerance is not None else
               f"radius {p.radius:g}" if p.radius is not None else "the dataset's own radius")
        rule = "centre frame" if p.positives == "frame" else "any frame of the window"
        nopos = "excluded" if p.no_positive == "exclude" else "counted as misses"
        print(f"    {name}: {tol}, {rule}, queries without a positive {nopos}" + (f" ({p.description})" if p.description else ""))


def _verify_loader_files(d, data_dir: Path | None, load: bool) -> int | None:
    """Verify a definition without ``[[files]]`` by the files its loader reads; None to go on loading."""
    files = loader_files(d)
    if files is None:
        if not load:
            print(f"{d.name}: loader {d.loader} does not list the files it reads and the definition has no [[files]]; "
                  "use --load to check it by loading")
            return 0
        return None
    if not files:
        if not load:
            print(f"{d.name}: no data files needed (loader {d.loader} generates its data)")
            return 0
        return None
    data_dir = _existing_data_dir(d, data_dir, [(rel, "") for rel in files])
    rows, bad = [], []
    for rel in files:
        path = data_path(d, data_dir, rel, param_key(d, rel))
        kind = describe(path)
        rows.append([rel, "missing" if kind == "missing" else f"present ({kind})"])
        if kind == "missing":
            bad.append(rel)
    print(tabulate(rows, headers=["file read by the loader", "status"], tablefmt="simple", maxcolwidths=[None, 90]))
    if bad:
        lines = [f"dataset {d.name!r}: {len(bad)} file(s) its loader reads are missing under {data_dir}:"]
        lines += [f"  - {rel}" for rel in bad]
        raise DataError("\n".join(lines))
    if not load:
        print(f"{d.name}: every file the loader reads is present (no [[files]] with sizes or checksums; --load also loads it)")
        return 0
    return None


def _existing_data_dir(d, data_dir: Path | None, needed: list[tuple[str, str]]) -> Path:
    """``data_dir`` if it is a folder; else a DataError saying it is not set or does not exist, with what the dataset needs."""
    if data_dir is not None and not data_dir.exists():
        lines = [f"dataset {d.name!r}: data directory {data_dir} does not exist (check --data-dir / $VPRBENCH_DATA_DIR); "
                 "it needs these files, so each is missing:"]
        lines += [f"  - {rel}: missing{f' ({where})' if where else ''}" for rel, where in needed]
        raise DataError("\n".join(lines))
    return require_data_dir(d, data_dir)


def _verify(name: str, data_dir: Path | None, checksums: bool, load: bool) -> int:
    d = get_definition(name)
    check_params(d)
    specs = file_specs(d)
    if not specs:
        done = _verify_loader_files(d, data_dir, load)
        if done is not None:
            return done
    if specs:
        data_dir = _existing_data_dir(d, data_dir, [(s.path, s.where()) for s in specs if not s.optional])
    status = verify_files(d, data_dir, checksums=checksums) if specs else []
    rows = [[s.spec.path, "ok" if s.ok else ("optional, " if s.spec.optional else "") + s.problem] for s in status]
    if rows:
        print(tabulate(rows, headers=["file", "status"], tablefmt="simple", maxcolwidths=[None, 90]))
    bad = [s for s in status if not s.ok and not s.spec.optional]
    if bad:
        lines = [f"dataset {d.name!r}: {len(bad)} file(s) missing or wrong under {data_dir}:"]
        lines += [f"  - {s.spec.path}: {s.problem}" for s in bad]
        raise DataError("\n".join(lines))
    if load:
        ds = load_dataset(name, data_dir)
        q = ds.queries[ds.default_query]
        from vprbench.data.protocol import get_protocol

        protocol = get_protocol(ds.protocols, None, ds.name).describe(ds.position_unit, ds.radius)  # as the run's captions say it
        print(f"loaded {ds.name}: reference {ds.reference.name!r} {len(ds.reference)} frames, query {q.name!r} {len(q)} frames, "
              f"{protocol}; splits " + ", ".join(f"{k} {v.reference.size}/{v.query.size}" for k, v in ds.splits.items()))
    print(f"{d.name}: all required files verified" + ("" if checksums else " (checksums skipped)"))
    return 0


def _download(name: str, data_dir: Path | None, mirror: str | None = None) -> int:
    d = get_definition(name)
    check_params(d)
    specs = file_specs(d)
    if not specs or (mirror is None and not any(s.url for s in specs)):
        return _nothing_to_download(d, data_dir, specs)
    if data_dir is None:
        raise DataError(f"dataset {d.name!r}: pass --data-dir DIR (or set VPRBENCH_DATA_DIR) to say where to download")
    data_dir.mkdir(parents=True, exist_ok=True)
    got, manual = download_dataset(d, data_dir, mirror=mirror)
    print(f"{len(got)} file(s) present, downloaded or copied under {data_dir}")
    if manual:
        print(f"{len(manual)} file(s) need a manual download (no direct link is published{'' if mirror is None else ' and the mirror lacks them'}):")
        for s in manual:
            print(f"  - {s.path}: {s.where()}")
        return 1
    return 0


def _nothing_to_download(d, data_dir: Path | None, specs: list) -> int:
    """``datasets download`` of a definition that gives no URL: say so, and what to get by hand (exit 1 if missing)."""
    files = [s.path for s in specs if not s.optional] if specs else loader_files(d)
    if not files:
        print(f"{d.name}: nothing to download (loader {d.loader} {'generates its data' if files == [] else 'lists no files'})")
        return 0
    missing = files if data_dir is None else [rel for rel in files if not data_path(d, data_dir, rel, "path").exists()]
    print(f"{d.name}: nothing to download: the definition gives no download URL ([[files]] with url)")
    if not missing:
        print(f"every file it reads is present under {data_dir}")
        return 0
    where = f" under {data_dir}" if data_dir is not None else " (no --data-dir given)"
    print(f"{len(missing)} file(s) it reads to get by hand{where}:")
    for rel in missing:
        spec = next((s for s in specs if s.path == rel), None)
        print(f"  - {rel}{': ' + spec.where() if spec else ''}")
    print(f"`vprbench datasets info {d.name}` says where they come from, `vprbench datasets verify {d.name}` checks them")
    return 1
