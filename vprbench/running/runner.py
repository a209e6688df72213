"""The runner: one job per (method, parameters, dataset, split, sequence length, seed).

Each finished job leaves a versioned JSON record (and its top-K predictions as .npz) written
atomically under ``<out>/records`` and ``<out>/predictions``. A job whose record exists is
skipped unless ``force``; an interrupted run therefore resumes where it stopped. Trained models
and computed descriptors go to ``<out>/cache`` keyed by everything they depend on.
"""

from __future__ import annotations

import logging
import random
import re
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vprbench import __version__
from vprbench.core.errors import ConfigError, DataError, VPRBenchError
from vprbench.core.fileio import ensure_writable_dir, save_npz_atomic, write_json_atomic
from vprbench.core.hashing import stable_hash
from vprbench.data.catalog import load_dataset
from vprbench.data.dataset import BenchmarkDataset, SplitData
from vprbench.data.views import ranking_view
from vprbench.data.windows import BOUNDARY_POLICIES, check_seq_len, traverse_windows
from vprbench.matching.distances import pairwise_distances
from vprbench.metrics.evaluator import RecallEvaluator
from vprbench.metrics.recall import DEFAULT_NS
from vprbench.plugins.api import Method, RunContext
from vprbench.plugins.registry import Registry, default_registry
from vprbench.plugins.specs import MethodSpec
from vprbench.running.environment import PeakMemory, environment, utc_now
from vprbench.running.records import SCHEMA, SCHEMA_VERSION, read_record

log = logging.getLogger("vprbench")

#: Size of the example distance-matrix crop saved for the report's overlay plot.
EXAMPLE_SIZE = 300


@dataclass
class RunConfig:
    """Settings shared by every job of one ``vprbench run``."""

    dataset: str
    out: Path
    seq_len: int = 5
    boundary: str = "shift"
    seeds: Sequence[int] = (0,)
    split: str = "test"
    query: str | None = None
    train_dataset: str | None = None
    data_dir: str | None = None
    dataset_params: dict[str, Any] = field(default_factory=dict)
    top_k: int = 20
    ns: Sequence[int] = DEFAULT_NS
    device: str = "cpu"
    memory_mb: float = 512.0
    force: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        check_seq_len(self.seq_len)
        if self.boundary not in BOUNDARY_POLICIES:
            raise ConfigError(f"--boundary must be one of {BOUNDARY_POLICIES}, got {self.boundary!r}")
        if self.top_k < 1:
            raise ConfigError(f"--top-k must be >= 1, got {self.top_k}")
        if not self.seeds:
            raise ConfigError("--seeds is empty")
        if not self.memory_mb > 0:
            raise ConfigError(f"--memory-mb must be > 0 MiB, got {self.memory_mb}")
        self.top_k = max(self.top_k, max(self.ns))


@dataclass
class JobOutcome:
    spec: MethodSpec
    seed: int
    status: str  # "done", "skipped", "failed", "unsupported"
    record_path: Path | None = None
    record: dict[str, Any] | None = None
    error: str = ""


