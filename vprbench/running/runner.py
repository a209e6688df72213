"""The runner: method specs x seeds on one dataset split, each result traceable to one computation.

A run plans its jobs first (:meth:`Runner.plan`): every (method spec, seed) becomes a configured
method, the identity of its ranking and the identity of its record
(:mod:`vprbench.running.identity`). Jobs with the same record identity are one job (``seqmatch``
and ``seqmatch[variant=meanOfPairs]``); jobs with the same ranking identity share one computation
(a deterministic method across seeds, a single-image method across sequence lengths). Then, per
ranking: records that exist are skipped (``--force`` recomputes), a stored ranking is reused,
otherwise the method is fitted and ranks the split (through the ranking view: no positions or
ground truth), the ranking is stored, and each record is evaluated from it and written atomically
(layout: :mod:`vprbench.running.layout`). A ranking is claimed atomically while it is computed, so
two runs sharing an output folder never compute it twice. Suspicious data is warned about in the
run output and in the record's ``warnings``.
"""

from __future__ import annotations

import json
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
from vprbench.core.claims import holder, try_claim
from vprbench.core.errors import ConfigError, DataError, OutputError, VPRBenchError
from vprbench.core.fileio import ensure_writable_dir, save_npz_atomic, write_json_atomic
from vprbench.core.hashing import to_jsonable
from vprbench.data.catalog import load_dataset
from vprbench.data.dataset import BenchmarkDataset, SplitData
from vprbench.data.protocol import Protocol, get_protocol
from vprbench.data.views import ranking_view
from vprbench.data.windows import BOUNDARY_POLICIES, check_seq_len, traverse_windows
from vprbench.matching.distances import split_distance_source
from vprbench.metrics.evaluator import Evaluation, EvaluationData, RecallEvaluator, evaluate_protocol
from vprbench.metrics.recall import DEFAULT_NS
from vprbench.plugins.api import Method, Ranking, RunContext
from vprbench.plugins.registry import Registry, default_registry
from vprbench.plugins.specs import MethodSpec, format_spec
from vprbench.running import identity as ident
from vprbench.running.environment import PeakMemory, environment, utc_now
from vprbench.running.evaldata import save_evaluation_data
from vprbench.running.layout import claim_path, example_path, prediction_path, record_path, split_data_path
from vprbench.running.records import (
    SCHEMA,
    SCHEMA_VERSION,
    InvalidRecord,
    NewerRecord,
    OlderRecord,
    identity_key,
    read_record,
    seal,
    set_aside,
    untrained_parts,
)

log = logging.getLogger("vprbench")

#: Size of the example distance-matrix crop saved for the report's overlay plot.
EXAMPLE_SIZE = 300
DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")
#: Datasets loaded by this process, by (name, data directory, parameters); workers load each once.
_LOADED: dict[str, tuple[BenchmarkDataset, float]] = {}
_WARNED: set[tuple[str, str]] = set()
MAX_SEED = 2**63


def check_device(device: str) -> str:
    """``cpu``, ``cuda`` or ``cuda:N``; ConfigError otherwise."""
    if not isinstance(device, str) or not DEVICE_RE.match(device):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    return device


