"""Benchmarks at scale: exhaustive sequence matching at 100k x 100k x 256-D, candidate matching
(faiss per-frame candidates) at 1M reference frames, and the candidate path's recall against the
exhaustive one as a function of K and the index parameters.

Opt-in and long (minutes each): ``pytest tests/benchmarks/test_bench_scale.py --benchmark-enable -s``.
Each prints its figures and stores them in the benchmark's ``extra_info``. The data is a smooth
random route of unit descriptors (query = reference place + noise, as in test_bench_kernels), made
in chunks so that generating a million frames stays within a few hundred MiB of temporaries.
"""

from __future__ import annotations

import time

import numpy as np
import torch  # noqa: F401  (imported up front: its import would count in the peak-memory figures)
from test_bench_kernels import _peak_rss_during

from vprbench.matching.candidates import CandidateSearch, build_index, candidate_topk
from vprbench.matching.distances import DistanceSource, l2_normalise
from vprbench.matching.sequence import sequence_topk_from

L = 5
TOP = 20


def big_route(n_ref: int, dim: int, q_lo: int, q_hi: int, noise: float, seed: int = 0, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Reference descriptors [n_ref, dim] along one route and query descriptors [q_hi - q_lo, dim] of places q_lo..q_hi-1.

    Place appearance = a smooth random walk (steps N(0, 0.1^2) per dimension, as in
    test_bench_kernels.traverses, but mean-reverting over ~10,000 frames, so that its scale stays
    ~7 instead of growing to ~100 over a million frames, where float32 distances of unit vectors
    would lose most of their digits) + N(0, 1) per frame; each traverse adds its own N(0, noise^2).
    """
    from scipy.signal import lfilter

    keep = 1.0 - 1e-4  # AR(1) walk: w_t = keep * w_{t-1} + step_t
    rng = np.random.default_rng(seed)
    r = np.empty((n_ref, dim), dtype=np.float32)
    q = np.empty((q_hi - q_lo, dim), dtype=np.float32)
    walk = np.zeros(dim)
    for lo in range(0, n_ref, chunk):
        hi = min(n_ref, lo + chunk)
        steps = 0.1 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
        w, _ = lfilter([1.0], [1.0, -keep], steps, axis=0, zi=keep * walk[None, :])
        walk = w[-1]
        base = w.astype(np.float32) + rng.standard_normal((hi - lo, dim), dtype=np.float32)
        r[lo:hi] = l2_normalise(base + noise * rng.standard_normal((hi - lo, dim), dtype=np.float32))
        a, b = max(lo, q_lo), min(hi, q_hi)
        if a < b:
            q[a - q_lo : b - q_lo] = l2_normalise(base[a - lo : b - lo] + noise * rng.standard_normal((b - a, dim), dtype=np.float32))
    return q, r


def gemm_seconds(q: np.ndarray, r: np.ndarray, rows: int) -> float:
    """Best of two: the float32 product of ``rows`` query rows with every reference, in 2,048-row blocks."""
    best = np.inf
    for _ in range(2):
        t0 = time.perf_counter()
        for lo in range(0, rows, 2048):
            q[lo : min(rows, lo + 2048)] @ r.T
        best = min(best, time.perf_counter() - t0)
    return best


def brute_force_rows(src: DistanceSource, t: np.ndarray, n_starts: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of query windows ``t`` over every reference start 0..n_starts-1, one full row at a time (the definition)."""
    idx, dist = [], []
    for a in t.tolist():
        d = src.tile(a, a + L)  # [L, n_ref] single-image distances of the window's frames
        row = d[0, :n_starts].copy()
        for j in range(1, L):
            row += d[j, j : j + n_starts]
        row /= L
        o = np.argsort(row, kind="stable")[:k]
        idx.append(o)
        dist.append(row[o])
    return np.array(idx), np.array(dist)


def recall_at_1(idx: np.ndarray, places: np.ndarray, tol: int = 2) -> float:
    """Fraction of query windows whose best reference window is within ``tol`` frames of the true place."""
    return float((np.abs(idx[:, 0] - places) <= tol).mean())


def test_exact_100k_256d(benchmark):
    """Exhaustive SeqMatch, 100,000 x 100,000 frames, 256-D, L = 5, top-20, default 512 MiB budget.

    Reports the time, the rate relative to the float32 GEMM of the same size (timed on 20,000
    query rows and scaled by 5), the peak memory above the inputs, and checks 64 query windows
    against the brute-force definition.
    """
    n = 100_000
    q, r = big_route(n, 256, 0, n, noise=0.5, seed=1)
    src = DistanceSource(q, r, normalise=False)
    starts = np.arange(n - L + 1)
    stats = {}

    def run():
        (idx, dist), rss, traced = _peak_rss_during(lambda: sequence_topk_from(src, starts, starts, L, TOP))
        stats.update(rss_peak_mib=rss, traced_peak_mib=traced)
        return idx, dist

    t0 = time.perf_counter()
    idx, dist = benchmark.pedantic(run, rounds=1, iterations=1)
    seconds = time.perf_counter() - t0
    gemm = gemm_seconds(q, r, 20_000) * n / 20_000
    inputs_mib = (q.nbytes + r.nbytes) / 2**20
    benchmark.extra_info.update(stats, seconds=seconds, gemm_seconds=gemm, rate_vs_gemm=gemm / seconds, inputs_mib=inputs_mib)
    print(
        f"\nexact 100k x 100k x 256: {seconds:.1f} s, GEMM {gemm:.1f} s -> {gemm / seconds:.0%} of the GEMM rate; "
        f"peak RSS +{stats['rss_peak_mib']:.0f} MiB (tracemalloc {stats['traced_peak_mib']:.0f} MiB) over {inputs_mib:.0f} MiB of inputs"
    )
    assert stats["rss_peak_mib"] + inputs_mib < 2048
    sample = np.random.default_rng(0).choice(starts.size, 64, replace=False)
    ref_idx, ref_dist = brute_force_rows(src, starts[sample], starts.size, TOP)
    np.testing.assert_allclose(dist[sample], ref_dist, rtol=1e-5, atol=1e-6)
    step = np.diff(ref_dist, axis=1)
    clear = ~((step > 0) & (step < 1e-5)).any(axis=1)
    np.testing.assert_array_equal(idx[sample][clear], ref_idx[clear])
    assert recall_at_1(idx, starts) > 0.95  # query window t shows the place of reference window t


def test_candidates_1m_references(benchmark):
    """Candidate SeqMatch (IVF-Flat, K = 32, default nlist = 1,000, nprobe = 16) on a 1,000,000-frame map, 256-D.

    100,000 query frames (places 450,000..549,999, a hard route: noise 3). Reports index build,
    matching time and peak memory; recall@1 (within 2 frames) of the candidate and exhaustive paths
    on 4 x 512 query windows, where the exhaustive path over the whole map takes seconds.
    """
    n_ref, q_lo, n_q = 1_000_000, 450_000, 100_000
    q_all, r = big_route(n_ref, 256, q_lo, q_lo + n_q, noise=3.0, seed=2)
    # the query traverse indexes its own frames 0..n_q-1; its frame i is place q_lo + i
    src = DistanceSource(q_all, r, normalise=False)
    q_starts = np.arange(n_q - L + 1)
    r_starts = np.arange(n_ref - L + 1)
    search = CandidateSearch(kind="ivf", k=32, nprobe=16)
    stats = {}

    def run():
        def work():
            t0 = time.perf_counter()
            index = build_index(r, search)
            stats["index_seconds"] = time.perf_counter() - t0
            return candidate_topk(src, q_starts, r_starts, L, TOP, search, index=index)

        (idx, dist), rss, traced = _peak_rss_during(work)
        stats.update(rss_peak_mib=rss, traced_peak_mib=traced)
        return idx, dist

    t0 = time.perf_counter()
    idx, dist = benchmark.pedantic(run, rounds=1, iterations=1)
    seconds = time.perf_counter() - t0
    sample = np.concatenate([np.arange(a, a + 512) for a in (1_000, 30_000, 60_000, 90_000)])
    t1 = time.perf_counter()
    ex_idx, ex_dist = sequence_topk_from(src, q_starts[sample], r_starts, L, TOP)
    exact_sample_seconds = time.perf_counter() - t1
    places = q_lo + q_starts[sample]
    rec_c, rec_e = recall_at_1(idx[sample], places), recall_at_1(ex_idx, places)
    agree = float((idx[sample, 0] == ex_idx[:, 0]).mean())
    exact_estimate = exact_sample_seconds * q_starts.size / sample.size
    benchmark.extra_info.update(
        stats, seconds=seconds, recall_candidates=rec_c, recall_exact=rec_e, top1_agreement=agree,
        exact_sample_seconds=exact_sample_seconds, exact_estimate_seconds=exact_estimate,
    )
    print(
        f"\ncandidates, 1M refs x 100k queries x 256: {seconds:.1f} s (index {stats['index_seconds']:.1f} s), "
        f"peak RSS +{stats['rss_peak_mib']:.0f} MiB; recall@1 candidates {rec_c:.4f} vs exact {rec_e:.4f} "
        f"(loss {rec_e - rec_c:+.4f}), top-1 agreement {agree:.4f}; exact on the sample {exact_sample_seconds:.1f} s "
        f"(all queries ~{exact_estimate / 60:.0f} min)"
    )
    assert seconds < 600
    assert rec_e - rec_c <= 0.01
    # the same window gets the same score (to float32 rounding of d^2 = 2 - 2 q.r), and none beats the exhaustive optimum
    found = idx[sample, 0] == ex_idx[:, 0]
    np.testing.assert_allclose(dist[sample][found, 0] ** 2, ex_dist[found, 0] ** 2, rtol=1e-5, atol=2e-6)
    assert np.all(dist[sample, 0] ** 2 >= ex_dist[:, 0] ** 2 - 2e-6)


def test_candidate_recall_sweep(benchmark):
    """Recall of the candidate path against the exhaustive one as a function of K, nprobe, efSearch
    and min_votes: 200,000 reference frames, 20,000 query frames, 256-D, noise 3.

    Prints one line per setting: time, recall@1 (within 2 frames) and its loss against exhaustive,
    and the fraction of queries whose top-1 window is the exhaustive one.
    """
    n_ref, q_lo, n_q = 200_000, 90_000, 20_000
    q, r = big_route(n_ref, 256, q_lo, q_lo + n_q, noise=3.0, seed=3)
    src = DistanceSource(q, r, normalise=False)
    q_starts, r_starts = np.arange(n_q - L + 1), np.arange(n_ref - L + 1)
    places = q_lo + q_starts
    t0 = time.perf_counter()
    ex_idx, ex_dist = sequence_topk_from(src, q_starts, r_starts, L, TOP)
    exact_seconds = time.perf_counter() - t0
    rec_e = recall_at_1(ex_idx, places)
    settings = [dict(kind="ivf", k=k, nprobe=16) for k in (4, 8, 16, 32, 64)]
    settings += [dict(kind="ivf", k=32, nprobe=p) for p in (1, 4, 64)]
    settings += [dict(kind="ivf", k=32, nprobe=16, min_votes=2)]
    settings += [dict(kind="hnsw", k=32, ef_search=e) for e in (32, 128)] + [dict(kind="hnsw", k=16, ef_search=64)]
    rows, top1 = [], {}
    indexes: dict[str, object] = {}

    def run():
        for s in settings:
            search = CandidateSearch(**s)
            t1 = time.perf_counter()
            if search.kind not in indexes:  # nprobe and efSearch are search-time settings: one index per kind
                indexes.clear()
                indexes[search.kind] = build_index(r, search)
            build = time.perf_counter() - t1
            idx, dist = candidate_topk(src, q_starts, r_starts, L, TOP, search, index=indexes[search.kind])
            rec = recall_at_1(idx, places)
            rows.append(dict(s, seconds=time.perf_counter() - t1, index_seconds=build, recall=rec, loss=rec_e - rec,
                             top1_agreement=float((idx[:, 0] == ex_idx[:, 0]).mean())))
            top1[tuple(sorted(s.items()))] = dist[:, 0]

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(exact_seconds=exact_seconds, recall_exact=rec_e, settings=rows)
    print(f"\nexhaustive: {exact_seconds:.1f} s, recall@1 {rec_e:.4f}")
    for row in rows:
        params = ", ".join(f"{k}={row[k]}" for k in ("kind", "k", "nprobe", "ef_search", "min_votes") if k in row)
        print(f"{params:40s} {row['seconds']:6.1f} s (index {row['index_seconds']:5.1f} s)  recall@1 {row['recall']:.4f} "
              f"(loss {row['loss']:+.4f})  top-1 = exhaustive {row['top1_agreement']:.4f}")
    # more candidates per frame, same index: a superset of candidate windows, so every top-1 is at least as good
    ks = [top1[tuple(sorted(dict(kind="ivf", k=k, nprobe=16).items()))] for k in (4, 8, 16, 32, 64)]
    for small, large in zip(ks, ks[1:]):
        assert np.all(large <= small)
    default = next(row for row in rows if row["kind"] == "ivf" and row["k"] == 32 and row["nprobe"] == 16 and "min_votes" not in row)
    assert default["loss"] <= 0.01
