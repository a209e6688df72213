"""Running a grid of jobs: in-process (default), on a local process pool (``--workers N``) or on a
Dask cluster (``--scheduler ADDRESS``, or ``--scheduler local`` for a LocalCluster; the ``dask``
extra).

The coordinator plans every job of every run configuration first (errors before any work), groups
jobs by ranking (jobs that share a computation run one after the other in one task), and submits
one task per group. A task ships configuration, not arrays: each worker rebuilds its registry
(built-ins, the same plugin folders), loads datasets from the shared data directory (once per
worker process) and writes records atomically to the shared output folder. Claims on rankings and
on trained models (:mod:`vprbench.core.claims`) make work that several jobs share happen once; a
crashed worker loses only its own task, and running the same command again finishes the rest.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vprbench.core.errors import ConfigError
from vprbench.core.progress import progress_bar
from vprbench.plugins.registry import Registry, discover
from vprbench.plugins.specs import MethodSpec, parse_spec
from vprbench.running.runner import JobOutcome, RunConfig, Runner, RunSummary

log = logging.getLogger("vprbench")


@dataclass(frozen=True)
class Task:
    """Jobs that share one ranking: (run configuration, method spec text, seed) each, run in order."""

    items: tuple[tuple[dict[str, Any], str, int], ...]
    plugins: tuple[str, ...] = ()
    #: progress tags of the items (``[k/N]``: the job's number in the whole grid)
    tags: tuple[str, ...] = ()


@dataclass
class TaskResult:
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    worker: str = ""


def config_dict(config: RunConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["out"] = str(config.out)
    return d


_REGISTRIES: dict[tuple[str, ...], Registry] = {}


def execute(task: Task) -> TaskResult:
    """Run a task's jobs in this process (the function every executor calls; module level, picklable)."""
    plugins = tuple(task.plugins)
    if plugins not in _REGISTRIES:
        _REGISTRIES[plugins] = discover(plugins)
    registry = _REGISTRIES[plugins]
    result = TaskResult(worker=f"{os.uname().nodename}:{os.getpid()}")
    for i, (config, spec_text, seed) in enumerate(task.items):
        runner = Runner(RunConfig(**{**config, "out": Path(config["out"]), "seeds": [seed]}), registry)
        numbers = [task.tags[i]] if i < len(task.tags) else None
        for o in runner.run([parse_spec(spec_text, registry)], numbers=numbers).outcomes:
            result.outcomes.append({"label": o.spec.label, "seed": o.seed, "status": o.status, "error": o.error,
                                    "record_path": str(o.record_path) if o.record_path else None})
    return result


def _pool_worker_init(threads: int) -> None:
    """Process-pool worker initialiser: Ctrl-C is the parent's to handle (it stops the workers, without a
    traceback from each), and the thread limit of :func:`_limit_threads`."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_threads(threads)


def _limit_threads(threads: int) -> None:
    """Worker initialiser: one BLAS / torch thread pool size per worker, so workers do not oversubscribe the cores."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn stacks, optional here
        pass
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover
        pass
    os.environ["VPRBENCH_TORCH_THREADS"] = str(threads)


def plan_tasks(configs: list[RunConfig], specs: list[MethodSpec], registry: Registry, plugins: Iterable[str] = ()) -> list[Task]:
    """Every job of every configuration, planned (validated) now, grouped by shared ranking."""
    groups: dict[str, list[tuple[dict[str, Any], str, int]]] = {}
    for config in configs:
        runner = Runner(config, registry)
        ds, _ = runner.dataset(config.dataset)
        test = ds.split(config.split, config.query)
        train_ds = runner.dataset(config.train_dataset)[0] if config.train_dataset else ds
        from vprbench.data.windows import check_seq_len

        check_seq_len(config.seq_len, test.query.segment_bounds, what=f"query traverse of {ds.name}/{config.split}")
        runner.protocol(ds)  # unknown protocol or bad override: error now
        for job in runner.plan(specs, ds, test, train_ds):
            groups.setdefault(job.ranking_key, []).append((config_dict(config), job.spec.label, job.seed))
    total = sum(len(items) for items in groups.values())
    tasks, n = [], 0
    for items in groups.values():
        tasks.append(Task(tuple(items), tuple(str(p) for p in plugins), tuple(f"[{n + i + 1}/{total}]" for i in range(len(items)))))
        n += len(items)
    return tasks


