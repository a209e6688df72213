"""Published numbers side by side with ours (``vprbench report --compare EXPERIMENT``).

An experiment file (:mod:`vprbench.running.experiments`) says which published row each of its
table rows is compared with; the records of a results folder fill in our side, matched by full
identity (:func:`vprbench.reporting.experiment_tables.table_frame`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from vprbench.plugins.registry import Registry
from vprbench.reporting.experiment_tables import DatasetRun, caption, format_experiment_table, load_published, table_frame
from vprbench.running.experiments import Experiment


def runs_from_records(exp: Experiment, records: list[dict[str, Any]]) -> list[DatasetRun]:
    """How the experiment's datasets were run in a results folder: those with records, the training
    dataset their learned rows were trained on (the first candidate that has records), the protocol."""
    runs = []
    for d in exp.datasets:
        recs = [r for r in records if r["job"]["dataset"] == d.name]
        if not recs:
            continue
        trained = {r["job"].get("train_dataset") for r in recs if r["job"].get("trains")}
        train = next((t for t in d.train_dataset if t in trained and t != d.name), None)
        runs.append(DatasetRun(d, train, d.protocol or "default", exp.seq_len, exp.boundary, exp.preset))
    return runs


def compare(exp: Experiment, records: list[dict[str, Any]], registry: Registry) -> list[tuple[DatasetRun, Any, pd.DataFrame, str]]:
    """(run, table, frame, caption) for every table of every dataset of ``exp`` that has records."""
    published = load_published(exp)
    out = []
    for run in runs_from_records(exp, records):
        for table_id in run.dataset.tables:
            table = exp.table(table_id)
            frame = table_frame(exp, table, run, records, registry, published)
            out.append((run, table, frame, caption(exp, table, run, frame, records)))
    return out


def format_comparison(comparisons: list[tuple[DatasetRun, Any, pd.DataFrame, str]]) -> str:
    """Markdown of every compared table."""
    if not comparisons:
        return "(no records of this experiment's datasets)\n"
    return "\n".join(format_experiment_table(table, frame, title) for _, table, frame, title in comparisons)
