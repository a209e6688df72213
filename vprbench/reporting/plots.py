"""Plots of a results folder: Recall@N with confidence bands, recall vs radius, precision-recall,
distance-matrix crops with each method's matches (small multiples), and parameter sweeps.

Every method keeps one style (colour, marker, line style; :mod:`vprbench.reporting.styles`) in
every plot of a report, and every panel has a legend. The figure builders return matplotlib
figures (tests inspect them); :func:`make_plots` saves them as PNG files.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vprbench.core.errors import ConfigError
from vprbench.core.fileio import atomic_path
from vprbench.reporting.intervals import norm_key
from vprbench.reporting.styles import Style, assign_styles, styles_for
from vprbench.reporting.tables import GROUP_KEYS, recall_columns
from vprbench.running.layout import example_path, slug

log = logging.getLogger("vprbench")

#: Colours of the distance-matrix overlays (the same in every panel).
GT_COLOR = "#00a6d6"
CORRECT_COLOR = "#1a9641"
WRONG_COLOR = "#d7191c"
DPI = 100


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def group_stem(key: Sequence[Any]) -> str:
    """File stem of a table group's plots (dataset, split, query, L, boundary, data fingerprint)."""
    values = dict(zip(GROUP_KEYS, key))
    parts = [values.get("dataset"), values.get("split"), values.get("query"), f"L{values.get('seq_len')}", values.get("boundary")]
    extra = [str(v) for k, v in values.items() if k not in ("dataset", "split", "query", "seq_len", "boundary", "dataset_fingerprint")]
    return slug("-".join(str(p) for p in parts + extra) + f"-{str(values.get('dataset_fingerprint'))[:8]}")


def _legend(ax: Any, **kwargs: Any) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, **{"fontsize": 7, "framealpha": 0.85, **kwargs})


