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
}


def plugin_source(name: str, body: str) -> str:
    cls = "".join(part.title() for part in name.split("-"))
    return HEADER + f"""

class {cls}(Method):
    info = MethodInfo(name={name!r}, family="sequence-matching", summary="planted broken plugin", needs=("descriptors",))
{body}"""


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    for name, (_, body) in PLANTED.items():
        (folder / f"{name.replace('-', '_')}.py").write_text(plugin_source(name, body))
    registry = discover([folder])
    assert not registry.failures, registry.failures
    return folder, registry


@pytest.mark.parametrize("name", sorted(PLANTED))
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
