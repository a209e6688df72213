"""Validation scores of a model and the choice of the kept epoch.

Validation ranks the validation split (the run's L and boundary policy) and scores the top
:data:`VAL_TOP_K` references of every query that has a positive (and a window under the policy):

* ``recall@1`` / ``recall@5`` / ``recall@10``: fraction with a positive among the top N;
* ``mrr``: mean reciprocal rank of the first positive, 0 when it is not in the top 20. It keeps
  moving after Recall@5 saturates (a 200-frame route reaches Recall@5 = 1.0 before training), so
  the ``cpu`` presets select by it.

The kept epoch maximises the key (selected score, MRR, epoch): ties of the selected score go to
the higher MRR, remaining ties to the *later* epoch (it saw more training and is no worse on
validation). The untrained model is scored as epoch 0, so training never ends below its start on
validation; a model whose kept epoch is not strictly better than epoch 0 on (score, MRR) is
reported as ``untrained``. Early stopping counts epochs without a strict improvement of
(score, MRR).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from vprbench.core.errors import ConfigError

#: References scored per validation query (MRR counts a first positive up to this rank).
VAL_TOP_K = 20
METRICS: tuple[str, ...] = ("recall@1", "recall@5", "recall@10", "mrr")


def validation_scores(hits: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Scores of a ranking from ``hits`` [n_query, K] (bool, ``hits[q, k]``: k-th reference of q is a positive).

    Recall@N is NaN when N > K (fewer references ranked), as :func:`vprbench.metrics.recall.recall_at_n`.

    ``mask`` [n_query] bool: the queries to score (with a positive, evaluated under the policy).

    >>> validation_scores(np.array([[False, True], [True, False], [False, False]]))["mrr"]
    0.5
    """
    hits = np.asarray(hits, dtype=bool)
    if mask is not None:
        hits = hits[np.asarray(mask, dtype=bool)]
    if hits.shape[0] == 0:
        return {m: float("nan") for m in METRICS}
    found = hits.any(axis=1)
    first = np.where(found, hits.argmax(axis=1), np.iinfo(np.int64).max)
    # as Recall@N elsewhere: undefined (NaN) when fewer than N references were ranked
    out = {f"recall@{n}": float((first < n).mean()) if n <= hits.shape[1] else float("nan") for n in (1, 5, 10)}
    out["mrr"] = float(np.where(found, 1.0 / (first + 1.0), 0.0).mean())
    return out


def selection_key(scores: Mapping[str, float], select: str) -> tuple[float, float]:
    """(selected score, MRR) of one epoch's validation scores; NaN (no scorable query) counts as -inf."""
    if select not in scores:
        raise ConfigError(f"validation gives {sorted(scores)}, not the selection score {select!r}; choose one of those")

    def num(v: float | None) -> float:
        return -np.inf if v is None or np.isnan(v) else float(v)

    return num(scores[select]), num(scores.get("mrr", scores[select]))


def improves(key: tuple[float, float], best: tuple[float, float]) -> bool:
    """Strictly better on (score, MRR), lexicographically."""
    return key > best
