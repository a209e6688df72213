"""The results page: one self-contained HTML file (``vprbench report --html``).

Everything is inline: styles, a small sorting script, plots as base64 PNG and style swatches as
SVG; the page loads nothing from anywhere, so it can be mailed or archived as one file. Per
dataset and protocol (split, query traverse, sequence length, boundary policy, data version) it
shows the grouped table with confidence intervals and the comparison with the best row, the
published numbers where given, the plots, and each row's provenance on demand.

Inputs are generic: the summary DataFrame (with the interval columns of
:func:`vprbench.reporting.intervals.add_intervals` when available), the records, plots per
table group, and optional extra tables and figures placed in a dataset's section or at the end.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vprbench.core.fileio import atomic_path
from vprbench.reporting.intervals import BEST, PR_AUC, TIE, match_records, norm_key
from vprbench.reporting.styles import Style, styles_for, svg_swatch
from vprbench.reporting.tables import GROUP_KEYS, UNTRAINED, recall_columns, records_frame


@dataclass
class ExtraTable:
    """A table to show on the page (published numbers, a sweep, ...).

    ``datasets``: dataset names whose section shows it (empty: a section at the end).
    """

    title: str
    frame: pd.DataFrame
    datasets: Sequence[str] = ()
    caption: str = ""


@dataclass
class ExtraFigure:
    """A figure to show on the page: PNG bytes or the path of a PNG file."""

    title: str
    png: bytes | Path
    datasets: Sequence[str] = ()
    caption: str = ""


@dataclass
class _Column:
    header: str
    kind: str  # "num" or "text": how the column sorts
    tip: str = ""
    cells: list[tuple[str, str, str]] = field(default_factory=list)  # (inner html, sort key, css class)


CSS = """
:root { --fg: #1d2330; --muted: #5b6475; --line: #d8dce3; --best: #d9f2dc; --tie: #eef8ef; --head: #f3f5f8; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: var(--fg);
       margin: 0 auto; padding: 1.2rem 2rem 3rem; max-width: 1500px; }
