"""Confidence intervals and comparisons with the best row, added to a summary table.

Built from the per-query arrays of each record's predictions file (``first_hit``, ``evaluated``,
``confidence``, ``query_mask``) with :mod:`vprbench.metrics.uncertainty`: one block bootstrap per
table (the same resampled queries for every row, so differences are paired), intervals of the
mean over seeds for rows with several seeds (the seeds' spread is the separate "R@1 std").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vprbench.core.errors import ConfigError
from vprbench.metrics.uncertainty import (
    DEFAULT_LEVEL,
    DEFAULT_N_BOOT,
    block_bootstrap,
    default_block_length,
    mcnemar_exact,
    percentile_interval,
    weighted_pr_auc,
    weighted_recall,
)
from vprbench.reporting.tables import GROUP_KEYS, recall_columns

log = logging.getLogger("vprbench")

PR_AUC = "PR-AUC"
#: Outcome of the paired comparison of a cell with the best cell of its column.
BEST, TIE, WORSE = "best", "indistinguishable", "worse"


@dataclass
class QueryResults:
    """Per-query arrays of one record, [n_query] each (see the runner's predictions file)."""

    first_hit: np.ndarray  # rank of the first positive in the saved top K, -1 none
    evaluated: np.ndarray  # counts for Recall@N
    confidence: np.ndarray  # top-1 confidence, -inf outside the evaluation mask
    query_mask: np.ndarray
    k: int  # matches saved per query
    recall_ok: bool  # the arrays reproduce the record's Recall@N
    auc_ok: bool  # ... and its PR-AUC
    has_positive: np.ndarray | None = None  # the query has a positive (PR recall denominator); None: = evaluated
    pr_ignore: np.ndarray | None = None  # top-1 match only soft-positive: neither right nor wrong in PR

    @property
    def pr_positive(self) -> np.ndarray:
        return self.evaluated if self.has_positive is None else self.has_positive

    def hits(self, n: int) -> np.ndarray:
        return (self.first_hit >= 0) & (self.first_hit < n)


#: Why a record has no (or fewer) intervals, by kind: what to tell the user once for all such records.
PROBLEMS = {
    "missing": "no confidence intervals for {n} record(s), e.g. {example}: the predictions file is missing",
    "old": "no confidence intervals for {n} record(s), e.g. {example}: the record has no per-query results "
           "(written by an older vprbench); re-run with --force to get them",
    "unreadable": "no confidence intervals for {n} record(s), e.g. {example}: the predictions file is unreadable",
    "stale": "no confidence intervals for {n} record(s), e.g. {example}: the predictions file does not reproduce the "
             "record's Recall@N (overwritten by another run?)",
    "auc": "no PR-AUC interval for {n} record(s), e.g. {example}: its per-query results do not reproduce the record's "
           "PR-AUC",
}


def load_query_results(record: dict[str, Any], root: Path, problems: dict[str, list[str]] | None = None) -> QueryResults | None:
    """The per-query arrays of ``record``, checked against its metrics; None if unusable.

    Problems are collected in ``problems`` (kind of :data:`PROBLEMS` -> descriptions) or, without
    it, logged as warnings.
    """
    from vprbench.metrics.pr import precision_recall

    def problem(kind: str, detail: str) -> None:
        if problems is None:
            log.warning(PROBLEMS[kind].format(n=1, example=detail))
        else:
            problems.setdefault(kind, []).append(detail)

    label = record.get("job", {}).get("label", "?")
    if "_per_query" in record:  # recomputed under another protocol (report --protocol): in memory
        per_query, where = record["_per_query"], f"{label} (recomputed)"
    else:
        rel = record.get("per_query")
        path = Path(root) / rel if rel else None
        where = f"{label} ({path})"
        if path is None or not path.is_file():
            problem("missing" if rel else "old", where)
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                per_query = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as e:
            problem("unreadable", f"{where}: {e}")
            return None
    try:
        with np.load(Path(root) / record["predictions"], allow_pickle=False) as z:
            confidence, indices = z["confidence"], z["indices"]
    except (OSError, ValueError, KeyError) as e:
        problem("unreadable", f"{where}: {e}")
        return None
    if not {"first_hit", "evaluated", "query_mask", "has_positive"} <= set(per_query):
        problem("old", where)
        return None
    mask = per_query["query_mask"].astype(bool)
    qr = QueryResults(
        first_hit=per_query["first_hit"].astype(np.int64),
        evaluated=per_query["evaluated"].astype(bool),
        confidence=np.where(mask, confidence.astype(np.float64), -np.inf),
        query_mask=mask,
        k=int(indices.shape[1]) if indices.ndim == 2 else 0,
        recall_ok=True,
        auc_ok=True,
        has_positive=per_query["has_positive"].astype(bool) & mask,
        pr_ignore=per_query.get("pr_ignore", np.zeros(mask.shape, bool)).astype(bool),
    )
    m = record["metrics"]
    n_ev = int(qr.evaluated.sum())
    for n_str, value in m["recall_at"].items():
        if value is None or int(n_str) > qr.k or n_ev == 0:
            continue
        mine = float(qr.hits(int(n_str))[qr.evaluated].mean())
        if abs(mine - value) > 1e-9:
            problem("stale", f"{where}: Recall@{n_str} {mine:.4f}, recorded {value:.4f}")
            qr.recall_ok = qr.auc_ok = False
            return qr
    auc = precision_recall(qr.confidence, qr.hits(1) & mask, qr.pr_positive, qr.pr_ignore).auc
    if abs(auc - m["pr"]["auc"]) > 1e-9:
        # e.g. soft ground truth: the predictions file does not say which matches were only soft-positive
        problem("auc", f"{where}: {auc:.4f}, recorded {m['pr']['auc']:.4f}")
        qr.auc_ok = False
    return qr


def norm_key(values: Sequence[Any]) -> tuple:
    """A group or row key that compares equal across frames (NaN and None become None)."""
    return tuple(None if (isinstance(v, float) and math.isnan(v)) or v is None else v for v in values)


def row_keys(summary: pd.DataFrame) -> list[str]:
    """Columns that identify a summary row among the records: the group keys, family and label."""
    return [k for k in (*GROUP_KEYS, "family", "label") if k in summary.columns]


def match_records(summary: pd.DataFrame, frame: pd.DataFrame, records: list[dict[str, Any]],
                  keys: Sequence[str] | None = None) -> dict[Any, list[dict[str, Any]]]:
    """Summary row index -> its records (one per seed, by seed), matched on ``keys`` (default :func:`row_keys`)."""
    keys = list(keys) if keys is not None else row_keys(summary)
    by_path = {r["_path"]: r for r in records if "_path" in r}
    found: dict[tuple, list[dict[str, Any]]] = {}
    if not frame.empty:
        for _, row in frame.sort_values("seed", kind="stable").iterrows():
            if row["_path"] in by_path:
                found.setdefault(norm_key(row[keys].tolist()), []).append(by_path[row["_path"]])
    return {idx: found.get(norm_key(row[keys].tolist()), []) for idx, row in summary.iterrows()}


def add_intervals(
    summary: pd.DataFrame,
    frame: pd.DataFrame,
    records: list[dict[str, Any]],
    root: Path,
    block_length: int | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    keys: Sequence[str] | None = None,
) -> pd.DataFrame:
    """A copy of ``summary`` with interval and comparison columns for every Recall@N and PR-AUC.

    Args:
        summary: one row per method (and group), as :func:`vprbench.reporting.tables.summary_table`.
        frame: one row per record with ``_path`` (:func:`~vprbench.reporting.tables.records_frame`).
        records: the records (``_path`` set), for their predictions files.
        root: the results folder the predictions paths are relative to.
        block_length: queries per bootstrap block; None = per table, the largest Politis-White
            estimate over the rows' top-1 hits and at least the sequence length (see
            :func:`vprbench.metrics.uncertainty.default_block_length`).
        n_boot, level, seed: replicates, interval coverage, resampling seed.
        keys: columns that identify a summary row in ``frame`` (default: the group keys, family, label).

    Added columns, for each metric M (``R@1``, ..., ``PR-AUC``): ``M lo``, ``M hi`` (percentile
    interval of the mean over seeds); ``M vs best`` (``best``, ``indistinguishable`` = the paired
    interval of the difference to the column's best row contains 0, ``worse``; empty without
    interval); ``M diff lo``/``M diff hi`` (that interval, row minus best); for Recall@N also
    ``M McNemar p`` (exact McNemar against the best row, lowest seed of each). Per row:
    ``ci block`` (block length, queries), ``ci block auto``, ``ci n_boot``, ``ci level``, ``ci queries``.
    """
    if block_length is not None and (not isinstance(block_length, (int, np.integer)) or block_length < 1):
        raise ConfigError(f"block length must be a positive integer (queries), got {block_length!r}")
    out = summary.copy()
    metrics = recall_columns(summary) + ([PR_AUC] if PR_AUC in summary.columns else [])
    for mtr in metrics:
        out[f"{mtr} lo"] = np.nan
        out[f"{mtr} hi"] = np.nan
        out[f"{mtr} vs best"] = ""
        out[f"{mtr} diff lo"] = np.nan
        out[f"{mtr} diff hi"] = np.nan
        if mtr != PR_AUC:
            out[f"{mtr} McNemar p"] = np.nan
    for col, value in (("ci block", np.nan), ("ci block auto", False), ("ci n_boot", n_boot), ("ci level", level), ("ci queries", np.nan)):
        out[col] = value
    if summary.empty:
        return out
    matched = match_records(summary, frame, records, keys)
    problems: dict[str, list[str]] = {}
    group_keys = [k for k in GROUP_KEYS if k in summary.columns]
    for _, g in out.groupby(group_keys, sort=False, dropna=False):
        rows: list[tuple[Any, list[QueryResults]]] = []
        for idx in g.index:
            results = [r for r in (load_query_results(rec, root, problems) for rec in matched.get(idx, [])) if r is not None]
            if results:
                rows.append((idx, results))
        _fill_group(out, rows, metrics, block_length, n_boot, level, seed, g)
    for kind, found in problems.items():
        log.warning(PROBLEMS[kind].format(n=len(found), example=found[0]))
    return out


def _fill_group(out: pd.DataFrame, rows: list[tuple[Any, list[QueryResults]]], metrics: list[str], block_length: int | None,
                n_boot: int, level: float, seed: int, g: pd.DataFrame) -> None:
    if not rows:
        return
    sizes = {r.first_hit.size for _, res in rows for r in res}
    if len(sizes) > 1:
        log.warning("rows of one table have predictions of different query counts %s; intervals per size, no comparison with the best",
                    sorted(sizes))
        for size in sorted(sizes):
            _fill_group(out, [(i, [r for r in res if r.first_hit.size == size]) for i, res in rows
                              if all(r.first_hit.size == size for r in res)], metrics, block_length, n_boot, level, seed, g)
        return
    n = sizes.pop()
    ref_eval = rows[0][1][0].evaluated
    paired = all(np.array_equal(r.evaluated, ref_eval) for _, res in rows for r in res)
    if not paired:
        log.warning("rows of one table evaluate different queries; intervals only, no comparison with the best")
    ns = [int(m[2:]) for m in metrics if m != PR_AUC]
    auto = block_length is None
    if auto:
        seq_len = pd.to_numeric(g["seq_len"], errors="coerce").max() if "seq_len" in g and len(g) else 1
        seq_len = int(seq_len) if np.isfinite(seq_len) else 1
        block_length = default_block_length([res[0].hits(1)[res[0].evaluated] for _, res in rows], seq_len=seq_len)
    elif block_length > n:
        log.warning("--block-length %d is longer than the %d evaluated queries of a table: using %d (one block, intervals "
                    "from resampling its start only)", block_length, n, n)
    block_length = int(min(block_length, n))

    def usable(r: QueryResults, mtr: str) -> bool:
        if mtr == PR_AUC:
            return r.auc_ok
        return r.recall_ok and int(mtr[2:]) <= r.k

    def statistic(w: np.ndarray) -> np.ndarray:
        vals = np.full((w.shape[0], len(rows), len(metrics)), np.nan)
        for i, (_, res) in enumerate(rows):
            per_seed = np.full((len(res), w.shape[0], len(metrics)), np.nan)
            for s, r in enumerate(res):
                if ns:
                    per_seed[s, :, : len(ns)] = weighted_recall(w, np.stack([r.hits(k) for k in ns], axis=1), r.evaluated)
                if PR_AUC in metrics:
                    per_seed[s, :, -1] = weighted_pr_auc(w, r.confidence, r.hits(1) & r.query_mask, r.pr_positive, r.pr_ignore)
                for j, mtr in enumerate(metrics):
                    if not usable(r, mtr):
                        per_seed[s, :, j] = np.nan
            vals[:, i] = per_seed.mean(axis=0)  # NaN if any seed is unusable for that metric
        return vals

    reps = block_bootstrap(statistic, n, block_length, n_boot=n_boot, seed=seed)
    lo, hi = percentile_interval(reps, level)
    idxs = [i for i, _ in rows]
    for j, mtr in enumerate(metrics):
        out.loc[idxs, f"{mtr} lo"] = lo[:, j]
        out.loc[idxs, f"{mtr} hi"] = hi[:, j]
    out.loc[idxs, "ci block"] = block_length
    out.loc[idxs, "ci block auto"] = auto
    out.loc[idxs, "ci queries"] = n
    if not paired:
        return
    for j, mtr in enumerate(metrics):
        point = out.loc[idxs, mtr].to_numpy(dtype=float)
        ok = np.isfinite(point) & np.isfinite(lo[:, j])
        if not ok.any():
            continue
        best = int(np.flatnonzero(ok)[np.argmax(point[ok])])
        d_lo, d_hi = percentile_interval(reps[:, :, j] - reps[:, best : best + 1, j], level)
        for i, idx in enumerate(idxs):
            if not ok[i]:
                continue
            out.loc[idx, f"{mtr} diff lo"] = d_lo[i]
            out.loc[idx, f"{mtr} diff hi"] = d_hi[i]
            out.loc[idx, f"{mtr} vs best"] = BEST if i == best else (TIE if d_lo[i] <= 0 <= d_hi[i] else WORSE)
            if mtr != PR_AUC:
                a, b = rows[i][1][0], rows[best][1][0]
                out.loc[idx, f"{mtr} McNemar p"] = mcnemar_exact(a.hits(int(mtr[2:])), b.hits(int(mtr[2:])), a.evaluated).pvalue
