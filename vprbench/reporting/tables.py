"""Result records aggregated with pandas into tables (Markdown, CSV, LaTeX).

One table per (dataset content, split, query traverse, L, window policy, protocol); one row per
job identity without the seed (``group_key``: method, resolved parameters and preset table, code,
training data): records are averaged over seeds only within a row, never across rows that differ
in anything else. Rows whose display labels coincide are told apart by what differs (training
data, code). Captions name the dataset, protocol, training data and sequence length.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from vprbench.core.errors import ConfigError
from vprbench.plugins.api import FAMILIES
from vprbench.running.records import load_record_or_none, untrained_parts

log = logging.getLogger("vprbench")

#: One table per distinct value of these (the same data, split, sequence setup and protocol).
GROUP_KEYS = ["dataset", "dataset_fingerprint", "split", "query", "seq_len", "boundary", "protocol"]
#: Marker of rows whose learned model is no better than its initialisation.
UNTRAINED = "\u2020"


def load_records(root: Path) -> list[dict[str, Any]]:
    """All usable result records under ``root/records`` (invalid ones set aside, newer/older skipped, with warnings)."""
    rec_dir = Path(root) / "records"
    if Path(root).exists() and not Path(root).is_dir():
        raise ConfigError(f"{str(root)!r} is a file; expected a results folder (the --out of `vprbench run`)")
    if not rec_dir.is_dir():
        raise ConfigError(f"no results under {str(root)!r} (expected a 'records' folder); run `vprbench run --out {root}` first")
    records = []
    for path in sorted(rec_dir.rglob("*.json")):
        rec = load_record_or_none(path)
        if rec is not None:
            rec["_path"] = str(path)
            records.append(rec)
    return records


def records_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per record: job settings, Recall@N columns ``R@N``, AUC, timings."""
    rows = []
    for r in records:
        job, m = r["job"], r["metrics"]
        row = {k: job.get(k) for k in ("dataset", "dataset_fingerprint", "split", "query", "seq_len", "boundary", "protocol", "seed",
                                       "method", "label", "family", "train_dataset")}
        row["group_key"] = r.get("group_key") or r.get("key")
        row["code"] = (job.get("code") or {}).get("source") or (job.get("code") or {}).get("declared_version") or ""
        row["protocol_text"] = (r.get("protocol") or {}).get("text", row["protocol"])
        row["descriptor_kind"] = (r.get("dataset") or {}).get("descriptor_kind")
        for n, v in m["recall_at"].items():
            row[f"R@{n}"] = np.nan if v is None else v
        row["PR-AUC"] = m["pr"]["auc"]
        row["R@100%P"] = m["pr"].get("recall_at_100_precision")
        row["n_queries"] = m.get("n_queries")
        row["n_evaluated"] = m["n_evaluated"]
        row["n_without_positive"] = m["n_without_positive"]
        row["no_match"] = m.get("n_unmatched", 0)
        t = r.get("timings_s", {})
        row["fit_s"] = t.get("fit", 0.0)
        row["fit_cached"] = bool((job.get("training") or {}).get("cache_hit", False))
        row["untrained"] = bool(untrained_parts(job.get("training")))  # the method or any learned stage
        row["rank_s"] = t.get("rank", np.nan)
        row["peak_mb"] = r.get("memory_mb", {}).get("peak_rss", np.nan)
        row["warnings"] = len(r.get("warnings", []))
        row["_path"] = r.get("_path")
        rows.append(row)
    df = pd.DataFrame(rows)
    if not df.empty:
        df["family_order"] = df["family"].map({f: i for i, f in enumerate(FAMILIES)}).fillna(len(FAMILIES))
        df["canonical"] = df["label"]
        df["label"] = _display_labels(df)  # unique per row of a table: what plots, styles and pages key on
    return df


