"""The conformance check every method plugin must pass, as named checks.

Like scikit-learn's ``parametrize_with_checks``: :data:`CHECKS` is a list of small named checks,
each selected by the method's metadata (:meth:`Check.applies`: what it needs, whether it trains,
returns one match, uses sequences) and each its own test item (``tests/test_conformance.py``) or
line of ``vprbench check NAME``. A check runs the method on :data:`CHECK_DATASET`, a tiny generated
route hard enough that single-image matching is well below 1.0 (image methods: a generated image
dataset), with the method's ``smoke_params`` (fewer epochs); any exception the plugin raises is
reported as that check's failure, with the check's name and why.

Runs are shared between the checks of one method (:class:`Subject` caches fitted methods), so
the whole list costs a few fits per method.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from vprbench.core.errors import VPRBenchError
from vprbench.data.dataset import BenchmarkDataset, SplitData
from vprbench.data.traverse import Traverse
from vprbench.data.views import ranking_view
from vprbench.data.windows import traverse_windows
from vprbench.metrics.recall import recall_at_n
from vprbench.plugins.api import Method, MethodInfo, Ranking, RunContext

#: The dataset every descriptor method is checked on (see its definition for its difficulty).
CHECK_DATASET = "synth-check"
SEQ_LEN = 5
TOP_K = 10


class CheckFailed(Exception):
    """A conformance check found a problem (the message says which and why)."""


def tiny_image_dataset(folder: Path, n: int = 60, seed: int = 0) -> BenchmarkDataset:
    """Two frame-aligned traverses of ``n`` small PNG images (32x64) written under ``folder``.

    Neighbouring places look alike (each image is the mean of three consecutive random patterns);
    the query traverse is darker and noisier. Positions are frame indices, radius 1 frame.
    """
    from PIL import Image

    from vprbench.data.dataset import SplitIndices

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


# ------------------------------------------------------------------------------- the subject
def _replace_traverse(t: Traverse, **changes: Any) -> Traverse:
    """A copy of ``t`` with attributes replaced without validation (to plant bad values such as NaN)."""
    new = object.__new__(type(t))
    for key, value in vars(t).items():
        object.__setattr__(new, key, value)
    for key, value in changes.items():
        object.__setattr__(new, key, value)
    return new


def _with_segments(t: Traverse, cut: int) -> Traverse:
    """``t`` as two segments [0, cut) and [cut, n)."""
    n = len(t)
    seg = np.where(np.arange(n)[:, None] < cut, [[0, cut]], [[cut, n]]).astype(np.int64)
    return replace(t, segments=seg)


class Subject:
    """A method under check: its class, the check data, and fitted instances shared by the checks."""

    def __init__(self, name: str, registry: Any, dataset: BenchmarkDataset | None = None) -> None:
        from vprbench.data.catalog import load_dataset

        self.name = name
        self.registry = registry
        self.info: MethodInfo = registry.get(name).info
        self.params = dict(self.info.smoke_params)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"vprbench-check-{name}-"))
        atexit.register(shutil.rmtree, self.workdir, True)
        if dataset is None:
            dataset = tiny_image_dataset(self.workdir / "images", n=160) if "images" in self.info.needs else load_dataset(CHECK_DATASET)
        self.dataset = dataset
        self.train = dataset.split("train")
        self.val = dataset.split("val") if "val" in dataset.splits else None
        self.test = dataset.split("test")
        self._fitted: dict[tuple, Method] = {}

    def ctx(self, seq_len: int = SEQ_LEN, boundary: str = "shift", seed: int = 0, cache: bool = True) -> RunContext:
        cache_dir = self.workdir / f"cache-{seed}" if cache else None
        return RunContext(seed=seed, seq_len=seq_len, boundary=boundary, top_k=TOP_K, cache_dir=cache_dir)

    def fitted(self, seq_len: int = SEQ_LEN, boundary: str = "shift", seed: int = 0, cache: bool = True, fresh: bool = False,
               train: SplitData | None = None, val: SplitData | None = None) -> Method:
        """A method created by the registry (smoke parameters) and fitted for these settings."""
        key = (seq_len, boundary, seed, cache)
        if fresh or train is not None or key not in self._fitted:
            method = self.registry.create(self.name, **self.params)
            if self.info.trains:
                method.fit(train or self.train, val if train is not None else self.val, self.ctx(seq_len, boundary, seed, cache))
            if fresh or train is not None:
                return method
            self._fitted[key] = method
        return self._fitted[key]

    def rank(self, split: SplitData | None = None, seq_len: int = SEQ_LEN, boundary: str = "shift", method: Method | None = None,
             seed: int = 0) -> Ranking:
        """A validated ranking of ``split`` (default: the test split) through the ranking view."""
        split = split or self.test
        method = method or self.fitted(seq_len, boundary, seed)
        ranking = method.rank(ranking_view(split), self.ctx(seq_len, boundary, seed))
        if not isinstance(ranking, Ranking):
            raise CheckFailed(f"rank() returned {type(ranking).__name__}, expected a vprbench Ranking")
        ranking.validate(len(split.query), len(split.reference), self.name)
        return ranking

    @cached_property
    def first(self) -> Ranking:
        """The default ranking of the test split (shared by several checks)."""
        return self.rank()


# ------------------------------------------------------------------------------------ checks
@dataclass(frozen=True)
class Check:
    """A named conformance check: ``run(subject)`` raises :class:`CheckFailed` saying why."""

    name: str
    summary: str
    run: Callable[[Subject], None]
    when: Callable[[MethodInfo], bool] = lambda info: True

    def applies(self, info: MethodInfo) -> bool:
        return bool(self.when(info))


def _same_rows(a: Ranking, b: Ranking, rows: np.ndarray | slice = slice(None)) -> bool:
    return bool(np.array_equal(a.indices[rows], b.indices[rows]))


def check_ranking_shapes(s: Subject) -> None:
    r = s.first
    k_expected = 1 if s.info.single_match else min(TOP_K, len(s.test.reference))
    if r.k != k_expected:
        raise CheckFailed(f"returned K={r.k} matches per query, expected {k_expected} (top_k={TOP_K}, single_match={s.info.single_match})")
    matched = r.indices[:, 0] >= 0
    if not matched.any():
        raise CheckFailed("matched no query at all")
    if not np.isfinite(r.confidence[matched]).all():
        raise CheckFailed("confidence is not finite for matched queries (use -inf only for queries without a match)")
    if np.isfinite(r.confidence[~matched]).any():
        raise CheckFailed("queries without a match (index -1) must have confidence -inf")


def check_k_at_most_references(s: Subject) -> None:
    """With fewer references than top_k, K is the number of references (none repeated to fill top_k)."""
    test = s.test
    n = SEQ_LEN + 3  # fewer than TOP_K, enough for one window
    small = replace(test, reference=test.reference.subset(np.arange(n)), explicit_ground_truth=None,
                    distances=None if test.distances is None else test.distances[:, :n])
    r = s.rank(small)
    k_expected = 1 if s.info.single_match else n
    if r.k != k_expected:
        raise CheckFailed(f"with {n} references and top_k={TOP_K} it returned K={r.k} per query, expected {k_expected}")
    idx = np.sort(r.indices, axis=1)
    if ((idx[:, 1:] == idx[:, :-1]) & (idx[:, 1:] >= 0)).any():
        raise CheckFailed(f"with {n} references and top_k={TOP_K} a reference appears twice in one query's ranking")


def check_no_duplicate_references(s: Subject) -> None:
    idx = np.sort(s.first.indices, axis=1)
    dup = (idx[:, 1:] == idx[:, :-1]) & (idx[:, 1:] >= 0)
    if dup.any():
        q = int(np.flatnonzero(dup.any(axis=1))[0])
        raise CheckFailed(f"a reference appears twice in one query's ranking (query {q}: {s.first.indices[q].tolist()})")


def check_deterministic(s: Subject) -> None:
    a = s.rank(method=s.fitted(cache=False, fresh=True))
    b = s.rank(method=s.fitted(cache=False, fresh=True))
    if not (np.array_equal(a.indices, b.indices) and np.allclose(a.distances, b.distances, equal_nan=True)):
        raise CheckFailed("not deterministic: two independent runs (trainings without cache) with the same seed ranked differently")


def _scrambled(split: SplitData, rng: np.random.Generator) -> SplitData:
    def traverse(t: Traverse) -> Traverse:
        return replace(t, positions=rng.uniform(-1e6, 1e6, t.positions.shape),
                       meta={"source_indices": rng.permutation(len(t)), "generator": "scrambled", "frame_corruption": rng.integers(0, 3, len(t))})
    return replace(split, query=traverse(split.query), reference=traverse(split.reference), explicit_ground_truth=None)


def check_independent_of_positions(s: Subject) -> None:
    scrambled = s.rank(_scrambled(s.test, np.random.default_rng(0)))
    if not _same_rows(s.first, scrambled):
        raise CheckFailed("the ranking changes when the evaluation split's positions and metadata change: it uses ground truth "
                          "(positions, radius or metadata) in some form")


def check_independent_of_names(s: Subject) -> None:
    test = s.test
    q, r = replace(test.query, name="query-renamed"), replace(test.reference, name="reference-renamed")
    if test.query.image_paths is not None:  # same images under neutral names
        nq = len(test.query)

        def name(i: int, j: int) -> str:
            return f"{(i * 7919 + j * 50021) % 100003:06d}"

        # the references take the query's new names shifted by half the traverse: a name shared by a
        # query and a reference now belongs to a different place, so matching by file name shows
        names = {"q": [name(i, 0) for i in range(nq)],
                 "r": [name((j + max(1, nq // 2)) % nq, 0) if j < nq else name(j, 1) for j in range(len(test.reference))]}

        def copies(t: Traverse, tag: str) -> tuple[Path, ...]:
            out = []
            for i, p in enumerate(t.image_paths):
                target = s.workdir / f"renamed-{tag}" / f"{names[tag][i]}{p.suffix}"
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.exists():
                    shutil.copyfile(p, target)
                out.append(target)
            return tuple(out)
        q, r = replace(q, image_paths=copies(test.query, "q")), replace(r, image_paths=copies(test.reference, "r"))
    renamed = s.rank(replace(test, query=q, reference=r, dataset="renamed-dataset", split="renamed-split"))
    if not _same_rows(s.first, renamed):
        raise CheckFailed("the ranking changes when only names change (dataset, traverse or image file names): file names may encode positions")


def check_query_subset(s: Subject) -> None:
    test = s.test
    n = len(test.query)
    b = (2 * n) // 3
    sub = replace(test, query=test.query.subset(np.arange(b)), explicit_ground_truth=None,
                  distances=None if test.distances is None else test.distances[:b])
    part = s.rank(sub)
    rows = np.arange(b - (SEQ_LEN if s.info.uses_sequences else 0))
    if not _same_rows(s.first, part, rows):
        bad = int(rows[np.flatnonzero((s.first.indices[rows] != part.indices[rows]).any(axis=1))[0]])
        raise CheckFailed(f"ranking the first {b} queries alone changes query {bad}'s row: a query's ranking must not depend on later queries")


def check_inputs_not_modified(s: Subject) -> None:
    def frozen(t: Traverse) -> Traverse:
        if t.descriptors is None:
            return t
        d = t.descriptors.copy()
        d.flags.writeable = False
        return _replace_traverse(t, descriptors=d)

    def copy_split(split: SplitData | None) -> SplitData | None:
        return None if split is None else replace(split, query=frozen(split.query), reference=frozen(split.reference))

    train, val, test = copy_split(s.train), copy_split(s.val), copy_split(s.test)
    before = [None if x is None else (x.query.descriptors, x.reference.descriptors) for x in (train, val, test)]
    snapshots = [None if b is None else tuple(None if a is None else a.copy() for a in b) for b in before]
    try:
        method = s.fitted(train=train, val=val) if s.info.trains else s.fitted(fresh=True)
        s.rank(test, method=method)
    except ValueError as e:
        if "read-only" in str(e):
            raise CheckFailed(f"writes into its input descriptors ({e})") from None
        raise
    for b, snap in zip(before, snapshots):
        for x, y in zip(b or (), snap or ()):
            if x is not None and not np.array_equal(x, y):
                raise CheckFailed("modified its input descriptors")


def check_rejects_nan(s: Subject) -> None:
    test = s.test
    if test.query.descriptors is None:
        return
    d = test.query.descriptors.copy()
    d[len(d) // 2, 0] = np.nan
    bad = replace(test, query=_replace_traverse(test.query, descriptors=d))
    method = s.fitted()
    try:
        method.rank(ranking_view(bad), s.ctx())
    except VPRBenchError:
        return
    raise CheckFailed("ranked a split whose descriptors hold NaN without raising an error (expected a DataError naming the data)")


def check_windows_within_segments(s: Subject) -> None:
    """Frames of one segment must not change the ranking of windows in another segment."""
    test = s.test
    nq, nr = len(test.query), len(test.reference)
    mq, mr = nq // 2, nr // 2
    base = replace(test, query=_with_segments(test.query, mq), reference=_with_segments(test.reference, mr))
    rng = np.random.default_rng(1)

    def perturbed(t: Traverse, cut: int) -> Traverse:
        d = t.descriptors.copy()
        d[:cut] = rng.normal(size=d[:cut].shape).astype(np.float32)
        return replace(t, descriptors=d)

    ref_run = s.rank(base)
    q_run = s.rank(replace(base, query=perturbed(base.query, mq)))
    if not _same_rows(ref_run, q_run, slice(mq, nq)):
        raise CheckFailed("changing query frames before a segment bound changed the rankings of queries after it: windows cross segment bounds")
    r_run = s.rank(replace(base, reference=perturbed(base.reference, mr)))
    for row_a, row_b in zip(ref_run.indices, r_run.indices):
        common = [i for i in row_a if i >= mr and i in set(row_b.tolist())]
        order_b = [i for i in row_b if i in set(common)]
        if common != order_b:
            raise CheckFailed("changing reference frames before a segment bound changed the order of references after it: "
                              "reference windows cross segment bounds")


def check_drop_policy(s: Subject) -> None:
    """Under boundary "drop", queries without a full window get no match."""
    r = s.rank(boundary="drop")
    _, q_valid = traverse_windows(s.test.query, SEQ_LEN, "drop")
    if (r.indices[~q_valid] >= 0).any():
        raise CheckFailed(f'under boundary "drop", {int((r.indices[~q_valid, 0] >= 0).sum())} queries without a full window got a match')


def check_uses_sequence_length(s: Subject) -> None:
    short, long_ = s.rank(seq_len=3), s.rank(seq_len=9)
    if np.array_equal(short.indices, long_.indices):
        raise CheckFailed("the method says it uses sequences (uses_sequences=True) but its ranking is the same for L=3 and L=9")


def _same_ranking(a: Ranking, b: Ranking) -> bool:
    return bool(np.array_equal(a.indices, b.indices) and np.allclose(a.distances, b.distances, rtol=1e-5, atol=1e-6, equal_nan=True))


def check_same_for_every_length(s: Subject) -> None:
    """uses_sequences=False: the runner computes one ranking for every L, so L must not change it."""
    if not _same_ranking(s.rank(seq_len=3), s.rank(seq_len=9)):
        raise CheckFailed("the method says it does not use sequences (uses_sequences=False) but its ranking differs for L=3 and L=9: "
                          "the runner would serve one L's ranking for another; declare uses_sequences=True")


def check_same_for_every_seed(s: Subject) -> None:
    """Not seeded: the runner computes one ranking for every seed, so the seed must not change it."""
    a = s.rank(method=s.fitted(seed=0, cache=False, fresh=True), seed=0)
    b = s.rank(method=s.fitted(seed=1, cache=False, fresh=True), seed=1)
    if not _same_ranking(a, b):
        raise CheckFailed("the ranking differs for seeds 0 and 1 but the method is not seeded (MethodInfo.seeded is False, or unset "
                          "for a training-free method): the runner would serve one seed's ranking for all; declare seeded=True")


def check_confidence_oriented(s: Subject) -> None:
    r = s.first
    gt = s.test.ground_truth
    matched = (r.indices[:, 0] >= 0) & gt.has_positive
    correct = gt.hits(r.indices[:, :1])[:, 0][matched]
    conf = r.confidence[matched]
    if correct.sum() < 5 or (~correct).sum() < 5:
        return  # too few of one kind to tell
    from scipy.stats import mannwhitneyu

    auc = mannwhitneyu(conf[correct], conf[~correct]).statistic / (correct.sum() * (~correct).sum())
    if not auc > 0.5:
        raise CheckFailed(f"confidence is not oriented: correct top-1 matches have lower confidence than wrong ones (AUC {auc:.2f} <= 0.5); "
                          "higher confidence must mean more likely correct")


def check_better_than_chance(s: Subject) -> None:
    gt = s.test.ground_truth
    r1 = recall_at_n(gt.hits(s.first.indices), (1,), gt.has_positive)[1]
    chance = float(gt.counts[gt.has_positive].mean() / gt.n_ref)
    bound = max(0.1, 2 * chance)
    if not r1 >= bound:
        raise CheckFailed(f"Recall@1 {r1:.3f} on {s.dataset.name} is below the sanity bound {bound:.3f} (chance {chance:.3f})")


def _descriptors(info: MethodInfo) -> bool:
    return "images" not in info.needs


CHECKS: list[Check] = [
    Check("ranking_shapes", "indices [n_query, K], distances ascending, confidence finite for matches, -inf otherwise", check_ranking_shapes),
    Check("no_duplicate_references", "no reference twice in one query's ranking", check_no_duplicate_references),
    Check("k_at_most_references", "fewer references than top_k: K is the number of references", check_k_at_most_references),
    Check("deterministic", "two independent runs (no cache) with one seed rank identically", check_deterministic),
    Check("independent_of_positions", "the ranking does not change with the evaluation split's positions or metadata", check_independent_of_positions),
    Check("independent_of_names", "the ranking does not change with dataset, traverse or image file names", check_independent_of_names),
    Check("query_subset", "ranking the first queries alone gives the same rows", check_query_subset),
    Check("inputs_not_modified", "fit and rank leave their input descriptors untouched", check_inputs_not_modified, _descriptors),
    Check("rejects_nan", "NaN descriptors raise an error", check_rejects_nan, _descriptors),
    Check("windows_within_segments", "frames of one segment never change windows of another", check_windows_within_segments,
          lambda i: i.uses_sequences and _descriptors(i)),
    Check("drop_policy", 'boundary "drop": no match for queries without a full window', check_drop_policy,
          lambda i: i.uses_sequences),
    Check("uses_sequence_length", "a method that uses sequences changes with L", check_uses_sequence_length, lambda i: i.uses_sequences),
    Check("same_for_every_length", "a method that does not use sequences ranks alike for every L", check_same_for_every_length,
          lambda i: not i.uses_sequences),
    Check("same_for_every_seed", "a method that is not seeded ranks alike for every seed", check_same_for_every_seed,
          lambda i: not i.depends_on_seed),
    Check("confidence_oriented", "higher confidence means more likely correct", check_confidence_oriented),
    Check("better_than_chance", "Recall@1 on the check dataset clears a sanity bound", check_better_than_chance),
]


def checks_for(info: MethodInfo) -> list[Check]:
    """The checks that apply to a method, by its metadata."""
    return [c for c in CHECKS if c.applies(info)]


_SUBJECTS: dict[tuple[int, str], Subject] = {}


def subject(name: str, registry: Any) -> Subject:
    """The shared :class:`Subject` of method ``name`` in ``registry`` (created once per process)."""
    key = (id(registry), name)
    if key not in _SUBJECTS:
        _SUBJECTS[key] = Subject(name, registry)
    return _SUBJECTS[key]


def run_check(check: Check, name: str, registry: Any) -> str | None:
    """Run one check on method ``name``; the problem found (None: passed). Plugin exceptions are problems."""
    try:
        check.run(subject(name, registry))
    except CheckFailed as e:
        return str(e)
    except Exception as e:  # noqa: BLE001 - a broken plugin is a failed check, not a crash
        where = traceback.extract_tb(e.__traceback__)[-1]
        return f"raised {type(e).__name__}: {e} ({Path(where.filename).name}:{where.lineno})"
    return None


def check_method(name: str, registry: Any) -> dict[str, str | None]:
    """Every applicable check of method ``name``: {check name: problem or None}."""
    return {c.name: run_check(c, name, registry) for c in checks_for(registry.get(name).info)}
