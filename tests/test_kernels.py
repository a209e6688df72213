"""Kernels: the blocked fast paths equal naive per-query loops; bad input gets clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.dataset import SplitData
from vprbench.data.traverse import Traverse, segment_bounds_from_ids
from vprbench.data.windows import gather_windows, window_starts
from vprbench.matching.descriptors import nearest_neighbours, sequential_descriptor_topk, window_weighted_sum
from vprbench.matching.distances import DistanceSource, l2_normalise, pairwise_distances, split_distance_source, split_distances
from vprbench.matching.sequence import aggregate_diagonals, sequence_distances, sequence_topk, sequence_topk_from, topk_from
from vprbench.matching.topk import mask_queries, topk_smallest


def _unit(rng, n, d):
    return l2_normalise(rng.normal(size=(n, d)).astype(np.float32))


def naive_seq_dist(q, r, qs, rs, L, variant="meanOfPairs"):
    """The per-query definition, loop by loop (float64)."""
    out = np.zeros((len(qs), len(rs)))
    offs = [L // 2] if variant == "centerOnly" else range(L)
    for t, a in enumerate(qs):
        for s, b in enumerate(rs):
            out[t, s] = np.mean([np.linalg.norm(q[a + k].astype(np.float64) - r[b + k]) for k in offs])
    return out


def test_pairwise_distances_equal_naive():
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    naive = np.array([[np.linalg.norm(a - b) for b in r] for a in q])
    np.testing.assert_allclose(pairwise_distances(q, r), naive, rtol=1e-5, atol=1e-5)
    assert pairwise_distances(q, r).dtype == np.float32


def test_topk_smallest_breaks_ties_by_lower_index():
    d = np.array([[3.0, 1.0, 1.0, 0.5, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0, 2.0, 2.0]], dtype=np.float32)
    idx, val = topk_smallest(d, 3)
    assert idx.tolist() == [[3, 1, 2], [0, 1, 2]]
    assert val.tolist() == [[0.5, 1.0, 1.0], [2.0, 2.0, 2.0]]
    rng = np.random.default_rng(1)
    m = rng.integers(0, 4, size=(50, 40)).astype(np.float32)  # many ties
    idx, _ = topk_smallest(m, 7)
    assert np.array_equal(idx, np.argsort(m, axis=1, kind="stable")[:, :7])


def test_aggregate_diagonals_hand_computed():
    d = np.arange(12, dtype=np.float32).reshape(3, 4)
    # out[0,0] = (d00 + d11)/2 = (0 + 5)/2
    assert aggregate_diagonals(d, 2).tolist() == [[2.5, 3.5, 4.5], [6.5, 7.5, 8.5]]
    with pytest.raises(ConfigError):
        aggregate_diagonals(d, 0)
    with pytest.raises(DataError):
        aggregate_diagonals(d, 4)


@pytest.mark.parametrize("policy", ["shift", "drop"])
@pytest.mark.parametrize("variant", ["meanOfPairs", "centerOnly"])
@pytest.mark.parametrize("L", [1, 4, 5])
def test_sequence_topk_equals_naive_per_query(policy, variant, L):
    rng = np.random.default_rng(L)
    q, r = _unit(rng, 31, 6), _unit(rng, 27, 6)
    q_seg = segment_bounds_from_ids(np.repeat([0, 1, 2], [12, 9, 10]))
    r_seg = segment_bounds_from_ids(np.repeat([0, 1], [15, 12]))
    qs, _ = window_starts(q_seg, L, policy)
    rs, rv = window_starts(r_seg, L, policy)
    naive = naive_seq_dist(q, r, qs, rs, L, variant)
    naive[:, ~rv] = np.inf
    # tiny budget: many blocks of a few query frames
    idx, dist = sequence_topk(q, r, qs, rs, L, 5, variant=variant, memory_mb=0.002, r_valid=rv)
    ref_idx = np.argsort(naive, axis=1, kind="stable")[:, :5]
    np.testing.assert_allclose(dist, np.take_along_axis(naive, ref_idx, axis=1), rtol=1e-5, atol=1e-5)
    # indices agree wherever the distances are not (numerically) tied
    gaps = np.diff(np.sort(naive, axis=1)[:, :6], axis=1).min(axis=1) > 1e-4
    assert np.array_equal(idx[gaps], ref_idx[gaps])
    assert np.all(rv[idx[idx >= 0]])
    full = sequence_distances(q, r, qs, rs, L, variant)
    np.testing.assert_allclose(full, naive_seq_dist(q, r, qs, rs, L, variant), rtol=1e-5, atol=1e-5)


def test_windows_never_mix_segments():
    # two reference segments; a window straddling the bound would match perfectly, but is not allowed
    rng = np.random.default_rng(3)
    r = _unit(rng, 10, 4)
    r_seg = segment_bounds_from_ids(np.repeat([0, 1], [5, 5]))
    q = r[3:8].copy()  # exactly frames 3..7, which cross the bound at 5
    qs = np.array([0])
    rs, rv = window_starts(r_seg, 5, "shift")
    idx, dist = sequence_topk(q, r, qs, rs, 5, 10)
    assert dist[0, 0] > 0.1  # no zero-distance window exists
    assert set(rs[idx[0]].tolist()) <= {0, 5}


def test_tiles_respect_the_memory_budget():
    rng = np.random.default_rng(4)
    seen = []

    class Recording(DistanceSource):
        def tile(self, lo, hi, c_lo=0, c_hi=None, out=None):
            seen.append((hi - lo, (self.n_ref if c_hi is None else c_hi) - c_lo))
            return super().tile(lo, hi, c_lo, c_hi, out)

    src = Recording(_unit(rng, 400, 8), _unit(rng, 300, 8))
    budget = 0.05  # MiB
    idx, dist = sequence_topk_from(src, np.arange(396), np.arange(296), 5, 3, memory_mb=budget, threads=1)
    tiles = [t for t in seen if t[0] > 1]  # (the 1-row probes that order the tiles are not temporaries)
    assert len(tiles) > 4
    # distances + diagonal sums + a gathered copy (float32) of one tile stay within the budget
    assert max(3 * 4 * r * c for r, c in tiles) <= budget * 2**20
    full = sequence_topk_from(DistanceSource(src.q, src.r), np.arange(396), np.arange(296), 5, 3, memory_mb=1e4)
    assert np.array_equal(idx, full[0])
    np.testing.assert_allclose(dist, full[1], rtol=1e-6)  # (the matrix product rounds by tile shape)


def test_tile_equals_block_and_pairwise_distances():
    rng = np.random.default_rng(12)
    q, r = rng.normal(size=(9, 6)).astype(np.float32), rng.normal(size=(11, 6)).astype(np.float32)
    src = DistanceSource(q, r, normalise=False)
    np.testing.assert_array_equal(src.block(2, 7), pairwise_distances(q[2:7], r))
    out = np.empty((5, 4), dtype=np.float32)
    got = src.tile(2, 7, 3, 7, out=out)
    assert got is out
    np.testing.assert_allclose(got, src.block(2, 7)[:, 3:7], rtol=1e-6, atol=1e-6)
    m = DistanceSource(matrix=np.arange(99, dtype=np.float64).reshape(9, 11))
    np.testing.assert_array_equal(m.tile(1, 3, 4, 6, out=np.empty((2, 2), np.float32)), [[15, 16], [26, 27]])
    np.testing.assert_array_equal(m.tile(1, 3, 4, 6), [[15, 16], [26, 27]])


def naive_topk_from_matrix(d, qs, rs, L, k, rv=None):
    """Windows ranked by the mean of the aligned matrix entries (float32, summed in offset order), ties to the lower index."""
    d = d.astype(np.float32)
    out = np.zeros((len(qs), len(rs)), dtype=np.float32)
    for t, a in enumerate(qs):
        for s, b in enumerate(rs):
            acc = np.float32(d[a, b])
            for j in range(1, L):
                acc = np.float32(acc + d[a + j, b + j])
            out[t, s] = acc / np.float32(L) if L > 1 else acc
    if rv is not None:
        out[:, ~rv] = np.inf
    idx = np.argsort(out, axis=1, kind="stable")[:, :k]
    dist = np.take_along_axis(out, idx, axis=1)
    return np.where(np.isfinite(dist), idx, -1), dist


@pytest.mark.parametrize("L", [1, 3, 5])
def test_ties_go_to_the_lower_reference_index_across_tiles(monkeypatch, L):
    # small integers: many exactly equal window distances, spread over many tiles, in any start order
    import vprbench.matching.sequence as seq

    monkeypatch.setattr(seq, "TILE_ROWS", 4)
    monkeypatch.setattr(seq, "TILE_COLS", 8)
    rng = np.random.default_rng(L)
    d = rng.integers(0, 3, size=(40, 60)).astype(np.float32)
    qs = np.arange(40 - L + 1)
    rs = rng.permutation(np.repeat(np.arange(60 - L + 1), 2))  # every start twice, in random order
    rv = rng.random(rs.size) > 0.2
    for threads in (1, 2):
        idx, dist = sequence_topk_from(DistanceSource(matrix=d), qs, rs, L, 7, r_valid=rv, threads=threads)
        ref_idx, ref_dist = naive_topk_from_matrix(d, qs, rs, L, 7, rv)
        np.testing.assert_array_equal(dist, ref_dist)
        np.testing.assert_array_equal(idx, ref_idx)


def test_decreasing_distances_and_shift_windows_equal_naive(monkeypatch):
    # distances that fall towards the last reference defeat the early bounds: every tile has new best entries
    import vprbench.matching.sequence as seq

    monkeypatch.setattr(seq, "TILE_COLS", 16)
    rng = np.random.default_rng(13)
    n_q, n_r, L = 30, 200, 5
    d = (n_r - np.arange(n_r))[None, :] + rng.random((n_q, n_r)) * 3
    q_seg = segment_bounds_from_ids(np.repeat([0, 1], [14, 16]))
    r_seg = segment_bounds_from_ids(np.repeat([0, 1, 2], [70, 60, 70]))
    qs, _ = window_starts(q_seg, L, "shift")
    rs, rv = window_starts(r_seg, L, "shift")  # repeated starts at each segment bound
    idx, dist = sequence_topk_from(DistanceSource(matrix=d), qs, rs, L, 12, r_valid=rv)
    ref_idx, ref_dist = naive_topk_from_matrix(d, qs, rs, L, 12, rv)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-6)


def test_threads_give_identical_results():
    rng = np.random.default_rng(14)
    q, r = _unit(rng, 700, 16), _unit(rng, 500, 16)
    qs, rs = np.arange(0, 696, 3), np.arange(496)  # sparse query starts: gathered rows
    one = sequence_topk(q, r, qs, rs, 5, 10, threads=1)
    two = sequence_topk(q, r, qs, rs, 5, 10, threads=2)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    naive = naive_seq_dist(q, r, qs, rs, 5)
    np.testing.assert_allclose(one[1], np.sort(naive, axis=1)[:, :10], rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="threads"):
        sequence_topk(q, r, qs, rs, 5, 10, threads=0)


def test_matrix_source_equals_descriptor_source():
    rng = np.random.default_rng(5)
    q, r = _unit(rng, 40, 8), _unit(rng, 35, 8)
    qs, rs = np.arange(36), np.arange(31)
    a = sequence_topk_from(DistanceSource(q, r), qs, rs, 5, 4, memory_mb=0.01)
    b = sequence_topk_from(DistanceSource(matrix=pairwise_distances(q, r)), qs, rs, 5, 4, memory_mb=0.01)
    assert np.array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    i1, d1 = topk_from(DistanceSource(q, r), 3)
    i2, d2 = nearest_neighbours(q, r, 3)
    assert np.array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, atol=1e-3)


def test_fewer_valid_references_than_k_gives_minus_one():
    rng = np.random.default_rng(6)
    q, r = _unit(rng, 5, 3), _unit(rng, 4, 3)
    rv = np.array([True, False, True, False])
    idx, dist = sequence_topk(q, r, np.arange(5), np.arange(4), 1, 4, r_valid=rv)
    assert (idx[:, 2:] == -1).all() and np.isinf(dist[:, 2:]).all()
    assert set(idx[:, :2].ravel().tolist()) <= {0, 2}


def test_non_unit_descriptors_are_normalised_by_the_source():
    rng = np.random.default_rng(7)
    q, r = _unit(rng, 6, 4), _unit(rng, 5, 4)
    a = DistanceSource(q * 3.0, r * 0.5).full()
    np.testing.assert_allclose(a, pairwise_distances(q, r), atol=1e-5)
    np.testing.assert_allclose(DistanceSource(q * 3.0, r * 0.5).similarity_block(0, 6), q @ r.T, atol=1e-5)


def _split(q_desc=None, r_desc=None, dist=None):
    nq = len(q_desc) if q_desc is not None else dist.shape[0]
    nr = len(r_desc) if r_desc is not None else dist.shape[1]
    return SplitData(
        "d", "test",
        reference=Traverse("ref", np.arange(nr, dtype=float), "frame", descriptors=r_desc),
        query=Traverse("qry", np.arange(nq, dtype=float), "frame", descriptors=q_desc),
        radius=1.0,
        distances=dist,
    )


def test_split_distances_imported_or_computed():
    rng = np.random.default_rng(8)
    q, r = _unit(rng, 6, 4), _unit(rng, 5, 4)
    np.testing.assert_allclose(split_distances(_split(q, r)), pairwise_distances(q, r), atol=1e-6)
    imported = rng.random((6, 5)).astype(np.float32)
    np.testing.assert_array_equal(split_distances(_split(q, r, imported)), imported)  # imported wins
    np.testing.assert_array_equal(split_distances(_split(dist=imported)), imported)
    with pytest.raises(DataError, match="no per-frame descriptors"):
        split_distance_source(
            SplitData("d", "test", reference=Traverse("ref", np.arange(5.0), "frame"), query=Traverse("qry", np.arange(6.0), "frame"), radius=1.0)
        )
    bad = imported.copy()
    bad[2, 3] = np.nan
    with pytest.raises(DataError, match="NaN"):
        split_distance_source(_split(dist=bad))
    with pytest.raises(DataError, match="shape"):
        split_distance_source(_split(q, r, imported[:, :4]))


def test_bad_arguments():
    rng = np.random.default_rng(9)
    q, r = _unit(rng, 6, 4), _unit(rng, 6, 4)
    with pytest.raises(ConfigError):
        sequence_topk(q, r, np.arange(2), np.arange(2), 0, 3)
    with pytest.raises(ConfigError, match="variant"):
        sequence_topk(q, r, np.arange(2), np.arange(2), 3, 3, variant="median")
    with pytest.raises(DataError, match="outside"):
        sequence_topk(q, r, np.arange(6), np.arange(2), 3, 3)
    with pytest.raises(ConfigError, match="top-k"):
        sequence_topk(q, r, np.arange(2), np.arange(2), 3, 0)
    with pytest.raises(ConfigError, match="memory"):
        sequence_topk(q, r, np.arange(2), np.arange(2), 3, 2, memory_mb=0)
    nan = q.copy()
    nan[1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        sequence_topk(nan, r, np.arange(2), np.arange(2), 3, 2)
    with pytest.raises(DataError, match="NaN"):
        nearest_neighbours(nan, r, 2)


def test_window_weighted_sum_equals_gather():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    starts = np.array([0, 3, 15, 15])
    w = np.array([0.5, -1.0, 2.0, 0.25], dtype=np.float32)
    expected = np.einsum("nld,l->nd", gather_windows(x, starts, 4), w)
    np.testing.assert_allclose(window_weighted_sum(x, starts, w), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError):
        window_weighted_sum(x, np.array([18]), w)


def test_sequential_descriptor_topk_drop_excludes_references_and_masks_queries():
    rng = np.random.default_rng(11)
    x = _unit(rng, 12, 5)
    seg = segment_bounds_from_ids(np.zeros(12))
    qw, rw = window_starts(seg, 5, "drop"), window_starts(seg, 5, "drop")
    idx, dist = sequential_descriptor_topk(x, x, qw, rw, np.full(5, 0.2), 12)
    assert (idx[~qw[1]] == -1).all()
    assert np.all(rw[1][idx[idx >= 0]])
    assert (idx[qw[1], 0] == np.flatnonzero(qw[1])).all()  # identical traverses: each window matches itself
    idx2, dist2 = mask_queries(np.zeros((2, 1), np.int64), np.zeros((2, 1), np.float32), np.array([True, False]))
    assert idx2.tolist() == [[0], [-1]] and np.isinf(dist2[1, 0])


def test_blas_setting_restored_after_concurrent_calls():
    # two kernels in two threads (as under a threaded scheduler): the BLAS thread count comes back
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i.get("user_api") == "blas"]

    before = blas_threads()
    rng = np.random.default_rng(15)
    q, r = _unit(rng, 1200, 8), _unit(rng, 300, 8)
    qs, rs = np.arange(1196), np.arange(296)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: sequence_topk(q, r, qs, rs, 5, 3, threads=2), range(4)))
    assert blas_threads() == before
    for idx, _ in results[1:]:
        np.testing.assert_array_equal(idx, results[0][0])


@pytest.mark.parametrize("name", ["median", "trimmed-mean", "max", "mean"])
@pytest.mark.parametrize("seq_len", [1, 4, 5])
def test_pluggable_reducers_equal_a_naive_loop(name, seq_len):
    """A reducer of the L aligned distances (median, trimmed mean, ...) through the tiled kernel == a per-pair loop."""
    from vprbench.matching.distances import DistanceSource
    from vprbench.matching.sequence import REDUCERS, sequence_topk_from

    rng = np.random.default_rng(seq_len)
    q, r = rng.normal(size=(70, 8)).astype(np.float32), rng.normal(size=(90, 8)).astype(np.float32)
    d = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))
    qs = np.clip(np.arange(70) - seq_len // 2, 0, 70 - seq_len)
    rs = np.clip(np.arange(90) - seq_len // 2, 0, 90 - seq_len)
    fn = REDUCERS[name] or (lambda a: a.mean(axis=0))
    naive = np.array([[fn(np.array([[d[a + k, b + k]] for k in range(seq_len)]))[0] for b in rs] for a in qs])
    order = np.lexsort((np.broadcast_to(np.arange(90), naive.shape), naive), axis=1)[:, :7]
    src = DistanceSource(q, r, normalise=False)
    for threads in (1, 2):
        idx, dist = sequence_topk_from(src, qs, rs, seq_len, 7, reducer=name, memory_mb=0.05, threads=threads)
        np.testing.assert_allclose(dist, np.take_along_axis(naive, order, 1), rtol=1e-5, atol=1e-5)
        agree = (idx == order).mean()
        assert agree > 0.99, agree  # (float ties aside)
    with pytest.raises(Exception, match="unknown reducer 'mode'"):
        sequence_topk_from(src, qs, rs, seq_len, 7, reducer="mode")


def test_a_median_plugin_is_a_few_lines_and_equals_the_builtin_option(tmp_path):
    from conftest import make_toy_dataset

    from vprbench.data.views import ranking_view
    from vprbench.plugins.api import RunContext
    from vprbench.plugins.registry import discover

    (tmp_path / "median.py").write_text('''
import numpy as np
from vprbench.kernels import mask_queries, sequence_topk_from, split_distance_source, traverse_windows
from vprbench.method import Method, MethodInfo, Ranking


class SeqMedian(Method):
    info = MethodInfo(name="seqmatch-median", family="sequence-matching", summary="median of the L aligned distances")

    def rank(self, split, ctx):
        qs, qv = traverse_windows(split.query, ctx.seq_len, ctx.boundary)
        rs, rv = traverse_windows(split.reference, ctx.seq_len, ctx.boundary)
        idx, dist = sequence_topk_from(split_distance_source(split), qs, rs, ctx.seq_len, ctx.top_k, r_valid=rv,
                                       reducer=lambda d: np.median(d, axis=0))
        return Ranking(*mask_queries(idx, dist, qv))
''')
    reg = discover([tmp_path])
    split = ranking_view(make_toy_dataset(n=200, noise=1.0).split("test"))
    ctx = RunContext(seq_len=5, top_k=10)
    a = reg.create("seqmatch-median").rank(split, ctx)
    b = reg.create("seqmatch[reducer=median]").rank(split, ctx)
    c = reg.create("seqmatch").rank(split, ctx)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
