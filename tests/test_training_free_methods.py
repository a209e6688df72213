"""Training-free methods: hand-traced cases, naive reference loops, imported matrices, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import make_toy_dataset
from helpers import recall
from oracles import seqslam_reference

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.dataset import BenchmarkDataset, SplitIndices
from vprbench.data.traverse import Traverse
from vprbench.data.windows import gather_windows, traverse_windows
from vprbench.matching.distances import DistanceSource, l2_normalise, pairwise_distances
from vprbench.matching.graph import MAX_COST, CostRows, DimensionHash, binarise, dp_search, lazy_search, similarity_to_cost
from vprbench.matching.seqslam import contrast_enhance, round_half_away, seqslam_match, velocity_range
from vprbench.plugins.api import RunContext
from vprbench.plugins.registry import default_registry

REG = default_registry()


def method(name, **params):
    return REG.create(name, **params)


def ctx(**kw):
    return RunContext(**{"seq_len": 5, "top_k": 5, **kw})


@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset(n=160, dim=24, noise=0.4)


def imported_copy(ds: BenchmarkDataset) -> BenchmarkDataset:
    """The same dataset with its descriptors replaced by an imported single-image distance matrix."""
    q = ds.queries[ds.default_query]
    dist = pairwise_distances(l2_normalise(q.descriptors), l2_normalise(ds.reference.descriptors))
    strip = lambda t: Traverse(t.name, t.positions, t.position_unit)  # noqa: E731
    return BenchmarkDataset(
        name=ds.name + "-imported", reference=strip(ds.reference), queries={ds.default_query: strip(q)},
        splits=ds.splits, radius=ds.radius, distances=dist, distance_kind="unit-euclidean",
    )


# --------------------------------------------------------------------------- single image, sequence matching


@pytest.mark.parametrize("name", ["netvlad", "seqmatch", "seqslam", "gism", "gism-dp"])
def test_imported_distances_give_the_same_ranking(toy, name):
    a = method(name).rank(toy.split("test"), ctx())
    b = method(name).rank(imported_copy(toy).split("test"), ctx())
    assert np.array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.distances, b.distances, rtol=1e-4, atol=1e-4)


def test_grh_without_hash_runs_on_imported_distances(toy):
    a = method("grh", hash=False).rank(toy.split("test"), ctx())
    with pytest.warns(UserWarning, match="hash needs per-frame descriptors"):
        b = method("grh").rank(imported_copy(toy).split("test"), ctx())  # no descriptors: hash unavailable
    assert np.array_equal(a.indices, b.indices)


@pytest.mark.parametrize("name", ["smoothing", "delta"])
def test_sequential_descriptors_need_descriptors(toy, name):
    with pytest.raises(DataError, match="descriptors"):
        method(name).rank(imported_copy(toy).split("test"), ctx())


@pytest.mark.parametrize("boundary", ["shift", "drop"])
@pytest.mark.parametrize("variant", ["meanOfPairs", "centerOnly"])
def test_seqmatch_equals_naive_loop(toy, boundary, variant):
    split = toy.split("test")
    L = 4  # even: the centre is frame t, L//2 = 2 frames before it and 1 after
    r = method("seqmatch", variant=variant).rank(split, ctx(seq_len=L, boundary=boundary, top_k=3))
    q, x = l2_normalise(split.query.descriptors), l2_normalise(split.reference.descriptors)
    qs, qv = traverse_windows(split.query, L, boundary)
    rs, rv = traverse_windows(split.reference, L, boundary)
    offs = [L // 2] if variant == "centerOnly" else range(L)
    for t in range(len(q)):
        if not qv[t]:
            assert (r.indices[t] == -1).all()
            continue
        d = np.array([np.mean([np.linalg.norm(q[qs[t] + k] - x[rs[s] + k]) for k in offs]) if rv[s] else np.inf for s in range(len(x))])
        order = np.argsort(d, kind="stable")[:3]
        np.testing.assert_allclose(r.distances[t], d[order], rtol=1e-4, atol=1e-5)
    assert np.all(rv[r.indices[r.indices >= 0]])


# --------------------------------------------------------------------------- smoothing, delta


def test_delta_weights_and_hand_case():
    delta_weights = REG.get("delta").weights
    smoothing_weights = REG.get("smoothing").weights

    assert delta_weights(5).tolist() == pytest.approx([-0.4, -0.4, 0.4, 0.4, 0.4])
    assert delta_weights(2).tolist() == [-1.0, 1.0]
    assert smoothing_weights(4).tolist() == [0.25] * 4
    # L = 2 delta of frames e1 -> e2 is (e2 - e1) / 1, normalised
    from vprbench.matching.descriptors import window_weighted_sum

    x = np.eye(2, dtype=np.float32)
    np.testing.assert_allclose(l2_normalise(window_weighted_sum(x, np.array([0]), delta_weights(2))), [[-(0.5**0.5), 0.5**0.5]], atol=1e-6)


@pytest.mark.parametrize("name", ["smoothing", "delta"])
@pytest.mark.parametrize("boundary", ["shift", "drop"])
def test_sequential_descriptors_equal_brute_force(toy, name, boundary):
    delta_weights = REG.get("delta").weights
    smoothing_weights = REG.get("smoothing").weights

    split = toy.split("test")
    L = 5
    w = (smoothing_weights if name == "smoothing" else delta_weights)(L)
    res = method(name).rank(split, ctx(seq_len=L, boundary=boundary, top_k=4))
    qs, qv = traverse_windows(split.query, L, boundary)
    rs, rv = traverse_windows(split.reference, L, boundary)
    seq = lambda x, s: l2_normalise(np.einsum("nld,l->nd", gather_windows(l2_normalise(x), s, L), w))  # noqa: E731
    sq, sr = seq(split.query.descriptors, qs), seq(split.reference.descriptors, rs)
    d = np.linalg.norm(sq[:, None, :] - sr[None, :, :], axis=2)
    d[:, ~rv] = np.inf
    for t in range(len(sq)):
        if not qv[t]:
            assert (res.indices[t] == -1).all()
            continue
        np.testing.assert_allclose(res.distances[t], np.sort(d[t])[:4], atol=2e-3)
        np.testing.assert_allclose(d[t, res.indices[t]], res.distances[t], atol=2e-3)


# --------------------------------------------------------------------------- SeqSLAM


def test_contrast_enhancement_hand_computed():
    e = contrast_enhance(np.array([[1.0, 2.0, 3.0, 4.0]]), np.tile([0, 4], (4, 1)), half_window=1)
    # window of column 0 is columns 0..1 (cut at the edge): (1 - 1.5) / std([1, 2], ddof=1)
    np.testing.assert_allclose(e[0], [-0.5 / np.sqrt(0.5), 0.0, 0.0, 0.5 / np.sqrt(0.5)], atol=1e-12)
    # a second segment starting at column 2 cuts the windows there
    seg = np.array([[0, 2], [0, 2], [2, 4], [2, 4]])
    np.testing.assert_allclose(contrast_enhance(np.array([[1.0, 2.0, 3.0, 5.0]]), seg, 1)[0], [-0.5 / np.sqrt(0.5), 0.5 / np.sqrt(0.5), -1 / np.sqrt(2), 1 / np.sqrt(2)])
    assert (contrast_enhance(np.ones((1, 5)), np.tile([0, 5], (5, 1)), 2) == 0).all()  # zero spread -> 0


def test_rounding_and_velocities():
    assert round_half_away(np.array([-1.5, -0.5, 0.5, 1.5, 2.4])).tolist() == [-2, -1, 1, 2, 2]
    np.testing.assert_allclose(velocity_range(0.8, 1.2, 0.1), [0.8, 0.9, 1.0, 1.1, 1.2])
    assert velocity_range(1.0, 1.0, 0.1).tolist() == [1.0]
    for bad in [(0.0, 1.2, 0.1), (-1.0, 1.0, 0.1), (1.2, 0.8, 0.1), (0.8, 1.2, 0.0), (0.8, 1.2, -0.1)]:
        with pytest.raises(ConfigError):
            velocity_range(*bad)


@pytest.mark.parametrize("mode", ["openseqslam", "openseqslam2"])
@pytest.mark.parametrize("memory_mb", [0.005, 64.0])
@pytest.mark.parametrize("boundary", ["drop", "shift"])
def test_seqslam_fast_equals_naive_loops(mode, memory_mb, boundary):
    rng = np.random.default_rng(0)
    nq, nr = 28, 33
    d = rng.random((nq, nr)).astype(np.float32)
    W = 7 if mode == "openseqslam" else 6
    vel = velocity_range(0.7, 1.3, 0.1)
    res = seqslam_match(DistanceSource(matrix=d), np.tile([0, nq], (nq, 1)), np.tile([0, nr], (nr, 1)), W, vel, 4, mode=mode,
                        enhance_half_window=3, uniq_half_window=4, boundary=boundary, memory_mb=memory_mb)
    m, best, ratio = seqslam_reference(d, W, vel, mode, enhance_half_window=3, uniq_half_window=4, boundary=boundary)
    assert np.array_equal(res.indices[:, 0], m)
    ok = m >= 0
    assert ok.sum() == (nq if boundary == "shift" else nq - 2 * (W // 2) + (W % 2 == 0))
    np.testing.assert_allclose(res.scores[ok, 0], best[ok], rtol=1e-5)
    np.testing.assert_allclose(res.ratio[ok], ratio[ok], rtol=1e-5)
    assert (np.diff(res.scores[ok], axis=1) >= 0).all()


def test_seqslam_finds_a_faster_trajectory_and_reports_the_centre():
    # query 8's window (columns 3..13) sees the reference 1.2x faster: rows 4 + floor(1.2 j), j = 0..10
    nq, nr = 20, 30
    d = np.ones((nq, nr), dtype=np.float32)
    for j in range(11):
        d[3 + j, 4 + int(np.floor(1.2 * j))] = 0.0
    res = seqslam_match(DistanceSource(matrix=d), np.tile([0, nq], (nq, 1)), np.tile([0, nr], (nr, 1)), 11,
                        velocity_range(0.8, 1.2, 0.1), 1, mode="openseqslam")
    assert res.indices[8, 0] == 4 + 5  # reported as start + d_s/2, whatever the velocity
    vel1 = seqslam_match(DistanceSource(matrix=d), np.tile([0, nq], (nq, 1)), np.tile([0, nr], (nr, 1)), 11,
                         np.array([1.0]), 1, mode="openseqslam")
    assert vel1.scores[8, 0] > res.scores[8, 0]  # v = 1 cannot follow the 1.2x trajectory
    assert (res.indices[:5, 0] == -1).all() and (res.indices[-5:, 0] == -1).all()


def test_seqslam_method_params_and_window(toy):
    m = method("seqslam")
    assert m.window(5) == 5
    assert method("seqslam", ds=10).window(5) == 11
    assert method("seqslam", ds=10, mode="openseqslam2").window(5) == 10
    split = toy.split("test")
    a = m.rank(split, ctx(boundary="drop"))
    assert (a.indices[:2] == -1).all() and (a.indices[-2:] == -1).all()  # W = 5: first/last 2 get no match
    b = m.rank(split, ctx(boundary="shift"))
    assert (b.indices[:, 0] >= 0).all()
    assert np.isfinite(b.confidence).all() and (b.confidence <= 0).all()
    strict = method("seqslam", min_uniqueness=1e9).rank(split, ctx())
    assert (strict.indices == -1).all()
    with pytest.raises(ConfigError):
        method("seqslam", ds=-1).rank(split, ctx())
    with pytest.raises(ConfigError):
        method("seqslam", vmin=0.0).rank(split, ctx())
    with pytest.raises(ConfigError):
        method("seqslam", vmin=1.3, vmax=1.2).rank(split, ctx())
    with pytest.raises(ConfigError):
        method("seqslam", enhance_window=1).rank(split, ctx())
    with pytest.raises(ConfigError):
        method("seqslam", mode="seqslam3")
    with pytest.raises(DataError, match="longer than"):
        method("seqslam", ds=100).rank(split, ctx())


def test_seqslam_trajectories_stay_in_their_reference_segment():
    nq, nr = 11, 30
    d = np.ones((nq, nr), dtype=np.float32)
    d[np.arange(nq), np.arange(5, 16)] = 0  # the perfect trajectory (start row 5) crosses the bound at 10
    one = np.tile([0, nr], (nr, 1))
    two = np.array([[0, 10]] * 10 + [[10, 30]] * 20)
    qseg = np.tile([0, nq], (nq, 1))
    v1 = np.array([1.0])
    a = seqslam_match(DistanceSource(matrix=d), qseg, one, 11, v1, 30)
    b = seqslam_match(DistanceSource(matrix=d), qseg, two, 11, v1, 30)
    assert a.indices[5, 0] == 10  # start 5, reported as 5 + 5
    # with the bound only starts 10..19 (rows s..s+10 inside 10..29) are allowed: reported 15..24
    got = b.indices[5][b.indices[5] >= 0]
    assert sorted(got.tolist()) == list(range(15, 25))
    assert (b.indices[np.arange(nq) != 5] == -1).all()  # drop policy: only the centre query has a window


# --------------------------------------------------------------------------- graph matchers


def test_gism_hand_traced_fan_out_one():
    c = np.array([[2, 1, 3], [1, 4, 2], [5, 1, 1]], dtype=float)
    res = lazy_search(c, fan_out=1, expansion_rate=0.7, non_match_cost=6.0)
    assert res.match.tolist() == [1, 0, 1]
    assert res.cost.tolist() == [1, 1, 1]
    assert dp_search(c, fan_out=1).match.tolist() == [1, 0, 1]


def test_gism_online_output_and_lost_paths_hand_traced():
    c = np.array([[1, 1.5], [5, 1], [5, 1]], dtype=float)
    # q1: only (0,0) is expanded -> best (1,0) cost 5. q2: (0,1) passes the rule 1.5 + 1*3*0.7 < 6
    assert lazy_search(c, fan_out=0, expansion_rate=0.7).match.tolist() == [0, 0, 1]
    # cost 5 above nonMatchCost 4: hidden at q1
    res = lazy_search(c, fan_out=0, expansion_rate=0.7, non_match_cost=4.0)
    assert res.match.tolist() == [0, -1, 1] and res.hidden.tolist() == [False, True, False]
    # expansionRate 2: 1.5 + 1*3*2 = 7.5 >= 6 -> (0,1) is dropped for good; the lazy search stays wrong
    assert lazy_search(c, fan_out=0, expansion_rate=2.0).match.tolist() == [0, 0, 0]
    # the exact DP sees acc(1, :) = [6, 2.5] at q1
    assert dp_search(c, fan_out=0).match.tolist() == [0, 1, 1]


def test_dp_equals_brute_force_over_all_paths():
    rng = np.random.default_rng(0)
    c = rng.random((5, 4)) + 0.5
    for f in (0, 1, 2):
        expected = []
        for q in range(5):
            best = {}
            for path in itertools.product(range(4), repeat=q + 1):
                if all(abs(a - b) <= f for a, b in zip(path, path[1:])):
                    cost = sum(c[i, r] for i, r in enumerate(path))
                    best[path[-1]] = min(best.get(path[-1], np.inf), cost)
            expected.append(min(best, key=lambda r: (best[r], r)))
        assert dp_search(c, fan_out=f).match.tolist() == expected


def test_grh_lost_detection_and_relocalisation_hand_traced():
    c = np.array([[1, 9, 9, 2]] + [[10, 9, 9, 1]] * 7, dtype=float)
    grh = lazy_search(c, fan_out=0, non_match_cost=6.0, relocalise=True)
    # path stuck in column 0: hidden from q1; at q4 4/5 hidden (not > 0.8); at q5 5/5 -> lost; q6 relocalised
    assert grh.match.tolist() == [0, -1, -1, -1, -1, -1, 3, 3]
    assert grh.relocalisations == 2  # query 0 and query 6
    gism = lazy_search(c, fan_out=0, non_match_cost=6.0)
    # GISM: at q2 the node (0,3) passes 2 + 1*5.5*0.7 < 11 and the search moves to column 3
    assert gism.match.tolist() == [0, -1, 3, 3, 3, 3, 3, 3]


def test_hash_hand_computed():
    assert binarise(np.array([[0.0, 1.0, 2.0, 3.0]])).tolist() == [[False, False, True, True]]
    assert not binarise(np.ones((1, 4))).any()
    refs = np.array([[0, 1, 2, 3], [3, 2, 1, 0], [0, 3, 0, 3]], dtype=float)
    h = DimensionHash(refs)
    np.testing.assert_allclose(h.weights, np.log([3 / 1, 3 / 2, 3 / 1, 3 / 2]))
    # bits 2,3: r0 scores log3 + log1.5, r2 log1.5, r1 shares nothing; threshold 0.405 + 0.7 * 1.099
    assert h.candidates(np.array([0, 0, 5, 5.0])).tolist() == [0]
    assert h.candidates(np.array([1, 0, 0, 1.0])).tolist() == [1]
    assert h.candidates(np.array([2, 2, 2, 2.0])).tolist() == []
    # GRH relocalises query 0 to the cheapest hash candidate, not the cheapest reference
    c = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    qd = np.array([[3, 2, 1, 0], [3, 2, 1, 0]], dtype=float)
    assert lazy_search(c, fan_out=0, relocalise=True, hasher=h, query_descriptors=qd).match.tolist() == [1, 1]


def test_similarity_mapping_and_cost_rows():
    cos = np.array([0.5, 0.0, -0.5, 1.0])
    np.testing.assert_allclose(similarity_to_cost(cos, "cosine"), [2.0, MAX_COST, MAX_COST, 1.0])
    np.testing.assert_allclose(similarity_to_cost(cos, "shifted"), [1 / 0.75, 2.0, 4.0, 1.0])
    rng = np.random.default_rng(1)
    q, r = l2_normalise(rng.normal(size=(30, 4))), l2_normalise(rng.normal(size=(9, 4)))
    rows = CostRows(DistanceSource(q, r), "shifted", memory_mb=0.001)
    assert rows.rows_per_block < 30
    dense = similarity_to_cost(q @ r.T, "shifted")
    np.testing.assert_allclose(np.stack([rows[i] for i in (0, 29, 3, 17, 0)]), dense[[0, 29, 3, 17, 0]], rtol=1e-5)
    assert np.array_equal(lazy_search(rows).match, lazy_search(dense).match)


@pytest.fixture(scope="module")
def hard_route():
    """synth-check's test split: single images are weak there (Recall@1 0.23), sequences are not."""
    from vprbench.data.catalog import load_dataset

    return load_dataset("synth-check").split("test")


