"""Result records aggregated with pandas into tables (Markdown, CSV, LaTeX)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from vprbench.core.errors import ConfigError, DataError
from vprbench.plugins.api import FAMILIES
from vprbench.running.records import read_record

log = logging.getLogger("vprbench")

#: Records are only averaged within one of these groups (the same data, split and sequence setup).
GROUP_KEYS = ["dataset", "dataset_fingerprint", "split", "query", "seq_len", "boundary"]


def load_records(root: Path) -> list[dict[str, Any]]:
    """All result records under ``root/records`` (corrupt ones are reported and skipped)."""
    rec_dir = Path(root) / "records"
    if not rec_dir.is_dir():
        raise ConfigError(f"no results under {str(root)!r} (expected a 'records' folder); run `vprbench run --out {root}` first")
    records = []
    for path in sorted(rec_dir.rglob("*.json")):
        try:
            rec = read_record(path)
        except DataError as e:
            log.warning("skipping %s", e)
            continue
        rec["_path"] = str(path)
        records.append(rec)
    return records


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record: job settings, Recall@N columns ``R@N``, AUC, timings."""
    rows = []
    for r in records:
        job, m = r["job"], r["metrics"]
        row = {k: job.get(k) for k in ("dataset", "dataset_fingerprint", "split", "query", "seq_len", "boundary", "seed", "method", "label", "family", "train_dataset")}
        if row["train_dataset"] and row["train_dataset"] != row["dataset"]:
            row["label"] = f"{row['label']} (trained on {row['train_dataset']})"
        for n, v in m["recall_at"].items():
            row[f"R@{n}"] = np.nan if v is None else v
        row["PR-AUC"] = m["pr"]["auc"]
        row["R@100%P"] = m["pr"]["recall_at_100_precision"]
        row["n_evaluated"] = m["n_evaluated"]
        row["n_without_positive"] = m["n_without_positive"]
        t = r["timings_s"]
        row["fit_s"] = t.get("fit", 0.0)
        row["fit_cached"] = bool((job.get("training") or {}).get("cache_hit", False))
        row["rank_s"] = t.get("rank", np.nan)
        row["peak_mb"] = r.get("memory_mb", {}).get("peak_rss", np.nan)
        row["_path"] = r.get("_path")
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df["family_order"] = df["family"].map({f: i for i, f in enumerate(FAMILIES)}).fillna(len(FAMILIES))
    return df


def recall_columns(df: pd.DataFrame) -> list[str]:
    cols = [c for c in df.columns if c.startswith("R@") and c[2:].isdigit()]
    return sorted(cols, key=lambda c: int(c[2:]))


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (group, method label), with the std of Recall@1 and the seed count."""
    rc = recall_columns(df)
    value_cols = rc + ["PR-AUC", "R@100%P", "fit_s", "rank_s"]
    keys = GROUP_KEYS + ["family_order", "family", "label"]
    agg = df.groupby(keys, dropna=False)[value_cols].mean()
    agg["R@1 std"] = df.groupby(keys, dropna=False)["R@1"].std(ddof=0) if "R@1" in df else np.nan
    agg["seeds"] = df.groupby(keys, dropna=False)["seed"].nunique()
    agg["n_evaluated"] = df.groupby(keys, dropna=False)["n_evaluated"].first()
    agg["fit_cached"] = df.groupby(keys, dropna=False)["fit_cached"].all() if "fit_cached" in df else False
    return agg.reset_index().sort_values(GROUP_KEYS + ["family_order", "label"]).reset_index(drop=True)


def _cell(v: Any, digits: int = 3) -> str:
    if isinstance(v, (float, np.floating)):
        return "-" if np.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def format_table(summary: pd.DataFrame, tablefmt: str = "github") -> str:
    """Tables per (dataset, split, query, L, boundary), methods grouped by family like the paper."""
    if summary.empty:
        return "(no results)"
    rc = recall_columns(summary)
    blocks = []
    for key, g in summary.groupby(GROUP_KEYS, sort=False, dropna=False):
        ds, fingerprint, split, query, seq_len, boundary = key
        rows, last_family = [], None
        multi_seed = (g["seeds"] > 1).any()
        for _, r in g.iterrows():
            fam = r["family"] if r["family"] != last_family else ""
            last_family = r["family"]
            fit = "cached" if r.get("fit_cached", False) else _cell(r["fit_s"], 1)
            row = [fam, r["label"], *[_cell(r[c]) for c in rc], _cell(r["PR-AUC"]), fit, _cell(r["rank_s"], 2)]
            if multi_seed:
                row.insert(3, _cell(r["R@1 std"]))
            rows.append(row)
        headers = ["family", "method", *rc, "PR-AUC", "fit s", "rank s"]
        if multi_seed:
            headers.insert(3, "R@1 std")
        title = (f"{ds} / {split} (query {query}, L={seq_len}, boundary {boundary}, {int(g['n_evaluated'].iloc[0])} queries, "
                 f"data {str(fingerprint)[:8]})")
        table = tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)
        if tablefmt == "github":
            blocks.append(f"### {title}\n\n{table}")
        elif tablefmt.startswith("latex"):
            blocks.append(f"% {title}\n{table}")
        else:
            blocks.append(f"{title}\n{table}")
    return "\n\n".join(blocks) + "\n"


def write_tables(summary: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """recall.md, recall.csv and recall.tex under ``out_dir`` (overwritten: they are derived files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "recall.md", "csv": out_dir / "recall.csv", "tex": out_dir / "recall.tex"}
    paths["md"].write_text(format_table(summary, "github"), encoding="utf-8")
    summary.drop(columns=["family_order"]).to_csv(paths["csv"], index=False, float_format="%.4f")
    paths["tex"].write_text(format_table(summary, "latex_booktabs"), encoding="utf-8")
    return paths
