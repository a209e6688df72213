"""Fidelity: the matchers' presets reproduce their original programs on the same inputs.

The programs' rules are transcribed here loop by loop, in their own layout (rows references,
columns queries) and from their own sources (OpenSeqSLAM doContrastEnhancement.m /
doFindMatches.m, OpenSeqSLAM 2.0 SeqSLAMInstance.m, vpr_relocalization's sample configuration),
independently of vprbench's vectorised code; imported matrices keep their meaning.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest
from conftest import make_toy_dataset

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.dataset import BenchmarkDataset, SplitData, SplitIndices
from vprbench.data.traverse import Traverse
from vprbench.matching.distances import DistanceSource, l2_normalise, pairwise_distances, sad_distances, split_distance_source
from vprbench.matching.graph import lazy_search, similarity_to_cost
from vprbench.matching.seqslam import (
    matlab_colon,
    openseqslam2_velocities,
    openseqslam_ds,
    openseqslam_velocities,
    trajectory_offsets,
)
from vprbench.plugins.api import RunContext
from vprbench.plugins.registry import default_registry

REG = default_registry()


def ctx(**kw):
    return RunContext(**{"seq_len": 5, "top_k": 5, **kw})


def mround(x: float) -> int:
    """MATLAB round: halves away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


# --------------------------------------------------------------------------- velocities


def oss2_velocities_slow(vmin: float, vmax: float, vstep: float, ds: int) -> list[float]:
    """OpenSeqSLAM 2.0's trajectoryOffsets velocity rule, element by element in float64 as MATLAB
    evaluates it (the grid vmin:vstep:vmax is MATLAB's colon, checked against MATLAB output below)."""
    h = ds // 2
    qs0 = -h
    t_min, t_max = mround(qs0 * vmin), mround(qs0 * vmax)
    candidates = [s / h * -1 for s in range(t_min, t_max - 1, -1)]
    chosen = []
    for g in matlab_colon(vmin, vstep, vmax).tolist():
        dist = [abs(c - g) for c in candidates]
        chosen.append(candidates[dist.index(min(dist))])  # min returns the first minimum
    return sorted(set(chosen))


def oss2_velocities_exact(vmin: Fraction, vmax: Fraction, vstep: Fraction, ds: int) -> list[Fraction]:
    """The same rule in exact rational arithmetic (equal to the float one where no grid value is a tie)."""
    h = ds // 2
    candidates = [Fraction(s, h) * -1 for s in range(mround(-h * vmin), mround(-h * vmax) - 1, -1)]
    out, v = set(), vmin
    while v <= vmax:
        dist = [abs(c - v) for c in candidates]
        assert dist.count(min(dist)) == 1, "a tie: floating-point rounding decides (see the hand-computed cases)"
        out.add(candidates[dist.index(min(dist))])
        v += vstep
    return sorted(out)


def test_openseqslam2_velocity_sets_by_hand():
    # qs_0 = -5: starts round(-4) .. round(-6) -> {4, 5, 6}/5; 0.9 and 1.1 are ties -> the smaller
    assert openseqslam2_velocities(0.8, 1.2, 0.1, 10).tolist() == pytest.approx([0.8, 1.0, 1.2], abs=1e-15)
    assert openseqslam2_velocities(0.8, 1.2, 0.1, 11).tolist() == pytest.approx([0.8, 1.0, 1.2], abs=1e-15)  # qs_0 = -5 too
    # qs_0 = -7: starts round(-5.6) = -6 .. round(-8.4) = -8 -> {6, 7, 8}/7
    assert openseqslam2_velocities(0.8, 1.2, 0.1, 15).tolist() == pytest.approx([6 / 7, 1.0, 8 / 7], abs=1e-15)
    # qs_0 = -10: starts -8 .. -12, every grid velocity is a candidate
    assert openseqslam2_velocities(0.8, 1.2, 0.1, 20).tolist() == pytest.approx([0.8, 0.9, 1.0, 1.1, 1.2], abs=1e-15)
    # a tie decided by binary rounding, as in MATLAB: 1.1 lies midway between 1.0 and 1.2, but
    # |1.0 - 1.1| = 0.10000000000000009 > |1.2 - 1.1| = 0.09999999999999987, so 1.2 is chosen
    assert openseqslam2_velocities(0.9, 1.1, 0.05, 10).tolist() == pytest.approx([1.0, 1.2], abs=1e-15)


@pytest.mark.parametrize("ds", [10, 11, 15, 20, 2, 3, 7, 24, 31])
@pytest.mark.parametrize("vel", [(0.8, 1.2, 0.1), (0.5, 1.5, 0.25), (0.9, 1.1, 0.05)])
def test_openseqslam2_velocities_equal_a_slow_transcription(ds, vel):
    got = openseqslam2_velocities(*vel, ds)
    assert got.tolist() == oss2_velocities_slow(*vel, ds)
    assert np.all(np.diff(got) > 0)