def test_graph_methods_output_one_match(toy, hard_route):
    split = toy.split("test")
    for name in ("gism", "grh", "gism-dp"):
        r = method(name).rank(split, ctx())
        assert r.k == 1 and method(name).info.single_match
        matched = r.indices[:, 0] >= 0
        assert np.isfinite(r.confidence[matched]).all() and np.isneginf(r.confidence[~matched]).all()
    # where single images are weak, following the sequence helps (measured R@1: gism 0.64, gism-dp 0.77, single 0.23)
    single = recall(hard_route, method("netvlad").rank(hard_route, ctx()))
    for name in ("gism", "gism-dp"):
        got = recall(hard_route, method(name).rank(hard_route, ctx()))
        assert got >= single + 0.25, (name, got, single)


def _dp_reference(cost: np.ndarray, fan_out: int, non_match_cost: float) -> np.ndarray:
    """Online exact shortest paths over (q, r) -> (q+1, r +- fan_out), by explicit loops; -1 where the node is hidden."""
    nq, nr = cost.shape
    acc = cost[0].copy()
    match = np.full(nq, -1)
    for q in range(nq):
        if q:
            acc = np.array([cost[q, r] + min(acc[max(0, r - fan_out) : r + fan_out + 1]) for r in range(nr)])
        best = int(np.argmin(acc))
        match[q] = best if cost[q, best] <= non_match_cost else -1
    return match


