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

from vprbench.data.dataset import BenchmarkDataset, SplitData
from vprbench.metrics.recall import recall_at_n
from vprbench.plugins.api import Method, Ranking, RunContext


def tiny_dataset() -> BenchmarkDataset:
    """The tiny generated dataset of the conformance check (the ``synth-tiny`` preset)."""
    from vprbench.data.catalog import load_dataset

    return load_dataset("synth-tiny")


def tiny_image_dataset(folder: Path, n: int = 60, seed: int = 0) -> BenchmarkDataset:
    """Two frame-aligned traverses of ``n`` small PNG images (32x64) written under ``folder``.

    Neighbouring places look alike (each image is the mean of three consecutive random patterns);
    the query traverse is darker and noisier. Positions are frame indices, radius 1 frame.
    """
    from PIL import Image

    from vprbench.data.dataset import SplitIndices
    from vprbench.data.traverse import Traverse

    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, (n + 2, 8, 16, 3))
    traverses = {}
    for name, gain, noise in (("ref", 1.0, 10.0), ("qry", 0.7, 25.0)):
        paths = []
        for i in range(n):
            img = np.kron(base[i : i + 3].mean(0), np.ones((4, 4, 1))) * gain + rng.normal(0, noise, (32, 64, 3))
            path = folder / name / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
            paths.append(path)
        traverses[name] = Traverse(name, np.arange(n, dtype=float), "frame", None, tuple(paths))
    a, b = n // 2, (3 * n) // 4
    splits = {"train": SplitIndices.from_ranges((0, a), (0, a)), "val": SplitIndices.from_ranges((a + 4, b), (a + 4, b)),
              "test": SplitIndices.from_ranges((b + 4, n), (b + 4, n))}
    return BenchmarkDataset("tiny-images", traverses["ref"], {"qry": traverses["qry"]}, splits,
                            radius=1.0, nontrivial_radius=1.0, negative_radius=3.0)


def _run(cls: type[Method], params: dict[str, Any], ds: BenchmarkDataset, ctx: RunContext, test: SplitData) -> Ranking:
    from vprbench.plugins.registry import default_registry

    method = default_registry().create(cls.info.name, **params)
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
    """Run the conformance checks on method class ``cls``; return a list of problems (empty = pass).

    Methods that need images run on :func:`tiny_image_dataset` unless ``dataset`` has images.
    """
    params = dict(cls.info.smoke_params)
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        ds = dataset or tiny_dataset()
        if "images" in cls.info.needs and ds.reference.image_paths is None:
            ds = tiny_image_dataset(Path(tmp) / "images", n=160)
        test = ds.split("test")

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

        gt = test.ground_truth
        r1 = recall_at_n(gt.hits(first.indices), (1,), gt.has_positive)[1]
        chance = float(gt.counts[gt.has_positive].mean() / gt.n_ref)
        bound = max(min_recall, 2 * chance) if len(test.query) >= 100 else 2 * chance
        if not r1 >= bound:
            problems.append(f"Recall@1 {r1:.3f} on the tiny dataset is below the sanity bound {bound:.3f} (chance {chance:.3f})")
    return problems
