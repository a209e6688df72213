"""Candidate sequence matching (faiss per-frame candidates, exact scores of consistent windows)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_toy_dataset

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.traverse import segment_bounds_from_ids
from vprbench.data.windows import window_starts
from vprbench.matching.candidates import CandidateSearch, build_index, candidate_starts, candidate_topk, window_distances
from vprbench.matching.distances import DistanceSource, l2_normalise, pairwise_distances
from vprbench.matching.sequence import ReferenceColumns, sequence_topk_from
from vprbench.plugins.api import RunContext
from vprbench.plugins.registry import default_registry


def route(n: int, dim: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Query and reference descriptors [n, dim] of one smooth random route (query i = place i), unit length."""
    rng = np.random.default_rng(seed)
    base = np.cumsum(rng.normal(size=(n, dim)), axis=0) * 0.1 + rng.normal(size=(n, dim))
    r = l2_normalise((base + noise * rng.normal(size=(n, dim))).astype(np.float32))
    q = l2_normalise((base + noise * rng.normal(size=(n, dim))).astype(np.float32))
    return q, r


def exhaustive(n_ref: int, **kw) -> CandidateSearch:
    """Every list scanned and every reference frame a candidate: the candidate path must be exact."""
    return CandidateSearch(kind="ivf", k=n_ref, nlist=2, nprobe=2, **kw)


@pytest.mark.parametrize("policy", ["shift", "drop"])
@pytest.mark.parametrize("variant", ["meanOfPairs", "centerOnly"])
@pytest.mark.parametrize("L", [1, 4, 5])
def test_equals_exact_when_k_covers_everything(policy, variant, L):
    q, r = route(230, 16, noise=0.8, seed=L)
    q_seg = segment_bounds_from_ids(np.repeat([0, 1, 2], [70, 90, 70]))
    r_seg = segment_bounds_from_ids(np.repeat([0, 1], [120, 110]))
    qs, _ = window_starts(q_seg, L, policy)
    rs, rv = window_starts(r_seg, L, policy)
    src = DistanceSource(q, r)
    exact = sequence_topk_from(src, qs, rs, L, 8, variant=variant, r_valid=rv)
    cand = candidate_topk(src, qs, rs, L, 8, exhaustive(230), variant=variant, r_valid=rv)
    np.testing.assert_allclose(cand[1], exact[1], rtol=1e-5, atol=1e-6)
    # indices agree wherever no two distances are within rounding of each other (windows that
    # share a start are exactly tied in both paths and ordered by index)
    step = np.diff(exact[1], axis=1)
    gaps = ~((step > 0) & (step < 1e-5)).any(axis=1)
    assert gaps.mean() > 0.9
    np.testing.assert_array_equal(cand[0][gaps], exact[0][gaps])
    assert np.all(rv[cand[0][cand[0] >= 0]])


def test_candidate_starts_hand_computed():
    # query window at frame 0, L = 3; the candidates of query frames 0, 1, 2 vote for start c - k
    cand = np.array([[5, 9], [6, 2], [7, 20]])
    refs = ReferenceColumns(np.arange(18), None)  # 20 reference frames: starts 0..17
    win, start = candidate_starts(cand, np.array([0]), 0, 3, refs, min_votes=1)
    assert start.tolist() == [1, 5, 9]  # 5 (three votes), 9 and 2 - 1 = 1 (one each); 20 - 2 = 18 begins no window
    assert win.tolist() == [0, 0, 0]
    win, start = candidate_starts(cand, np.array([0]), 0, 3, refs, min_votes=2)
    assert start.tolist() == [5]
    invalid = np.zeros(18, dtype=bool)
    invalid[5] = True  # a start whose window is not valid is never a candidate
    assert candidate_starts(cand, np.array([0]), 0, 3, ReferenceColumns(np.arange(18), invalid), 1)[1].tolist() == [1, 9]


def test_window_distances_equal_naive():
    rng = np.random.default_rng(1)
    q, r = rng.normal(size=(30, 7)).astype(np.float32), rng.normal(size=(40, 7)).astype(np.float32)
    src = DistanceSource(q, r, normalise=False)
    a, s = rng.integers(0, 26, 50), rng.integers(0, 36, 50)
    naive = [np.mean([np.linalg.norm(q[i + k].astype(np.float64) - r[j + k]) for k in range(5)]) for i, j in zip(a, s)]
    np.testing.assert_allclose(window_distances(src, a, s, 5), naive, rtol=1e-5, atol=1e-5)


def test_recall_loss_is_bounded_on_a_route():
    n, L = 3000, 5
    q, r = route(n, 32, noise=1.6, seed=3)
    src = DistanceSource(q, r)
    starts = np.arange(n - L + 1)
    exact = sequence_topk_from(src, starts, starts, L, 5)
    recall = lambda idx: float((np.abs(idx[:, 0] - starts) <= 2).mean())  # noqa: E731
    base = recall(exact[0])
    assert 0.6 < base < 0.99  # a route where single frames are ambiguous, not a trivial one
    for search in (CandidateSearch(kind="ivf", k=16, nprobe=8), CandidateSearch(kind="hnsw", k=16)):
        idx, dist = candidate_topk(src, starts, starts, L, 5, search)
        assert base - recall(idx) <= 0.01, search
        assert (idx[:, 0] == exact[0][:, 0]).mean() > 0.97
        found = idx[:, 0] == exact[0][:, 0]  # the same window has the same (exact) score
        np.testing.assert_allclose(dist[found, 0], exact[1][found, 0], rtol=1e-5, atol=1e-6)
        assert np.all(dist[:, 0] >= exact[1][:, 0] * (1 - 1e-5) - 1e-6)  # never better than the exhaustive optimum (to rounding)


