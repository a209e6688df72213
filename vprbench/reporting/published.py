"""Published numbers side by side with ours (``vprbench report --compare published.csv``).

The published file has one row per (table, group, method, loss, mining, dataset, recall_at,
value); a mapping file beside it (``<stem>-mapping.toml``) says which vprbench jobs reproduce
each published method and dataset (see ``results/published/``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from vprbench.core.errors import ConfigError

REQUIRED = ["table", "group", "method", "loss", "mining", "dataset", "recall_at", "value"]


def load_published(path: Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The published table and its mapping (``<stem>-mapping.toml`` beside it)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"published results file {str(path)!r} does not exist")
    df = pd.read_csv(path, dtype={"loss": str, "mining": str}, keep_default_na=False)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"published results file {str(path)!r} lacks column(s) {missing}; expected {REQUIRED}")
    mapping_path = path.with_name(f"{path.stem}-mapping.toml")
    if not mapping_path.is_file():
        raise ConfigError(f"no mapping file {str(mapping_path)!r} beside {str(path)!r}")
    with open(mapping_path, "rb") as f:
        mapping = tomllib.load(f)
    return df, mapping


def _matches(record: dict[str, Any], method: str, params: dict[str, Any]) -> bool:
    job = record["job"]
    return job["method"] == method and all(str(job["params"].get(k)) == str(v) for k, v in params.items())


def compare(published: pd.DataFrame, mapping: dict[str, Any], records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per published value with our mean over seeds beside it (NaN where not run)."""
    rows = []
    for _, p in published.iterrows():
        spec = mapping.get("methods", {}).get(p["method"])
        datasets = mapping.get("datasets", {}).get(p["dataset"], [])
        ours = np.nan
        if spec is not None:
            params = dict(spec.get("params", {}))
            if p["loss"]:
                params["loss"] = p["loss"]
            if p["mining"]:
                params["mining"] = p["mining"]
            vals = [
                r["metrics"]["recall_at"].get(str(p["recall_at"]))
                for r in records
                if r["job"]["dataset"] in datasets and r["job"]["split"] == "test" and _matches(r, spec["method"], params)
            ]
            vals = [v for v in vals if v is not None]
            ours = float(np.mean(vals)) if vals else np.nan
        rows.append({**p.to_dict(), "ours": ours})
    out = pd.DataFrame(rows)
    out["difference"] = out["ours"] - out["value"]
    return out


def format_comparison(df: pd.DataFrame) -> str:
    """Markdown tables per (paper table, dataset): published / ours per Recall@N."""
    blocks = []
    for (table, dataset), g in df.groupby(["table", "dataset"], sort=False):
        ns = sorted(g["recall_at"].unique())
        rows = []
        for (group, method, loss, mining), m in g.groupby(["group", "method", "loss", "mining"], sort=False):
            name = method + (f" (loss {loss}, mining {mining})" if loss or mining else "")
            cells = []
            for n in ns:
                hit = m[m["recall_at"] == n]
                if hit.empty:
                    cells.append("")
                    continue
                ours = hit["ours"].iloc[0]
                cells.append(f"{hit['value'].iloc[0]:.2f} / {'-' if np.isnan(ours) else f'{ours:.2f}'}")
            rows.append([group, name, *cells])
        headers = ["group", "method", *[f"R@{n} paper / ours" for n in ns]]
        blocks.append(f"### Table {table}, {dataset}\n\n" + tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    return "\n\n".join(blocks) + "\n"
