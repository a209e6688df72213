"""The conformance check cannot be fooled: each planted broken plugin fails the check made for its
fault, with a message saying which check and why (and a raising plugin is a failed check, not a crash)."""

from __future__ import annotations

import pytest

from vprbench.cli.main import main
from vprbench.plugins.conformance import check_method
from vprbench.plugins.registry import discover

HEADER = """
import numpy as np
from vprbench.kernels import mask_queries, sequence_topk_from, split_distance_source, traverse_windows, window_starts
from vprbench.method import Method, MethodInfo, Ranking


def seqmatch(split, ctx, q_starts=None, q_valid=None):
    src = split_distance_source(split)
    qs, qv = traverse_windows(split.query, ctx.seq_len, ctx.boundary)
    rs, rv = traverse_windows(split.reference, ctx.seq_len, ctx.boundary)
    qs = qs if q_starts is None else q_starts
    qv = qv if q_valid is None else q_valid
    idx, dist = sequence_topk_from(src, qs, rs, ctx.seq_len, ctx.top_k, r_valid=rv)
    return mask_queries(idx, dist, qv)
"""

PLANTED = {
    # windows over the whole traverse, ignoring its segments
    "crosses-bounds": ("windows_within_segments", """
    def rank(self, split, ctx):
        n = len(split.query)
        starts, _ = window_starts(np.tile([[0, n]], (n, 1)), ctx.seq_len, "shift")
        return Ranking(*seqmatch(split, ctx, q_starts=starts))
"""),
    # says it uses sequences but ranks single frames
    "ignores-l": ("uses_sequence_length", """
    def rank(self, split, ctx):
        from vprbench.kernels import nearest_neighbours
        return Ranking(*nearest_neighbours(split.query.descriptors, split.reference.descriptors, ctx.top_k))
"""),
    # confidence = the distance itself: higher means worse
    "inverted-confidence": ("confidence_oriented", """
    def rank(self, split, ctx):
        idx, dist = seqmatch(split, ctx)
        return Ranking(idx, dist, np.where(idx[:, 0] >= 0, dist[:, 0].astype(float), -np.inf))
"""),
    # reads ground truth in disguise (bypassing the ranking view)
    "reads-positions": ("independent_of_positions", """
    def rank(self, split, ctx):
        from vprbench.kernels import nearest_neighbours
        q = object.__getattribute__(split.query, "positions")
        r = object.__getattribute__(split.reference, "positions")
        return Ranking(*nearest_neighbours(np.c_[q, np.ones(len(q))], np.c_[r, np.ones(len(r))], ctx.top_k))
"""),
    # reads ground truth directly: the ranking view refuses
    "reads-ground-truth": ("ranking_shapes", """
    def rank(self, split, ctx):
        split.ground_truth
        return Ranking(*seqmatch(split, ctx))
"""),
    # declares uses_sequences=False (the runner computes it once for every L) but reads ctx.seq_len
    "says-no-sequences": ("same_for_every_length", """
    def rank(self, split, ctx):
        from dataclasses import replace
        q = split.query.descriptors + 0.05 * ctx.seq_len * np.roll(split.query.descriptors, 1, axis=1)
        return Ranking(*seqmatch(replace(split, query=split.query.with_descriptors(q)), replace(ctx, seq_len=1)))
""", 'uses_sequences=False, family="single-image"'),
    # training-free and not declared seeded (computed once for every seed) but draws from ctx.rng()
    "says-unseeded": ("same_for_every_seed", """
    def rank(self, split, ctx):
        from dataclasses import replace
        q = split.query.descriptors + ctx.rng().normal(0, 0.3, split.query.descriptors.shape).astype(np.float32)
        return Ranking(*seqmatch(replace(split, query=split.query.with_descriptors(q)), ctx))
"""),
    "raises": ("ranking_shapes", """
    def rank(self, split, ctx):
        raise RuntimeError("boom")
"""),
    "duplicates": ("no_duplicate_references", """
    def rank(self, split, ctx):
        idx, dist = seqmatch(split, ctx)
        idx[:, 1] = idx[:, 0]
        dist[:, 1] = dist[:, 0]
        return Ranking(idx, dist)
"""),
    "modifies-input": ("inputs_not_modified", """
    def rank(self, split, ctx):
        split.query.descriptors[:] *= 2.0
        return Ranking(*seqmatch(split, ctx))
"""),
    "accepts-nan": ("rejects_nan", """
    def rank(self, split, ctx):
        from dataclasses import replace
        q = np.nan_to_num(split.query.descriptors)
        view = replace(split, query=split.query.with_descriptors(q))
        return Ranking(*seqmatch(view, ctx))
"""),
    "drop-ignored": ("drop_policy", """
    def rank(self, split, ctx):
        return Ranking(*seqmatch(split, ctx, q_valid=np.ones(len(split.query), bool)))
"""),
    "nondeterministic": ("deterministic", """
    def rank(self, split, ctx):
        idx, dist = seqmatch(split, ctx)
        perm = np.random.default_rng().permutation(idx.shape[1])
        return Ranking(idx[:, perm[:1]].repeat(idx.shape[1], 1)[:, :1], dist[:, perm[:1]][:, :1])
"""),
    # normalises each reference column over all queries: a query's row depends on the others
    "depends-on-other-queries": ("query_subset", """
    def rank(self, split, ctx):
        from vprbench.kernels import split_distances, topk_smallest
        d = split_distances(split)
        d = (d - d.mean(0)) / d.std(0)
        idx, dist = topk_smallest(d - d.min(), ctx.top_k)
        return Ranking(idx, dist)
"""),
    # -- wrong output shapes
    "drops-last-query": ("ranking_shapes", """
    def rank(self, split, ctx):
        idx, dist = seqmatch(split, ctx)
        return Ranking(idx[:-1], dist[:-1])
"""),
    "extra-columns": ("ranking_shapes", """
    def rank(self, split, ctx):
        from dataclasses import replace
        return Ranking(*seqmatch(split, replace(ctx, top_k=ctx.top_k + 5)))
"""),
    "index-out-of-range": ("ranking_shapes", """
    def rank(self, split, ctx):
        idx, dist = seqmatch(split, ctx)
        idx[0, 0] += len(split.reference)  # one past the end, and beyond
        return Ranking(idx, dist)
"""),
    # always ctx.top_k columns: with fewer references than that it repeats them (K > number of references)
    "k-beyond-references": ("k_at_most_references", """
    def rank(self, split, ctx):
        from dataclasses import replace
        n_ref = len(split.reference)
        idx, dist = seqmatch(split, replace(ctx, top_k=min(ctx.top_k, n_ref)))
        cols = np.arange(ctx.top_k) % idx.shape[1]
        return Ranking(idx[:, cols], np.sort(dist[:, cols], axis=1))
"""),
    # -- worse than chance: the farthest reference windows first (reported with ascending pseudo-distances)
    "farthest-first": ("better_than_chance", """
    def rank(self, split, ctx):
        from dataclasses import replace
        idx, dist = seqmatch(split, replace(ctx, top_k=len(split.reference)))
        far = idx[:, ::-1][:, : ctx.top_k]
        return Ranking(far, np.tile(np.arange(ctx.top_k, dtype=np.float32), (len(far), 1)))
"""),
    # -- reads ground truth in disguise: the view hides positions, so it reloads the dataset by the split's
    # name through the catalog and ranks by the true positions (falling back to descriptors where that fails)
    "reloads-dataset-by-name": ("independent_of_names", """
    def rank(self, split, ctx):
        from vprbench.data.catalog import load_dataset
        try:
            full = load_dataset(split.dataset).split(split.split)
        except Exception:
            return Ranking(*seqmatch(split, ctx))
        d = np.linalg.norm(full.query.positions[:, None] - full.reference.positions[None], axis=-1)
        idx = np.argsort(d, axis=1, kind="stable")[:, : ctx.top_k]
        return Ranking(idx, np.take_along_axis(d, idx, axis=1))
"""),
    # frame-aligned image folders: references ordered by how far their file number is from the query's
    "reads-file-numbers": ("independent_of_names", """
    def rank(self, split, ctx):
        q = np.array([int(p.stem) for p in split.query.image_paths], dtype=float)
        r = np.array([int(p.stem) for p in split.reference.image_paths], dtype=float)
        d = np.abs(q[:, None] - r[None])
        idx = np.argsort(d, axis=1, kind="stable")[:, : ctx.top_k]
        return Ranking(idx, np.take_along_axis(d, idx, axis=1))
""", 'needs=("images",), uses_sequences=False, family="single-image"'),
    # ... or only the reference with the query's own file name first, the rest by pixels
    "same-file-name-first": ("independent_of_names", """
    def rank(self, split, ctx):
        from PIL import Image
        from vprbench.kernels import nearest_neighbours
        def pixels(paths):
            return np.stack([np.asarray(Image.open(p).convert("L"), dtype=np.float32).ravel() for p in paths])
        n_ref = len(split.reference)
        idx, _ = nearest_neighbours(pixels(split.query.image_paths), pixels(split.reference.image_paths), n_ref)
        names = {p.name: j for j, p in enumerate(split.reference.image_paths)}
        for i, p in enumerate(split.query.image_paths):
            if p.name in names:
                j = names[p.name]
                idx[i] = np.r_[j, idx[i][idx[i] != j]]
        k = min(ctx.top_k, n_ref)
        return Ranking(idx[:, :k], np.tile(np.arange(k, dtype=np.float32), (len(idx), 1)))
""", 'needs=("images",), uses_sequences=False, family="single-image"'),
    # -- a trainable plugin whose training is not a function of the seed: an unseeded random projection
    "unseeded-training": ("deterministic", """
    def fit(self, train, val, ctx):
        self.proj = np.random.default_rng().normal(size=(train.reference.dim, 16)).astype(np.float32)

    def rank(self, split, ctx):
        from dataclasses import replace
        view = replace(split, query=split.query.with_descriptors(split.query.descriptors @ self.proj),
                       reference=split.reference.with_descriptors(split.reference.descriptors @ self.proj))
        return Ranking(*seqmatch(view, ctx))
""", "trains=True"),
}