def test_ties_go_to_the_lower_reference_index():
    # the route driven twice: the windows at s and s + 60 are identical, so every distance is tied
    q, r = route(60, 12, noise=0.3, seed=4)
    r2 = np.concatenate([r, r])
    src = DistanceSource(q, r2)
    qs, rs = np.arange(56), np.arange(116)
    exact = sequence_topk_from(src, qs, rs, 5, 6)
    cand = candidate_topk(src, qs, rs, 5, 6, exhaustive(120))
    np.testing.assert_array_equal(cand[0], exact[0])
    np.testing.assert_allclose(cand[1], exact[1], rtol=1e-6)
    pairs = cand[0][:, :2]
    assert np.all(pairs[:, 1] == pairs[:, 0] + 60)  # the copy comes second
    hnsw = candidate_topk(src, qs, rs, 5, 2, CandidateSearch(kind="hnsw", k=8))
    both = (hnsw[0][:, 1] == hnsw[0][:, 0] + 60)
    assert both.mean() > 0.9 and np.all(hnsw[0][:, 0] < 60)


def test_deterministic_given_the_seed():
    q, r = route(800, 16, noise=1.0, seed=5)
    src = DistanceSource(q, r)
    starts = np.arange(796)
    for kind in ("ivf", "hnsw"):
        a = candidate_topk(src, starts, starts, 5, 5, CandidateSearch(kind=kind, k=8, nprobe=2, seed=7))
        b = candidate_topk(src, starts, starts, 5, 5, CandidateSearch(kind=kind, k=8, nprobe=2, seed=7))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_fewer_candidates_than_k_give_minus_one():
    q, r = route(200, 8, noise=0.2, seed=6)
    src = DistanceSource(q, r)
    idx, dist = candidate_topk(src, np.arange(196), np.arange(196), 5, 50, CandidateSearch(kind="ivf", k=2, min_votes=5))
    assert (idx == -1).any() and np.isinf(dist[idx == -1]).all()
    assert np.all(np.isfinite(dist[idx >= 0]))
    assert np.all(np.diff(np.where(np.isfinite(dist), dist, 1e9), axis=1) >= 0)


def test_parameter_validation():
    with pytest.raises(ConfigError, match="kind"):
        CandidateSearch(kind="lsh")
    for bad in (dict(k=0), dict(nprobe=0), dict(hnsw_m=1), dict(ef_search=0), dict(min_votes=0), dict(k=2.5), dict(nlist=0)):
        with pytest.raises(ConfigError):
            CandidateSearch(**bad)
    with pytest.raises(ConfigError, match="nprobe"):
        CandidateSearch(nlist=4, nprobe=8)
    q, r = route(100, 8, noise=0.5)
    src = DistanceSource(q, r)
    st = np.arange(96)
    with pytest.raises(ConfigError, match="nlist"):
        candidate_topk(src, st, st, 5, 3, CandidateSearch(nlist=200, nprobe=1))
    with pytest.raises(ConfigError, match="min_votes"):
        candidate_topk(src, st, st, 5, 3, CandidateSearch(min_votes=6))
    with pytest.raises(ConfigError, match="top-k"):
        candidate_topk(src, st, st, 5, 0, CandidateSearch())
    with pytest.raises(DataError, match="descriptors"):
        candidate_topk(DistanceSource(matrix=pairwise_distances(q, r)), st, st, 5, 3, CandidateSearch())
    with pytest.raises(DataError, match="outside"):
        candidate_topk(src, np.arange(100), st, 5, 3, CandidateSearch())
    with pytest.warns(UserWarning, match="per list"):
        build_index(r, CandidateSearch(nlist=10, nprobe=1))


# --------------------------------------------------------------------------- the seqmatch plugin

REG = default_registry()


def test_seqmatch_search_parameters_are_checked():
    for bad in (dict(search="annoy"), dict(search="ivf", nprobe=0), dict(search="hnsw", hnsw_m=1), dict(per_frame_k=0),
                dict(search="ivf", nlist=4, nprobe=5), dict(ef_search="many")):
        with pytest.raises(ConfigError):
            REG.create("seqmatch", **bad)
    ds = make_toy_dataset(n=120, dim=16, noise=0.4)
    with pytest.raises(ConfigError, match="min_votes"):
        REG.create("seqmatch", search="ivf", min_votes=6).rank(ds.split("test"), RunContext(seq_len=5))


@pytest.mark.parametrize("boundary", ["shift", "drop"])
def test_seqmatch_candidate_search_equals_exact_when_exhaustive(boundary):
    ds = make_toy_dataset(n=160, dim=24, noise=0.4)
    split = ds.split("test")
    ctx = RunContext(seq_len=5, top_k=4, boundary=boundary)
    exact = REG.create("seqmatch").rank(split, ctx)
    n_ref = len(split.reference)
    cand = REG.create("seqmatch", search="ivf", per_frame_k=n_ref, nlist=1, nprobe=1).rank(split, ctx)
    np.testing.assert_allclose(cand.distances, exact.distances, rtol=1e-5, atol=1e-6)
    gaps = np.diff(np.where(np.isfinite(exact.distances), exact.distances, 0), axis=1).min(axis=1) > 1e-5
    np.testing.assert_array_equal(cand.indices[gaps], exact.indices[gaps])
    assert REG.create("seqmatch", search="hnsw").label == "seqmatch[search=hnsw]"