h1 { font-size: 1.6rem; margin: 0 0 .3rem; } h2 { font-size: 1.3rem; margin: 2.2rem 0 .2rem; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.6rem 0 .4rem; } .meta, .caption, figcaption { color: var(--muted); font-size: .88rem; }
nav ul { margin: .3rem 0; padding-left: 1.2rem; } nav li { margin: .1rem 0; }
.tablewrap { overflow-x: auto; }
table { border-collapse: collapse; margin: .4rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: .28rem .45rem; border-bottom: 1px solid var(--line); text-align: right; vertical-align: top; white-space: nowrap; }
th { background: var(--head); position: sticky; top: 0; cursor: pointer; user-select: none; font-weight: 600; }
th:focus { outline: 2px solid #6a9bd8; }
th::after { content: " \\2195"; color: #aab1bd; font-size: .8em; }
th[aria-sort=ascending]::after { content: " \\25B2"; color: var(--fg); } th[aria-sort=descending]::after { content: " \\25BC"; color: var(--fg); }
td.text, th.text { text-align: left; }
table.grouped tr.fam-start td { border-top: 2px solid #9aa3b2; }
table.grouped tr.row:not(.fam-start) td.text:first-child { color: transparent; }  /* family named once per group */
td.best { background: var(--best); font-weight: 700; } td.tie { background: var(--tie); }
.ci { display: block; color: var(--muted); font-size: .78em; font-weight: 400; }
.swatch { vertical-align: middle; margin-right: .35rem; }
button.prov-toggle { font: inherit; color: #2d5fa8; background: none; border: 1px solid #b9c6da; border-radius: 4px; cursor: pointer;
                     padding: 0 .45rem; }
button.prov-toggle[aria-expanded=true] { background: #e8eef8; }
tr.prov td { text-align: left; white-space: normal; background: #fafbfc; padding: .5rem 1rem .7rem 2.5rem; }
dl.provenance { display: grid; grid-template-columns: max-content minmax(20rem, 1fr); gap: .15rem .9rem; margin: .3rem 0 0; font-size: .86em; }
dl.provenance dt { font-weight: 600; color: var(--muted); } dl.provenance dd { margin: 0; word-break: break-word; }
code { font: .9em ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: #f3f4f6; padding: 0 .2em; border-radius: 3px; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
.note { background: #f7f8fa; border-left: 4px solid #9aa3b2; padding: .6rem 1rem; margin: 1rem 0; }
"""

SCRIPT = """
(function () {
  function sortKey(cell, numeric) {
    var v = cell.getAttribute('data-sort');
    if (v === null) v = cell.textContent.trim();
    if (!numeric) return v.toLowerCase();
    return v === '' ? NaN : Number(v);
  }
  function provOf(row) {
    var next = row.nextElementSibling;
    return next && next.classList.contains('prov') ? next : null;
  }
  document.querySelectorAll('tr.prov').forEach(function (p) { p.hidden = true; });
  document.querySelectorAll('button.prov-toggle').forEach(function (b) {
    b.setAttribute('aria-expanded', 'false');
    b.addEventListener('click', function () {
      var p = provOf(b.closest('tr'));
      if (!p) return;
      p.hidden = !p.hidden;
      b.setAttribute('aria-expanded', String(!p.hidden));
      b.textContent = p.hidden ? 'show' : 'hide';
    });
  });
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.tabIndex = 0;
      function sort() {
        var numeric = th.getAttribute('data-type') === 'num';
        var current = th.getAttribute('aria-sort');
        var asc = current ? current === 'descending' : !numeric;  // numbers: largest first
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        table.classList.remove('grouped');
        var body = table.tBodies[0];
        var rows = Array.prototype.filter.call(body.rows, function (r) { return !r.classList.contains('prov'); });
        var provs = rows.map(provOf);
        var order = rows.map(function (r, i) { return i; });
        order.sort(function (a, b) {
          var x = sortKey(rows[a].cells[col], numeric), y = sortKey(rows[b].cells[col], numeric);
          if (numeric) {
            if (isNaN(x) || isNaN(y)) return (isNaN(x) ? 1 : 0) - (isNaN(y) ? 1 : 0) || a - b;  // missing values last
            return (asc ? x - y : y - x) || a - b;
          }
          return (asc ? x.localeCompare(y) : y.localeCompare(x)) || a - b;
        });
        order.forEach(function (i) { body.appendChild(rows[i]); if (provs[i]) body.appendChild(provs[i]); });
      }
      th.addEventListener('click', sort);
      th.addEventListener('keydown', function (e) { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); sort(); } });
    });
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return f


def _fmt(v: Any, digits: int = 3) -> str:
    f = _num(v)
    return "-" if not math.isfinite(f) else f"{f:.{digits}f}"


def _sort(v: Any) -> str:
    f = _num(v)
    return "" if not math.isfinite(f) else repr(f)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in str(text)).strip("-").lower() or "x"


def _png_data(png: bytes | Path) -> str:
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _value(obj: Any) -> str:
    if isinstance(obj, dict):
        if not obj:
            return "<em>none</em>"
        return ", ".join(f"<code>{_e(k)}={_e(json.dumps(v) if not isinstance(v, str) else v)}</code>" for k, v in sorted(obj.items()))
    if isinstance(obj, float):
        return _e(f"{obj:.4g}")
    return _e(obj)


def provenance(records: list[dict[str, Any]], row: pd.Series | None = None) -> str:
    """The provenance of one table row: parameters, preset, training, seeds, versions, timings, memory (an HTML <dl>)."""
    if not records:
        return "<em>no records</em>"
    job = records[0]["job"]
    items: list[tuple[str, str]] = [("method", f"<code>{_e(job.get('method'))}</code> ({_e(job.get('family'))})")]
    items.append(("specs given", _value(job.get("user_labels") or [job.get("label")])))
    items.append(("code", _value(job.get("code") or {})))
    resolved = job.get("resolved_params") or {k: v for k, v in (job.get("params") or {}).items() if v is not None}
    items.append(("parameters used", _value(resolved)))
    preset = (job.get("resolved_params") or {}).get("preset") or (job.get("params") or {}).get("preset")
    if preset:
        items.append(("preset", f"<code>{_e(preset)}</code>"))
    if job.get("trains") or job.get("training"):
        tr = job.get("training") or {}
        bits = [f"train data <code>{_e(job.get('train_dataset') or tr.get('train_dataset'))}</code>"]
        if job.get("train_fingerprint"):
            bits.append(f"version {_e(str(job['train_fingerprint'])[:8])}")
        for key, name in (("epochs_run", "epochs"), ("best_epoch", "best epoch"), ("best_val_recall5", "best val R@5"),
                          ("train_seconds", "training s"), ("device", "device")):
            if tr.get(key) is not None:
                bits.append(f"{name} {_value(tr[key])}")
        if tr.get("cache_hit"):
            bits.append("model from cache")
        items.append(("training", "; ".join(bits)))
    seeds = []
    for r in records:
        m = r["metrics"]
        r1 = m["recall_at"].get("1")
        t = r.get("timings_s", {})
        mem = r.get("memory_mb", {}).get("peak_rss")
        timing = ", ".join(f"{k} {v:.2f}" for k, v in t.items() if isinstance(v, (int, float)))
        seeds.append(f"seed {_e(r['job'].get('seed'))}: R@1 {_fmt(r1)}, PR-AUC {_fmt(m['pr']['auc'])}; "
                     f"peak memory {_fmt(mem, 0)} MB; seconds: {_e(timing)}; finished {_e(r.get('finished_at', '?'))}")
    items.append(("seeds", "<br>".join(seeds)))
    env = records[0].get("environment", {})
    pk = env.get("packages", {})
    versions = ", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(pk.items()))
    items.append(("versions", f"{versions}; Python {_e(env.get('python', '?'))} on {_e(env.get('platform', '?'))}"
                  + (f"; device {_e(job.get('device'))}" if job.get("device") else "")))
    items.append(("dataset", f"{_e(job.get('dataset'))} version {_e(str(job.get('dataset_fingerprint'))[:8])}, "
                  f"{_e(records[0].get('dataset', {}).get('n_reference', '?'))} references, top {_e(job.get('top_k', '?'))} kept"))
    if row is not None and math.isfinite(_num(row.get("ci block"))):
        items.append(("intervals", f"block bootstrap, blocks of {int(row['ci block'])} queries, "
                      f"{int(_num(row.get('ci n_boot')))} replicates"))
    items.append(("records", "<br>".join(f"<code>{_e(Path(r.get('_path', '?')).name)}</code>" for r in records)))
    body = "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="provenance">{body}</dl>'


def _metric_cell(row: pd.Series, m: str, digits: int = 3) -> tuple[str, str, str]:
    v = row.get(m)
    if not math.isfinite(_num(v)):
        return "-", "", ""
    inner = _e(_fmt(v, digits))
    lo, hi = row.get(f"{m} lo"), row.get(f"{m} hi")
    tip = []
    if math.isfinite(_num(lo)) and math.isfinite(_num(hi)):
        inner += f'<span class="ci">{_fmt(lo, digits)}&ndash;{_fmt(hi, digits)}</span>'
        tip.append(f"{100 * _num(row.get('ci level', 0.95)):g} % interval {_fmt(lo, digits)} to {_fmt(hi, digits)}")
    verdict = str(row.get(f"{m} vs best", "") or "")
    css = {BEST: "best", TIE: "tie"}.get(verdict, "")
    if verdict and verdict != BEST:
        d_lo, d_hi = row.get(f"{m} diff lo"), row.get(f"{m} diff hi")
        tip.append(f"{verdict} from the best: difference {_fmt(d_lo, digits)} to {_fmt(d_hi, digits)}")
        if math.isfinite(_num(row.get(f"{m} McNemar p"))):
            tip.append(f"exact McNemar p = {_num(row.get(f'{m} McNemar p')):.2g} (assumes independent queries)")
    elif verdict == BEST:
        tip.append("best in this column")
    if tip:
        inner = f'<span title="{_e("; ".join(tip))}">{inner}</span>'
    return inner, _sort(v), css


def results_table(summary: pd.DataFrame, matched: dict[Any, list[dict[str, Any]]], styles: dict[str, Style]) -> str:
    """The sortable table of one group: family, method, metrics with intervals, costs, details."""
    rc = recall_columns(summary)
    metrics = rc + ([PR_AUC] if PR_AUC in summary.columns else [])
    multi_seed = "seeds" in summary.columns and (pd.to_numeric(summary["seeds"], errors="coerce") > 1).any()
    cols = [_Column("family", "text", "methods grouped by family (sorts in the paper's order)"), _Column("method", "text")]
    cols += [_Column(m, "num", "mean over seeds; small: confidence interval") for m in metrics]
    if "R@100%P" in summary.columns:
        cols.append(_Column("R@100%P", "num", "largest recall at precision 1"))
    if multi_seed:
        cols.append(_Column("R@1 seed std", "num", "standard deviation of Recall@1 over seeds"))
    cols += [_Column("seeds", "num"), _Column("fit s", "num", "training seconds (mean over seeds)"),
             _Column("rank s", "num", "ranking seconds (mean over seeds)"), _Column("peak MB", "num", "peak resident memory (max over seeds)"),
             _Column("provenance", "text", "parameters, training, seeds, versions, timings, memory")]
    by = {c.header: c for c in cols}
    row_attrs = []
    last_family = None
    for idx, row in summary.iterrows():
        label = str(row["label"])
        recs = matched.get(idx, [])
        fam = str(row.get("family", ""))
        order = _num(row.get("family_order", 0))
        by["family"].cells.append((_e(fam), f"{int(order) if math.isfinite(order) else 99:02d} {fam}", "text"))
        st = styles.get(label)
        mark = (f' <span title="the learned model (or a learned stage) ended no better than its initialisation on validation: '
                f'this row is an untrained model">{UNTRAINED}</span>') if bool(row.get("untrained", False)) else ""
        by["method"].cells.append(((svg_swatch(st) if st else "") + _e(label) + mark, label, "text"))
        for m in metrics:
            by[m].cells.append(_metric_cell(row, m))
        if "R@100%P" in by:
            by["R@100%P"].cells.append((_fmt(row.get("R@100%P")), _sort(row.get("R@100%P")), ""))
        if multi_seed:
            std = row.get("R@1 std") if _num(row.get("seeds")) > 1 else float("nan")  # no spread from one seed
            by["R@1 seed std"].cells.append((_fmt(std), _sort(std), ""))
        n_seeds = _num(row.get("seeds", len(recs)))
        by["seeds"].cells.append((_fmt(n_seeds, 0), _sort(n_seeds), ""))
        fit = "cached" if bool(row.get("fit_cached", False)) else _fmt(row.get("fit_s"), 1)
        by["fit s"].cells.append((fit, _sort(row.get("fit_s")), ""))
        by["rank s"].cells.append((_fmt(row.get("rank_s"), 2), _sort(row.get("rank_s")), ""))
        peaks = [_num(r.get("memory_mb", {}).get("peak_rss")) for r in recs]
        peak = max([p for p in peaks if math.isfinite(p)], default=float("nan"))
        by["peak MB"].cells.append((_fmt(peak, 0), _sort(peak), ""))
        by["provenance"].cells.append(('<button type="button" class="prov-toggle" aria-expanded="true">show</button>', "", "text"))
        row_attrs.append((label, fam != last_family, provenance(recs, row)))
        last_family = fam
    head = "".join(
        f'<th scope="col" data-type="{c.kind}" class="{"text" if c.kind == "text" else ""}"'
        + (f' title="{_e(c.tip)}"' if c.tip else "") + f">{_e(c.header)}</th>"
        for c in cols
    )
    body = []
    for i, (label, fam_start, prov) in enumerate(row_attrs):
        tds = "".join(
            f'<td data-sort="{_e(c.cells[i][1])}"' + (f' class="{c.cells[i][2]}"' if c.cells[i][2] else "") + f">{c.cells[i][0]}</td>"
            for c in cols
        )
        body.append(f'<tr class="row{" fam-start" if fam_start else ""}" data-label="{_e(label)}">{tds}</tr>')
        # full width under its row; shown without a script, hidden (and toggled by the button) with one
        body.append(f'<tr class="prov" data-for="{_e(label)}"><td colspan="{len(cols)}"><b>{_e(label)}</b>{prov}</td></tr>')
    return (f'<div class="tablewrap"><table class="results sortable grouped"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def frame_table(df: pd.DataFrame, digits: int = 3) -> str:
    """Any DataFrame as a sortable table (numbers with ``digits`` decimals, NaN as "-")."""
    cols = list(df.columns)
    numeric = {c: pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in cols}
    head = "".join(f'<th scope="col" data-type="{"num" if numeric[c] else "text"}" class="{"" if numeric[c] else "text"}">{_e(c)}</th>'
                   for c in cols)
    rows = []
    for _, r in df.iterrows():
        tds = []
        for c in cols:
            if numeric[c]:
                tds.append(f'<td data-sort="{_sort(r[c])}">{_fmt(r[c], digits)}</td>')
            else:
                tds.append(f'<td class="text">{_e("" if r[c] is None or (isinstance(r[c], float) and np.isnan(r[c])) else r[c])}</td>')
        rows.append(f"<tr>{''.join(tds)}</tr>")
    return f'<div class="tablewrap"><table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def interval_caption(g: pd.DataFrame) -> str:
    """How the intervals of a group were made (and what the shading means), and what † marks."""
    note = (f" {UNTRAINED}: the learned model (or a learned stage) ended no better than its initialisation on validation "
            "(an untrained model)." if "untrained" in g.columns and g["untrained"].fillna(False).astype(bool).any() else "")
    return _interval_caption(g) + note


def _interval_caption(g: pd.DataFrame) -> str:
    if "ci block" not in g.columns or not g["ci block"].notna().any():
        return ("No confidence intervals: the predictions files of these results are missing or predate per-query "
                "results (re-run with <code>--force</code>). Values are means over seeds.")
    row = g[g["ci block"].notna()].iloc[0]
    level = 100 * _num(row.get("ci level", 0.95))
    block = int(row["ci block"])
    how = ("chosen from the data: the largest Politis&ndash;White estimate over the methods' top-1 hits, and at least the "
           f"sequence length L = {_e(row.get('seq_len'))}" if bool(row.get("ci block auto", False)) else "set by the user")
    return (f"Values are means over seeds. Small numbers: {level:g} % percentile intervals from a circular block bootstrap over "
            f"the split's {int(_num(row['ci queries']))} queries in traverse order ({int(_num(row['ci n_boot']))} replicates, blocks of {block} consecutive "
            f"queries, {how}): neighbouring queries share sequence frames and stretches of route, so they are resampled "
            "together. They show the uncertainty from the finite query set, not from training randomness"
            + (" (the seed std column shows that)" if "R@1 std" in g.columns and (pd.to_numeric(g.get("seeds"), errors="coerce") > 1).any()
               else "") + ". <b>Bold, green</b>: best in its column; <span style=\"background:var(--tie)\">light green</span>: "
            "indistinguishable from the best (the paired block-bootstrap interval of the difference contains 0); hover a value "
            "for the interval of its difference and the exact McNemar p-value, which assumes independent queries and so "
            "overstates significance here. Click a column header to sort, <i>show</i> for how a row was made.")


def _group_title(values: dict[str, Any], g: pd.DataFrame) -> str:
    known = ("dataset", "dataset_fingerprint", "split", "query", "seq_len", "boundary")
    parts = [f"split {values.get('split')}", f"query {values.get('query')}", f"L = {values.get('seq_len')}",
             f"boundary {values.get('boundary')}"]
    parts += [f"{k} {v}" for k, v in values.items() if k not in known]
    n = int(_num(g["n_evaluated"].iloc[0])) if "n_evaluated" in g.columns and len(g) else None
    fp = str(values.get("dataset_fingerprint"))[:8]
    return ", ".join(_e(p) for p in parts) + (f" &middot; {n} evaluated queries" if n is not None else "") + f" &middot; data {_e(fp)}"


def _figure(title: str, png: bytes | Path, caption: str = "") -> str:
    return (f'<figure><img alt="{_e(title)}" src="{_png_data(png)}"><figcaption><b>{_e(title)}.</b> {caption}</figcaption></figure>')


FIGURE_CAPTIONS = {
    "curves": ("Recall@N, Recall@1 vs localisation radius, precision-recall",
               "Recall@N is the mean over seeds with its interval as a band (single-match methods: Recall@1 only, with an error "
               "bar); the radius and PR curves are of one seed. Each method keeps its colour, marker and line style (line style = "
               "family) in every plot and in the tables."),
    "distance-matrix": ("Distance matrix with each method's matches",
                        "A crop of the single-image distance matrix (dark = similar) with the ground truth in blue, one panel per "
                        "method: its top-1 match of each query, green if correct, a red cross if wrong."),
}


def _plot_kind(path: Path) -> str:
    return next((k for k in FIGURE_CAPTIONS if path.stem.endswith(k)), "")


def render_html(
    summary: pd.DataFrame,
    records: list[dict[str, Any]],
    figures: dict[tuple, list[Path]] | None = None,
    styles: dict[str, Style] | None = None,
    extra_tables: Sequence[ExtraTable] = (),
    extra_figures: Sequence[ExtraFigure] = (),
    title: str = "vprbench results",
) -> str:
    """The page as a string (see :func:`write_html`)."""
    frame = records_frame(records)
    styles = styles_for(frame) if styles is None else styles
    matched = match_records(summary, frame, records)
    figs = {norm_key(k): v for k, v in (figures or {}).items()}
    desc = {r["job"]["dataset"]: r.get("dataset", {}).get("description", "") for r in records}
    group_keys = [k for k in GROUP_KEYS if k in summary.columns]
    datasets = list(dict.fromkeys(summary["dataset"])) if "dataset" in summary.columns else []
    versions = sorted({str(r.get("environment", {}).get("vprbench") or r.get("environment", {}).get("packages", {}).get("vprbench", "?"))
                       for r in records})
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
           f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
           f"<header><h1>{_e(title)}</h1><p class=\"meta\">{len(records)} result records, {len(summary)} table rows, "
           f"{len(datasets)} dataset(s); made with vprbench {_e(', '.join(versions))} on {now}. This page is self-contained: "
           "it loads nothing from the network.</p></header>"]
    toc = []
    for ds in datasets:
        toc.append(f'<li><a href="#ds-{_slug(ds)}">{_e(ds)}</a></li>')
    trailing_tables = [t for t in extra_tables if not any(d in datasets for d in t.datasets)]
    trailing_figs = [f for f in extra_figures if not any(d in datasets for d in f.datasets)]
    if trailing_tables or trailing_figs:
        toc.append('<li><a href="#more">more results</a></li>')
    out.append(f"<nav><b>Contents</b><ul>{''.join(toc)}</ul></nav>")
    for ds in datasets:
        out.append(f'<section id="ds-{_slug(ds)}"><h2>{_e(ds)}</h2>')
        if desc.get(ds):
            out.append(f'<p class="meta">{_e(desc[ds])}</p>')
        sub = summary[summary["dataset"] == ds]
        for key, g in sub.groupby(group_keys, sort=False, dropna=False):
            key = key if isinstance(key, tuple) else (key,)
            values = dict(zip(group_keys, key))
            out.append(f"<h3>{_group_title(values, g)}</h3>")
            out.append(results_table(g, matched, styles))
            out.append(f'<p class="caption">{interval_caption(g)}</p>')
            for path in figs.get(norm_key(key), []):
                if Path(path).is_file():
                    cap_title, cap = FIGURE_CAPTIONS.get(_plot_kind(Path(path)), (Path(path).stem, ""))
                    out.append(_figure(cap_title, Path(path), cap))
        for t in extra_tables:
            if ds in t.datasets:
                out.append(f"<h3>{_e(t.title)}</h3>{frame_table(t.frame)}" + (f'<p class="caption">{t.caption}</p>' if t.caption else ""))
        for f in extra_figures:
            if ds in f.datasets:
                out.append(_figure(f.title, f.png, f.caption))
        out.append("</section>")
    if trailing_tables or trailing_figs:
        out.append('<section id="more"><h2>More results</h2>')
        for t in trailing_tables:
            out.append(f"<h3>{_e(t.title)}</h3>{frame_table(t.frame)}" + (f'<p class="caption">{t.caption}</p>' if t.caption else ""))
        for f in trailing_figs:
            out.append(_figure(f.title, f.png, f.caption))
        out.append("</section>")
    out.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(out)


def write_html(path: Path, summary: pd.DataFrame, records: list[dict[str, Any]], **kwargs: Any) -> Path:
    """Write the self-contained results page to ``path`` (atomically); keyword arguments as :func:`render_html`."""
    text = render_html(summary, records, **kwargs)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def published_tables(exp: Any, records: list[dict[str, Any]], registry: Any) -> list[ExtraTable]:
    """An experiment's tables with the published numbers beside ours, each in its dataset's section."""
    from vprbench.reporting.published import compare

    tables = []
    for run, table, frame, title in compare(exp, records, registry):
        cols = ["group", "row"] + [c for n in table.recall_at for c in (f"R@{n}", f"R@{n} std", f"R@{n} paper", f"R@{n} diff")]
        shown = frame[cols].rename(columns={"row": "method", **{f"R@{n}": f"R@{n} ours" for n in table.recall_at}})
        tables.append(ExtraTable(title=f"{exp.name}: {table.title or 'table ' + table.id}", frame=shown, datasets=[run.dataset.name],
                                 caption=title))
    return tables