def curves_figure(summary: pd.DataFrame, recs: list[tuple[str, dict[str, Any]]], styles: dict[str, Style], title: str = "") -> Any:
    """Recall@N (mean over seeds, band = the summary's ``R@N lo``/``R@N hi`` interval if present),
    Recall@1 vs localisation radius and precision-recall curves (one seed per method).

    Args:
        summary: the group's summary rows (``label``, ``R@N`` columns, optional interval columns).
        recs: (label, record) of one seed per method, for the radius and PR curves.
        styles: label -> style.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 6.4))
    rc = recall_columns(summary)
    ns = [int(c[2:]) for c in rc]
    has_band = all(f"{c} lo" in summary.columns for c in rc) and bool(rc)
    band_alpha = 0.15 if len(summary) <= 6 else 0.1 if len(summary) <= 12 else 0.06  # overlapping bands stay readable
    for _, row in summary.iterrows():
        st = styles[str(row["label"])]
        pts = [(n, row[c], row[f"{c} lo"] if has_band else np.nan, row[f"{c} hi"] if has_band else np.nan)
               for n, c in zip(ns, rc) if np.isfinite(row[c])]
        if not pts:
            continue
        x, y, lo, hi = (np.array(v, dtype=float) for v in zip(*pts))
        axes[0].plot(x, y, label=wrap_label(st.label), markersize=5, **st.line())
        if has_band and np.isfinite(lo).all():
            if len(x) > 1:
                axes[0].fill_between(x, lo, hi, color=st.color, alpha=band_alpha, linewidth=0)
            else:  # a single-match method: only Recall@1
                axes[0].errorbar(x, y, yerr=[y - lo, hi - y], color=st.color, capsize=3, linewidth=1)
    for label, rec in recs:
        st = styles[label]
        rr = rec["metrics"]["recall_vs_radius"]
        if rr["radii"]:
            axes[1].plot(rr["radii"], [np.nan if v is None else v for v in rr["recall_at_1"]], label=wrap_label(st.label), markersize=4,
                         **st.line())
        pr = rec["metrics"]["pr"]
        if pr["recall"]:
            # one marker, mid-curve, so the legend shows the method's marker too
            axes[2].plot(pr["recall"], pr["precision"], label=wrap_label(f"{st.label} (AUC {pr['auc']:.2f})"), markevery=[len(pr["recall"]) // 2],
                         markersize=5, **st.line())
    unit = recs[0][1]["dataset"]["position_unit"] if recs else ""
    band_note = " (band: 95 % interval)" if has_band else ""
    if has_band and "ci level" in summary.columns and summary["ci level"].notna().any():
        band_note = f" (band: {100 * float(summary['ci level'].dropna().iloc[0]):g} % interval)"
    axes[0].set(xlabel="N", ylabel="Recall@N", title=f"Recall@N{band_note}", xscale="log", ylim=(0, 1.02))
    if ns:
        axes[0].set_xticks(ns, [str(n) for n in ns])
        axes[0].minorticks_off()
    axes[1].set(xlabel=f"localisation radius ({unit})", ylabel="Recall@1", title="Recall@1 vs localisation radius", ylim=(0, 1.02))
    axes[2].set(xlabel="recall", ylabel="precision", title="Precision-recall of the top-1 match", xlim=(0, 1.02), ylim=(0, 1.02))
    for ax in axes:
        ax.grid(alpha=0.3)
        _legend(ax, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def wrap_label(label: str, width: int = 38) -> str:
    """``label`` broken into lines of at most about ``width`` characters, after commas, '[' or '+' (a
    method spec has no spaces to break at), so that long specs do not run into the next panel."""
    lines, line = [], ""
    for part in re.split(r"(?<=[,+[])", label):
        if line and len(line) + len(part) > width:
            lines.append(line)
            line = ""
        line += part
    return "\n".join([*lines, line])


def distance_matrix_figure(example: Path, recs: list[tuple[str, dict[str, Any]]], root: Path, styles: dict[str, Style],
                           ncols: int = 4) -> Any:
    """Small multiples: the saved single-image distance crop with its ground truth, one panel per
    method with its top-1 matches (correct: green dots, wrong: red crosses) and Recall@1 in the crop."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap
    from matplotlib.lines import Line2D

    with np.load(example, allow_pickle=False) as z:
        d, gt, r0 = z["distances"], z["gt"].astype(bool), int(z["ref_start"])
    nq, nr = d.shape
    panels = []
    for label, rec in recs:
        pred_path = Path(root) / rec["predictions"]
        if not pred_path.exists():
            continue
        per_query = Path(root) / rec.get("per_query", "")
        if not per_query.is_file():
            continue
        with np.load(pred_path, allow_pickle=False) as z:
            top1 = z["indices"][:nq, 0].astype(np.int64) - r0
        with np.load(per_query, allow_pickle=False) as z:
            correct = z["first_hit"][:nq] == 0
            mask = z["query_mask"][:nq].astype(bool)
            counted = z["evaluated"][:nq].astype(bool)
        panels.append((label, top1, correct, mask, counted))
    ncols = max(1, min(ncols, len(panels)))
    nrows = max(1, math.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.3 * nrows + 0.6), squeeze=False, sharex=True, sharey=True)
    gt_layer = np.ma.masked_where(~gt.T, np.ones_like(gt.T, dtype=float))
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (label, top1, correct, mask, counted) in zip(axes.ravel(), panels):
        st = styles[label]
        ax.imshow(d.T, cmap="gray", aspect="auto", origin="lower", interpolation="nearest")
        ax.imshow(gt_layer, cmap=ListedColormap([GT_COLOR]), alpha=0.45, aspect="auto", origin="lower", interpolation="nearest")
        inside = (top1 >= 0) & (top1 < nr) & mask
        q = np.arange(nq)
        ax.scatter(q[inside & correct], top1[inside & correct], s=7, c=CORRECT_COLOR, marker="o", linewidths=0, label="correct top-1")
        ax.scatter(q[inside & ~correct], top1[inside & ~correct], s=10, c=WRONG_COLOR, marker="x", linewidths=0.8, label="wrong top-1")
        r1 = correct[counted].mean() if counted.any() else float("nan")
        ax.set_title(f"{wrap_label(label)}\n(R@1 here {r1:.2f})", fontsize=8, color=st.color, fontweight="bold")
        ax.set_xlim(-0.5, nq - 0.5)
        ax.set_ylim(-0.5, nr - 0.5)
        ax.tick_params(labelsize=7)
        _legend(ax, loc="upper left", fontsize=6, markerscale=1.5)
    for ax in axes[-1]:
        ax.set_xlabel("query frame", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"reference frame (+{r0})", fontsize=8)
    handles = [Line2D([], [], color=GT_COLOR, linewidth=6, alpha=0.45, label="ground truth (positives)"),
               Line2D([], [], color=CORRECT_COLOR, marker="o", linestyle="none", label="correct top-1 match"),
               Line2D([], [], color=WRONG_COLOR, marker="x", linestyle="none", label="wrong top-1 match")]
    top = 0.75 / fig.get_figheight()  # inches above the panels for the title and the legend
    fig.suptitle("single-image distances (dark = similar) with each method's top-1 matches", y=0.995, va="top", fontsize=10)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.3 / fig.get_figheight()), ncol=3, fontsize=9,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - top))
    return fig


