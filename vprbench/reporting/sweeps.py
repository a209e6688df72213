"""Sweeps in a report: a metric against a swept parameter, one line per method, the seed spread as a band.

The axes come from the records (``job.sweep``, written by ``vprbench run --sweep``) or are named
by the caller; the x value of every record is read from what the record says it ran with (its L,
its parameters, its protocol), so records written by other runs of the same jobs take part too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from vprbench.reporting.styles import Style, assign_styles
from vprbench.running.layout import slug


def sweep_axes(records: list[dict[str, Any]]) -> list[str]:
    """Every axis some record was swept over, in first-seen order."""
    seen: dict[str, None] = {}
    for r in records:
        for axis in (r["job"].get("sweep") or {}):
            seen[axis] = None
    return list(seen)


def _x_value(record: dict[str, Any], axis: str) -> Any:
    job = record["job"]
    if axis in ("seq_len", "boundary"):
        return job.get(axis)
    head, _, key = axis.partition(".")
    if head == "protocol":
        p = record.get("protocol") or {}
        return p.get(key) if key != "radius" or p.get("radius") is not None else record["dataset"].get("radius")
    if head == "dataset":
        return (job.get("sweep") or {}).get(axis)
    if job.get("method") == head or job.get("method", "").endswith(f"+{head}"):
        return (job.get("params") or {}).get(key)
    return None


def _line_label(record: dict[str, Any], axis: str) -> str:
    job = record["job"]
    base = job.get("sweep_base")
    if base:
        return str(base)
    label = str(job.get("label"))
    head, _, key = axis.partition(".")
    if head not in ("protocol", "dataset") and "." in axis:  # drop "key=value" of the swept parameter
        label = re.sub(rf"(?<=[\[,]){re.escape(key)}=[^,\]]*,?", "", label).replace(",]", "]").replace("[]", "")
    return label


def sweep_frame(records: list[dict[str, Any]], axis: str, metric: str = "R@1") -> pd.DataFrame:
    """One row per record that has a value on ``axis``: its group, line, x and the metric."""
    rows = []
    n = metric.removeprefix("R@")
    for r in records:
        x = _x_value(r, axis)
        if x is None:
            continue
        job = r["job"]
        value = r["metrics"]["pr"]["auc"] if metric == "PR-AUC" else r["metrics"]["recall_at"].get(n)
        if value is None:
            continue
        fixed = {"dataset": job["dataset"], "split": job["split"], "query": job.get("query"),
                 "seq_len": job["seq_len"], "boundary": job["boundary"], "protocol": (r.get("protocol") or {}).get("name")}
        if axis in fixed:
            fixed.pop(axis)
        if axis.startswith("protocol."):
            fixed.pop("protocol")
            fixed["protocol"] = re.sub(r"\[.*\]$", "", (r.get("protocol") or {}).get("name", ""))
        if axis.startswith("dataset."):
            fixed["fingerprint"] = None
        else:
            fixed["fingerprint"] = job.get("dataset_fingerprint")
        # in a grid, the other swept method parameters tell lines apart (run, dataset and protocol axes
        # already split the groups): never averaged together as if they were seeds
        others = {k: v for k, v in (job.get("sweep") or {}).items()
                  if k != axis and "." in k and not k.startswith(("dataset.", "protocol."))}
        line = _line_label(r, axis) + (f" ({', '.join(f'{k}={v}' for k, v in sorted(others.items()))})" if others else "")
        rows.append({**fixed, "line": line, "family": job.get("family"), "x": x, "seed": job.get("seed"), metric: value})
    return pd.DataFrame(rows)


def sweep_tables(frame: pd.DataFrame, axis: str, metric: str = "R@1") -> str:
    """Markdown grids (line x value), mean over seeds, ``+-std`` where several seeds."""
    if frame.empty:
        return ""
    keys = [k for k in ("dataset", "split", "query", "seq_len", "boundary", "protocol") if k in frame]
    blocks = []
    for key, g in frame.groupby(keys, dropna=False, sort=False):
        stats = g.groupby(["line", "x"])[metric].agg(["mean", "std", "count"]).reset_index()
        xs = sorted(stats["x"].unique(), key=lambda v: (isinstance(v, str), v))
        rows = []
        for line, s in stats.groupby("line", sort=True):
            cells = []
            for x in xs:
                hit = s[s["x"] == x]
                if hit.empty:
                    cells.append("")
                else:
                    m, sd, c = hit["mean"].iloc[0], hit["std"].iloc[0], hit["count"].iloc[0]
                    cells.append(f"{m:.3f}" + (f" +-{sd:.3f}" if c > 1 and np.isfinite(sd) else ""))
            rows.append([line, *cells])
        title = ", ".join(f"{k} {v}" for k, v in zip(keys, key if isinstance(key, tuple) else (key,)))
        blocks.append(f"### {metric} vs {axis} ({title})\n\n" + tabulate(rows, headers=["method", *map(str, xs)], tablefmt="github",
                                                                          disable_numparse=True))
    return "\n\n".join(blocks) + "\n"


def plot_sweeps(frame: pd.DataFrame, axis: str, out_dir: Path, metric: str = "R@1", styles: dict[str, Style] | None = None,
                display: dict[str, str] | None = None) -> list[Path]:
    """One PNG per group: ``metric`` vs ``axis``, a line per method, the seeds' min-max as a band.

    ``styles``: the report's styles by display label and ``display``: canonical label -> display
    label, so a method keeps its colour and name from the other plots; lines without one (a
    parameter sweep's base label) get their own from :func:`assign_styles`.
    """
    if frame.empty:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [k for k in ("dataset", "split", "query", "seq_len", "boundary", "protocol") if k in frame]
    paths = []
    for key, g in frame.groupby(keys, dropna=False, sort=False):
        numeric = pd.api.types.is_numeric_dtype(g["x"])
        lines = sorted(g["line"].unique())
        names = {line: (display or {}).get(line, line) for line in lines}
        family = dict(zip(g["line"], g["family"].fillna("").astype(str)))
        own = assign_styles((names[line], family[line]) for line in lines)
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        for line in lines:
            s = g[g["line"] == line].groupby("x")[metric].agg(["mean", "min", "max"]).reset_index()
            s = s.sort_values("x") if numeric else s
            xs = s["x"] if numeric else np.arange(len(s))
            st = (styles or {}).get(names[line]) or own[names[line]]
            ax.plot(xs, s["mean"], label=names[line], **st.line())
            if (s["max"] > s["min"]).any():
                ax.fill_between(xs, s["min"], s["max"], alpha=0.15, color=st.color)
        ax.set(xlabel=axis, ylabel=metric, ylim=(0, 1.02), title=f"{metric} vs {axis}")
        if not numeric:
            ax.set_xticks(np.arange(g["x"].nunique()), sorted(g["x"].unique(), key=str))
        elif all(float(v).is_integer() for v in g["x"]):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best", ncol=2 if len(lines) > 8 else 1)
        title = ", ".join(f"{k} {v}" for k, v in zip(keys, key if isinstance(key, tuple) else (key,)))
        fig.suptitle(title, fontsize=8)
        fig.tight_layout()
        path = out_dir / f"sweep-{slug(axis)}-{slug('-'.join(map(str, key if isinstance(key, tuple) else (key,))))}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
