"""Plots of a results folder: Recall@N, recall vs radius, precision-recall, distance matrix with matches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vprbench.reporting.tables import GROUP_KEYS, recall_columns
from vprbench.running.layout import example_path, slug


def make_plots(df: pd.DataFrame, records: list[dict[str, Any]], root: Path, out_dir: Path) -> list[Path]:
    """Recall@N curves, recall vs radius, PR curves and an example distance matrix with matches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    by_path = {r["_path"]: r for r in records}
    written: list[Path] = []
    for key, g in df.groupby(GROUP_KEYS, sort=False, dropna=False):
        ds, fingerprint, split, query, seq_len, boundary, protocol = key
        stem = slug(f"{ds}-{split}-{query}-L{seq_len}-{boundary}-{protocol}-{str(fingerprint)[:8]}")
        first = g.sort_values(["family_order", "display", "seed"]).drop_duplicates("group_key")  # one seed per row
        recs = [(row["display"], by_path[row["_path"]]) for _, row in first.iterrows()]

        fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
        rc = recall_columns(df)
        ns = [int(c[2:]) for c in rc]
        for label, rec in recs:
            vals = [rec["metrics"]["recall_at"].get(str(n)) for n in ns]
            pts = [(n, v) for n, v in zip(ns, vals) if v is not None]
            if pts:
                axes[0].plot(*zip(*pts), marker="o", label=label)
            rr = rec["metrics"]["recall_vs_radius"]
            if rr["radii"]:
                axes[1].plot(rr["radii"], [np.nan if v is None else v for v in rr["recall_at_1"]], marker=".", label=label)
            pr = rec["metrics"]["pr"]
            if pr["recall"]:
                axes[2].plot(pr["recall"], pr["precision"], label=f"{label} (AUC {pr['auc']:.2f})")
        unit = recs[0][1]["dataset"]["position_unit"] if recs else ""
        axes[0].set(xlabel="N", ylabel="Recall@N", title="Recall@N", xscale="log", ylim=(0, 1.02))
        axes[0].set_xticks(ns, [str(n) for n in ns])
        axes[1].set(xlabel=f"localisation radius ({unit})", ylabel="Recall@1", title="Recall@1 vs radius", ylim=(0, 1.02))
        axes[2].set(xlabel="recall", ylabel="precision", title="Precision-recall (top-1 match)", xlim=(0, 1.02), ylim=(0, 1.02))
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[2].legend(fontsize=7, loc="lower left")
        fig.suptitle(f"{ds} / {split}, L={seq_len}, boundary {boundary}, protocol {protocol}")
        fig.tight_layout()
        path = out_dir / f"{stem}-curves.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

        example = example_path(root, ds, split, query, fingerprint)
        if example.exists():
            written.append(_plot_example(example, recs, root, out_dir / f"{stem}-distance-matrix.png", plt))
    return written


def _plot_example(example: Path, recs: list[tuple[str, dict]], root: Path, path: Path, plt: Any) -> Path:
    with np.load(example, allow_pickle=False) as z:
        d, gt, r0 = z["distances"], z["gt"], int(z["ref_start"])
    nq, nr = d.shape
    fig, ax = plt.subplots(figsize=(7.5, 7))
    ax.imshow(d.T, cmap="viridis_r", aspect="auto", origin="lower")
    qi, ri = np.nonzero(gt)
    ax.scatter(qi, ri, s=1, c="white", alpha=0.25, label="ground truth")
    markers = "ox+sd^v<>p*h"
    for i, (label, rec) in enumerate(recs):
        pred_path = root / rec["predictions"]
        if not pred_path.exists():
            continue
        with np.load(pred_path, allow_pickle=False) as z:
            top1 = z["indices"][:nq, 0].astype(np.int64) - r0
        ok = (top1 >= 0) & (top1 < nr)
        ax.scatter(np.flatnonzero(ok), top1[ok], s=9, marker=markers[i % len(markers)], label=label, alpha=0.8)
    ax.set(xlabel="query frame", ylabel=f"reference frame (from {r0})", title="single-image distances with each method's top-1 match")
    ax.set_xlim(0, nq)
    ax.set_ylim(0, nr)
    ax.legend(fontsize=6, loc="upper left", markerscale=1.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