def _summary(results: list[TaskResult]) -> RunSummary:
    summary = RunSummary()
    for r in results:
        for o in r.outcomes:
            from vprbench.running.records import read_record

            record = None
            if o["record_path"] and o["status"] in ("done", "skipped"):
                record = read_record(Path(o["record_path"]))
            summary.outcomes.append(JobOutcome(MethodSpec(o["label"]), o["seed"], o["status"],
                                               Path(o["record_path"]) if o["record_path"] else None, record, o["error"]))
    return summary


def run_tasks(tasks: list[Task], workers: int = 1, scheduler: str | None = None, progress: bool = False) -> RunSummary:
    """Execute ``tasks`` in-process (workers 1, no scheduler), on a process pool, or on Dask."""
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if scheduler is not None:
        return _run_dask(tasks, scheduler, workers, progress)
    if workers == 1:
        results = []
        bar = progress_bar(tasks, enabled=progress, desc="jobs", unit="task")
        for task in bar:
            results.append(execute(task))
        return _summary(results)
    import concurrent.futures as cf
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool

    threads = max(1, (os.cpu_count() or 1) // workers)
    results: list[TaskResult] = []
    pending = list(tasks)
    attempts = {id(t): 0 for t in tasks}
    bar = progress_bar(total=len(tasks), enabled=progress, desc="jobs", unit="task")
    failed = 0
    while pending:  # a crashed worker breaks the pool: the tasks it did not finish go to a new one, once more
        broken: list[Task] = []
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_pool_worker_init,
                                      initargs=(threads,))
        try:
            futures = {pool.submit(execute, t): t for t in pending}
            for fut in cf.as_completed(futures):
                t = futures[fut]
                try:
                    results.append(fut.result())
                except BrokenProcessPool:
                    attempts[id(t)] += 1
                    if attempts[id(t)] < 2:
                        broken.append(t)
                        continue
                    failed += 1
                    results.append(_failed(t, "a worker process crashed running it (twice)"))
                except Exception as e:
                    failed += 1
                    results.append(_failed(t, f"worker error: {e!r}"))
                bar.update(1)
                bar.set_postfix(done=len(results) - failed, running=min(workers, len(futures) - len(results)), failed=failed)
        except KeyboardInterrupt:  # stop now: the workers' unfinished jobs leave no record (their claims go stale)
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        if broken:
            log.warning("a worker process crashed; rerunning the %d task(s) it left unfinished", len(broken))
        pending = broken
    bar.close()
    return _summary(results)


def _failed(task: Task, why: str) -> TaskResult:
    return TaskResult([{"label": s, "seed": seed, "status": "failed", "error": why, "record_path": None} for _, s, seed in task.items])


def _dask_running(client: Any, keys: dict) -> int:
    """How many of ``keys`` the cluster's workers are processing now (0 if the scheduler cannot say)."""
    try:
        return sum(1 for ks in client.processing().values() for k in ks if k in keys)
    except Exception:  # progress display only: never fail a run for it
        return 0


def _run_dask(tasks: list[Task], scheduler: str, workers: int, progress: bool) -> RunSummary:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError("--scheduler needs Dask's distributed scheduler: pip install 'vprbench[dask]'") from None
    cluster = None
    if scheduler == "local":
        threads = max(1, (os.cpu_count() or 1) // max(workers, 1))
        cluster = LocalCluster(n_workers=max(workers, 1), threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
        client.run(_limit_threads, threads)
    else:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, ValueError, TimeoutError) as e:
            raise ConfigError(f"--scheduler {scheduler!r}: cannot connect to a Dask scheduler there ({str(e).splitlines()[0]}); "
                              "expected a running scheduler's address such as tcp://HOST:8786, or 'local'") from None
    results, failed = [], 0
    try:
        futures = [client.submit(execute, t, pure=False, key=f"vprbench-task-{i}-{time.time_ns()}") for i, t in enumerate(tasks)]
        bar = progress_bar(total=len(futures), enabled=progress, desc="jobs", unit="task")
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            try:
                results.append(fut.result())
            except Exception as e:  # the task failed on every worker it was retried on
                failed += 1
                results.append(_failed(tasks[index[fut.key]], f"worker failed: {e!r}"))
            bar.update(1)
            if progress:
                bar.set_postfix(done=len(results) - failed, running=_dask_running(client, index), failed=failed)
        bar.close()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return _summary(results)