#: Plants that no check catches yet: the gap each shows (the test is a strict xfail until a check closes it).
GAPS: dict[str, str] = {}


def plugin_source(name: str, body: str, info: str = "") -> str:
    """A plugin file defining method ``name`` with methods ``body``; ``info``: MethodInfo keywords overriding the defaults."""
    cls = "".join(part.title() for part in name.split("-"))
    fields = {"family": '"sequence-matching"', "needs": '("descriptors",)'}
    for item in filter(None, (x.strip() for x in info.split(", ") if x.strip())):
        key, value = item.split("=", 1)
        fields[key] = value
    args = ", ".join(f"{k}={v}" for k, v in fields.items())
    return HEADER + f"""

class {cls}(Method):
    info = MethodInfo(name={name!r}, summary="planted broken plugin", {args})
{body}"""


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    for name, (_, body, *info) in PLANTED.items():
        (folder / f"{name.replace('-', '_')}.py").write_text(plugin_source(name, body, *info))
    registry = discover([folder])
    assert not registry.failures, registry.failures
    return folder, registry


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=GAPS[name])) if name in GAPS else name for name in sorted(PLANTED)
])
def test_planted_plugin_fails_its_check(planted, name):
    _, registry = planted
    expected = PLANTED[name][0]
    results = check_method(name, registry)
    assert results[expected] is not None, f"{name}: check {expected!r} passed; results: {results}"


def test_a_correct_plugin_passes_everything(planted):
    """The shared helper of the planted plugins is itself correct (so each failure above is the plant)."""
    folder, _ = planted
    (folder / "correct.py").write_text(plugin_source("correct", """
    def rank(self, split, ctx):
        return Ranking(*seqmatch(split, ctx))
"""))
    results = check_method("correct", discover([folder]))
    assert all(v is None for v in results.values()), results


def test_check_command_reports_failures_without_traceback(planted, capsys):
    folder, _ = planted
    code = main(["--plugins", str(folder), "check", "raises", "reads-ground-truth"])
    out = capsys.readouterr()
    assert code == 1
    assert "raises: FAILED" in out.out and "ranking_shapes: raised RuntimeError: boom" in out.out
    assert "rank() may not read the 'ground_truth'" in out.out
    assert "Traceback" not in out.out + out.err