def test_gism_dp_equals_a_naive_dynamic_programme(hard_route):
    q, r = l2_normalise(hard_route.query.descriptors.astype(np.float64)), l2_normalise(hard_route.reference.descriptors.astype(np.float64))
    cos = q @ r.T
    cost = np.where(cos < 1e-9, MAX_COST, 1.0 / np.maximum(cos, 1e-9))  # the released code's node cost 1 / cosine
    hidden = []
    for params in ({}, {"fanOut": 2, "nonMatchCost": 2.5}):
        got = method("gism-dp", **params).rank(hard_route, ctx())
        expected = _dp_reference(cost, params.get("fanOut", 5), params.get("nonMatchCost", 6.0))
        np.testing.assert_array_equal(got.indices[:, 0], expected)
        ok = expected >= 0
        np.testing.assert_allclose(got.distances[ok, 0], cost[ok, expected[ok]], rtol=1e-5)
        hidden.append(int((~ok).sum()))
    assert hidden[1] > hidden[0] + 10  # the strict setting hides many queries (so hiding is compared too)


@pytest.mark.parametrize("bad", [{"fanOut": -1}, {"expansionRate": -0.5}, {"nonMatchCost": -1.0}])
def test_graph_bad_params(toy, bad):
    with pytest.raises(ConfigError):
        method("gism", **bad).rank(toy.split("test"), ctx())
    with pytest.raises(ConfigError):
        method("grh", **bad).rank(toy.split("test"), ctx())
    if "expansionRate" not in bad:
        with pytest.raises(ConfigError):
            method("gism-dp", **bad).rank(toy.split("test"), ctx())