def sweep_plot(
    df: pd.DataFrame,
    x: str,
    y: str,
    hue: str | None = None,
    band: str | tuple[str, str] | None = None,
    ax: Any = None,
    styles: dict[str, Style] | None = None,
    logx: bool = False,
    title: str = "",
) -> Any:
    """A parameter sweep: ``y`` against ``x``, one line per value of ``hue``; returns the figure.

    Args:
        df: one row per (hue, x); rows repeating a (hue, x) pair (e.g. seeds) are averaged.
        x: the swept column; numeric values are placed on a numeric axis, anything else in order
            of first appearance as categories.
        y: the metric column.
        hue: the column that names the lines (e.g. ``label``); None = one line.
        band: None; a column of half-widths (y +- band); or (lower, upper) columns.
        ax: axes to draw on (default: a new figure).
        styles: hue value -> style (default: :func:`styles_for` when ``df`` has ``label`` and
            ``family`` and hue is ``label``, else styles assigned to the hue values in order).
        logx: logarithmic x axis.
    """
    band_cols = [] if band is None else ([band] if isinstance(band, str) else list(band))
    if band is not None and not isinstance(band, str) and len(band_cols) != 2:
        raise ConfigError(f"sweep_plot: band must be a column name or a (lower, upper) pair, got {band!r}")
    needed = [x, y] + ([hue] if hue else []) + band_cols
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise ConfigError(f"sweep_plot: no column(s) {missing} in the data; columns are {list(df.columns)}")
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
    else:
        fig = ax.figure
    data = df[needed].copy()
    data["_hue"] = data[hue].astype(str) if hue else y
    numeric_x = pd.api.types.is_numeric_dtype(data[x])
    if not numeric_x:
        cats = list(dict.fromkeys(data[x].astype(str)))
        data["_x"] = data[x].astype(str).map({c: i for i, c in enumerate(cats)})
    else:
        data["_x"] = data[x].astype(float)
    values = [y] + band_cols
    agg = data.groupby(["_hue", "_x"], sort=False)[values].mean().reset_index()
    if styles is None:
        if hue == "label" and {"label", "family"} <= set(df.columns):
            styles = styles_for(df)
        else:
            styles = assign_styles((h, "") for h in dict.fromkeys(agg["_hue"]))
    order = [h for h in styles if h in set(agg["_hue"])] + [h for h in dict.fromkeys(agg["_hue"]) if h not in styles]
    extra = assign_styles((h, "") for h in order if h not in styles)
    for h in order:
        st = styles.get(h) or extra[h]
        g = agg[agg["_hue"] == h].sort_values("_x")
        xs, ys = g["_x"].to_numpy(float), g[y].to_numpy(float)
        ax.plot(xs, ys, label=h if hue else y, markersize=5, **st.line())
        if band_cols:
            if len(band_cols) == 1:
                lo, hi = ys - g[band_cols[0]].to_numpy(float), ys + g[band_cols[0]].to_numpy(float)
            else:
                lo, hi = g[band_cols[0]].to_numpy(float), g[band_cols[1]].to_numpy(float)
            ax.fill_between(xs, lo, hi, color=st.color, alpha=0.15, linewidth=0)
    if not numeric_x:
        ax.set_xticks(range(len(cats)), cats)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=x, ylabel=y, title=title)
    ax.grid(alpha=0.3)
    _legend(ax, title=hue if hue else None, loc="best")
    return fig


