"""``vprbench report``: every record of a results folder into its tables and plots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vprbench.core.errors import ConfigError
from vprbench.reporting.plots import make_plots
from vprbench.reporting.tables import load_records, records_frame, summary_table, write_tables


def report(root: Path, plots: bool = True) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Aggregate every record under ``root`` into ``root/tables`` and ``root/plots``."""
    root = Path(root)
    records = load_records(root)
    if not records:
        raise ConfigError(f"no result records under {str(root / 'records')!r}; run `vprbench run --out {root}` first")
    df = records_frame(records)
    summary = summary_table(df)
    paths = write_tables(summary, root / "tables")
    if plots:
        for i, p in enumerate(make_plots(df, records, root, root / "plots")):
            paths[f"plot{i}"] = p
    return summary, paths