def _display_labels(df: pd.DataFrame) -> pd.Series:
    """Row labels: the canonical label, plus what tells apart rows of one table that would otherwise share it."""
    label = df["label"].astype(str).copy()
    # the single-image baseline is named for what it searches: "netvlad" only where the dataset says its
    # descriptors are NetVLAD (its top-level ``descriptors``), else "single image (KIND)" or, unnamed,
    # "single image (nearest neighbour)"
    kind = df["descriptor_kind"].fillna("").astype(str) if "descriptor_kind" in df else pd.Series("", index=df.index)
    baseline = (df["method"] == "netvlad") & ~kind.str.lower().str.startswith("netvlad")
    shown = kind.where(kind != "", "nearest neighbour")
    label[baseline] = label[baseline].str.replace("netvlad", "single image", n=1, regex=False) + " (" + shown[baseline] + ")"
    cross = df["train_dataset"].notna() & (df["train_dataset"] != df["dataset"])
    label[cross] = label[cross] + " (trained on " + df.loc[cross, "train_dataset"].astype(str) + ")"
    keys = [k for k in GROUP_KEYS if k in df]
    for _, g in df.groupby([*keys, label], dropna=False):
        if g["group_key"].nunique() > 1:  # same label, different identity (e.g. edited code)
            for gk, rows in g.groupby("group_key"):
                label[rows.index] = label[rows.index] + f" (code {str(rows['code'].iloc[0])[:6] or gk[:6]})"
    return label