def check_seed(seed: Any) -> int:
    """A seed: an integer in [0, 2**63); ConfigError otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < MAX_SEED:
        raise ConfigError(f"seeds must be integers in [0, 2**63), got {seed!r}")
    return int(seed)


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
    protocol: str | None = None
    protocol_overrides: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, Any] = field(default_factory=dict)
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
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, (int, np.integer)) or self.top_k < 1:
            raise ConfigError(f"--top-k must be an integer >= 1, got {self.top_k!r}")
        if not self.seeds:
            raise ConfigError("--seeds is empty")
        self.seeds = [check_seed(s) for s in self.seeds]
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds lists a seed twice: {self.seeds}")
        if not (isinstance(self.memory_mb, (int, float)) and self.memory_mb > 0):
            raise ConfigError(f"--memory-mb must be > 0 MiB, got {self.memory_mb!r}")
        check_device(self.device)
        self.top_k = max(int(self.top_k), max(self.ns))


@dataclass
class JobOutcome:
    spec: MethodSpec
    seed: int
    status: str  # "done", "skipped", "failed", "unsupported", "busy"
    record_path: Path | None = None
    record: dict[str, Any] | None = None
    error: str = ""


@dataclass
class RunSummary:
    outcomes: list[JobOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]


@dataclass
class PlannedJob:
    """One record to produce: its method, identities, keys and paths."""

    spec: MethodSpec
    seed: int
    method: Method
    ranking_identity: dict[str, Any]
    ranking_key: str
    record_identity: dict[str, Any]
    record_key: str
    group_key: str
    record_path: Path
    prediction_path: Path
    labels: list[str] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy's legacy global state and torch (methods should still use ctx.rng)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def check_needs(method: Method, split: SplitData, train_ds: BenchmarkDataset | None = None) -> str | None:
    """Why ``method`` cannot run on ``split`` (trained on ``train_ds``'s 'train' split when given); None if it can."""
    needs = method.info.needs
    if train_ds is not None and method.info.trains and "train" not in train_ds.splits:
        other = train_ds.name != split.dataset
        return (f"trains, but {'the training ' if other else ''}dataset {train_ds.name!r} has no 'train' split (splits: "
                f"{', '.join(train_ds.splits)}); " + ("give a --train-dataset that has one" if other else "give --train-dataset DATASET"))
    has_desc = split.reference.descriptors is not None and split.query.descriptors is not None
    if "descriptors" in needs and not has_desc:
        return "needs per-frame descriptors; this dataset has none (imported distances or images only)"
    if "distances" in needs and not has_desc and split.distances is None:
        return "needs per-frame descriptors or an imported distance matrix; this dataset has neither"
    if "images" in needs and (split.reference.image_paths is None or split.query.image_paths is None):
        return "needs images; this dataset has none"
    return None


def _relative(obj: Any, root: Path) -> Any:
    """Paths (or path strings) under ``root`` made relative to it, recursively (records stay valid when copied)."""
    if isinstance(obj, dict):
        return {k: _relative(v, root) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_relative(v, root) for v in obj]
    if isinstance(obj, (str, Path)) and str(obj).startswith(str(root.resolve()) + "/"):
        return str(Path(obj).resolve().relative_to(root.resolve()))
    return obj


def _without_seed(record_identity: dict[str, Any]) -> dict[str, Any]:
    return {**record_identity, "ranking": {**record_identity["ranking"], "seed": None}}


class Runner:
    """Runs method specs on one dataset split and writes records."""

    def __init__(self, config: RunConfig, registry: Registry | None = None, datasets: Sequence[BenchmarkDataset] = ()) -> None:
        """``datasets``: already loaded datasets, used instead of loading by name (tests, notebooks)."""
        self.config = config
        self.registry = registry or default_registry()
        self.out = ensure_writable_dir(Path(config.out))
        self.evaluator = RecallEvaluator(ns=config.ns)
        self._datasets: dict[str, tuple[BenchmarkDataset, float]] = {d.name: (d, 0.0) for d in datasets}

    # data ---------------------------------------------------------------------------------
    def dataset(self, name: str) -> tuple[BenchmarkDataset, float]:
        """Load (once per process and parameters) and return the dataset and its load time in seconds."""
        if name not in self._datasets:
            overrides = self.config.dataset_params if name == self.config.dataset else None
            key = json.dumps([name, str(self.config.data_dir), to_jsonable(overrides or {})], sort_keys=True)
            if key not in _LOADED:
                t0 = time.perf_counter()
                ds = load_dataset(name, data_dir=self.config.data_dir, overrides=overrides)
                _LOADED[key] = (ds, time.perf_counter() - t0)
            self._datasets[name] = _LOADED[key]
        return self._datasets[name]

    def protocol(self, ds: BenchmarkDataset) -> Protocol:
        """The run's protocol: a named protocol of the dataset, with ``protocol_overrides`` (sweeps) applied."""
        base = get_protocol(ds.protocols, self.config.protocol, ds.name)
        over = self.config.protocol_overrides
        if not over:
            return base
        table = {k: v for k, v in base.to_dict().items() if k != "name" and v is not None}
        if "radius" in over:
            table.pop("tolerance", None)
        if "tolerance" in over:
            table.pop("radius", None)
        inner = ",".join(f"{k}={v}" for k, v in sorted(over.items()))
        return Protocol.from_table(f"{base.name}[{inner}]", {**table, **over}, ds.position_unit, f"dataset {ds.name!r}")

    # planning -----------------------------------------------------------------------------
    def plan(self, specs: Sequence[MethodSpec], ds: BenchmarkDataset, test: SplitData, train_ds: BenchmarkDataset) -> list[PlannedJob]:
        """Every distinct record to produce, in order (duplicates of one resolved job merged)."""
        c = self.config
        query = c.query or ds.default_query
        protocol = self.protocol(ds)
        train = {"dataset": train_ds.name, "fingerprint": train_ds.fingerprint}
        train_split = train_ds.split("train") if "train" in train_ds.splits else None
        jobs: dict[str, PlannedJob] = {}
        for spec in specs:
            for seed in c.seeds:
                method = self.registry.create(spec)
                self._check_composition(method, test, train_ds)
                method.prepare(train_split if method.info.trains else None,
                               RunContext(seed=seed, seq_len=c.seq_len, boundary=c.boundary, top_k=c.top_k, device=c.device))
                rid = ident.ranking_identity(
                    method, dataset=ds.name, fingerprint=ds.fingerprint, split=c.split, query=query, seq_len=c.seq_len,
                    boundary=c.boundary, seed=seed, top_k=c.top_k, train=train, device=c.device,
                )
                rkey = ident.key({**rid, "schema": SCHEMA_VERSION})
                eid = ident.record_identity(rid, seq_len=c.seq_len, boundary=c.boundary, protocol=protocol.to_dict())
                key = identity_key(eid)
                if key in jobs:
                    if spec.label not in jobs[key].labels:
                        jobs[key].labels.append(spec.label)
                        log.info("%s is the same job as %s (same resolved parameters): one record", spec.label, jobs[key].labels[0])
                    continue
                jobs[key] = PlannedJob(
                    spec, seed, method, rid, rkey, eid, key, ident.key(_without_seed(eid)),
                    record_path(self.out, ds.name, method.info.name, key), prediction_path(self.out, ds.name, method.info.name, rkey),
                    [spec.label],
                )
        planned = list(jobs.values())
        self._check_training_dims(planned, test, train_ds)
        if c.device != "cpu" and any(j.method.info.trains for j in planned):
            from vprbench.learning.trainer import resolve_device

            resolve_device(c.device)  # CUDA missing: a ConfigError now, not after the other jobs ran
        elif c.device != "cpu" and planned and ("device", c.device) not in _WARNED:
            _WARNED.add(("device", c.device))
            log.warning("warning: --device %s: no method of this run trains a model, so it has no effect: they all run on the CPU", c.device)
        return planned

    @classmethod
    def _check_composition(cls, method: Method, test: SplitData, train_ds: BenchmarkDataset) -> None:
        """A composed method (at any depth of the stages) whose frontend cannot run on this data is a
        ConfigError naming both parts."""
        for stage in method.stages.values():
            cls._check_composition(stage, test, train_ds)
        frontend = getattr(method, "frontend", None)
        matcher = getattr(method, "matcher", None)
        if frontend is None or matcher is None:
            return
        if frontend.info.trains and "train" not in train_ds.splits:
            raise ConfigError(f"{method.label}: frontend {frontend.label!r} trains, but dataset {train_ds.name!r} has no 'train' split "
                              "(give --train-dataset)")
        why = check_needs(frontend, test)
        if why:
            raise ConfigError(f"{method.label}: frontend {frontend.label!r} {why}; matcher {matcher.info.name!r} cannot get its "
                              "descriptors from this dataset")

    # running ------------------------------------------------------------------------------
    def run(self, specs: Sequence[MethodSpec], numbers: Sequence[str] | None = None) -> RunSummary:
        """Run every job of ``specs``; ``numbers``: the progress tags of the jobs in plan order (e.g.
        ``[7/45]`` when an executor runs this as part of a larger grid), default ``[i/n]`` of this call."""
        c = self.config
        ds, load_s = self.dataset(c.dataset)
        test = ds.split(c.split, c.query)
        check_seq_len(c.seq_len, test.query.segment_bounds, what=f"query traverse of {ds.name}/{c.split}")
        check_seq_len(c.seq_len, test.reference.segment_bounds, what=f"reference traverse of {ds.name}/{c.split}")
        train_ds = self.dataset(c.train_dataset)[0] if c.train_dataset else ds
        query = c.query or ds.default_query
        protocol = self.protocol(ds)
        jobs = self.plan(specs, ds, test, train_ds)
        self._data = EvaluationData.from_split(test)
        self.data_warnings = self._data_warnings(ds, test, train_ds) + self._protocol_warnings(protocol)
        for w in self.data_warnings:
            if (ds.fingerprint, w) not in _WARNED:  # once per process, not once per job
                _WARNED.add((ds.fingerprint, w))
                log.warning("warning: %s", w)
        self._evaldata = split_data_path(self.out, ds.name, c.split, query, ds.fingerprint)
        try:
            if c.force or not self._evaldata.exists():
                save_evaluation_data(self._evaldata, self._data)
            self._save_example(ds, test, query)
        except OSError as e:
            raise OutputError(f"cannot write to the results folder {str(self.out)!r} ({e.strerror or e})") from None
        summary = RunSummary()
        groups: dict[str, list[PlannedJob]] = {}
        for job in jobs:
            groups.setdefault(job.ranking_key, []).append(job)
        own = {id(job): f"[{i + 1}/{len(jobs)}]" for i, job in enumerate(jobs)}
        if numbers is not None and len(numbers) == len(jobs):
            own = {id(job): tag for job, tag in zip(jobs, numbers)}
        for group in groups.values():
            tags = [own[id(job)] for job in group]
            summary.outcomes += self._run_group(group, ds, test, train_ds, protocol, load_s, tags)
        return summary

    def _existing(self, job: PlannedJob) -> dict[str, Any] | None:
        """The job's record if it exists and is usable (invalid ones are set aside)."""
        if self.config.force or not job.record_path.exists():
            return None
        try:
            return read_record(job.record_path)
        except InvalidRecord as e:
            set_aside(job.record_path, e)
        except (NewerRecord, OlderRecord) as e:
            raise ConfigError(f"{e}; use another --out") from None
        return None

    def _run_group(self, group: list[PlannedJob], ds: BenchmarkDataset, test: SplitData, train_ds: BenchmarkDataset,
                   protocol: Protocol, load_s: float, tags: list[str]) -> list[JobOutcome]:
        outcomes: list[JobOutcome | None] = [None] * len(group)
        todo = []
        for i, job in enumerate(group):
            record = self._existing(job)
            if record is not None:
                log.info("%s %s%s: done already (%s); --force recomputes", tags[i], job.spec.label, self._seed_text(job),
                         job.record_path.name)
                outcomes[i] = JobOutcome(job.spec, job.seed, "skipped", job.record_path, record)
            else:
                todo.append(i)
        if not todo:
            return outcomes  # type: ignore[return-value]
        first = group[todo[0]]
        why = check_needs(first.method, test, train_ds)
        if why:
            log.warning("%s %s: skipped, it %s", tags[todo[0]], first.spec.label, why)
            for i in todo:
                outcomes[i] = JobOutcome(group[i].spec, group[i].seed, "unsupported", error=why)
            return outcomes  # type: ignore[return-value]
        claim = try_claim(claim_path(self.out, first.ranking_key))
        if claim is None:
            who = holder(claim_path(self.out, first.ranking_key)) or {}
            msg = f"being computed by another run (pid {who.get('pid')} on {who.get('host')}); run again later to collect it"
            log.warning("%s %s: %s", tags[todo[0]], first.spec.label, msg)
            for i in todo:
                outcomes[i] = JobOutcome(group[i].spec, group[i].seed, "busy", error=msg)
            return outcomes  # type: ignore[return-value]
        try:
            try:
                ranking, meta = self._ranking(first, ds, test, train_ds, load_s, tags[todo[0]])
            except VPRBenchError as e:
                if isinstance(e, OutputError):
                    raise
                log.error("%s %s%s failed: %s", tags[todo[0]], first.spec.label, self._seed_text(first), e)
                for i in todo:
                    outcomes[i] = JobOutcome(group[i].spec, group[i].seed, "failed", error=str(e))
                return outcomes  # type: ignore[return-value]
            except Exception as e:  # a broken plugin must not stop the other jobs
                log.error("%s %s%s crashed:\n%s", tags[todo[0]], first.spec.label, self._seed_text(first), traceback.format_exc())
                for i in todo:
                    outcomes[i] = JobOutcome(group[i].spec, group[i].seed, "failed", error=f"{type(e).__name__}: {e}")
                return outcomes  # type: ignore[return-value]
            for i in todo:
                outcomes[i] = self._record(group[i], ranking, meta, ds, test, protocol, tags[i])
        finally:
            claim.release()
        return outcomes  # type: ignore[return-value]

    @staticmethod
    def _seed_text(job: PlannedJob) -> str:
        return f" seed {job.seed}" if job.ranking_identity["seed"] is not None else ""

    def _ranking(self, job: PlannedJob, ds: BenchmarkDataset, test: SplitData, train_ds: BenchmarkDataset, load_s: float,
                 tag: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The job's stored ranking if there is one (and not --force), else fit, rank and store it."""
        c = self.config
        meta_path = job.prediction_path.with_suffix(".json")
        if not c.force and job.prediction_path.exists() and meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                if meta.get("ranking_key") == job.ranking_key:
                    with np.load(job.prediction_path, allow_pickle=False) as z:
                        arrays = {k: z[k] for k in ("indices", "distances", "confidence")}
                    log.info("%s %s: ranking computed before (%s), evaluating it", tag, job.spec.label, job.prediction_path.name)
                    return arrays, meta
            except (OSError, ValueError, KeyError):
                pass  # unreadable: compute again
        method = self.registry.create(job.spec)  # a fresh instance per computation
        log.info("%s %s%s on %s/%s (L=%d, %s)", tag, job.spec.label, self._seed_text(job), ds.name, c.split, c.seq_len, c.boundary)
        ctx = RunContext(seed=job.seed, seq_len=c.seq_len, boundary=c.boundary, top_k=c.top_k, device=c.device,
                         cache_dir=self.out / "cache", progress=c.progress, memory_mb=c.memory_mb,
                         dataset_fingerprint=train_ds.fingerprint)
        started = utc_now()
        warnings: list[str] = []
        seed_everything(job.seed)
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            if method.info.trains:
                train = train_ds.split("train")
                val = train_ds.split("val") if "val" in train_ds.splits else None
                method.observe(ranking_view(test))  # unlabelled: e.g. an input projection that may see the map
                with ctx.timings("fit"):
                    method.fit(train, val, ctx)
            ctx.dataset_fingerprint = ds.fingerprint
            with ctx.timings("rank"):
                ranking = method.rank(ranking_view(test), ctx)
            if not isinstance(ranking, Ranking):
                raise DataError(f"method {job.spec.label!r}: rank() returned {type(ranking).__name__}, expected a Ranking")
            ranking.validate(len(test.query), len(test.reference), job.spec.label)
            total = time.perf_counter() - t0
        training = to_jsonable(_relative(getattr(method, "training_info", None), self.out))
        warnings += self._training_warnings(method, training, train_ds, ds)
        k_save = min(ranking.k, max(c.ns))
        arrays = {"indices": ranking.indices[:, :k_save].astype(np.int32), "distances": ranking.distances[:, :k_save],
                  "confidence": ranking.confidence}
        meta = {
            "ranking_key": job.ranking_key,
            "ranking_identity": job.ranking_identity,
            "resolved_params": to_jsonable(getattr(method, "resolved_params", None)),
            "training": training,
            "notes": to_jsonable(getattr(ctx, "notes", {})),
            "device_used": (training or {}).get("device", "cpu") if isinstance(training, dict) else "cpu",
            "warnings": warnings,
            "timings_s": {"load_dataset": load_s, **ctx.timings.seconds, "total": total},
            "memory_mb": {"peak_rss": mem.peak_mb, "peak_rss_increase": mem.delta_mb},
            "environment": {**environment(), "vprbench": __version__},
            "started_at": started,
            "finished_at": utc_now(),
        }
        try:
            save_npz_atomic(job.prediction_path, **arrays)
            write_json_atomic(job.prediction_path.with_suffix(".json"), meta)
        except OSError as e:
            raise OutputError(f"cannot write results under {str(self.out)!r} ({e.strerror or e}); finished jobs are kept") from None
        return arrays, meta

    def _training_warnings(self, method: Method, training: Any, train_ds: BenchmarkDataset, ds: BenchmarkDataset) -> list[str]:
        out = []
        c = self.config
        if method.info.trains and isinstance(training, dict):
            for part in untrained_parts(training):  # the method itself ("") or a learned stage of a composite
                t = training
                for key in filter(None, part.split(".")):
                    t = t[key]
                what = f"its {part} stage" if part else "the trained model"
                out.append(f"{method.label}: {what} is no better than its initialisation on validation (kept epoch "
                           f"{t.get('best_epoch')} of {t.get('epochs_run')}): this row is {'partly ' if part else ''}the untrained model")
        if method.info.trains and train_ds.name == ds.name and c.split in ("train", "val"):
            out.append(f"{method.label}: evaluated on the {c.split!r} split of {ds.name}, which it was "
                       f"{'trained' if c.split == 'train' else 'validated (model selection)'} on")
        for w in out:
            log.warning("warning: %s", w)
        return out

    def _data_warnings(self, ds: BenchmarkDataset, test: SplitData, train_ds: BenchmarkDataset) -> list[str]:
        c = self.config
        out = [str(w) for w in ds.meta.get("warnings", [])]
        if train_ds is not ds:
            out += [f"training dataset {train_ds.name}: {w}" for w in train_ds.meta.get("warnings", [])]
        _, valid = traverse_windows(test.query, c.seq_len, c.boundary)
        dropped = int((~valid).sum())
        if dropped:
            why = "their segment is shorter than L" if c.boundary == "shift" else "no full window fits (boundary drop)"
            out.append(f"{dropped} of {len(valid)} queries of {ds.name}/{c.split} have no window of L={c.seq_len} frames ({why}) "
                       f"and are not evaluated: every method is scored on the other {len(valid) - dropped}")
        return out

    @staticmethod
    def _check_training_dims(jobs: list[PlannedJob], test: SplitData, train_ds: BenchmarkDataset) -> None:
        """Learned methods trained on another dataset need its descriptors' dimension: a DataError now, not after training."""
        if train_ds.name == test.dataset or "train" not in train_ds.splits or not any(j.method.info.trains for j in jobs):
            return
        train = train_ds.split("train")
        if train.reference.descriptors is None or test.reference.descriptors is None:
            return
        if train.reference.dim != test.reference.dim:
            raise DataError(f"training dataset {train_ds.name!r} has D={train.reference.dim} descriptors but dataset "
                            f"{test.dataset!r} has D={test.reference.dim}: a model trained on one cannot encode the other; "
                            "expected equal dimensions")

    def _protocol_warnings(self, protocol: Protocol) -> list[str]:
        """A protocol under which most references are positives of every query makes Recall@N trivially high;
        queries without any positive are excluded (or counted as misses): say how many."""
        gt = self._data.ground_truth(protocol)
        counts = np.diff(gt.indptr)
        share = float(counts.mean() / gt.n_ref) if gt.n_ref and counts.size else 0.0
        out = []
        if share > 0.5:
            out.append(f"protocol {protocol.name}: a query has on average {counts.mean():.0f} of the {gt.n_ref} references as positives "
                       f"({share:.0%}): the radius covers most of the map, so Recall@N is high whatever the method")
        without = int((counts == 0).sum())
        if without:
            fate = ("are not evaluated (the protocol excludes them)" if protocol.no_positive == "exclude"
                    else "count as misses (the protocol's policy)")
            out.append(f"protocol {protocol.name}: {without} of {counts.size} queries have no positive reference and {fate}; "
                       "a reference traverse shorter than the query's, or a radius too small, does this")
        return out

    def _record(self, job: PlannedJob, arrays: dict[str, np.ndarray], meta: dict[str, Any], ds: BenchmarkDataset, test: SplitData,
                protocol: Protocol, tag: str) -> JobOutcome:
        """Evaluate a stored ranking for one job and write its record (and per-query results)."""
        c = self.config
        method = job.method
        t0 = time.perf_counter()
        ev = evaluate_protocol(arrays["indices"], arrays["confidence"], self._data, protocol, c.seq_len, c.boundary, self.evaluator,
                               distances=arrays["distances"])
        evaluate_s = time.perf_counter() - t0
        single = method.info.single_match or arrays["indices"].shape[1] == 1
        per_query = job.record_path.with_suffix(".npz")
        warnings = list(self.data_warnings) + list(meta.get("warnings", []))
        if ev.n_evaluated and ev.n_unmatched > 0.25 * ev.n_evaluated:
            warnings.append(f"{method.label}: {ev.n_unmatched} of {ev.n_evaluated} evaluated queries got no match")
        if ev.n_queries >= 10 and ev.ties_at_1 > 0.5 * ev.n_queries:
            warnings.append(f"{method.label}: for {ev.ties_at_1} of {ev.n_queries} queries the best two references are at the same "
                            "distance, so the tie rule (lower reference index) decided the match: are the descriptors degenerate "
                            "(constant or all-zero rows)?")
        training = meta.get("training")
        record = {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "key": job.record_key,
            "ranking_key": job.ranking_key,
            "group_key": job.group_key,
            "job": {
                "method": method.info.name,
                "label": method.label,
                "user_labels": job.labels,
                "family": method.info.family,
                "params": to_jsonable({k: v for k, v in method.params.items()}),
                "resolved_params": meta.get("resolved_params"),
                "code": job.ranking_identity["method"]["code"],
                "dataset": ds.name,
                "dataset_fingerprint": ds.fingerprint,
                "split": c.split,
                "query": job.ranking_identity["query"],
                "seq_len": c.seq_len,
                "boundary": c.boundary,
                "protocol": protocol.name,
                "seed": job.seed if job.ranking_identity["seed"] is not None else None,
                "seeded": job.ranking_identity["seed"] is not None,
                "trains": method.info.trains,
                "train_dataset": job.ranking_identity["train"]["dataset"] if method.info.trains else None,
                "train_fingerprint": job.ranking_identity["train"]["fingerprint"] if method.info.trains else None,
                "single_match": single,
                "uses_sequences": method.info.uses_sequences,
                "top_k": c.top_k,
                "device": c.device,
                "device_used": meta.get("device_used", "cpu"),
                "training": training,
                "notes": meta.get("notes", {}),
                **self._sweep_fields(job),
            },
            "identity": job.record_identity,
            "protocol": {**protocol.to_dict(), "text": protocol.describe(ds.position_unit, ds.radius)},
            "dataset": {
                "name": ds.name,
                "description": ds.description,
                "radius": ds.radius,
                "position_unit": ds.position_unit,
                "n_reference": len(test.reference),
                "n_query": len(test.query),
                "descriptor_kind": ds.meta.get("descriptor_kind"),
                "protocols": {k: p.to_dict() for k, p in ds.protocols.items()},
                "meta": {k: v for k, v in ds.meta.items() if isinstance(v, (str, int, float, bool, dict, list))},
            },
            "metrics": metrics_dict(ev, single),
            "warnings": warnings,
            "timings_s": {**meta.get("timings_s", {}), "evaluate": evaluate_s},
            "memory_mb": meta.get("memory_mb", {}),
            "environment": meta.get("environment", {}),
            "predictions": str(job.prediction_path.relative_to(self.out)),
            "per_query": str(per_query.relative_to(self.out)),
            "evaluation_data": str(self._evaldata.relative_to(self.out)),
            "started_at": meta.get("started_at"),
            "finished_at": utc_now(),
        }
        try:
            save_npz_atomic(per_query, **per_query_arrays(ev, arrays["indices"]))
            record = seal(record, self.out)
            write_json_atomic(job.record_path, record)
        except OSError as e:
            raise OutputError(f"cannot write results under {str(self.out)!r} ({e.strerror or e}); finished jobs are kept") from None
        r = ev.recall
        log.info("%s %s%s: R@1 %.3f  R@5 %s  (%s)", tag, method.label, self._seed_text(job), r[min(r)],
                 "-" if single else f"{r.get(5, float('nan')):.3f}", protocol.name)
        return JobOutcome(job.spec, job.seed, "done", job.record_path, record)

    def _sweep_fields(self, job: PlannedJob) -> dict[str, Any]:
        """``sweep`` ({axis: value}) and ``sweep_base`` (the label without swept method parameters) of a job in a sweep."""
        sweep = self.config.sweep
        if not sweep:
            return {}
        method = job.method
        values: dict[str, Any] = {}
        swept_keys = set()
        for axis, value in sweep.items():
            if value is not None:
                values[axis] = value
                continue
            name, _, key = axis.partition(".")  # a method axis: its value is in the job's parameters
            target = getattr(method, "matcher", method)
            if name in (job.spec.name, target.info.name) and key in target.params:
                values[axis] = to_jsonable(target.params[key])
                swept_keys.add(key)
        label = method.label
        if swept_keys:
            target = getattr(method, "matcher", method)
            changed = {k: v for k, v in target.params.items() if k not in swept_keys and k != "frontend"
                       and k not in target.stages and v != target.info.params[k].default}
            changed.update({k: s.label for k, s in target.stages.items() if k not in swept_keys and s.label != str(target.info.params[k].default)})
            base = format_spec(target.info.name, changed)
            frontend = getattr(method, "frontend", None)
            label = f"{frontend.label}+{base}" if frontend is not None else base
        return {"sweep": values, "sweep_base": label}

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
        if split.distances is None and (split.query.descriptors is None or split.reference.descriptors is None):
            return
        d = split_distance_source(split).block(0, nq)[:, r0 : r0 + nr]  # distances, whatever kind of matrix was imported
        gt = split.ground_truth.subset(np.arange(nq), np.arange(r0, r0 + nr)).to_dense()
        save_npz_atomic(path, distances=d, gt=gt, query_start=0, ref_start=r0)


def per_query_arrays(ev: Evaluation, indices: np.ndarray) -> dict[str, np.ndarray]:
    """What a record stores per query (``records/.../<key>.npz``), for intervals and paired tests:
    ``first_hit`` (rank of the first positive, -1 none), ``evaluated`` (counts for Recall@N),
    ``query_mask`` (evaluated under the window policy), ``has_positive``, ``pr_ignore`` (top-1 only
    soft-positive) and ``matched`` (the query got a match)."""
    return {"first_hit": ev.first_hit, "evaluated": ev.counted, "query_mask": ev.query_mask, "has_positive": ev.has_positive,
            "pr_ignore": ev.pr_ignore, "matched": np.asarray(indices)[:, 0] >= 0}


def metrics_dict(ev: Evaluation, single: bool) -> dict[str, Any]:
    """The ``metrics`` of a record from an evaluation (single-match methods have Recall@1 only)."""
    return to_jsonable({
        "recall_at": {str(n): (None if single and n > 1 else v) for n, v in ev.recall.items()},
        "n_queries": ev.n_queries,
        "n_evaluated": ev.n_evaluated,
        "n_without_positive": ev.n_without_positive,
        "n_unmatched": ev.n_unmatched,
        "ties_at_1": ev.ties_at_1,
        "recall_vs_radius": {"radii": ev.radii, "recall_at_1": ev.recall_by_radius},
        "pr": {
            "auc": ev.pr.auc,
            "recall_at_100_precision": ev.pr.recall_at_100_precision,
            **_thin_curve(ev.pr.precision, ev.pr.recall),
        },
    })


def _thin_curve(precision: np.ndarray, recall: np.ndarray, max_points: int = 200) -> dict[str, np.ndarray]:
    """At most ``max_points`` points of a PR curve, evenly spaced along it (endpoints kept)."""
    if precision.size > max_points:
        idx = np.unique(np.linspace(0, precision.size - 1, max_points).round().astype(int))
        precision, recall = precision[idx], recall[idx]
    return {"precision": precision, "recall": recall}

