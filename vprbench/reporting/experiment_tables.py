"""An experiment's tables (Markdown, CSV, LaTeX) and plots from the records of its runs.

Each table row is matched to records by its full identity: dataset (content), split, canonical
method label (the row's effective spec), training dataset, sequence length, window policy and
protocol — never by method name alone. Our value is the mean over seeds (with the standard
deviation where there are several), beside the published value and the difference.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from vprbench.core.errors import ConfigError
from vprbench.core.textfiles import read_user_text
from vprbench.plugins.registry import Registry
from vprbench.running.experiments import Experiment, ExperimentDataset, Table, effective_spec
from vprbench.running.layout import slug
from vprbench.running.records import untrained_parts

log = logging.getLogger("vprbench")


@dataclass
class DatasetRun:
    """How an experiment dataset was run: the spec of each row, the training dataset, the protocol."""

    dataset: ExperimentDataset
    train_dataset: str | None
    protocol: str
    seq_len: int
    boundary: str
    preset: str


#: Columns of a published-value file; ``group``, ``loss`` and ``mining`` may be left out (empty).
PUBLISHED_COLUMNS = ("table", "group", "method", "loss", "mining", "dataset", "recall_at", "value")
PUBLISHED_REQUIRED = ("table", "method", "dataset", "recall_at", "value")
_KEY = ("table", "method", "loss", "mining", "dataset", "recall_at")  # what a table cell is matched by
_warned: set[tuple[str, tuple[int, ...]]] = set()


def _published_rows(path: Path) -> list[dict[str, Any]]:
    """The checked rows of a published-value CSV (each with its ``line``); ConfigError naming the file and line."""
    where = f"published file {str(path)!r}"
    text = read_user_text(path, where, "a CSV file")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        lines = [(reader.line_num, row) for row in reader]
    except csv.Error as e:
        raise ConfigError(f"{where} line {reader.line_num}: malformed CSV ({e})") from None
    lines = [(n, row) for n, row in lines if any(c.strip() for c in row)]
    if not lines:
        raise ConfigError(f"{where} is empty; expected a header line {','.join(PUBLISHED_COLUMNS)} and one line per published value")
    head_line, header = lines[0]
    header = [c.strip() for c in header]
    missing = [c for c in PUBLISHED_REQUIRED if c not in header]
    if missing:
        raise ConfigError(f"{where} line {head_line}: the header lacks column(s) {missing}; expected the columns "
                          f"{','.join(PUBLISHED_COLUMNS)} (group, loss and mining may be left out)")
    unknown = [c for c in header if c not in PUBLISHED_COLUMNS]
    if unknown or len(set(header)) != len(header):
        raise ConfigError(f"{where} line {head_line}: unknown or repeated column(s) {unknown or sorted({c for c in header if header.count(c) > 1})}; "
                          f"expected the columns {','.join(PUBLISHED_COLUMNS)}")
    rows, seen = [], {}
    for n, cells in lines[1:]:
        lw = f"{where} line {n}"
        if len(cells) != len(header):
            raise ConfigError(f"{lw}: {len(cells)} field(s), expected {len(header)} ({','.join(header)})")
        raw = {c: v.strip() for c, v in zip(header, cells)}
        row: dict[str, Any] = {c: raw.get(c, "") for c in PUBLISHED_COLUMNS}
        for c in ("table", "method", "dataset"):
            if not row[c]:
                raise ConfigError(f"{lw}: column {c!r} is empty; expected a {c} name")
        try:
            ra = int(row["recall_at"])
        except ValueError:
            ra = 0
        if ra < 1:
            raise ConfigError(f"{lw}: recall_at {row['recall_at']!r} is not a positive integer N of Recall@N")
        row["recall_at"] = ra
        try:
            value = float(row["value"])
        except ValueError:
            raise ConfigError(f"{lw}: value {row['value']!r} is not a number; expected a recall in [0, 1]") from None
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{lw}: value {row['value']!r} is not a recall in [0, 1]; percentages must be given as "
                              f"fractions (80% as 0.8)")
        row["value"], row["line"] = value, n
        key = tuple(row[c] for c in _KEY)
        if key in seen:
            raise ConfigError(f"{lw}: the same published value as line {seen[key]} (table {row['table']}, method {row['method']}"
                              + "".join(f", {c} {row[c]}" for c in ("loss", "mining") if row[c])
                              + f", dataset {row['dataset']}, R@{ra}); keep one of them")
        seen[key] = n
        rows.append(row)
    return rows


def _warn_unmatched(exp: Experiment, rows: list[dict[str, Any]]) -> None:
    """A warning (once per file) listing the published lines no table cell of ``exp`` is compared with (typos)."""
    tables = {t.id: t for t in exp.tables}
    unmatched = []
    for row in rows:
        t = tables.get(row["table"])
        if t is None:
            unmatched.append((row["line"], f"table {row['table']!r} (tables: {', '.join(tables)})"))
            continue
        datasets = {d.published for d in exp.datasets if d.published and t.id in d.tables}
        methods = {(r.published.get("method", ""), r.published.get("loss", ""), r.published.get("mining", "")) for r in t.rows if r.published}
        if row["dataset"] not in datasets:
            unmatched.append((row["line"], f"dataset {row['dataset']!r} of table {t.id} (published datasets: {', '.join(sorted(datasets)) or 'none'})"))
        elif (row["method"], row["loss"], row["mining"]) not in methods:
            what = row["method"] + "".join(f", {c} {row[c]}" for c in ("loss", "mining") if row[c])
            unmatched.append((row["line"], f"method {what!r} of table {t.id} (no row of the table is compared with it)"))
        elif row["recall_at"] not in t.recall_at:
            unmatched.append((row["line"], f"R@{row['recall_at']} of table {t.id} (its columns: "
                              f"{', '.join(f'R@{n}' for n in t.recall_at)})"))
    key = (str(Path(exp.published).resolve()), str(Path(exp.source).resolve()), tuple(n for n, _ in unmatched))
    if unmatched and key not in _warned:
        _warned.add(key)
        log.warning("published file %s: %d line(s) match no cell of experiment %s's tables and are not shown: %s", exp.published,
                    len(unmatched), exp.name, "; ".join(f"line {n}: {what}" for n, what in unmatched))


def load_published(exp: Experiment) -> pd.DataFrame:
    """The experiment's published values, checked (ConfigError naming the file and line); a warning lists lines that match
    no table cell. Call it before any long work: ``reproduce`` and ``report --compare`` do."""
    if exp.published is None:
        return pd.DataFrame(columns=[*PUBLISHED_COLUMNS, "line"])
    rows = _published_rows(Path(exp.published))
    _warn_unmatched(exp, rows)
    df = pd.DataFrame(rows, columns=[*PUBLISHED_COLUMNS, "line"])
    return df.astype({"recall_at": int, "value": float, "line": int})


def _published_value(pub: pd.DataFrame, table: Table, dataset: str | None, row_pub: dict[str, str], n: int) -> float:
    if dataset is None or not row_pub:
        return np.nan
    m = (pub["table"] == table.id) & (pub["dataset"] == dataset) & (pub["recall_at"] == n)
    for key in ("method", "loss", "mining"):
        m &= pub[key] == row_pub.get(key, "")
    hit = pub[m]
    return float(hit["value"].iloc[0]) if len(hit) else np.nan


def _matching(records: list[dict[str, Any]], run: DatasetRun, method: Any) -> list[dict[str, Any]]:
    out = []
    for r in records:
        job = r["job"]
        if job["dataset"] != run.dataset.name or job["split"] != "test" or job["label"] != method.label or job["method"] != method.info.name:
            continue
        if job["seq_len"] != run.seq_len or job["boundary"] != run.boundary or job["protocol"] != run.protocol:
            continue
        trained_on = job.get("train_dataset")
        if method.info.trains and (trained_on or run.dataset.name) != (run.train_dataset or run.dataset.name):
            continue
        out.append(r)
    fingerprints = {r["job"]["dataset_fingerprint"] for r in out}
    if len(fingerprints) > 1:  # the same name, other content: keep the newest data only (never average across)
        newest = max(out, key=lambda r: r.get("finished_at") or "")["job"]["dataset_fingerprint"]
        out = [r for r in out if r["job"]["dataset_fingerprint"] == newest]
    return out


def table_frame(exp: Experiment, table: Table, run: DatasetRun, records: list[dict[str, Any]], registry: Registry,
                published: pd.DataFrame) -> pd.DataFrame:
    """One row per table row: ours (mean, std, seeds), published and the difference for each N."""
    rows = []
    for row in table.rows:
        spec = effective_spec(row.spec, run.dataset, run.preset, registry)
        method = registry.create(spec)
        recs = _matching(records, run, method)
        single = method.info.single_match
        out: dict[str, Any] = {"group": row.group, "row": row.label, "spec": spec, "label": method.label, "family": method.info.family,
                               "seeds": len({r["job"].get("seed") for r in recs}) if recs else 0, "records": len(recs),
                               "untrained": any(untrained_parts(r["job"].get("training")) for r in recs)}
        for n in table.recall_at:
            vals = [r["metrics"]["recall_at"].get(str(n)) for r in recs]
            vals = [v for v in vals if v is not None]
            ours = float(np.mean(vals)) if vals and not (single and n > 1) else np.nan
            out[f"R@{n}"] = ours
            out[f"R@{n} std"] = float(np.std(vals)) if len(vals) > 1 and not (single and n > 1) else np.nan
            pub = _published_value(published, table, run.dataset.published, row.published, n)
            out[f"R@{n} paper"] = pub
            out[f"R@{n} diff"] = ours - pub if np.isfinite(ours) and np.isfinite(pub) else np.nan
        rows.append(out)
    return pd.DataFrame(rows)


def caption(exp: Experiment, table: Table, run: DatasetRun, frame: pd.DataFrame, records: list[dict[str, Any]]) -> str:
    protocol_text = next((r["protocol"]["text"] for r in records if r["job"]["dataset"] == run.dataset.name
                          and r["job"]["protocol"] == run.protocol), f"protocol {run.protocol}")
    seeds = sorted({int(s) for s in frame["seeds"]})
    parts = [f"{exp.name}, {table.title or 'table ' + table.id}", f"dataset {run.dataset.name}"]
    if run.dataset.note:
        parts.append(run.dataset.note)
    learned = any(r["job"].get("trains") for r in records if r["job"]["dataset"] == run.dataset.name)
    parts.append(protocol_text)
    if learned:  # captions of tables without learned rows say nothing about training
        parts += [f"learned rows trained on {run.train_dataset or run.dataset.name}", f"preset {run.preset}"]
    parts.append(f"L={run.seq_len}, boundary {run.boundary}")
    if learned:
        parts.append(f"mean over {max(seeds) if seeds else 0} seed(s) for learned rows")
    parts.append(f"published: {run.dataset.published}" if run.dataset.published else "no published numbers for this dataset")
    return "; ".join(parts)


def _fmt(v: float, std: float = np.nan) -> str:
    if not np.isfinite(v):
        return "-"
    return f"{v:.3f}" + (f" +-{std:.3f}" if np.isfinite(std) else "")


def format_experiment_table(table: Table, frame: pd.DataFrame, title: str, tablefmt: str = "github") -> str:
    has_pub = any(np.isfinite(frame[f"R@{n} paper"]).any() for n in table.recall_at)
    headers = ["group", "method"]
    for n in table.recall_at:
        headers += [f"R@{n}"] + ([f"R@{n} paper", f"R@{n} diff"] if has_pub else [])
    rows, last = [], None
    for _, r in frame.iterrows():
        g = r["group"] if r["group"] != last else ""
        last = r["group"]
        cells = [g, r["row"] + (" \u2020" if r["untrained"] else "") + ("" if r["records"] else " (not run)")]
        for n in table.recall_at:
            cells.append(_fmt(r[f"R@{n}"], r[f"R@{n} std"]))
            if has_pub:
                cells += [_fmt(r[f"R@{n} paper"]), "-" if not np.isfinite(r[f"R@{n} diff"]) else f"{r[f'R@{n} diff']:+.3f}"]
        rows.append(cells)
    body = tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)
    if tablefmt == "github":
        note = "\n\n\u2020 the learned model ended no better than its initialisation on validation." if frame["untrained"].any() else ""
        return f"### {title}\n\n{body}{note}\n"
    if tablefmt.startswith("latex"):
        return f"% {title}\n{body}\n"
    return f"{title}\n{body}\n"


def plot_experiment_table(table: Table, frame: pd.DataFrame, title: str, path: Path) -> Path:
    """Recall@N of every row (ours: bars with the seed std; published: black ticks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = list(table.recall_at)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(frame) + 2), 4.2))
    width = 0.8 / len(ns)
    x = np.arange(len(frame))
    colours = matplotlib.colormaps["viridis"](np.linspace(0.15, 0.85, len(ns)))
    for i, n in enumerate(ns):
        ours = frame[f"R@{n}"].to_numpy(dtype=float)
        std = np.nan_to_num(frame[f"R@{n} std"].to_numpy(dtype=float))
        ax.bar(x + (i - (len(ns) - 1) / 2) * width, np.nan_to_num(ours), width, yerr=std, color=colours[i], label=f"R@{n} ours", capsize=2)
        pub = frame[f"R@{n} paper"].to_numpy(dtype=float)
        ok = np.isfinite(pub)
        if ok.any():
            ax.scatter((x + (i - (len(ns) - 1) / 2) * width)[ok], pub[ok], marker="_", s=250, color="black", zorder=3,
                       label="published" if i == 0 else None)
    ax.set_xticks(x, frame["row"], rotation=30, ha="right", fontsize=8)
    ax.set(ylim=(0, 1.05), ylabel="Recall@N")
    ax.set_title(title, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=len(ns) + 1, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_experiment_tables(exp: Experiment, runs: list[DatasetRun], records: list[dict[str, Any]], out: Path,
                            registry: Registry, plots: bool = True) -> dict[str, Path]:
    """tables/<dataset>-table<id>.md|csv|tex and plots/<dataset>-table<id>.png under ``out``, plus tables/<experiment>.md (all)."""
    published = load_published(exp)
    paths: dict[str, Path] = {}
    blocks = []
    for run in runs:
        for table_id in run.dataset.tables:
            table = exp.table(table_id)
            frame = table_frame(exp, table, run, records, registry, published)
            title = caption(exp, table, run, frame, records)
            stem = f"{slug(run.dataset.name)}-table{slug(table.id)}"
            (out / "tables").mkdir(parents=True, exist_ok=True)
            md = format_experiment_table(table, frame, title)
            (out / "tables" / f"{stem}.md").write_text(md, encoding="utf-8")
            frame.to_csv(out / "tables" / f"{stem}.csv", index=False, float_format="%.4f")
            (out / "tables" / f"{stem}.tex").write_text(format_experiment_table(table, frame, title, "latex_booktabs"), encoding="utf-8")
            paths[f"{stem}.md"] = out / "tables" / f"{stem}.md"
            blocks.append(md)
            if plots:
                paths[f"{stem}.png"] = plot_experiment_table(table, frame, title, out / "plots" / f"{stem}.png")
    paths["all"] = out / "tables" / f"{slug(exp.name)}.md"
    paths["all"].write_text("\n".join(blocks), encoding="utf-8")
    return paths