@dataclass
class RunSummary:
    outcomes: list[JobOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def slug(text: str) -> str:
    """File-system safe version of a label."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")[:80]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy's legacy global state and torch (methods should still use ctx.rng)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def query_mask(split: SplitData, seq_len: int, boundary: str) -> np.ndarray:
    """[n_query] bool: queries evaluated under the boundary policy (all for "shift")."""
    _, valid = traverse_windows(split.query, seq_len, boundary)
    return valid


def check_needs(method: Method, split: SplitData) -> str | None:
    """Why ``method`` cannot run on ``split`` (None if it can)."""
    needs = method.info.needs
    has_desc = split.reference.descriptors is not None and split.query.descriptors is not None
    if "descriptors" in needs and not has_desc:
        return "needs per-frame descriptors; this dataset has none (imported distances or images only)"
    if "distances" in needs and not has_desc and split.distances is None:
        return "needs per-frame descriptors or an imported distance matrix; this dataset has neither"
    if "images" in needs and (split.reference.image_paths is None or split.query.image_paths is None):
        return "needs images; this dataset has none"
    return None


class Runner:
    """Runs method specs on one dataset and writes records."""

    def __init__(self, config: RunConfig, registry: Registry | None = None, datasets: Sequence[BenchmarkDataset] = ()) -> None:
        """``datasets``: already loaded datasets, used instead of loading by name (tests, notebooks)."""
        self.config = config
        self.registry = registry or default_registry()
        self.out = ensure_writable_dir(Path(config.out))
        self.evaluator = RecallEvaluator(ns=config.ns)
        self._datasets: dict[str, tuple[BenchmarkDataset, float]] = {d.name: (d, 0.0) for d in datasets}

    # dataset handling ---------------------------------------------------------------------
    def dataset(self, name: str) -> tuple[BenchmarkDataset, float]:
        """Load (once) and return the dataset and its load time in seconds."""
        if name not in self._datasets:
            t0 = time.perf_counter()
            overrides = self.config.dataset_params if name == self.config.dataset else None
            ds = load_dataset(name, data_dir=self.config.data_dir, overrides=overrides)
            self._datasets[name] = (ds, time.perf_counter() - t0)
        return self._datasets[name]

    def record_path(self, spec: MethodSpec, seed: int, key: str, dataset: str) -> Path:
        return self.out / "records" / slug(dataset) / slug(spec.name) / f"{slug(spec.label)}-seed{seed}-{key}.json"

    def job_identity(self, method: Method, spec: MethodSpec, seed: int, ds: BenchmarkDataset, train_ds: BenchmarkDataset) -> dict[str, Any]:
        """Everything a job's result depends on; its hash is the job key."""
        c = self.config
        trains = method.info.trains
        return {
            "method": spec.name,
            "params": method.params,
            "dataset": ds.name,
            "dataset_fingerprint": ds.fingerprint,
            "train_dataset": train_ds.name if trains else None,
            "train_fingerprint": train_ds.fingerprint if trains else None,
            "split": c.split,
            "query": c.query or ds.default_query,
            "seq_len": c.seq_len,
            "boundary": c.boundary,
            "seed": seed,
            "top_k": c.top_k,
        }

    # running ------------------------------------------------------------------------------
    def run(self, specs: Sequence[MethodSpec]) -> RunSummary:
        c = self.config
        ds, load_s = self.dataset(c.dataset)
        test = ds.split(c.split, c.query)
        check_seq_len(c.seq_len, test.query.segment_bounds, what=f"query traverse of {ds.name}/{c.split}")
        check_seq_len(c.seq_len, test.reference.segment_bounds, what=f"reference traverse of {ds.name}/{c.split}")
        train_ds = self.dataset(c.train_dataset)[0] if c.train_dataset else ds
        mask = query_mask(test, c.seq_len, c.boundary)
        self._save_example(ds, test, c.query or ds.default_query)
        summary = RunSummary()
        jobs = [(spec, seed) for spec in specs for seed in c.seeds]
        for i, (spec, seed) in enumerate(jobs, 1):
            outcome = self._run_job(spec, seed, ds, test, train_ds, mask, load_s, f"[{i}/{len(jobs)}]")
            summary.outcomes.append(outcome)
        return summary

    def _run_job(
        self, spec: MethodSpec, seed: int, ds: BenchmarkDataset, test: SplitData, train_ds: BenchmarkDataset,
        mask: np.ndarray, load_s: float, tag: str,
    ) -> JobOutcome:
        c = self.config
        method = self.registry.create(spec.name, **spec.params)
        trains = method.info.trains
        identity = self.job_identity(method, spec, seed, ds, train_ds)
        key = stable_hash({**identity, "schema": SCHEMA_VERSION})
        path = self.record_path(spec, seed, key, ds.name)
        if path.exists() and not c.force:
            try:
                record = read_record(path)
                log.info("%s %s seed %d: done already (%s); --force recomputes", tag, spec.label, seed, path.name)
                return JobOutcome(spec, seed, "skipped", path, record)
            except DataError as e:
                corrupt = path.with_name(path.name + f".corrupt-{int(time.time())}")
                path.rename(corrupt)
                log.warning("%s; moved it to %s and recomputing", e, corrupt.name)
        why = check_needs(method, test)
        if why:
            log.warning("%s %s: skipped, it %s", tag, spec.label, why)
            return JobOutcome(spec, seed, "unsupported", error=why)
        log.info("%s %s seed %d on %s/%s (L=%d, %s)", tag, spec.label, seed, ds.name, c.split, c.seq_len, c.boundary)
        ctx = RunContext(
            seed=seed, seq_len=c.seq_len, boundary=c.boundary, top_k=c.top_k, device=c.device,
            cache_dir=self.out / "cache", progress=c.progress, memory_mb=c.memory_mb,
            dataset_fingerprint=train_ds.fingerprint,
        )
        started = utc_now()
        try:
            seed_everything(seed)
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                if trains:
                    train = train_ds.split("train")
                    val = train_ds.split("val") if "val" in train_ds.splits else None
                    with ctx.timings("fit"):
                        method.fit(train, val, ctx)
                ctx.dataset_fingerprint = ds.fingerprint
                with ctx.timings("rank"):
                    ranking = method.rank(ranking_view(test), ctx)
                ranking.validate(len(test.query), len(test.reference), spec.label)
                with ctx.timings("evaluate"):
                    ev = self.evaluator.evaluate(
                        ranking.indices, test.ground_truth, ranking.confidence, mask,
                        test.query.positions, test.reference.positions,
                    )
                total = time.perf_counter() - t0
        except VPRBenchError as e:
            log.error("%s %s seed %d failed: %s", tag, spec.label, seed, e)
            return JobOutcome(spec, seed, "failed", error=str(e))
        except Exception as e:  # a broken plugin must not stop the other jobs
            log.error("%s %s seed %d crashed:\n%s", tag, spec.label, seed, traceback.format_exc())
            return JobOutcome(spec, seed, "failed", error=f"{type(e).__name__}: {e}")

        pred_rel = Path("predictions") / path.relative_to(self.out / "records").with_suffix(".npz")
        k_save = min(ranking.k, max(c.ns))
        gt = test.ground_truth
        hits = gt.hits(ranking.indices[:, :k_save])
        save_npz_atomic(
            self.out / pred_rel,
            indices=ranking.indices[:, :k_save].astype(np.int32),
            distances=ranking.distances[:, :k_save],
            confidence=ranking.confidence,
            query_mask=mask,
            # per query: rank of the first positive in the saved top-K (-1: none), and whether the
            # query counts for Recall@N (evaluated under the boundary policy and has a positive)
            first_hit=np.where(hits.any(axis=1), hits.argmax(axis=1), -1).astype(np.int32),
            evaluated=mask & gt.has_positive,
        )
        single = method.info.single_match or ranking.k == 1
        record = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "key": key,
            "job": {
                **identity,
                "label": spec.label,
                "family": method.info.family,
                "trains": trains,
                "single_match": single,
                "user_params": dict(spec.params),
                "resolved_params": getattr(method, "resolved_params", None),
                "training": getattr(method, "training_info", None),
                "device": c.device,
            },
            "dataset": {
                "name": ds.name,
                "description": ds.description,
                "radius": ds.radius,
                "position_unit": ds.position_unit,
                "n_reference": len(test.reference),
                "n_query": len(test.query),
                "meta": {k: v for k, v in ds.meta.items() if isinstance(v, (str, int, float, bool, dict, list))},
            },
            "metrics": {
                "recall_at": {str(n): (None if single and n > 1 else v) for n, v in ev.recall.items()},
                "n_queries": ev.n_queries,
                "n_evaluated": ev.n_evaluated,
                "n_without_positive": ev.n_without_positive,
                "recall_vs_radius": {"radii": ev.radii, "recall_at_1": ev.recall_by_radius},
                "pr": {
                    "auc": ev.pr.auc,
                    "recall_at_100_precision": ev.pr.recall_at_100_precision,
                    **_thin_curve(ev.pr.precision, ev.pr.recall),
                },
            },
            "timings_s": {"load_dataset": load_s, **ctx.timings.seconds, "total": total},
            "memory_mb": {"peak_rss": mem.peak_mb, "peak_rss_increase": mem.delta_mb},
            "environment": {**environment(), "vprbench": __version__},
            "predictions": str(pred_rel),
            "started_at": started,
            "finished_at": utc_now(),
        }
        write_json_atomic(path, record)
        r = ev.recall
        log.info("%s %s seed %d: R@1 %.3f  R@5 %s  (%.1f s)", tag, spec.label, seed, r[min(r)],
                 "-" if single else f"{r.get(5, float('nan')):.3f}", total)
        return JobOutcome(spec, seed, "done", path, record)

    def _save_example(self, ds: BenchmarkDataset, split: SplitData, query: str) -> None:
        """Save a crop of the split's single-image distance matrix for the report's overlay plot.

        The crop covers the first queries and the reference frames around their positions.
        """
        path = example_path(self.out, ds.name, split.split, query, ds.fingerprint)
        if path.exists() and not self.config.force:
            return
        nq, nr = min(EXAMPLE_SIZE, len(split.query)), min(EXAMPLE_SIZE, len(split.reference))
        middle = split.query.positions[nq // 2]
        centre = int(np.argmin(np.linalg.norm(split.reference.positions - middle, axis=1)))
        r0 = int(np.clip(centre - nr // 2, 0, len(split.reference) - nr))
        if split.distances is not None:
            d = split.distances[:nq, r0 : r0 + nr]
        elif split.query.descriptors is not None and split.reference.descriptors is not None:
            d = pairwise_distances(split.query.descriptors[:nq], split.reference.descriptors[r0 : r0 + nr])
        else:
            return
        gt = split.ground_truth.subset(np.arange(nq), np.arange(r0, r0 + nr)).to_dense()
        save_npz_atomic(path, distances=d, gt=gt, query_start=0, ref_start=r0)


def example_path(root: Path, dataset: str, split: str, query: str, fingerprint: str) -> Path:
    """Where the distance-matrix crop of a (dataset content, split, query) is saved."""
    return Path(root) / "examples" / f"{slug(dataset)}-{slug(split)}-{slug(query)}-{fingerprint}.npz"


def _thin_curve(precision: np.ndarray, recall: np.ndarray, max_points: int = 200) -> dict[str, np.ndarray]:
    """At most ``max_points`` points of a PR curve, evenly spaced along it (endpoints kept)."""
    if precision.size > max_points:
        idx = np.unique(np.linspace(0, precision.size - 1, max_points).round().astype(int))
        precision, recall = precision[idx], recall[idx]
    return {"precision": precision, "recall": recall}
