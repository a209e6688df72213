"""``vprbench report``: every record of a results folder into its tables, plots and results page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from vprbench.core.errors import ConfigError
from vprbench.metrics.uncertainty import DEFAULT_LEVEL, DEFAULT_N_BOOT
from vprbench.reporting.intervals import add_intervals
from vprbench.reporting.plots import make_plots
from vprbench.reporting.styles import styles_for
from vprbench.reporting.tables import load_records, records_frame, summary_table, write_tables


def report(
    root: Path,
    plots: bool = True,
    html: bool = False,
    published: pd.DataFrame | None = None,
    published_mapping: dict[str, Any] | None = None,
    block_length: int | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Aggregate every record under ``root`` into ``root/tables``, ``root/plots`` and (``html``)
    the self-contained page ``root/report.html``.

    The summary written to ``tables/recall.csv`` carries confidence intervals (block bootstrap
    over queries, see :func:`vprbench.reporting.intervals.add_intervals`); ``published`` (with its
    mapping, :func:`vprbench.reporting.published.load_published`) adds the published numbers to the page.
    """
    root = Path(root)
    records = load_records(root)
    if not records:
        raise ConfigError(f"no result records under {str(root / 'records')!r}; run `vprbench run --out {root}` first")
    df = records_frame(records)
    summary = summary_table(df)
    with_ci = add_intervals(summary, df, records, root, block_length=block_length, n_boot=n_boot, level=level)
    paths = write_tables(with_ci, root / "tables")
    styles = styles_for(df)
    figures: dict[tuple, list[Path]] = {}
    if plots or html:
        figures = make_plots(df, records, root, root / "plots", summary=with_ci, styles=styles)
        for i, p in enumerate(p for ps in figures.values() for p in ps):
            paths[f"plot{i}"] = p
    if html:
        from vprbench.reporting.html import ExtraTable, published_tables, write_html

        extra: list[ExtraTable] = []
        if published is not None:
            extra = published_tables(published, published_mapping or {}, records)
        paths["html"] = write_html(root / "report.html", with_ci, records, figures=figures, styles=styles,
                                   extra_tables=extra, title=f"vprbench results: {root.resolve().name}")
    return with_ci, paths
