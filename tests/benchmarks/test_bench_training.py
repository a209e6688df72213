"""Benchmarks of the training engine (pytest-benchmark): epochs of SeqMatchNet with both thread-pool settings.

Skipped unless benchmarks are enabled: ``pytest tests/benchmarks --benchmark-enable``. Torch runs one
thread as in training (:func:`vprbench.learning.trainer.deterministic` on two cores); numpy's BLAS,
which computes the mining distances, runs 1 thread (what ``deterministic`` sets) or 2 (its default
on two cores). Compare the two in the same run (same machine, same load).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from vprbench.data.dataset import BenchmarkDataset, SplitIndices
from vprbench.data.traverse import Traverse
from vprbench.learning import presets
from vprbench.learning.mining import TripletData
from vprbench.learning.models import SeqNetModel, encode_frames, fit_input_pca
from vprbench.learning.trainer import train_triplet
from vprbench.matching.sequence import sequence_distances


@pytest.fixture(scope="module")
def route():
    """A 1,200-frame, 2,048-D route (the nordland-64x32 training scale): triplet data and a 512-D projection."""
    rng = np.random.default_rng(0)
    n, dim = 1200, 2048
    base = np.cumsum(rng.normal(size=(n, dim)), axis=0) * 0.1 + rng.normal(size=(n, dim))
    ref, qry = (base + 0.8 * rng.normal(size=(n, dim))).astype(np.float32), (base + 0.8 * rng.normal(size=(n, dim))).astype(np.float32)
    pos = np.arange(n, dtype=float)[:, None]
    ds = BenchmarkDataset("bench", Traverse("ref", pos, "frame", descriptors=ref), {"qry": Traverse("qry", pos.copy(), "frame", descriptors=qry)},
                          {"train": SplitIndices.from_ranges((0, n), (0, n))}, radius=0.5, nontrivial_radius=1.5, negative_radius=3.5)
    train = ds.split("train")
    data = TripletData.from_split(train, 5)
    return data, fit_input_pca(np.concatenate([ref, qry]), 512)


def _hardest_negative_hinge(model: SeqNetModel, data: TripletData, margin: float) -> float:
    """Mean over the training queries of max(d(q, nearest positive) - d(q, nearest negative) + margin, 0), where d is
    the seqmatch distance of the model's outputs over every reference window: the training objective at its hardest."""
    cpu = torch.device("cpu")
    eq, er = encode_frames(model, data.q, cpu), encode_frames(model, data.r, cpu)
    tq = data.train_queries
    d = sequence_distances(eq, er, data.q_starts[tq], data.r_starts, data.seq_len)
    d[:, ~data.r_valid] = np.inf
    hinge = []
    for row, q in zip(d, tq.tolist()):
        negative = np.ones(row.size, bool)
        negative[data.non_negatives.positives(q)] = False
        hinge.append(max(row[data.positives.positives(q)].min() - row[negative].min() + margin, 0.0))
    return float(np.mean(hinge))


def _initial_model(pca) -> SeqNetModel:
    torch.manual_seed(0)
    model = SeqNetModel(2048, 0, 1, 512, "identity")
    model.set_pca(pca)
    return model


@pytest.mark.parametrize("blas_threads", [1, 2])
def test_seqmatchnet_epochs(benchmark, route, blas_threads):
    """Two epochs of seqmatchnet's cpu-medium training (mining + triplet steps), BLAS at 1 or 2 threads."""
    data, pca = route
    hp = presets.resolve("seqmatchnet", "cpu", {"epochs": 2, "patience": 0}, n_train_queries=data.train_queries.size)

    def run() -> tuple[SeqNetModel, list[dict]]:
        model = _initial_model(pca)
        prev = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with threadpool_limits(limits=blas_threads, user_api="blas"):
                result = train_triplet(model, data, hp, 0, torch.device("cpu"))
        finally:
            torch.set_num_threads(prev)
        model.load_state_dict(result.state)
        return model, result.history

    model, history = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    # it trained (measured: 56 % and 50 % of the 1,195 training queries had a violating negative) and the training
    # objective against the hardest negative of every training query fell (measured: 0.059 -> 0.031)
    assert [h["epoch"] for h in history] == [1, 2] and all(h["queries_trained"] > 100 and np.isfinite(h["loss"]) for h in history)
    before = _hardest_negative_hinge(_initial_model(pca), data, hp["margin"])
    after = _hardest_negative_hinge(model, data, hp["margin"])
    assert after < 0.8 * before, (before, after)