@pytest.mark.parametrize("ds", [15, 20, 7, 24, 16])
def test_openseqslam2_velocities_equal_exact_arithmetic_without_ties(ds):
    exact = oss2_velocities_exact(Fraction("0.8"), Fraction("1.2"), Fraction("0.1"), ds)
    assert openseqslam2_velocities(0.8, 1.2, 0.1, ds).tolist() == pytest.approx([float(x) for x in exact], abs=1e-15)


def test_openseqslam2_velocities_bad_input():
    with pytest.raises(ConfigError, match="d_s >= 2"):
        openseqslam2_velocities(0.8, 1.2, 0.1, 1)
    with pytest.raises(ConfigError, match="vstep"):
        openseqslam2_velocities(0.8, 1.2, 0.0, 15)
    with pytest.raises(ConfigError, match="empty"):
        openseqslam2_velocities(1.2, 0.8, 0.1, 15)


def test_matlab_colon_matches_known_matlab_output():
    # MATLAB: x = 0:0.1:0.3; y = 0:0.1:0.4; x - y(1:end-1) == 1e-16 * [0 0 -0.2776 -0.5551]
    x, y = matlab_colon(0, 0.1, 0.3), matlab_colon(0, 0.1, 0.4)
    np.testing.assert_allclose(x - y[:-1], [0, 0, -0.2776e-16, -0.5551e-16], atol=1e-20)
    assert x[-1] == 0.3 and y[2] == 0.2  # end snapped to b; even n: middle element (a + c) / 2
    assert matlab_colon(9.6, 1, 14.4).tolist() == pytest.approx([9.6, 10.6, 11.6, 12.6, 13.6])
    assert matlab_colon(3, 1, 2).size == 0 and matlab_colon(1, 0, 2).size == 0
    assert matlab_colon(5, -2, 0).tolist() == [5.0, 3.0, 1.0]


def test_openseqslam_velocities_odd_and_even_ds():
    # d_s = 10: move = 8:12 -> 0.8 .. 1.2 step 0.1
    assert openseqslam_velocities(0.8, 1.2, 10).tolist() == pytest.approx([0.8, 0.9, 1.0, 1.1, 1.2])
    # d_s = 12: move = 9.6:14.4 = 9.6, 10.6, .., 13.6 (fractional start, 14.4 not reached)
    assert openseqslam_velocities(0.8, 1.2, 12).tolist() == pytest.approx([m / 12 for m in (9.6, 10.6, 11.6, 12.6, 13.6)])
    # d_s = 4 (a 5-frame window): move = 3.2, 4.2
    assert openseqslam_velocities(0.8, 1.2, 4).tolist() == pytest.approx([0.8, 1.05])
    # the program rounds an odd d_s up: 11 -> 12 (window 13 frames)
    assert openseqslam_ds(11) == 12 and openseqslam_ds(10) == 10
    m = REG.create("seqslam", preset="openseqslam", ds=11)
    assert m.window(5) == 13
    assert m.velocities(13).tolist() == pytest.approx(openseqslam_velocities(0.8, 1.2, 12).tolist())
    assert REG.create("seqslam", preset="openseqslam").window(3) == 11  # decoupled from --seq-len
    # vskip is never read: an explicit vstep 0 is the rule; vstep > 0 is vprbench's decimal grid
    assert REG.create("seqslam", ds=12, vstep=0.1).velocities(13).tolist() == pytest.approx([0.8, 0.9, 1.0, 1.1, 1.2])


def test_openseqslam_offsets_floor_the_float_product_like_the_program():
    # 9.6 / 12 is 0.79999999999999993 in binary; the program floors 5 v = 3.9999999999999996 to 3
    v = 9.6 / 12
    off = trajectory_offsets("openseqslam", 13, np.array([v]))
    assert off[0].tolist() == [math.floor(j * v) for j in range(13)]
    assert off[0, 5] == 3 and off[0, 10] == 7
    # OpenSeqSLAM 2.0: round(qs v), halves away from zero, through the query's own column
    o2 = trajectory_offsets("openseqslam2", 4, np.array([0.5, 1.5]), anchor=2)
    # qs = -2..1; v = 0.5: -1, round(-0.5) = -1, 0, round(0.5) = 1; v = 1.5: -3, round(-1.5) = -2, 0, 2 (rows sorted)
    assert o2.tolist() == [[-3, -2, 0, 2], [-1, -1, 0, 1]]


# --------------------------------------------------------------------------- difference matrices


