"""Training curves of learned rows: validation scores, trained fraction and loss per epoch, one PNG per record.

Input: result records whose ``job.training`` holds a training history (a learned method's
``training_info``; a hierarchical method holds one per learned stage). Epoch 0 is the untrained
model; the kept epoch is marked, and a model that ended no better than epoch 0 on validation says so
in the title.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Validation series drawn, in this order (history keys ``val_<name>``).
VAL_SERIES: tuple[str, ...] = ("mrr", "recall1", "recall5", "recall10")


@dataclass
class Curve:
    """The per-epoch series of one trained model (one stage of a record).

    ``val`` maps a score name (``mrr``, ``recall1``, ...) to one value per epoch (None where absent).
    """

    stage: str
    epochs: list[int]
    val: dict[str, list[float | None]] = field(default_factory=dict)
    loss: list[float | None] = field(default_factory=list)
    trained_fraction: list[float | None] = field(default_factory=list)
    margin: list[float | None] = field(default_factory=list)
    best_epoch: int | None = None
    untrained: bool | None = None
    select: str = ""


def _curve(stage: str, info: Mapping[str, Any]) -> Curve | None:
    history = info.get("history")
    if not isinstance(history, list) or not history:
        return None
    rows = [h for h in history if isinstance(h, Mapping) and "epoch" in h]
    val = {name: [h.get(f"val_{name}") for h in rows] for name in VAL_SERIES}
    return Curve(
        stage=stage,
        epochs=[int(h["epoch"]) for h in rows],
        val={k: v for k, v in val.items() if any(x is not None for x in v)},
        loss=[h.get("loss") for h in rows],
        trained_fraction=[h.get("trained_fraction") for h in rows],
        margin=[h.get("margin") for h in rows],
        best_epoch=info.get("best_epoch"),
        untrained=info.get("untrained"),
        select=str(info.get("select", "")),
    )


def training_curves(record: Mapping[str, Any]) -> list[Curve]:
    """The curves of one record: one for a learned method, one per learned stage (hvpr), none for training-free rows."""
    training = (record.get("job") or {}).get("training")
    if not isinstance(training, Mapping):
        return []
    if "history" in training:
        curve = _curve("", training)
        return [curve] if curve is not None else []
    return [c for stage, info in training.items() if isinstance(info, Mapping) and (c := _curve(stage, info)) is not None]


def curve_path(out_dir: Path, record: Mapping[str, Any]) -> Path:
    """``<out_dir>/training-<dataset>-<label>-seed<S>-<key[:8]>.png`` (file-system safe)."""
    from vprbench.running.layout import slug

    job = record.get("job") or {}
    name = f"training-{slug(str(job.get('dataset', 'dataset')))}-{slug(str(job.get('label', job.get('method', 'method'))))}"
    return Path(out_dir) / f"{name}-seed{job.get('seed', 0)}-{str(record.get('key', ''))[:8]}.png"


def plot_training_curves(records: Iterable[Mapping[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per record that has a training history (see module doc); returns the written paths in record order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    out_dir = Path(out_dir)
    paths: list[Path] = []
    for record in records:
        curves = training_curves(record)
        if not curves:
            continue
        job = record.get("job") or {}
        fig, axes = plt.subplots(1, len(curves), figsize=(5.0 * len(curves), 4.3), squeeze=False)
        for ax, c in zip(axes[0], curves):
            for name, values in c.val.items():
                pts = [(e, v) for e, v in zip(c.epochs, values) if v is not None]
                ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", ms=3, label=f"val {name}")
            frac = [(e, v) for e, v in zip(c.epochs, c.trained_fraction) if v is not None and e > 0]
            if frac:
                ax.plot([e for e, _ in frac], [v for _, v in frac], ls="--", marker=".", color="grey", label="queries trained")
            if c.best_epoch is not None:
                ax.axvline(c.best_epoch, color="black", lw=0.8, ls=":", label=f"kept (epoch {c.best_epoch})")
            ax.set_ylim(0.0, 1.02)
            ax.set_xlabel("epoch (0 = untrained)")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            loss = [(e, v) for e, v in zip(c.epochs, c.loss) if v is not None]
            handles, labels = ax.get_legend_handles_labels()
            if loss:
                ax2 = ax.twinx()
                (line,) = ax2.plot([e for e, _ in loss], [v for _, v in loss], color="tab:red", lw=0.8, alpha=0.6, marker="x", ms=4)
                ax2.set_ylabel("training loss", color="tab:red")
                handles, labels = [*handles, line], [*labels, "training loss (right axis)"]
            title = c.stage or str(job.get("label", ""))
            if c.untrained:
                title += "  (untrained: no better than epoch 0)"
            ax.set_title(title, fontsize=9)
            # below the panel: inside it the legend would hide curves (the loss axis is drawn on top)
            ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, frameon=False)
        fig.suptitle(f"{job.get('label', '')} on {job.get('dataset', '')} (seed {job.get('seed', 0)})", fontsize=10)
        fig.tight_layout()
        path = curve_path(out_dir, record)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