def test_graph_nan_costs_rejected():
    c = np.ones((3, 3))
    c[1, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        lazy_search(c)
    with pytest.raises(DataError):
        dp_search(c)


def test_seq_len_errors(toy):
    split = toy.split("test")
    for name in ("seqmatch", "smoothing", "delta"):
        with pytest.raises(ConfigError):
            method(name).rank(split, ctx(seq_len=0))
        with pytest.raises(DataError, match="longer than"):
            method(name).rank(split, ctx(seq_len=len(split.query) + 1))


def test_imported_distances_beyond_unit_range_are_scaled_for_similarity():
    d = np.array([[0.0, 4.0], [2.0, 8.0]])
    with pytest.warns(UserWarning, match="stand-in"):
        cos = DistanceSource(matrix=d).similarity_block(0, 2)
    # a generic distance: scaled by 2 / max = 1/4 before cos = 1 - d^2 / 2
    np.testing.assert_allclose(cos, 1 - 0.5 * (d / 4) ** 2)
    unit = np.array([[0.0, 1.0], [2.0, 0.5]])
    with pytest.warns(UserWarning, match="stand-in"):
        np.testing.assert_allclose(DistanceSource(matrix=unit).similarity_block(0, 2), 1 - 0.5 * unit**2)
    # declared unit-vector distances: the exact cosine, no warning
    np.testing.assert_allclose(DistanceSource(matrix=unit, kind="unit-euclidean").similarity_block(0, 2), 1 - 0.5 * unit**2)


def kidnapped_route(dim: int = 256, noise: float = 1.0, seed: int = 0) -> tuple[BenchmarkDataset, np.ndarray]:
    """200 distinct places (random directions in ``dim``-D); the query drives places 100..139, then is moved to
    place 20 and drives 20..79. Returns the dataset and the true place of each query."""
    rng = np.random.default_rng(seed)
    places = rng.normal(size=(200, dim))
    order = np.r_[np.arange(100, 140), np.arange(20, 80)]
    ref = Traverse("ref", np.arange(200.0)[:, None], "m", descriptors=(places + noise * rng.normal(size=places.shape)).astype(np.float32))
    qry = Traverse("qry", order.astype(float)[:, None], "m",
                   descriptors=(places[order] + noise * rng.normal(size=(order.size, dim))).astype(np.float32))
    return BenchmarkDataset("kidnapped", ref, {"qry": qry}, {"test": SplitIndices(np.arange(200), np.arange(order.size))}, radius=0.5), order


def test_grh_method_with_hash_on_descriptors():
    """After the jump GISM's path (fanOut 5) cannot follow; GRH gets lost (all of the last 5 path nodes hidden)
    and relocalises through the dimension hash of the query's descriptor."""
    ds, truth = kidnapped_route()
    split = ds.split("test")
    c = ctx()
    a = method("grh").rank(split, c)
    assert "dimension hash" in c.notes["relocalisation"]
    assert np.array_equal(a.indices, method("grh").rank(split, ctx()).indices)
    b = method("gism").rank(split, ctx())
    jump, recovered = 40, 40 + 5 + 1  # lost after lostWindow = 5 hidden queries, relocalised at the next one
    assert (a.indices[:jump, 0] == truth[:jump]).all() and (b.indices[:jump, 0] == truth[:jump]).all()
    assert (a.indices[recovered:, 0] == truth[recovered:]).all()
    assert (b.indices[recovered:, 0] == truth[recovered:]).mean() < 0.5  # measured 0: GISM hides every later query


@pytest.mark.data
def test_nordland_64x32_matches_the_published_plain_baseline():
    """Patch-normalised 64x32 Nordland, tunnels dropped, tolerance 0 frames, winter vs summer.

    The data README quotes single-image Recall@1 about 0.13, sequence matching L = 5 about 0.43
    and L = 10 about 0.56.
    """
    import matplotlib.image as mpimg
    from conftest import data_dir

    root = data_dir() / "nordland-64x32"
    if not (root / "summer").is_dir():
        pytest.skip(f"{root} not available")

    def load(season: str) -> np.ndarray:
        files = sorted((root / season).glob("images-*.png"))
        return np.stack([mpimg.imread(f)[..., 0] for f in files]).astype(np.float32)

    def patch_normalise(x: np.ndarray) -> np.ndarray:  # 8x8 patches to zero mean, unit std
        n = x.shape[0]
        p = x.reshape(n, 4, 8, 8, 8).transpose(0, 1, 3, 2, 4).reshape(n, 32, 64)
        p = (p - p.mean(axis=2, keepdims=True)) / np.maximum(p.std(axis=2, keepdims=True), 1e-6)
        return p.reshape(n, -1)

    summer, winter = load("summer"), load("winter")
    keep = np.flatnonzero((summer.mean(axis=(1, 2)) > 0.1) & (winter.mean(axis=(1, 2)) > 0.1))  # no tunnels
    pos = keep.astype(float)[:, None]
    n = keep.size
    ds = BenchmarkDataset(
        "nordland-64x32", Traverse("summer", pos, "frame", descriptors=patch_normalise(summer[keep])),
        {"winter": Traverse("winter", pos.copy(), "frame", descriptors=patch_normalise(winter[keep]))},
        {"test": SplitIndices(np.arange(n), np.arange(n))}, radius=0.5,
    )
    split = ds.split("test")
    got = {}
    for name, L in (("netvlad", 1), ("seqmatch", 5), ("seqmatch", 10)):
        r = method(name).rank(split, ctx(seq_len=L))
        got[(name, L)] = split.ground_truth.hits(r.indices)[:, 0].mean()
    assert got[("netvlad", 1)] == pytest.approx(0.13, abs=0.01)
    assert got[("seqmatch", 5)] == pytest.approx(0.43, abs=0.01)
    assert got[("seqmatch", 10)] == pytest.approx(0.56, abs=0.01)


@pytest.mark.parametrize("name", ["netvlad", "seqmatch", "smoothing", "delta", "seqslam", "gism", "grh", "gism-dp"])
def test_non_unit_descriptors_are_normalised(toy, name):
    split = toy.split("test")
    rng = np.random.default_rng(0)

    def scaled(t):
        return Traverse(t.name, t.positions, t.position_unit, descriptors=t.descriptors * rng.uniform(0.1, 10, (len(t), 1)).astype(np.float32))

    ds2 = BenchmarkDataset("scaled", scaled(toy.reference), {toy.default_query: scaled(toy.queries[toy.default_query])}, toy.splits, radius=toy.radius)
    a = method(name).rank(split, ctx())
    b = method(name).rank(ds2.split("test"), ctx())
    assert np.array_equal(a.indices, b.indices)