def test_sad_and_euclidean_equal_brute_force():
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(13, 7)).astype(np.float32), rng.normal(size=(11, 7)).astype(np.float32)
    brute = np.array([[np.abs(q[i].astype(np.float64) - r[j]).sum() for j in range(11)] for i in range(13)])
    for mb in (1e-4, 64.0):  # tiny budget: one reference row per chunk
        np.testing.assert_allclose(sad_distances(q, r, memory_mb=mb), brute, rtol=1e-6)
    src = DistanceSource(q, r, metric="sad", memory_mb=1e-4)
    assert src.kind == "distance" and src.metric == "sad"
    np.testing.assert_allclose(src.block(2, 9), brute[2:9], rtol=1e-6)
    np.testing.assert_allclose(src.rows(np.array([12, 0])), brute[[12, 0]], rtol=1e-6)
    qn, rn = q / np.linalg.norm(q, axis=1, keepdims=True), r / np.linalg.norm(r, axis=1, keepdims=True)
    eu = np.array([[np.linalg.norm(qn[i].astype(np.float64) - rn[j]) for j in range(11)] for i in range(13)])
    np.testing.assert_allclose(DistanceSource(q, r).full(), eu, atol=1e-5)
    with pytest.raises(ConfigError, match="metric"):
        DistanceSource(q, r, metric="manhattan")
    with pytest.raises(ConfigError, match="similarities need"):
        src.similarity_block(0, 2)
    with pytest.raises(DataError, match="dimension"):
        sad_distances(q, r[:, :3])


def test_difference_matrix_scale_is_irrelevant():
    """OpenSeqSLAM divides the SAD by the reference count, OpenSeqSLAM 2.0 by the pixel count: same result."""
    split = _oss_split(nr=40, nq=36, seed=3)
    a = REG.create("seqslam", preset="openseqslam").rank(split, ctx())
    scaled = SplitData(split.dataset, split.split, _scaled(split.reference, 1 / 40), _scaled(split.query, 1 / 40), split.radius)
    b = REG.create("seqslam", preset="openseqslam").rank(scaled, ctx())
    assert np.array_equal(a.indices, b.indices)
    np.testing.assert_allclose(a.confidence, b.confidence, rtol=1e-4)


def _scaled(t: Traverse, c: float) -> Traverse:
    return Traverse(t.name, t.positions, t.position_unit, descriptors=t.descriptors * np.float32(c))


# --------------------------------------------------------------------------- the programs, transcribed


