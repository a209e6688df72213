"""Vectorised SeqSLAM: local contrast enhancement and trajectory search over a velocity range.

Layout: distance rows are queries and columns references ([n_query, n_ref]); the SeqSLAM papers
and code use the transpose (rows references, columns queries). Queries are processed in blocks of
contiguous frames (bounded memory); inside a block every loop runs over window offsets and
velocities only, never over queries or references.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vprbench.core.errors import ConfigError
from vprbench.data.windows import window_starts
from vprbench.matching.distances import DistanceSource, block_rows
from vprbench.matching.topk import topk_smallest

SEQSLAM_MODES: tuple[str, ...] = ("openseqslam", "openseqslam2")


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves away from zero (MATLAB's ``round``), as int64."""
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def matlab_colon(a: float, d: float, b: float) -> np.ndarray:
    """MATLAB's ``a:d:b`` for scalars, float64 [n] (empty when d = 0 or the range is empty).

    The algorithm MathWorks documents for the colon operator (its ``colonop``): the number of
    intervals n is ``floor(b) - a`` for integer a and d = 1, ``floor((b - r)/d) - floor(a/d)``
    (r = a - floor(a/d) d) for integer a and d, else ``round((b - a)/d)`` less one if
    a + n d overshoots b by more than tol = 2 eps max(|a|, |b|); the right end c = a + n d is
    snapped to b when within tol; the first half is a + k d, the second half c - k d, and for even
    n the middle element is (a + c)/2. The programs' velocity sets depend on these exact values.

    >>> matlab_colon(0.8, 0.1, 1.2).tolist()
    [0.8, 0.9, 1.0, 1.0999999999999999, 1.2]
    """
    a, d, b = float(a), float(d), float(b)
    if d == 0 or (d > 0 and a > b) or (d < 0 and a < b):
        return np.zeros(0)
    tol = 2.0 * np.finfo(np.float64).eps * max(abs(a), abs(b))
    sig = 1.0 if d > 0 else -1.0
    if a == np.floor(a) and d == 1:
        n = int(np.floor(b) - a)
    elif a == np.floor(a) and d == np.floor(d):
        q = np.floor(a / d)
        n = int(np.floor((b - (a - q * d)) / d) - q)
    else:
        n = int(round_half_away((b - a) / d))
        if sig * (a + n * d - b) > tol:
            n -= 1
    c = a + n * d
    if sig * (c - b) > -tol:
        c = b
    v = np.zeros(n + 1)
    k = np.arange(n // 2 + 1, dtype=np.float64)
    v[k.astype(np.int64)] = a + k * d
    v[n - k.astype(np.int64)] = c - k * d
    if n % 2 == 0:
        v[n // 2] = (a + c) / 2
    return v


def _check_velocity_bounds(vmin: float, vmax: float) -> None:
    if not (np.isfinite(vmin) and np.isfinite(vmax)):
        raise ConfigError(f"seqslam: velocities must be finite, got vmin={vmin}, vmax={vmax}")
    if vmin <= 0:
        raise ConfigError(f"seqslam: vmin must be > 0 (frames of reference per query frame), got {vmin}")
    if vmax < vmin:
        raise ConfigError(f"seqslam: empty velocity range, vmax ({vmax}) < vmin ({vmin})")


def velocity_range(vmin: float, vmax: float, vstep: float) -> np.ndarray:
    """Velocities vmin, vmin + vstep, ..., vmax (MATLAB's colon, rounded to 12 decimals), float64.

    The rounding gives the intended decimal values (0.7 + 3 x 0.1 = 1.0 exactly), so that the
    trajectory offsets floor(j v) of a decimal grid are the mathematical ones. ConfigError if
    empty or non-positive.
    """
    _check_velocity_bounds(vmin, vmax)
    if not (np.isfinite(vstep) and vstep > 0):
        raise ConfigError(f"seqslam: vstep must be > 0, got {vstep}")
    return np.round(matlab_colon(vmin, vstep, vmax), 12)


def openseqslam_ds(ds: int) -> int:
    """OpenSeqSLAM's d_s after its rounding of an odd value up to even (``ds + mod(ds, 2)``)."""
    return int(ds) + int(ds) % 2


def openseqslam_velocities(vmin: float, vmax: float, ds: int) -> np.ndarray:
    """OpenSeqSLAM's velocities for trajectory length ``ds`` (frames, as the program uses it), float64.

    The program steps the end offset by one frame: ``move = vmin*ds : vmax*ds`` (MATLAB colon,
    possibly from a fractional start), ``v = move / ds``; its ``vskip`` setting is never read.
    For ds = 10 (0.8..1.2) that is 0.8, 0.9, 1.0, 1.1, 1.2. ds = 0 (a one-frame window) gives [vmin].
    """
    _check_velocity_bounds(vmin, vmax)
    if ds < 0:
        raise ConfigError(f"seqslam: d_s must be >= 0, got {ds}")
    if ds == 0:
        return np.array([float(vmin)])
    return matlab_colon(vmin * ds, 1.0, vmax * ds) / ds


def openseqslam2_velocities(vmin: float, vmax: float, vstep: float, ds: int) -> np.ndarray:
    """OpenSeqSLAM 2.0's velocities for trajectory length ``ds`` (SeqSLAMInstance.trajectoryOffsets), float64.

    With offsets qs = (0..ds-1) - floor(ds/2) and qs_0 = -floor(ds/2), the candidates are the
    distinct rounded start offsets round(qs_0 vmin) down to round(qs_0 vmax), each divided by
    -floor(ds/2); every velocity of vmin:vstep:vmax (MATLAB colon) is mapped to the closest
    candidate (ties to the first, the smaller) and the result is the sorted distinct set.
    For ds = 15: {6/7, 1, 8/7}. ConfigError for ds < 2 (the program divides by floor(ds/2) = 0).
    """
    _check_velocity_bounds(vmin, vmax)
    if not (np.isfinite(vstep) and vstep > 0):
        raise ConfigError(f"seqslam: openseqslam2 velocities need vstep > 0, got {vstep}")
    h = int(ds) // 2
    if h < 1:
        raise ConfigError(f"seqslam: openseqslam2 needs d_s >= 2 (it divides by floor(d_s/2)), got d_s = {ds}")
    t_min, t_max = int(round_half_away(-h * vmin)), int(round_half_away(-h * vmax))
    candidates = (np.arange(t_min, t_max - 1, -1) / h) * -1.0
    grid = matlab_colon(vmin, vstep, vmax)
    chosen = candidates[np.argmin(np.abs(candidates[None, :] - grid[:, None]), axis=1)]
    return np.unique(chosen)


def trajectory_offsets(mode: str, window: int, velocities: np.ndarray, anchor: int = 0) -> np.ndarray:
    """Reference-row offsets [V', window] int64 of the trajectories, distinct rows (sorted).

    ``"openseqslam"``: floor(j v) for window column j = 0..window-1, relative to the start row
    (computed in float64 exactly as the program does, no tolerance). ``"openseqslam2"``:
    round_half_away((j - anchor) v), relative to the row of the query's own column ``anchor``.
    """
    v = np.asarray(velocities, dtype=np.float64).reshape(-1, 1)
    j = np.arange(int(window), dtype=np.float64)[None, :]
    if mode == "openseqslam":
        off = np.floor(j * v).astype(np.int64)
    else:
        off = round_half_away((j - anchor) * v)
    return np.unique(off, axis=0)


def contrast_enhance(d: np.ndarray, ref_segments: np.ndarray, half_window: int = 5) -> np.ndarray:
    """Local contrast enhancement of each query row along the reference axis, float64 [m, nr].

    For reference column i the window is ``max(seg_start, i - h) .. min(seg_end - 1, i + h)``
    inclusive (cut at the segment edges, not re-centred); the value becomes
    ``(d - mean) / std`` over that window with the N-1 estimator. Where the window has a single
    element or zero spread the value is 0 (the reference code would divide by zero).
    """
    d = np.asarray(d, dtype=np.float64)
    m, nr = d.shape
    i = np.arange(nr)
    seg = np.asarray(ref_segments, dtype=np.int64)
    a = np.maximum(seg[:, 0], i - half_window)
    b = np.minimum(seg[:, 1] - 1, i + half_window) + 1  # exclusive
    n = (b - a).astype(np.float64)
    centred = d - d.mean(axis=1, keepdims=True)  # smaller cumulative sums, less cancellation
    c1 = np.zeros((m, nr + 1))
    np.cumsum(centred, axis=1, out=c1[:, 1:])
    s1 = c1[:, b] - c1[:, a]
    np.square(centred, out=c1[:, 1:])
    np.cumsum(c1[:, 1:], axis=1, out=c1[:, 1:])
    s2 = c1[:, b] - c1[:, a]
    mean = s1 / n
    var = (s2 - s1 * mean) / np.maximum(n - 1.0, 1.0)
    scale = np.maximum(s2 / n, 1e-300)
    ok = (n > 1) & (var > 1e-12 * scale)
    std = np.sqrt(np.where(ok, var, 1.0))
    return np.where(ok, (centred - mean) / std, 0.0)


@dataclass
class SeqSLAMResult:
    """Per query: top-k references [nq, k] (-1: none), scores [nq, k] ascending, uniqueness ratio [nq].

    ``ratio`` = best score / lowest score outside the uniqueness window (smaller = more
    distinctive; NaN where the query gets no match). OpenSeqSLAM's measure; OpenSeqSLAM 2.0's u is
    its inverse, and where u is undefined there (no score outside the window, or 0 / 0) the
    ratio is +inf, so that no uniqueness threshold keeps the match, as in that program.
    """

    indices: np.ndarray
    scores: np.ndarray
    ratio: np.ndarray


def seqslam_match(
    source: DistanceSource,
    q_segments: np.ndarray,
    r_segments: np.ndarray,
    window: int,
    velocities: np.ndarray,
    k: int,
    mode: str = "openseqslam",
    enhance_half_window: int = 5,
    uniq_half_window: int = 5,
    boundary: str = "drop",
    memory_mb: float = 512.0,
) -> SeqSLAMResult:
    """SeqSLAM matching of every query frame (see :class:`methods.seqslam.SeqSLAM` for the rules).

    Args:
        source: single-image differences [nq, nr] (its ``block``: lower = more similar).
        q_segments, r_segments: [nq, 2], [nr, 2] per-frame [start, end) segment bounds.
        window: query frames per trajectory (d_s + 1 for "openseqslam", d_s for "openseqslam2").
        velocities: [V] reference frames per query frame, > 0, used as given (see
            :func:`openseqslam_velocities`, :func:`openseqslam2_velocities`, :func:`velocity_range`);
            trajectories are :func:`trajectory_offsets`.
        k: references returned per query.
        mode: "openseqslam" or "openseqslam2".
        enhance_half_window: h of the contrast-enhancement window i-h..i+h.
        uniq_half_window: starts within +-this of the best are excluded from the second best.
        boundary: query window policy ("drop": queries whose centred window leaves their segment
            get no match, as both programs; "shift": such windows are shifted inward).
        memory_mb: budget for one block of query frames.
    """
    if mode not in SEQSLAM_MODES:
        raise ConfigError(f"seqslam: mode must be one of {SEQSLAM_MODES}, got {mode!r}")
    if isinstance(window, bool) or int(window) < 1:
        raise ConfigError(f"seqslam: trajectory window must be >= 1 query frame, got {window!r}")
    v = np.asarray(velocities, dtype=np.float64).reshape(-1)
    if v.size == 0 or not (v > 0).all():
        raise ConfigError(f"seqslam: velocities must be a non-empty set of positive values, got {v.tolist()}")
    nq, nr = source.shape
    W = int(window)
    q_seg = np.asarray(q_segments, dtype=np.int64)
    r_seg = np.asarray(r_segments, dtype=np.int64)
    starts, q_valid = window_starts(q_seg, W, boundary)
    anchor = np.arange(nq) - starts  # offset of the query frame inside its window

    # trajectory offsets [V', W] relative to the candidate row, one table per anchor in openseqslam2
    if mode == "openseqslam":
        offsets_by_anchor = {None: trajectory_offsets(mode, W, v)}
    else:
        offsets_by_anchor = {int(c): trajectory_offsets(mode, W, v, int(c)) for c in np.unique(anchor[q_valid])}
    all_off = np.concatenate([o.ravel() for o in offsets_by_anchor.values()]) if offsets_by_anchor else np.zeros(1, np.int64)
    pad_lo, pad_hi = max(0, -int(all_off.min())), max(0, int(all_off.max()))
    n_traj = max(o.shape[0] for o in offsets_by_anchor.values()) if offsets_by_anchor else 1

    kk = min(int(k), nr)
    out_idx = np.full((nq, kk), -1, dtype=np.int64)
    raw = np.full((nq, kk), np.inf, dtype=np.float64)
    best = np.full(nq, np.inf)
    second = np.full(nq, np.inf)
    gmin = np.inf
    # per query row: ~10 float64 temporaries of the enhancement (= 20 float32), padded copies, V scores
    rows = max(block_rows(nr + pad_lo + pad_hi, memory_mb, copies=28 + 2 * n_traj), 1)
    s_idx = np.arange(nr)
    for a in range(0, nq, rows):
        b = min(nq, a + rows)
        # a window holds its own query frame, so the block's windows lie in rows a - W + 1 .. b + W - 2
        lo, hi = max(0, a - W + 1), min(nq, b + W - 1)
        e = contrast_enhance(source.block(lo, hi), r_seg, enhance_half_window)
        gmin = min(gmin, float(e[a - lo : b - lo].min()))  # rows a..b-1: each frame counted in one block
        epad = np.full((hi - lo, pad_lo + nr + pad_hi), np.inf, dtype=np.float32)
        epad[:, pad_lo : pad_lo + nr] = e
        del e
        qsel = np.flatnonzero(q_valid[a:b]) + a  # the block's queries (by frame)
        for group, off in offsets_by_anchor.items():
            g = qsel if group is None else qsel[anchor[qsel] == group]
            if g.size == 0:
                continue
            r0 = starts[g] - lo
            sv = np.zeros((off.shape[0], g.size, nr), dtype=np.float32)
            for jj in range(W):
                rows_j = epad[r0 + jj]
                for vi in range(off.shape[0]):
                    o = pad_lo + off[vi, jj]
                    sv[vi] += rows_j[:, o : o + nr]
            # trajectories must stay in the candidate's reference segment
            ok = (s_idx[None, :] + off.min(axis=1, keepdims=True) >= r_seg[:, 0][None, :]) & (
                s_idx[None, :] + off.max(axis=1, keepdims=True) < r_seg[:, 1][None, :]
            )
            sv[~np.broadcast_to(ok[:, None, :], sv.shape)] = np.inf
            score = sv.min(axis=0)
            del sv
            if mode == "openseqslam":
                # reported reference = candidate + anchor; it must stay inside the candidate's segment
                score[(s_idx[None, :] + anchor[g][:, None]) >= r_seg[:, 1][None, :]] = np.inf
            _finish(score, g, kk, out_idx, raw, best, second, uniq_half_window)
        del epad
    if mode == "openseqslam":
        out_idx = np.where(out_idx >= 0, out_idx + anchor[:, None], -1)
    shift = -W * gmin  # the whole enhanced matrix is shifted so its minimum is 0
    scores = np.where(out_idx >= 0, raw + shift, np.inf).astype(np.float32)
    return SeqSLAMResult(out_idx, scores, uniqueness_ratio(best + shift, second + shift, mode))


def uniqueness_ratio(best: np.ndarray, second: np.ndarray, mode: str) -> np.ndarray:
    """best / second per query [nq] float64 (scores already shifted >= 0; best = inf: no match -> NaN).

    ``"openseqslam"``: 0 when there is no second score (the program divides by its +inf sentinel
    row), 1 for 0 / 0. ``"openseqslam2"``: the inverse of its u = second / best, +inf where u is
    NaN there (no second score: min over NaNs; 0 / 0), 0 where u = +inf (best 0, second > 0).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(second > 0, best / second, np.where(best > 0, np.inf, 1.0))
    none = np.isinf(second)
    if mode == "openseqslam":
        r = np.where(none, 0.0, r)
    else:
        r = np.where(none | ((best == 0) & (second == 0)), np.inf, r)
    return np.where(np.isfinite(best), r, np.nan)


def _finish(score, g, kk, out_idx, raw, best, second, uh) -> None:
    """Top-k, best and second-best (outside +-uh of the best) of score rows [len(g), nr]."""
    idx, val = topk_smallest(score, kk)
    fin = np.isfinite(val)
    out_idx[g] = np.where(fin, idx, -1)
    raw[g] = np.where(fin, val, np.inf)
    m = idx[:, 0]
    best[g] = val[:, 0]
    cols = np.arange(score.shape[1])[None, :]
    masked = np.where(np.abs(cols - m[:, None]) <= uh, np.inf, score)
    second[g] = masked.min(axis=1) if masked.shape[1] else np.inf
