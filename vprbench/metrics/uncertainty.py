"""How sure a metric over queries is: block bootstrap intervals and paired comparisons.

Queries of a traverse are not independent: neighbouring queries share frames of their sequence
windows and see the same stretch of route (a tunnel, an aliased section, a glare spell), so their
hits are correlated. Resampling single queries (the iid bootstrap) then gives intervals that are
too narrow. Here the queries are resampled in contiguous blocks (the circular block bootstrap of
Politis & Romano 1992, or the moving block bootstrap of Kunsch 1989), in query order.

A resample is represented by its weights: ``w[b, q]`` = how often query ``q`` is drawn in
replicate ``b`` (the replicate's data set is query ``q`` repeated ``w[b, q]`` times). Every
statistic here is a function of these weights, so one resampling serves every method evaluated on
the same queries, which is what makes comparisons *paired*.

Percentile intervals from few effective blocks run a little narrow: on generated hits correlated
over ~10 queries, 800 queries and the automatic block length, a nominal 90 % interval covers the
true recall about 84 % of the time (the iid bootstrap: about 50 %); see tests/test_uncertainty.py.

Seeds are a separate source of variation (training randomness): these functions describe the
uncertainty from the finite query set only, for a fixed method (or the mean over fixed seeds).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Bootstrap replicates by default (enough for stable 95 % percentile endpoints, about +-0.3 % of
#: the interval width in Monte-Carlo error for a Recall@N on ~1000 queries).
DEFAULT_N_BOOT = 2000
#: Coverage of the intervals by default.
DEFAULT_LEVEL = 0.95
#: Replicates drawn together from the generator: results do not depend on the memory budget.
_DRAW_GROUP = 64


def _check(n: int, block_length: int, n_boot: int) -> None:
    if n < 1:
        raise ValueError(f"block bootstrap needs at least one query, got n={n}")
    if not 1 <= block_length <= n:
        raise ValueError(f"block length must be in 1..{n} (the number of queries), got {block_length}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")


def _draw_starts(n: int, block_length: int, n_boot: int, seed: int, circular: bool) -> list[np.ndarray]:
    """Block start positions, [n_boot, ceil(n / block_length)] in groups of ``_DRAW_GROUP`` rows."""
    rng = np.random.default_rng(seed)
    n_blocks = -(-n // block_length)
    high = n if circular else n - block_length + 1
    return [rng.integers(0, high, size=(min(_DRAW_GROUP, n_boot - i), n_blocks)) for i in range(0, n_boot, _DRAW_GROUP)]


def block_bootstrap_indices(n: int, block_length: int, n_boot: int, seed: int = 0, circular: bool = True) -> np.ndarray:
    """Resampled query indices, [n_boot, n] int64: concatenated blocks of consecutive queries.

    Each replicate joins ``ceil(n / block_length)`` blocks of ``block_length`` consecutive indices
    and keeps the first ``n``. Circular: a block starting near the end wraps to the start, so every
    query is equally likely to be drawn. Moving (``circular=False``): blocks lie inside 0..n-1, so
    the first and last ``block_length - 1`` queries are drawn less often. ``block_length=1`` is the
    ordinary (iid) bootstrap. Memory: n_boot * n * 8 bytes; :func:`block_bootstrap` works in chunks.
    """
    _check(n, block_length, n_boot)
    starts = np.concatenate(_draw_starts(n, block_length, n_boot, seed, circular))
    return _indices(starts, n, block_length)


def _indices(starts: np.ndarray, n: int, block_length: int) -> np.ndarray:
    idx = (starts[:, :, None] + np.arange(block_length)) % n
    return idx.reshape(len(starts), -1)[:, :n]


def _weights(starts: np.ndarray, n: int, block_length: int) -> np.ndarray:
    idx = _indices(starts, n, block_length)
    rows = len(starts)
    flat = (idx + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def block_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    n: int,
    block_length: int,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    circular: bool = True,
    memory_mb: float = 64.0,
) -> np.ndarray:
    """Bootstrap replicates of ``statistic``, [n_boot, ...].

    Args:
        statistic: maps resampling weights [b, n] (float, how often each query is drawn) to the
            statistic of each replicate, [b, ...].
        n: number of queries (in traverse order).
        block_length: queries per block (frames, when there is one query per frame).
        n_boot: replicates.
        seed: the replicates are a function of (n, block_length, n_boot, seed, circular) only, so
            two statistics bootstrapped with the same arguments are paired.
        circular: circular (default) or moving block bootstrap, see :func:`block_bootstrap_indices`.
        memory_mb: budget for one chunk of weights (the statistic's temporaries come on top).
    """
    _check(n, block_length, n_boot)
    groups = _draw_starts(n, block_length, n_boot, seed, circular)
    per_chunk = max(1, int(memory_mb * 2**20 // (n * 8 * 3)) // _DRAW_GROUP) * _DRAW_GROUP
    out = []
    for i in range(0, len(groups), per_chunk // _DRAW_GROUP):
        starts = np.concatenate(groups[i : i + per_chunk // _DRAW_GROUP])
        out.append(np.asarray(statistic(_weights(starts, n, block_length))))
    return np.concatenate(out)


def percentile_interval(replicates: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval along axis 0: (lower, upper), each of shape replicates.shape[1:].

    Replicates that are NaN (a statistic undefined on that resample) are ignored; all-NaN gives NaN.
    """
    if not 0 < level < 1:
        raise ValueError(f"interval level must be in (0, 1), got {level}")
    reps = np.asarray(replicates, dtype=np.float64)
    alpha = (1 - level) / 2
    if reps.size == 0 or np.isnan(reps).all(axis=0).all():
        nan = np.full(reps.shape[1:], np.nan)
        return nan, nan.copy()
    with warnings.catch_warnings():  # all-NaN columns are meant to give NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanpercentile(reps, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return lo, hi


def weighted_recall(weights: np.ndarray, hits: np.ndarray, evaluated: np.ndarray) -> np.ndarray:
    """Recall of each resample: sum(w * hit * evaluated) / sum(w * evaluated).

    Args:
        weights: [b, n] resampling weights.
        hits: [n] or [n, m] bool, the query's top N holds a positive (m metrics, e.g. N = 1, 5, 10).
        evaluated: [n] bool, the query counts (has a positive, inside the evaluation mask).

    Returns:
        [b] or [b, m]; NaN for a resample without an evaluated query.
    """
    ev = np.asarray(evaluated, dtype=np.float64)
    h = np.asarray(hits, dtype=np.float64)
    num = weights @ (h * (ev if h.ndim == 1 else ev[:, None]))
    den = weights @ ev
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / (den if h.ndim == 1 else den[:, None])


def weighted_pr_auc(
    weights: np.ndarray,
    confidence: np.ndarray,
    correct: np.ndarray,
    has_positive: np.ndarray,
    ignore: np.ndarray | None = None,
) -> np.ndarray:
    """Area under the precision-recall curve of each resample, [b].

    The same definition as :func:`vprbench.metrics.pr.precision_recall` (step-wise average
    precision over distinct confidence thresholds) applied to the resampled query set: a query
    drawn twice counts twice. NaN for a resample without a query that has a positive.

    Args:
        weights: [b, n] resampling weights.
        confidence: [n] top-1 confidence (higher = more confident, -inf = no match).
        correct: [n] bool, the top-1 match is a positive.
        has_positive: [n] bool, the query counts towards recall.
        ignore: [n] bool, matches neither rewarded nor punished (only soft-positive).
    """
    conf = np.asarray(confidence, dtype=np.float64)
    keep = np.isfinite(conf)
    if ignore is not None:
        keep &= ~np.asarray(ignore, dtype=bool)
    n_pos = weights @ np.asarray(has_positive, dtype=np.float64)
    order = np.flatnonzero(keep)[np.argsort(-conf[keep], kind="stable")]
    if order.size == 0:
        return np.where(n_pos > 0, 0.0, np.nan)
    c = conf[order]
    ok = np.asarray(correct, dtype=bool)[order]
    w = weights[:, order]
    tp = np.cumsum(w * ok, axis=1)
    drawn = np.cumsum(w, axis=1)
    # one point per distinct threshold: the last query of each run of equal confidences
    last = np.r_[np.flatnonzero(np.diff(c) != 0), c.size - 1]
    tp, drawn = tp[:, last], drawn[:, last]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(drawn > 0, tp / drawn, 0.0)
        gained = np.diff(tp, axis=1, prepend=0.0)
        return np.where(n_pos > 0, (gained * precision).sum(axis=1) / n_pos, np.nan)


def auto_block_length(x: np.ndarray) -> float:
    """Data-driven block length for the circular block bootstrap of a mean, in samples.

    The rule of Politis & White (2004) with the correction of Patton, Politis & White (2009):
    b = (2 G^2 / D)^(1/3) n^(1/3), G and D estimated from the autocovariances with a flat-top lag
    window whose bandwidth is twice the lag after which the correlogram is negligible
    (|rho| < 2 sqrt(log10(n) / n) for 5 consecutive lags). Returns 1.0 for a series without
    variance or correlation (the iid bootstrap); at most min(3 sqrt(n), n / 3).
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    if n < 4:
        return 1.0
    e = x - x.mean()
    var = float(e @ e) / n
    if var <= 1e-12:
        return 1.0
    kn = max(5, int(math.sqrt(math.log10(n))))
    m_max = math.ceil(math.sqrt(n)) + kn
    lags = min(m_max + kn, n - 1)
    f = np.fft.rfft(e, 2 * n)
    acv = np.fft.irfft(f * np.conj(f))[: lags + 1] / n
    rho = np.abs(acv[1:] / acv[0])
    below = rho < 2 * math.sqrt(math.log10(n) / n)
    runs = np.convolve(below.astype(int), np.ones(kn, dtype=int), "valid") == kn  # runs[i]: lags i+1..i+kn negligible
    m_hat = int(np.argmax(runs)) if runs.any() else m_max
    big_m = min(max(2 * m_hat, 1), lags)
    k = np.arange(-big_m, big_m + 1)
    t = np.abs(k) / big_m
    lam = np.where(t <= 0.5, 1.0, 2 * (1 - t))
    r = acv[np.abs(k)]
    g = float((lam * r).sum())
    big_g = float((lam * np.abs(k) * r).sum())
    if g <= 0 or big_g == 0:
        return 1.0
    d_cb = 4 / 3 * g**2
    b = (2 * big_g**2 / d_cb) ** (1 / 3) * n ** (1 / 3)
    return float(np.clip(b, 1.0, min(3 * math.sqrt(n), n / 3)))


def default_block_length(series: list[np.ndarray], seq_len: int = 1) -> int:
    """The block length used when none is given: one per table, in queries (frames).

    The largest :func:`auto_block_length` over the given per-query series (e.g. every method's
    top-1 hits on the evaluated queries, in query order), and at least ``seq_len``: queries less
    than a sequence length apart share frames of their windows, so their results are correlated
    whatever the data says. The largest, not a typical value, because a block shorter than a
    method's correlation length makes its interval too narrow (see the coverage tests), while a
    longer block costs only a little precision of the interval's endpoints.
    """
    lengths = [auto_block_length(s) for s in series if np.asarray(s).size]
    n = min((np.asarray(s).size for s in series), default=1)
    b = max([math.ceil(v) for v in lengths] + [int(seq_len), 1])
    return int(min(b, max(1, n // 2)))


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two methods' per-query hits on the same queries.

    Attributes:
        only_a: queries that method a gets right and b wrong.
        only_b: queries that b gets right and a wrong.
        pvalue: two-sided exact p-value (binomial test of only_a against (only_a + only_b) / 2);
            1.0 when the methods never disagree. It assumes independent queries: with correlated
            neighbouring queries it is too small, so read it next to the block-bootstrap interval.
    """

    only_a: int
    only_b: int
    pvalue: float


def mcnemar_exact(hits_a: np.ndarray, hits_b: np.ndarray, evaluated: np.ndarray | None = None) -> McNemar:
    """Exact McNemar test on [n] bool per-query hits of two methods (``evaluated`` restricts the queries)."""
    from scipy.stats import binomtest

    a = np.asarray(hits_a, dtype=bool)
    b = np.asarray(hits_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs hits of the same queries, got shapes {a.shape} and {b.shape}")
    if evaluated is not None:
        m = np.asarray(evaluated, dtype=bool)
        a, b = a[m], b[m]
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return McNemar(only_a, only_b, 1.0)
    return McNemar(only_a, only_b, float(binomtest(only_a, only_a + only_b, 0.5).pvalue))
