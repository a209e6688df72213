"""``vprbench report``: every record of a results folder into its tables, plots and results page,
optionally with every metric recomputed under another protocol from the stored predictions (no
method runs again)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vprbench.core.errors import ConfigError, DataError, OutputError, VPRBenchError
from vprbench.data.protocol import Protocol
from vprbench.metrics.evaluator import RecallEvaluator, evaluate_protocol
from vprbench.metrics.uncertainty import DEFAULT_LEVEL, DEFAULT_N_BOOT
from vprbench.reporting.intervals import add_intervals
from vprbench.reporting.plots import make_plots
from vprbench.reporting.styles import styles_for
from vprbench.reporting.sweeps import plot_sweeps, sweep_axes, sweep_frame, sweep_tables
from vprbench.reporting.tables import load_records, records_frame, summary_table, write_tables
from vprbench.running.evaldata import load_evaluation_data
from vprbench.running.layout import slug
from vprbench.running.runner import metrics_dict, per_query_arrays

log = logging.getLogger("vprbench")


def reevaluate(records: list[dict[str, Any]], root: Path, protocol: str) -> list[dict[str, Any]]:
    """The records with every metric recomputed under the dataset's protocol ``protocol``.

    Uses only what the run stored: each record's ranking (``predictions``) and its split's evaluation
    data (positions, segments, explicit ground truth). Records of datasets without that protocol are
    left out (with a warning naming the dataset and its protocols). Nothing is written; the
    per-query results of recomputed records are kept in memory (``_per_query``).
    """
    out = []
    missing: dict[str, list[str]] = {}
    data_cache: dict[str, Any] = {}
    for rec in records:
        protocols = rec["dataset"].get("protocols", {})
        if protocol not in protocols:
            missing[rec["dataset"]["name"]] = sorted(protocols)
            continue
        p = Protocol.from_dict(protocols[protocol])
        try:
            with np.load(Path(root) / rec["predictions"], allow_pickle=False) as z:
                indices, confidence, distances = z["indices"], z["confidence"], z["distances"]
        except (OSError, KeyError, ValueError) as e:
            raise DataError(f"stored ranking {rec['predictions']!r} of record {rec.get('_path')!r} is missing or unreadable ({e})") from None
        key = rec["evaluation_data"]
        if key not in data_cache:
            data_cache[key] = load_evaluation_data(Path(root) / key)
        job = rec["job"]
        ns = tuple(int(n) for n in rec["metrics"]["recall_at"])
        ev = evaluate_protocol(indices, confidence, data_cache[key], p, job["seq_len"], job["boundary"], RecallEvaluator(ns=ns),
                               distances=distances)
        new = copy.deepcopy(rec)
        new["metrics"] = metrics_dict(ev, job["single_match"])
        new["job"]["protocol"] = p.name
        new["protocol"] = {**p.to_dict(), "text": p.describe(rec["dataset"]["position_unit"], rec["dataset"]["radius"]) + " (recomputed)"}
        new["_per_query"] = per_query_arrays(ev, indices)
        out.append(new)
    for ds, names in missing.items():
        log.warning("dataset %s has no protocol %r (its protocols: %s); its records are left out", ds, protocol, ", ".join(names))
    if not out:
        raise ConfigError(f"no record's dataset has a protocol {protocol!r}")
    return out


@contextmanager
def writing(folder: Path) -> Iterator[None]:
    """Turn a failed write under ``folder`` (read-only folder, full disk, permissions) into an :class:`OutputError` naming it."""
    try:
        yield
    except VPRBenchError:
        raise
    except OSError as e:
        name = Path(str(e.filename)) if e.filename else None
        temporary = name is not None and name.name.startswith(".") and name.suffix == ".tmp"  # atomic writes' temporary files
        where = f": {name}" if name is not None and not temporary and str(name) != str(folder) else ""
        raise OutputError(f"cannot write the report into {str(folder)!r} ({e.strerror or e}{where}); the results are kept") from None


def report(
    root: Path,
    plots: bool = True,
    html: bool = False,
    protocol: str | None = None,
    sweeps: tuple[str, ...] = (),
    experiment: Any = None,
    registry: Any = None,
    block_length: int | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Aggregate every record under ``root`` into ``root/tables``, ``root/plots`` and (``html``)
    the self-contained page ``root/report.html``.

    The summary written to ``tables/recall.csv`` carries confidence intervals (block bootstrap
    over queries, see :func:`vprbench.reporting.intervals.add_intervals`); ``experiment`` (an
    :class:`~vprbench.running.experiments.Experiment`) adds its tables with the published numbers to the page.
    With ``protocol``, metrics are recomputed under it first and the tables are written as
    ``recall-<protocol>.*``, ``sweeps-<protocol>.md`` and ``report-<protocol>.html`` beside the default
    protocol's (the records are not changed). Sweeps (axes the records were swept over, and
    ``sweeps``) become ``tables/sweeps.md`` and ``plots/sweep-*.png``.
    """
    root = Path(root)
    records = load_records(root)
    if not records:
        raise ConfigError(f"no result records under {str(root / 'records')!r}; run `vprbench run --out {root}` first")
    if protocol is not None:
        records = reevaluate(records, root, protocol)
    df = records_frame(records)
    summary = summary_table(df)
    with_ci = add_intervals(summary, df, records, root, block_length=block_length, n_boot=n_boot, level=level)
    with writing(root / "tables"):
        paths = write_tables(with_ci, root / "tables", stem="recall" if protocol is None else f"recall-{protocol}")
    axes = list(dict.fromkeys([*sweep_axes(records), *sweeps]))
    styles = styles_for(df)
    if axes:
        display = dict(zip(df["canonical"].astype(str), df["label"].astype(str)))
        text = ""
        for axis in axes:
            frame = sweep_frame(records, axis)
            text += sweep_tables(frame, axis) + "\n"
            if plots:
                with writing(root / "plots"):
                    for i, p in enumerate(plot_sweeps(frame, axis, root / "plots", styles=styles, display=display)):
                        paths[f"sweep-{axis}-{i}"] = p
        paths["sweeps"] = root / "tables" / ("sweeps.md" if protocol is None else f"sweeps-{protocol}.md")
        with writing(root / "tables"):
            paths["sweeps"].write_text(text or "(no sweep results)\n", encoding="utf-8")
    figures: dict[tuple, list[Path]] = {}
    page_figures: list[tuple[str, Path, str, str]] = []  # (title, png, dataset, caption) shown on the page
    if plots or html:
        with writing(root / "plots"):
            figures = make_plots(df, records, root, root / "plots", summary=with_ci, styles=styles)
            from vprbench.reporting.training_curves import plot_training_curves

            learned = [r for r in records if (r.get("job") or {}).get("training")]
            first_seed = {}
            for r in learned:
                key = (r["job"]["dataset"], r["job"]["label"])
                first_seed[key] = min(first_seed.get(key, r["job"].get("seed") or 0), r["job"].get("seed") or 0)
            for i, (p, r) in enumerate(zip(plot_training_curves(learned, root / "plots" / "training"), _with_history(learned))):
                paths[f"training{i}"] = p  # one small plot per learned record; the page shows each method's first seed
                if (r["job"].get("seed") or 0) == first_seed[(r["job"]["dataset"], r["job"]["label"])]:
                    page_figures.append((f"training: {r['job']['label']} (seed {r['job'].get('seed')})", p, r["job"]["dataset"],
                                         "validation scores per epoch (epoch 0: the untrained model), the fraction of training "
                                         "queries with a margin-violating negative, training loss, and the kept epoch"))
            for i, p in enumerate(p for ps in figures.values() for p in ps):
                paths[f"plot{i}"] = p
    for name, p in paths.items():
        if name.startswith("sweep-"):
            ds = next((d for d in sorted(set(df["dataset"]), key=len, reverse=True) if f"-{slug(d)}-" in p.name), "")
            page_figures.append((f"sweep: {name.removeprefix('sweep-').rsplit('-', 1)[0]}", p, ds,
                                 "one line per method; the band is the spread over seeds"))
    if html:
        from vprbench.reporting.html import ExtraFigure, ExtraTable, published_tables, write_html

        extra: list[ExtraTable] = []
        if experiment is not None:
            from vprbench.plugins.registry import discover

            extra = published_tables(experiment, records, registry or discover())
        extra_figures = [ExtraFigure(title, png, [ds] if ds else [], caption) for title, png, ds, caption in page_figures]
        page = "report.html" if protocol is None else f"report-{protocol}.html"
        with writing(root):
            paths["html"] = write_html(root / page, with_ci, records, figures=figures, styles=styles,
                                       extra_tables=extra, extra_figures=extra_figures, title=f"vprbench results: {root.resolve().name}")
    return with_ci, paths


def _with_history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records :func:`plot_training_curves` draws (those with a training history), in its order."""
    from vprbench.reporting.training_curves import training_curves

    return [r for r in records if training_curves(r)]