def save_figure(fig: Any, path: Path, dpi: int = DPI) -> Path:
    """Save as an 8-bit palette PNG (plots have few colours: about 3x smaller than RGBA) and close the figure."""
    import io

    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png", bbox_inches="tight", pad_inches=0.15)  # legends below the panels stay in
    _pyplot().close(fig)
    buf.seek(0)
    with Image.open(buf) as im:
        # octree keeps the few saturated style colours (median cut shifts them towards the greys)
        im = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG", optimize=True)
    return path


def make_plots(df: pd.DataFrame, records: list[dict[str, Any]], root: Path, out_dir: Path,
               summary: pd.DataFrame | None = None, styles: dict[str, Style] | None = None) -> dict[tuple, list[Path]]:
    """Curves and distance-matrix small multiples of every table group, as PNG files in ``out_dir``.

    Args:
        df: one row per record (:func:`~vprbench.reporting.tables.records_frame`).
        records: the records (``_path`` set).
        root: results folder (predictions and example crops are relative to it).
        summary: the summary rows (with interval columns for bands); default: computed from ``df``.
        styles: label -> style (default: :func:`styles_for` of ``df``, the same for every group).

    Returns:
        group key (the values of ``GROUP_KEYS``) -> files written.
    """
    from vprbench.reporting.tables import summary_table

    summary = summary_table(df) if summary is None else summary
    styles = styles_for(df) if styles is None else styles
    by_path = {r["_path"]: r for r in records}
    written: dict[tuple, list[Path]] = {}
    sums = {norm_key(k): g for k, g in summary.groupby(GROUP_KEYS, sort=False, dropna=False)}
    for key, g in df.groupby(GROUP_KEYS, sort=False, dropna=False):
        key = tuple(key)
        values = dict(zip(GROUP_KEYS, key))
        stem = group_stem(key)
        first = g.sort_values(["family_order", "label", "seed"]).drop_duplicates("label")  # one seed per label
        recs = [(str(row["label"]), by_path[row["_path"]]) for _, row in first.iterrows()]
        s = sums.get(norm_key(key), summary.iloc[:0])
        title = f"{values['dataset']} / {values['split']}, L={values['seq_len']}, boundary {values['boundary']}, protocol {values.get('protocol')}"
        paths = [save_figure(curves_figure(s, recs, styles, title), out_dir / f"{stem}-curves.png")]
        example = example_path(root, values["dataset"], values["split"], values["query"], values["dataset_fingerprint"])
        if example.exists():
            try:
                paths.append(save_figure(distance_matrix_figure(example, recs, root, styles), out_dir / f"{stem}-distance-matrix.png"))
            except (OSError, ValueError, KeyError) as e:  # a damaged crop file: the other plots are still made
                log.warning("distance-matrix plot skipped: %s is unreadable (%s); it is rewritten by the next run with --force", example, e)
        written[key] = paths
    return written
