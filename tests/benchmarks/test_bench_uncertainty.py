"""Benchmarks of the block bootstrap behind the report's confidence intervals (pytest-benchmark).

Skipped unless benchmarks are enabled: ``pytest tests/benchmarks --benchmark-enable``. The workload
is one table row of a Nordland-sized test split: 3000 queries, 2000 replicates, blocks of 20, all
four Recall@N and PR-AUC. ``test_explicit_resampling_loop`` is the naive reference (resample the
arrays, call the metric functions) on 200 replicates: multiply its time by 10 to compare.
"""

from __future__ import annotations

import numpy as np
import pytest

from vprbench.metrics.pr import precision_recall
from vprbench.metrics.uncertainty import block_bootstrap, block_bootstrap_indices, percentile_interval, weighted_pr_auc, weighted_recall

N, N_BOOT, BLOCK = 3000, 2000, 20


@pytest.fixture(scope="module")
def queries():
    rng = np.random.default_rng(0)
    first_hit = np.where(rng.random(N) < 0.6, 0, rng.integers(-1, 20, N))
    evaluated = rng.random(N) < 0.97
    confidence = rng.normal(size=N) + (first_hit == 0)
    return first_hit, evaluated, confidence


def test_block_bootstrap_recall_and_pr_auc(benchmark, queries):
    first_hit, evaluated, confidence = queries
    hits = np.stack([(first_hit >= 0) & (first_hit < n) for n in (1, 5, 10, 20)], axis=1)

    def statistic(w):
        return np.c_[weighted_recall(w, hits, evaluated), weighted_pr_auc(w, confidence, first_hit == 0, evaluated)]

    reps = benchmark(block_bootstrap, statistic, N, BLOCK, N_BOOT, 0)
    assert reps.shape == (N_BOOT, 5)
    # every replicate is a recall / an area in [0, 1], Recall@N grows with N, and the 95 % interval holds the estimate
    point = np.r_[[hits[evaluated, j].mean() for j in range(4)], precision_recall(confidence, first_hit == 0, evaluated).auc]
    np.testing.assert_allclose(statistic(np.ones((1, N)))[0], point, rtol=1e-12)
    assert ((reps >= 0) & (reps <= 1)).all() and (np.diff(reps[:, :4], axis=1) >= 0).all()
    lo, hi = percentile_interval(reps)
    assert ((lo < point) & (point < hi)).all(), (lo, point, hi)
    assert np.abs(reps.mean(0) - point).max() < 0.01


def test_explicit_resampling_loop(benchmark, queries):
    first_hit, evaluated, confidence = queries

    def loop():
        out = []
        for row in block_bootstrap_indices(N, BLOCK, N_BOOT // 10, seed=0):
            fh, ev, conf = first_hit[row], evaluated[row], confidence[row]
            out.append([((fh[ev] >= 0) & (fh[ev] < n)).mean() for n in (1, 5, 10, 20)]
                       + [precision_recall(conf, fh == 0, ev).auc])
        return np.array(out)

    reps = benchmark(loop)
    assert reps.shape == (N_BOOT // 10, 5)
    # the weighted fast path gives the same replicates (same n, block length, n_boot and seed)
    hits = np.stack([(first_hit >= 0) & (first_hit < n) for n in (1, 5, 10, 20)], axis=1)

    def statistic(w):
        return np.c_[weighted_recall(w, hits, evaluated), weighted_pr_auc(w, confidence, first_hit == 0, evaluated)]

    np.testing.assert_allclose(reps, block_bootstrap(statistic, N, BLOCK, N_BOOT // 10, 0), rtol=1e-9, atol=1e-12)