def openseqslam_program(D: np.ndarray, ds=10, vmin=0.8, vmax=1.2, R=10, Rwindow=10):
    """doContrastEnhancement + doFindMatches of OpenSeqSLAM on D [n_ref, n_query] (0-based here).

    Returns match [nq] (reference, -1 = none), min score [nq], ratio min / second [nq].
    """
    nR, nQ = D.shape
    DD = np.zeros_like(D)
    for i in range(nR):
        a, b = max(0, i - R // 2), min(nR - 1, i + R // 2)
        v = D[a : b + 1]
        DD[i] = (D[i] - v.mean(axis=0)) / v.std(axis=0, ddof=1)
    DD = DD - DD.min()
    ds = ds + ds % 2
    n_moves = math.floor(vmax * ds - vmin * ds + 1e-9) + 1
    vels = [(vmin * ds + k) / ds for k in range(n_moves)]  # move_min:move_max, then / ds
    DDx = np.vstack([DD, np.full(nQ, np.inf)])  # the program's extra row of inf costs
    match, best, ratio = np.full(nQ, -1), np.full(nQ, np.nan), np.full(nQ, np.nan)
    for N in range(ds // 2, nQ - ds // 2):
        n_start = N - ds // 2
        score = np.zeros(nR + 1)  # s runs over the extended matrix's nR + 1 rows
        for s in range(nR + 1):
            sums = []
            for vel in vels:
                tot = 0.0
                for j in range(ds + 1):
                    tot += DDx[min(s + math.floor(j * vel), nR), n_start + j]
                sums.append(tot)
            score[s] = min(sums)
        m = int(np.argmin(score))
        window = set(range(max(0, m - Rwindow // 2), min(nR, m + Rwindow // 2) + 1))
        second = min(score[i] for i in range(nR + 1) if i not in window)
        match[N], best[N], ratio[N] = m + ds // 2, score[m], score[m] / second
    return match, best, ratio


def openseqslam2_program(D: np.ndarray, d_s=15, v_min=0.8, v_max=1.2, v_step=0.1, r=10, window=10):
    """SeqSLAMInstance contrastEnhancement, trajectoryOffsets, matching ('traj') and usFromMatches.

    Returns best_idx [nq] (-1 where the query is not searched), best score [nq], u [nq] (NaN where undefined).
    """
    nR, nQ = D.shape
    M = np.zeros_like(D)
    for x in range(nQ):
        for y in range(nR):
            local = D[max(0, y - r // 2) : min(nR - 1, y + r // 2) + 1, x]
            M[y, x] = (D[y, x] - local.mean()) / local.std(ddof=1)
    E = M - M.min()
    qs = [k - d_s // 2 for k in range(d_s)]
    t_min, t_max = mround(qs[0] * v_min), mround(qs[0] * v_max)
    unique_vs = [s / (d_s // 2) * -1 for s in range(t_min, t_max - 1, -1)]
    grid, k = [], 0
    while v_min + k * v_step <= v_max + 1e-12:
        grid.append(v_min + k * v_step)
        k += 1
    vs = sorted({min(unique_vs, key=lambda c, g=g: abs(c - g)) for g in grid})  # min: first of equals
    trajs = [[mround(q * v) for q in qs] for v in vs]
    scores = np.full((nR, nQ), np.nan)
    for q in range(-min(qs), nQ - max(qs)):
        for rr in range(nR):
            valid = [[rr + o for o in t] for t in trajs if all(0 <= rr + o < nR for o in t)]
            if valid:
                scores[rr, q] = min(sum(E[rows[i], q + qs[i]] for i in range(d_s)) for rows in valid)
    best_idx, best, us = np.full(nQ, -1), np.full(nQ, np.nan), np.full(nQ, np.nan)
    for q in range(nQ):
        col = scores[:, q]
        if np.isnan(col).all():
            continue
        b = int(np.nanargmin(col))
        masked = col.copy()
        masked[max(0, b - mround(window / 2)) : min(nR - 1, b + mround(window / 2)) + 1] = np.nan
        second = np.nan if np.isnan(masked).all() else np.nanmin(masked)
        with np.errstate(divide="ignore", invalid="ignore"):
            us[q] = np.float64(second) / np.float64(col[b])
        best_idx[q], best[q] = b, col[b]
    return best_idx, best, us


def _oss_split(nr=45, nq=40, dim=16, seed=0, offset=2, noise=1.0) -> SplitData:
    """Reference descriptors along a random walk; query t sees reference t + offset plus noise."""
    rng = np.random.default_rng(seed)
    ref = np.cumsum(rng.normal(size=(nr, dim)), axis=0) * 0.4 + rng.normal(size=(nr, dim))
    qry = ref[np.clip(np.arange(nq) + offset, 0, nr - 1)] + noise * rng.normal(size=(nq, dim))
    qry[::7] = rng.normal(size=qry[::7].shape) * 2  # unrecognisable frames: non-unique matches
    return SplitData(
        "synthetic", "test",
        reference=Traverse("ref", np.arange(nr, dtype=float)[:, None], "frame", descriptors=ref.astype(np.float32)),
        query=Traverse("qry", (np.arange(nq) + offset).astype(float)[:, None], "frame", descriptors=qry.astype(np.float32)),
        radius=1.5,
    )


def _sad_matrix(split: SplitData) -> np.ndarray:
    """The programs' difference matrix [n_ref, n_query] by brute force (SAD / number of references, as OpenSeqSLAM)."""
    r, q = split.reference.descriptors.astype(np.float64), split.query.descriptors.astype(np.float64)
    return np.array([[np.abs(r[i] - q[j]).sum() for j in range(len(q))] for i in range(len(r))]) / len(r)


@pytest.mark.parametrize("seed", [0, 1])
def test_openseqslam_preset_equals_the_program(seed):
    split = _oss_split(seed=seed)
    match, best, ratio = openseqslam_program(_sad_matrix(split))
    res = REG.create("seqslam", preset="openseqslam").rank(split, ctx(boundary="shift"))  # the preset drops anyway
    assert np.array_equal(res.indices[:, 0], match)
    ok = match >= 0
    assert ok.sum() == 40 - 10
    np.testing.assert_allclose(res.distances[ok, 0], best[ok], rtol=1e-5)
    np.testing.assert_allclose(-res.confidence[ok], ratio[ok], rtol=1e-5)
    assert np.isneginf(res.confidence[~ok]).all()


@pytest.mark.parametrize("ds, R, Rw", [(6, 6, 4), (7, 10, 10), (12, 8, 14)])
def test_openseqslam_mode_with_other_settings_equals_the_program(ds, R, Rw):
    split = _oss_split(seed=5)
    match, best, ratio = openseqslam_program(_sad_matrix(split), ds=ds, R=R, Rwindow=Rw)
    m = REG.create("seqslam", preset="openseqslam", ds=ds, enhance_window=R, uniq_window=Rw)
    res = m.rank(split, ctx())
    assert np.array_equal(res.indices[:, 0], match)
    ok = match >= 0
    np.testing.assert_allclose(res.distances[ok, 0], best[ok], rtol=1e-5)
    np.testing.assert_allclose(-res.confidence[ok], ratio[ok], rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_openseqslam2_preset_equals_the_program(seed):
    split = _oss_split(seed=seed, noise=4.0)  # noisy enough that some 15-frame matches are not unique
    best_idx, best, us = openseqslam2_program(_sad_matrix(split))
    searched = best_idx >= 0
    assert searched.sum() == 40 - 14  # q from 8 to nQ - 7 (1-based), d_s = 15
    kept = searched & (us > 1.111)
    assert 0 < kept.sum() < searched.sum()  # the data exercises the threshold both ways
    res = REG.create("seqslam", preset="openseqslam2").rank(split, ctx())
    assert np.array_equal(res.indices[:, 0], np.where(kept, best_idx, -1))
    np.testing.assert_allclose(res.distances[kept, 0], best[kept], rtol=1e-5)
    np.testing.assert_allclose(1 / -res.confidence[kept], us[kept], rtol=1e-5)
    # without the threshold every searched query keeps its best, with the program's u
    res0 = REG.create("seqslam", preset="openseqslam2", min_uniqueness=0).rank(split, ctx())
    assert np.array_equal(res0.indices[:, 0], best_idx)
    np.testing.assert_allclose(1 / -res0.confidence[searched], us[searched], rtol=1e-5)


@pytest.mark.parametrize("ds, window", [(10, 10), (8, 11), (15, 5)])
def test_openseqslam2_mode_with_other_settings_equals_the_program(ds, window):
    split = _oss_split(seed=2, nr=30, nq=34)
    best_idx, best, us = openseqslam2_program(_sad_matrix(split), d_s=ds, window=window)
    res = REG.create("seqslam", preset="openseqslam2", ds=ds, uniq_window=window, min_uniqueness=0).rank(split, ctx())
    searched = best_idx >= 0
    assert np.array_equal(res.indices[:, 0], best_idx)
    np.testing.assert_allclose(res.distances[searched, 0], best[searched], rtol=1e-5)
    np.testing.assert_allclose(1 / -res.confidence[searched], us[searched], rtol=1e-5)


def test_openseqslam2_undefined_uniqueness_never_passes():
    """With every other candidate inside the uniqueness window the program's u is NaN: no match."""
    split = _oss_split(nr=9, nq=20, seed=4)
    best_idx, _, us = openseqslam2_program(_sad_matrix(split), d_s=4, window=20)
    assert (best_idx >= 0).any() and np.isnan(us[best_idx >= 0]).all()
    res = REG.create("seqslam", preset="openseqslam2", ds=4, uniq_window=20).rank(split, ctx())
    assert (res.indices == -1).all()


def test_presets_resolve_and_explicit_values_override():
    m = REG.create("seqslam", preset="openseqslam2")
    assert m.label == "seqslam[preset=openseqslam2]"
    r = m.resolved_params
    assert (r["mode"], r["ds"], r["distance"], r["vstep"], r["min_uniqueness"], r["boundary"]) == ("openseqslam2", 15, "sad", 0.1, 1.111, "drop")
    o = REG.create("seqslam", preset="openseqslam", ds=6, distance="euclidean")
    assert (o.resolved_params["ds"], o.resolved_params["distance"], o.resolved_params["mode"]) == (6, "euclidean", "openseqslam")
    assert o.window(5) == 7
    d = REG.create("seqslam").resolved_params
    assert (d["preset"], d["mode"], d["ds"], d["distance"], d["vstep"], d["boundary"]) == (None, "openseqslam", 0, "euclidean", 0.0, None)
    assert REG.create("seqslam", mode="openseqslam2").resolved_params["vstep"] == 0.1  # the mode's own v_step
    spec = REG.create("seqslam[preset=openseqslam,ds=12]")
    assert spec.resolved_params["ds"] == 12 and spec.label == "seqslam[ds=12,preset=openseqslam]"
    with pytest.raises(ConfigError, match="preset"):
        REG.create("seqslam", preset="seqslam3")
    with pytest.raises(ConfigError, match="vstep > 0"):
        REG.create("seqslam", preset="openseqslam2", vstep=0)
    with pytest.raises(ConfigError, match="d_s >= 2"):
        REG.create("seqslam", preset="openseqslam2", ds=1)
    with pytest.raises(ConfigError, match="empty velocity range"):
        REG.create("seqslam", preset="openseqslam", vmin=1.3)


def test_seqslam_notes_and_boundary():
    split = _oss_split(seed=0)
    c = ctx(boundary="shift")
    r = REG.create("seqslam", preset="openseqslam2").rank(split, c)
    assert c.notes["distance"] == "difference matrix: sum of absolute differences (SAD) of the per-frame descriptors"
    assert "window 15 frames" in c.notes["seqslam"] and "boundary drop" in c.notes["seqslam"]
    assert (r.indices[:7] == -1).all()  # the preset drops the first d_s // 2 queries whatever the run's policy
    c2 = ctx(boundary="shift")
    r2 = REG.create("seqslam", preset="openseqslam2", boundary="shift", min_uniqueness=0).rank(split, c2)
    assert (r2.indices[:, 0] >= 0).all() and "boundary shift" in c2.notes["seqslam"]
    c3 = ctx()
    REG.create("seqslam").rank(split, c3)
    assert c3.notes["distance"] == "difference matrix: Euclidean distance of L2-normalised descriptors"


# --------------------------------------------------------------------------- GRH preset


def test_grh_released_preset():
    g = REG.create("grh", preset="released")
    assert g.label == "grh[preset=released]"
    assert {k: g.resolved_params[k] for k in ("fanOut", "expansionRate", "nonMatchCost")} == {"fanOut": 5, "expansionRate": 0.7, "nonMatchCost": 3.7}
    assert REG.create("grh").resolved_params["nonMatchCost"] == 6.0
    assert REG.create("grh", preset="released", nonMatchCost=5.0).resolved_params["nonMatchCost"] == 5.0
    # the search uses the resolved values: a node of cost 4 (cos 0.25) is hidden under 3.7, not under 6
    split = _graph_split(np.array([[0.25, 0.2], [0.25, 0.2], [0.25, 0.2]]))
    assert REG.create("grh", preset="released", hash=False).rank(split, ctx()).indices[:, 0].tolist() == [-1, -1, -1]
    assert REG.create("grh", hash=False).rank(split, ctx()).indices[:, 0].tolist() == [0, 0, 0]
    with pytest.raises(ConfigError):
        REG.create("grh", preset="paper")


def _graph_split(s: np.ndarray, kind: str = "cosine-similarity") -> SplitData:
    nq, nr = s.shape
    return SplitData(
        "m", "test", reference=Traverse("ref", np.arange(nr, dtype=float), "frame"),
        query=Traverse("qry", np.arange(nq, dtype=float), "frame"), radius=0.5,
        distances=np.asarray(s, dtype=np.float32), distance_kind=kind,
    )


# --------------------------------------------------------------------------- imported matrices keep their meaning


@pytest.fixture(scope="module")
def toy():
    return make_toy_dataset(n=160, dim=24, noise=0.4)


def as_imported(ds: BenchmarkDataset, kind: str) -> BenchmarkDataset:
    """The dataset with its descriptors replaced by the cosine similarity matrix S = q.r of the unit descriptors."""
    q = ds.queries[ds.default_query]
    s = l2_normalise(q.descriptors) @ l2_normalise(ds.reference.descriptors).T
    strip = lambda t: Traverse(t.name, t.positions, t.position_unit)  # noqa: E731
    return BenchmarkDataset(
        name=ds.name + "-imported", reference=strip(ds.reference), queries={ds.default_query: strip(q)},
        splits=ds.splits, radius=ds.radius, distances=s, distance_kind=kind,
    )


@pytest.mark.parametrize(
    "name, params",
    [("seqmatch", {}), ("gism", {}), ("gism-dp", {}), ("seqslam", {}), ("seqslam", {"mode": "openseqslam2"}), ("grh", {"hash": False}), ("netvlad", {})],
)
def test_imported_cosine_similarity_equals_native(toy, name, params):
    native, imported = toy.split("test"), as_imported(toy, "cosine-similarity").split("test")
    for L in (3, 5):
        a = REG.create(name, **params).rank(native, ctx(seq_len=L))
        b = REG.create(name, **params).rank(imported, ctx(seq_len=L))
        assert np.array_equal(a.indices, b.indices)
        np.testing.assert_allclose(a.distances, b.distances, rtol=1e-4, atol=1e-4)


def test_imported_cosine_similarity_serves_exact_quantities(toy):
    split = as_imported(toy, "cosine-similarity").split("test")
    src = split_distance_source(split)
    s = split.distances.astype(np.float64)
    np.testing.assert_array_equal(src.similarity_block(0, 5), s[:5])  # graph matchers: S exactly
    np.testing.assert_allclose(src.block(0, 5), np.sqrt(np.maximum(2 - 2 * s[:5], 0)), rtol=1e-6)  # d of unit vectors
    native = split_distance_source(toy.split("test"))
    np.testing.assert_allclose(src.full(), native.full(), atol=2e-3)
    with pytest.raises(DataError, match=r"\[-1, 1\]"):
        DistanceSource(matrix=np.array([[0.5, 1.5]]), kind="cosine-similarity")


def test_generic_similarity_path(toy):
    """A generic similarity: graph matchers use S itself; distance-based methods max(S) - S, with a warning."""
    imported = as_imported(toy, "similarity").split("test")
    s = imported.distances.astype(np.float64)
    g = REG.create("gism").rank(imported, c := ctx())
    assert np.array_equal(g.indices[:, 0], lazy_search(similarity_to_cost(s)).match)
    assert c.notes["distance"] == "similarity s: generic similarity imported, s = S; node cost 1/s"
    with pytest.warns(UserWarning, match=r"max\(S\) - S"):
        sm = REG.create("seqmatch").rank(imported, ctx(seq_len=3, top_k=3))
    # brute force: mean over the aligned window of (max S - S), windows as the run's "shift" policy
    d = s.max() - s
    from vprbench.data.windows import traverse_windows

    qs, _ = traverse_windows(imported.query, 3, "shift")
    rs, _ = traverse_windows(imported.reference, 3, "shift")
    for t in (0, 7, len(qs) - 1):
        seq = np.array([np.mean([d[qs[t] + k, rs[j] + k] for k in range(3)]) for j in range(len(rs))])
        np.testing.assert_allclose(sm.distances[t], np.sort(seq)[:3], rtol=1e-5)
    # seqslam's contrast enhancement is affine-invariant: max(S) - S gives the result of -S as the difference
    with pytest.warns(UserWarning):
        a = REG.create("seqslam").rank(imported, ctx())
    neg = SplitData(imported.dataset, imported.split, imported.reference, imported.query, imported.radius, distances=-s.astype(np.float32))
    b = REG.create("seqslam").rank(neg, ctx())
    assert np.array_equal(a.indices, b.indices)


def test_generic_distance_under_graph_matchers_warns():
    d = np.array([[0.5, 1.0, 1.5], [1.2, 0.4, 1.0]], dtype=np.float32)
    with pytest.warns(UserWarning, match="stand-in"):
        REG.create("gism").rank(_graph_split(d, "distance"), c := ctx())
    assert c.notes["distance"].startswith("similarity s: generic distance d converted by a rule")


def test_grh_on_an_imported_matrix_warns_that_the_hash_is_unavailable(toy):
    imported = as_imported(toy, "cosine-similarity").split("test")
    with pytest.warns(UserWarning, match="relocalisation candidates are all references"):
        REG.create("grh").rank(imported, c := ctx())
    assert c.notes["relocalisation"].startswith("no per-frame descriptors")
    c2 = ctx()
    REG.create("grh").rank(toy.split("test"), c2)
    assert c2.notes["relocalisation"].startswith("dimension hash")
    assert c2.notes["distance"] == "similarity s: cosine similarity of L2-normalised descriptors; node cost 1/s"


def test_seqslam_sad_on_an_imported_matrix_warns(toy):
    imported = as_imported(toy, "cosine-similarity").split("test")
    with pytest.warns(UserWarning, match="SAD difference matrix needs per-frame descriptors"):
        REG.create("seqslam", preset="openseqslam").rank(imported, c := ctx())
    assert c.notes["distance"] == "difference matrix: SAD needs per-frame descriptors; used instead: cosine similarity imported, d = sqrt(2 - 2 S)"


def test_dataset_distance_kind_is_checked_and_carried(toy):
    with pytest.raises(DataError, match="distance_kind"):
        as_imported(toy, "cosine")
    imp = as_imported(toy, "cosine-similarity")
    assert imp.split("test").distance_kind == "cosine-similarity"
    generic = as_imported(toy, "similarity")
    assert imp.fingerprint != generic.fingerprint  # same numbers, different meaning
    unit = BenchmarkDataset("u", toy.reference, toy.queries, toy.splits, toy.radius)
    assert unit.split("test").distance_kind == "distance"


# --------------------------------------------------------------------------- importer: the kind comes from the definition


def _tutorial(tmp_path, s_ref_by_query: np.ndarray, **params) -> BenchmarkDataset:
    import json

    from vprbench.data.catalog import load_dataset

    n_ref, n_q = s_ref_by_query.shape
    np.save(tmp_path / "S.npy", s_ref_by_query)
    np.savez(tmp_path / "gt.npz", GThard=np.eye(n_ref, n_q, dtype=bool))
    lines = ['name = "imp"', 'loader = "vpr-tutorial"', 'summary = "imported"', "[params]", 'similarity = "S.npy"', 'ground_truth = "gt.npz"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in params.items()]
    (tmp_path / "imp.toml").write_text("\n".join(lines) + "\n")
    return load_dataset(str(tmp_path / "imp.toml"), tmp_path)


def test_vpr_tutorial_similarity_kind(tmp_path):
    rng = np.random.default_rng(0)
    x = l2_normalise(rng.normal(size=(12, 6)))
    s = (x @ l2_normalise(x + 0.3 * rng.normal(size=x.shape)).T).astype(np.float32)  # [n_ref, n_query]
    ds = _tutorial(tmp_path, s, similarity_kind="cosine")
    assert ds.distance_kind == "cosine-similarity" and ds.meta["distance_kind"] == "cosine-similarity"
    np.testing.assert_array_equal(ds.distances, s.T)
    with pytest.warns(UserWarning, match='similarity_kind = "cosine"'):
        assert _tutorial(tmp_path, s).distance_kind == "similarity"  # the safe default, with a hint
    with pytest.raises(DataError, match=r"\[-1, 1\]"):
        _tutorial(tmp_path, s * 3, similarity_kind="cosine")
    with pytest.raises(ConfigError, match="similarity_kind must be one of"):
        _tutorial(tmp_path, s, similarity_kind="euclidean")
    with pytest.raises(ConfigError, match="no longer used"):
        _tutorial(tmp_path, s, similarity_to_distance="negate")


def test_vpr_tutorial_cosine_import_gives_native_recall(tmp_path, toy):
    """End to end through the importer: the same descriptors as a VPR_Tutorial cosine S give the same Recall@1."""
    split = toy.split("test")
    q, r = l2_normalise(split.query.descriptors), l2_normalise(split.reference.descriptors)
    n = len(q)
    rng_gt = split.ground_truth.to_dense()  # [nq, nr]
    np.save(tmp_path / "S.npy", (r @ q.T).astype(np.float32))
    np.savez(tmp_path / "gt.npz", GThard=rng_gt.T)
    from vprbench.data.catalog import load_dataset

    (tmp_path / "d.toml").write_text(
        'name = "imp"\nloader = "vpr-tutorial"\nsummary = "s"\n[params]\nsimilarity = "S.npy"\nground_truth = "gt.npz"\nsimilarity_kind = "cosine"\n'
    )
    imported = load_dataset(str(tmp_path / "d.toml"), tmp_path).split("test")
    assert len(imported.query) == n
    for name in ("seqmatch", "gism", "gism-dp", "seqslam"):
        a = REG.create(name).rank(split, ctx(seq_len=3))
        b = REG.create(name).rank(imported, ctx(seq_len=3))
        hits_a = split.ground_truth.hits(a.indices[:, :1])[:, 0].mean()
        hits_b = imported.ground_truth.hits(b.indices[:, :1])[:, 0].mean()
        assert hits_a == hits_b, name
        assert np.array_equal(a.indices, b.indices), name


def test_unit_setter_kept_for_imported_distance_matrices():
    d = np.array([[0.0, 1.0], [2.0, 0.5]], dtype=np.float32)
    src = DistanceSource(matrix=d)
    src.unit = True
    assert src.kind == "unit-euclidean" and src.unit
    with pytest.raises(ConfigError):
        DistanceSource(np.eye(2), np.eye(2)).unit = False
    with pytest.raises(ConfigError, match="kind describes an imported matrix"):
        DistanceSource(np.eye(2), np.eye(2), kind="similarity")
    np.testing.assert_allclose(pairwise_distances(np.eye(2), np.eye(2)), [[0, np.sqrt(2)], [np.sqrt(2), 0]], atol=1e-6)


# --------------------------------------------------------------------------- real data


@pytest.mark.data
def test_nordland_imported_cosine_matches_native():
    """nordland-64x32 test split: its descriptors imported as a cosine matrix give the native numbers
    (before, max - S made seqmatch L=3 R@1 0.260 instead of 0.270 and gism 0.240 instead of 0.095)."""
    from conftest import data_dir

    from vprbench.data.catalog import load_dataset

    root = data_dir()
    if not (root / "nordland-64x32" / "summer").is_dir():
        pytest.skip(f"{root / 'nordland-64x32'} not available")
    ds = load_dataset("nordland-64x32", root)
    split = ds.split("test")
    s = l2_normalise(split.query.descriptors) @ l2_normalise(split.reference.descriptors).T
    strip = lambda t: dataclasses.replace(t, descriptors=None)  # noqa: E731  (keeps positions and segments)
    imported = SplitData(split.dataset, split.split, strip(split.reference), strip(split.query), split.radius,
                         distances=s, distance_kind="cosine-similarity")
    for name in ("seqmatch", "gism", "seqslam"):
        a = REG.create(name).rank(split, ctx(seq_len=3))
        b = REG.create(name).rank(imported, ctx(seq_len=3))
        ra = split.ground_truth.hits(a.indices[:, :1])[:, 0].mean()
        rb = split.ground_truth.hits(b.indices[:, :1])[:, 0].mean()
        assert ra == rb, (name, ra, rb)


def test_sad_split_source_uses_raw_descriptors():
    split = _oss_split(nr=12, nq=10, seed=9)
    src = split_distance_source(split, metric="sad")
    np.testing.assert_allclose(src.full(), _sad_matrix(split).T * 12, rtol=1e-5)
    ds = BenchmarkDataset("x", split.reference, {"qry": split.query}, {"test": SplitIndices(np.arange(12), np.arange(10))}, radius=1.5)
    assert split_distance_source(ds.split("test"), metric="sad").metric == "sad"


@pytest.mark.data
def test_presets_equal_the_programs_on_real_nordland_frames():
    """The first 70 frames of a nordland-64x32 test segment (patch-normalised pixels): both presets
    equal the transcribed programs on the real SAD difference matrix."""
    from conftest import data_dir

    from vprbench.data.catalog import load_dataset

    root = data_dir()
    if not (root / "nordland-64x32" / "summer").is_dir():
        pytest.skip(f"{root / 'nordland-64x32'} not available")
    full = load_dataset("nordland-64x32", root).split("test")
    seg = full.query.segment_bounds[0]
    n = min(70, int(seg[1] - seg[0]))
    idx = np.arange(seg[0], seg[0] + n)
    sub = lambda t: dataclasses.replace(t.subset(idx, name=t.name), segments=None)  # noqa: E731  (one segment)
    split = SplitData(full.dataset, full.split, sub(full.reference), sub(full.query), full.radius)
    D = _sad_matrix(split)
    match, best, ratio = openseqslam_program(D)
    a = REG.create("seqslam", preset="openseqslam").rank(split, ctx())
    assert np.array_equal(a.indices[:, 0], match)
    ok = match >= 0
    np.testing.assert_allclose(-a.confidence[ok], ratio[ok], rtol=1e-4)
    best_idx, best2, us = openseqslam2_program(D)
    b = REG.create("seqslam", preset="openseqslam2").rank(split, ctx())
    kept = (best_idx >= 0) & (us > 1.111)
    assert np.array_equal(b.indices[:, 0], np.where(kept, best_idx, -1))
    np.testing.assert_allclose(b.distances[kept, 0], best2[kept], rtol=1e-4)
