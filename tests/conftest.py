"""Shared fixtures: small hand-made datasets for core tests (the generator has its own tests)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vprbench.data.dataset import BenchmarkDataset, SplitIndices
from vprbench.data.traverse import Traverse

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The real data folder: $VPRBENCH_DATA_DIR or ../shared/data beside the repository."""
    return Path(os.environ.get("VPRBENCH_DATA_DIR", REPO.parent / "shared" / "data"))


def make_toy_dataset(n: int = 120, dim: int = 16, noise: float = 0.3, seed: int = 0, name: str = "toy") -> BenchmarkDataset:
    """Two traverses of the same ``n`` places 1 m apart; query = reference + noise.

    Splits: train = places 0..n/2-1, val = next quarter, test = last quarter, with 5-frame gaps.
    Radius 1 m (so each query has up to 3 positives), non-trivial 1 m, negative 3 m.
    """
    rng = np.random.default_rng(seed)
    base = np.cumsum(rng.normal(size=(n, dim)), axis=0) * 0.3 + rng.normal(size=(n, dim))
    ref = base + noise * rng.normal(size=(n, dim))
    qry = base + noise * rng.normal(size=(n, dim))
    pos = np.arange(n, dtype=float)[:, None]
    q1, q2 = n // 2, 3 * n // 4
    splits = {
        "train": SplitIndices.from_ranges((0, q1 - 5), (0, q1 - 5)),
        "val": SplitIndices.from_ranges((q1, q2 - 5), (q1, q2 - 5)),
        "test": SplitIndices.from_ranges((q2, n), (q2, n)),
    }
    return BenchmarkDataset(
        name=name,
        reference=Traverse("ref", pos, "m", descriptors=ref.astype(np.float32)),
        queries={"qry": Traverse("qry", pos.copy(), "m", descriptors=qry.astype(np.float32))},
        splits=splits,
        radius=1.0,
        nontrivial_radius=1.0,
        negative_radius=3.0,
        description="toy",
    )


@pytest.fixture
def toy_dataset() -> BenchmarkDataset:
    return make_toy_dataset()


@pytest.fixture(autouse=True)
def _vprbench_logger_propagates():
    """The CLI sets up its own stderr handler without propagation; tests that use caplog need propagation back."""
    import logging

    log = logging.getLogger("vprbench")
    saved = (log.handlers[:], log.propagate, log.level)
    log.handlers[:] = []
    log.propagate = True
    log.setLevel(logging.NOTSET)
    yield
    log.handlers[:], log.propagate, _ = saved[0], saved[1], log.setLevel(saved[2])


@pytest.fixture(autouse=True)
def _benchmarks_only_when_enabled(request):
    """Benchmarks (tests/benchmarks) are opt-in: they run only with ``pytest tests/benchmarks --benchmark-enable``."""
    cfg = request.config
    if "benchmarks" in request.node.path.parts and cfg.getoption("benchmark_disable", default=False) \
            and not cfg.getoption("benchmark_enable", default=False):
        pytest.skip("benchmarks run only with --benchmark-enable")