def recall_columns(df: pd.DataFrame) -> list[str]:
    cols = [c for c in df.columns if c.startswith("R@") and c[2:].isdigit()]
    return sorted(cols, key=lambda c: int(c[2:]))


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per (table, row identity), with the std of Recall@1 and the seed count."""
    rc = recall_columns(df)
    value_cols = rc + ["PR-AUC", "R@100%P", "fit_s", "rank_s", "no_match"]
    keys = GROUP_KEYS + ["family_order", "family", "group_key"]
    g = df.groupby(keys, dropna=False)
    agg = g[value_cols].mean()
    agg["R@1 std"] = g["R@1"].std(ddof=0) if "R@1" in df else np.nan
    agg["deterministic"] = g["seed"].apply(lambda s: s.isna().all())
    agg["seeds"] = g["seed"].nunique().where(~agg["deterministic"], 1)  # deterministic: one computation serves every seed
    for col, how in (("label", "first"), ("canonical", "first"), ("method", "first"), ("train_dataset", "first"),
                     ("protocol_text", "first"), ("descriptor_kind", "first"), ("n_queries", "first"), ("n_evaluated", "first"),
                     ("n_without_positive", "first"), ("peak_mb", "max"), ("warnings", "max")):
        agg[col] = g[col].agg(how)
    agg["fit_cached"] = g["fit_cached"].all()
    agg["untrained"] = g["untrained"].any()
    return agg.reset_index().sort_values(GROUP_KEYS + ["family_order", "label"]).reset_index(drop=True)


def _cell(v: Any, digits: int = 3) -> str:
    if isinstance(v, (float, np.floating)):
        return "-" if np.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def table_title(key: tuple, g: pd.DataFrame) -> str:
    """Caption of one table: dataset, split, query, L, window policy, protocol, training data, queries, data."""
    ds, fingerprint, split, query, seq_len, boundary, _protocol = key
    trained = sorted({str(t) for t in g["train_dataset"].dropna()})
    kind = g["descriptor_kind"].dropna()
    parts = [f"query {query}", f"L={seq_len}", f"boundary {boundary}", str(g["protocol_text"].iloc[0])]
    if trained:
        parts.append("learned rows trained on " + ", ".join(trained))
    if len(kind):
        parts.append(f"descriptors: {kind.iloc[0]}")
    parts.append(f"{int(g['n_evaluated'].iloc[0])} queries evaluated")
    parts.append(f"data {str(fingerprint)[:8]}")
    return f"{ds} / {split} ({'; '.join(parts)})"


def _ci_level(g: pd.DataFrame) -> str:
    """The intervals' level as text (e.g. "95 %"), from the report's ``ci level`` column."""
    level = g["ci level"].dropna().iloc[0] if "ci level" in g and g["ci level"].notna().any() else 0.95
    return f"{100 * float(level):g} %"


def format_table(summary: pd.DataFrame, tablefmt: str = "github") -> str:
    """Tables per (dataset, split, query, L, boundary, protocol), methods grouped by family like the paper."""
    if summary.empty:
        return "(no results)"
    rc = recall_columns(summary)
    blocks = []
    for key, g in summary.groupby(GROUP_KEYS, sort=False, dropna=False):
        rows, last_family = [], None
        multi_seed = (g["seeds"] > 1).any()
        show_unmatched = (g["no_match"].fillna(0) > 0).any()
        show_ci = "R@1 lo" in g and g["R@1 lo"].notna().any()  # intervals added by the report (add_intervals)
        for _, r in g.iterrows():
            fam = r["family"] if r["family"] != last_family else ""
            last_family = r["family"]
            fit = "cached" if r.get("fit_cached", False) else _cell(r["fit_s"], 1)
            label = r["label"] + (f" {UNTRAINED}" if r["untrained"] else "")
            row = [fam, label, *[_cell(r[c]) for c in rc], _cell(r["PR-AUC"]), fit, _cell(r["rank_s"], 2)]
            if show_unmatched:
                row.insert(2 + len(rc), str(int(round(r["no_match"]))))
            if multi_seed:
                row.insert(3, "-" if r["deterministic"] else _cell(r["R@1 std"]))
            if show_ci:
                ci = "-" if pd.isna(r["R@1 lo"]) else f"[{_cell(r['R@1 lo'])}, {_cell(r['R@1 hi'])}]"
                ci += {"best": " best", "indistinguishable": " ~best"}.get(str(r.get("R@1 vs best", "")), "")
                row.insert(3, ci)
            rows.append(row)
        headers = ["family", "method", *rc, "PR-AUC", "fit s", "rank s"]
        if show_unmatched:
            headers.insert(2 + len(rc), "no match")
        if multi_seed:
            headers.insert(3, "R@1 std")
        if show_ci:
            headers.insert(3, f"R@1 {_ci_level(g)} CI")
        title = table_title(key, g)
        notes = []
        if g["untrained"].any():
            notes.append(f"{UNTRAINED} the learned model ended no better than its initialisation on validation (an untrained model).")
        if multi_seed and g["deterministic"].any():
            notes.append("R@1 std \"-\": deterministic method, computed once for all seeds.")
        if show_ci:
            ci = g[g["R@1 lo"].notna()].iloc[0]
            block = f"blocks of {int(ci['ci block'])} consecutive queries" if pd.notna(ci.get("ci block")) else "blocks of queries"
            notes.append(f"R@1 {_ci_level(g)} CI: circular block bootstrap over the evaluated queries in traverse order ({block}, "
                         f"{int(ci['ci n_boot'])} resamplings shared by all rows); \"best\": the highest R@1, \"~best\": not "
                         "distinguishable from it (the paired interval of the difference contains 0).")
        table = tabulate(rows, headers=headers, tablefmt=tablefmt, disable_numparse=True)
        note = "\n\n" + "\n".join(notes) if notes and tablefmt == "github" else ""
        if tablefmt == "github":
            blocks.append(f"### {title}\n\n{table}{note}")
        elif tablefmt.startswith("latex"):
            blocks.append(f"% {title}\n{table}")
        else:
            blocks.append(f"{title}\n{table}")
    return "\n\n".join(blocks) + "\n"


def write_tables(summary: pd.DataFrame, out_dir: Path, stem: str = "recall") -> dict[str, Path]:
    """<stem>.md, .csv and .tex under ``out_dir`` (overwritten: they are derived files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / f"{stem}.md", "csv": out_dir / f"{stem}.csv", "tex": out_dir / f"{stem}.tex"}
    paths["md"].write_text(format_table(summary, "github"), encoding="utf-8")
    summary.drop(columns=["family_order"]).to_csv(paths["csv"], index=False, float_format="%.4f")
    paths["tex"].write_text(format_table(summary, "latex_booktabs"), encoding="utf-8")
    return paths
