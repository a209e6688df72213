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
from vprbench.metrics.uncertainty import block_bootstrap, block_bootstrap_indices, weighted_pr_auc, weighted_recall

N, N_BOOT, BLOCK = 3000, 2000, 20


@pytest.fixture(autouse=True)
def _only_when_enabled(request):
    cfg = request.config
    if cfg.getoption("benchmark_disable", default=False) and not cfg.getoption("benchmark_enable", default=False):
        pytest.skip("benchmarks run only with --benchmark-enable")


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
