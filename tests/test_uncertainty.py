"""Block bootstrap intervals and paired tests against references: scipy's bootstrap, hand counts,
explicit resampling, and the coverage of intervals on generated data with a known true value."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.signal import lfilter

from vprbench.metrics.pr import precision_recall
from vprbench.metrics.uncertainty import (
    auto_block_length,
    block_bootstrap,
    block_bootstrap_indices,
    default_block_length,
    mcnemar_exact,
    percentile_interval,
    weighted_pr_auc,
    weighted_recall,
)


def counts(idx: np.ndarray, n: int) -> np.ndarray:
    return np.stack([np.bincount(row, minlength=n) for row in idx]).astype(float)


def test_circular_blocks_are_consecutive_and_wrap():
    n, b = 10, 4
    idx = block_bootstrap_indices(n, b, n_boot=50, seed=3)
    assert idx.shape == (50, n) and idx.min() >= 0 and idx.max() < n
    for row in idx:
        for start in range(0, n, b):  # each block is start, start+1, ... modulo n
            block = row[start : start + b]
            assert np.array_equal(block, (block[0] + np.arange(len(block))) % n)
    moving = block_bootstrap_indices(n, b, n_boot=200, seed=3, circular=False)
    blocks = moving[:, :8].reshape(-1, b)
    assert (np.diff(blocks, axis=1) == 1).all()  # never wraps
    # circular: every query equally often in expectation; moving: the ends less often
    freq = np.bincount(block_bootstrap_indices(n, b, n_boot=4000, seed=1).ravel(), minlength=n) / (4000 * n)
    assert np.allclose(freq, 1 / n, atol=0.01)
    freq_m = np.bincount(block_bootstrap_indices(n, b, n_boot=4000, seed=1, circular=False).ravel(), minlength=n)
    assert freq_m[0] < 0.5 * freq_m[n // 2]


def test_weights_match_indices_and_chunking_does_not_change_results():
    n, b = 37, 5
    idx = block_bootstrap_indices(n, b, n_boot=300, seed=7)
    w_all = block_bootstrap(lambda w: w, n, b, n_boot=300, seed=7)
    assert np.array_equal(w_all, counts(idx, n))
    w_small = block_bootstrap(lambda w: w, n, b, n_boot=300, seed=7, memory_mb=0.001)  # one draw group per chunk
    assert np.array_equal(w_small, w_all)
    assert not np.array_equal(block_bootstrap(lambda w: w, n, b, n_boot=300, seed=8), w_all)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="block length must be in 1..5"):
        block_bootstrap_indices(5, 6, 10)
    with pytest.raises(ValueError, match="n_boot"):
        block_bootstrap(lambda w: w, 5, 1, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        percentile_interval(np.zeros((10, 1)), level=95)


def test_iid_case_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.random(300) < 0.7
    ev = np.ones_like(x)
    ours = percentile_interval(block_bootstrap(lambda w: weighted_recall(w, x, ev), x.size, 1, n_boot=4000, seed=1))
    ref = stats.bootstrap((x.astype(float),), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(2)).confidence_interval
    # Monte-Carlo error of a 2.5 % quantile with 4000 replicates is about 0.003 here
    assert abs(ours[0] - ref.low) < 0.012 and abs(ours[1] - ref.high) < 0.012
    # and both agree with the normal approximation sqrt(p(1-p)/n)
    half = 1.96 * np.sqrt(x.mean() * (1 - x.mean()) / x.size)
    assert abs((ours[1] - ours[0]) / 2 - half) < 0.01


def test_weighted_recall_equals_recall_of_the_resampled_queries():
    rng = np.random.default_rng(1)
    n = 60
    hits = rng.random((n, 3)) < [0.3, 0.6, 0.8]
    ev = rng.random(n) < 0.8
    idx = block_bootstrap_indices(n, 6, n_boot=20, seed=0)
    got = weighted_recall(counts(idx, n), hits, ev)
    for b, row in enumerate(idx):
        want = hits[row][ev[row]].mean(axis=0)
        assert np.allclose(got[b], want)
    assert np.allclose(weighted_recall(counts(idx, n), hits[:, 0], ev), got[:, 0])
    assert np.isnan(weighted_recall(np.ones((1, n)), hits[:, 0], np.zeros(n, bool))).all()


def test_weighted_pr_auc_equals_pr_auc_of_the_resampled_queries():
    rng = np.random.default_rng(2)
    n = 80
    conf = np.round(rng.normal(size=n), 1)  # ties: equal confidences share a threshold
    conf[rng.random(n) < 0.1] = -np.inf  # no match
    correct = rng.random(n) < 0.6
    has_pos = rng.random(n) < 0.9
    ignore = rng.random(n) < 0.1
    idx = block_bootstrap_indices(n, 4, n_boot=30, seed=5)
    w = counts(idx, n)
    for ign in (None, ignore):
        got = weighted_pr_auc(w, conf, correct, has_pos, ign)
        for b, row in enumerate(idx):
            want = precision_recall(conf[row], correct[row], has_pos[row], None if ign is None else ign[row]).auc
            assert got[b] == pytest.approx(want, abs=1e-12)
    ones = np.ones((1, n))
    assert weighted_pr_auc(ones, conf, correct, has_pos)[0] == pytest.approx(precision_recall(conf, correct, has_pos).auc)


def test_mcnemar_exact_on_hand_counts():
    def hits(both, only_a, only_b, neither):
        a = [1] * both + [1] * only_a + [0] * only_b + [0] * neither
        b = [1] * both + [0] * only_a + [1] * only_b + [0] * neither
        return np.array(a, bool), np.array(b, bool)

    r = mcnemar_exact(*hits(50, 1, 7, 10))
    assert (r.only_a, r.only_b) == (1, 7)
    assert r.pvalue == pytest.approx(2 * (1 + 8) / 2**8)  # 2 P(X <= 1), X ~ Bin(8, 1/2)
    assert mcnemar_exact(*hits(3, 0, 5, 0)).pvalue == pytest.approx(2 / 2**5)
    assert mcnemar_exact(*hits(3, 4, 4, 2)).pvalue == pytest.approx(1.0)
    assert mcnemar_exact(*hits(3, 0, 0, 2)) == mcnemar_exact(*hits(5, 0, 0, 0))  # no disagreement: p = 1
    a, b = hits(0, 1, 7, 0)
    assert mcnemar_exact(a, b, evaluated=np.arange(8) < 2).only_b == 1  # only the evaluated queries count
    with pytest.raises(ValueError, match="same queries"):
        mcnemar_exact(a, b[:3])


def ar1_hits(rng: np.random.Generator, n_series: int, n: int, phi: float, p: float) -> np.ndarray:
    """Stationary AR(1) latent thresholded at its p-quantile: P(hit) = p exactly, correlated in time."""
    e = rng.normal(size=(n_series, n))
    e[:, 0] /= np.sqrt(1 - phi**2)  # start in the stationary distribution
    z = lfilter([np.sqrt(1 - phi**2)], [1, -phi], e, axis=1)
    return z < stats.norm.ppf(p)


def coverage(data: np.ndarray, p: float, block: int | None, level: float = 0.9) -> float:
    covered = 0
    ev = np.ones(data.shape[1], bool)
    for i, x in enumerate(data):
        b = block or default_block_length([x])
        lo, hi = percentile_interval(block_bootstrap(lambda w: weighted_recall(w, x, ev), x.size, b, n_boot=400, seed=i), level)
        covered += lo <= p <= hi
    return covered / len(data)


def test_intervals_cover_the_true_value_at_the_nominal_rate():
    rng = np.random.default_rng(11)
    p, n, trials = 0.7, 400, 150
    iid = rng.random((trials, n)) < p
    cov_iid = coverage(iid, p, block=1)
    assert 0.83 <= cov_iid <= 0.96  # nominal 0.90; binomial sd over 150 trials ~0.025
    assert 0.83 <= coverage(iid, p, block=None) <= 0.96  # the automatic block length is harmless without correlation

    # correlated over ~10 queries (like hits along a route): effective sample ~10x smaller
    correlated = ar1_hits(rng, trials, 2 * n, phi=0.8, p=p)
    cov_naive = coverage(correlated, p, block=1)
    cov_block = coverage(correlated, p, block=None)
    assert cov_naive < 0.65  # the iid bootstrap ignores the correlation: far too narrow
    # block bootstrap: near nominal (percentile block intervals run a little narrow with only
    # ~40 blocks: about 0.84 here, 0.85 for phi=0.9 on 1000 queries, 0.79 on 400)
    assert cov_block >= 0.78 and cov_block > cov_naive + 0.2


def test_auto_block_length_follows_the_correlation():
    rng = np.random.default_rng(4)
    assert auto_block_length(rng.random(2000) < 0.5) < 3
    short = auto_block_length(ar1_hits(rng, 1, 2000, 0.5, 0.5)[0])
    long = auto_block_length(ar1_hits(rng, 1, 2000, 0.95, 0.5)[0])
    assert 1 < short < long <= 3 * np.sqrt(2000)
    assert auto_block_length(np.ones(100)) == 1.0  # no variance
    # blocks of a constant value repeated: correlation length ~ the run length
    runs = np.repeat(rng.random(100) < 0.5, 20)
    assert auto_block_length(runs) > 10
    assert default_block_length([rng.random(500) < 0.5], seq_len=7) == 7  # a window's overlap at least
    assert default_block_length([runs[:40]], seq_len=1) <= 20  # at most half the queries
