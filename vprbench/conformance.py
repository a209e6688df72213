"""The conformance check every method plugin must pass (like scikit-learn's ``check_estimator``).

:func:`check_method` runs a method on a tiny generated dataset and returns the problems found:
ranking shapes and ranges, ascending distances, determinism under a seed, no use of the
evaluation split's positions (ground truth must not leak into ranking), and better-than-chance
recall. ``vprbench check NAME`` runs it from the command line ("mock run" of a new plugin).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import BenchmarkDataset, SplitData
from .method import Method, Ranking, RunContext
from .metrics import recall_at_n


def tiny_dataset() -> BenchmarkDataset:
    """The tiny generated dataset of the conformance check (the ``synth-tiny`` preset)."""
    from .catalog import load_dataset

    return load_dataset("synth-tiny")


def _run(cls: type[Method], params: dict[str, Any], ds: BenchmarkDataset, ctx: RunContext, test: SplitData) -> Ranking:
    method = cls(**params)
    if method.info.trains:
        method.fit(ds.split("train"), ds.split("val") if "val" in ds.splits else None, ctx)
    return method.rank(test, ctx)


def _scramble_positions(split: SplitData, rng: np.random.Generator) -> SplitData:
    """The split with random query/reference positions: rankings must not change."""
    q = replace(split.query, positions=rng.uniform(-1e6, 1e6, split.query.positions.shape))
    r = replace(split.reference, positions=rng.uniform(-1e6, 1e6, split.reference.positions.shape))
    return replace(split, query=q, reference=r)


def check_method(cls: type[Method], dataset: BenchmarkDataset | None = None, seq_len: int = 5, top_k: int = 10,
                 min_recall: float = 0.3) -> list[str]:
    """Run the conformance checks on method class ``cls``; return a list of problems (empty = pass)."""
    ds = dataset or tiny_dataset()
    test = ds.split("test")
    params = dict(cls.info.smoke_params)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        def ctx(seed: int = 0) -> RunContext:
            return RunContext(seed=seed, seq_len=seq_len, top_k=top_k, cache_dir=Path(tmp) / f"cache{seed}",
                              dataset_fingerprint=ds.fingerprint)

        first = _run(cls, params, ds, ctx(), test)
        try:
            first.validate(len(test.query), len(test.reference), cls.info.name)
        except Exception as e:  # noqa: BLE001 - report, don't raise
            problems.append(str(e))
            return problems
        k_expected = 1 if cls.info.single_match else min(top_k, len(test.reference))
        if first.k != k_expected:
            problems.append(f"returned K={first.k} matches per query, expected {k_expected} (top_k={top_k})")
        matched = first.indices[:, 0] >= 0
        if not np.isfinite(first.confidence[matched]).all():
            problems.append("confidence is not finite for matched queries")
        if not matched.any():
            problems.append("matched no query at all")

        again = _run(cls, params, ds, ctx(), test)
        if not (np.array_equal(first.indices, again.indices) and np.allclose(first.distances, again.distances, equal_nan=True)):
            problems.append("not deterministic: two runs with the same seed ranked differently")

        scrambled = _run(cls, params, ds, ctx(), _scramble_positions(test, np.random.default_rng(0)))
        if not np.array_equal(first.indices, scrambled.indices):
            problems.append("ranking depends on the evaluation split's positions (ground-truth leakage)")

        hits = test.ground_truth.hits(first.indices)
        r1 = recall_at_n(hits, (1,), test.ground_truth.has_positive)[1]
        if not r1 >= min_recall:
            problems.append(f"Recall@1 {r1:.3f} on the tiny dataset is below the sanity bound {min_recall}")
    return problems
