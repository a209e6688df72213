"""Slow, obviously-correct reference implementations the tests compare the fast kernels with."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from vprbench.matching.seqslam import round_half_away


def seqslam_reference(
    dist: np.ndarray,
    window: int,
    velocities: np.ndarray,
    mode: str = "openseqslam",
    enhance_half_window: int = 5,
    uniq_half_window: int = 5,
    boundary: str = "drop",
    queries: Iterable[int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Naive per-query loops of SeqSLAM on one segment (tests): (match [nq], best score [nq], ratio [nq]).

    Written in the reference code's layout (rows references, columns queries) and loop order;
    ``velocities`` are used as given, one trajectory per velocity. ``queries``: compute only these
    (the others stay -1 / inf / NaN), for a slice of a large problem.
    """
    D = np.asarray(dist, dtype=np.float64).T  # [nr, nq]
    nr, nq = D.shape
    h = enhance_half_window
    E = np.zeros_like(D)
    for i in range(nr):
        w = D[max(0, i - h) : min(nr - 1, i + h) + 1]
        sd = w.std(axis=0, ddof=1) if w.shape[0] > 1 else np.zeros(nq)
        E[i] = np.where(sd > 0, (D[i] - w.mean(axis=0)) / np.where(sd > 0, sd, 1), 0.0)
    E -= E.min()
    match = np.full(nq, -1)
    best = np.full(nq, np.inf)
    ratio = np.full(nq, np.nan)
    W = window
    for N in range(nq) if queries is None else queries:
        st = N - W // 2
        if boundary == "shift":
            st = min(max(st, 0), nq - W)
        if st < 0 or st + W > nq:
            continue
        c = N - st
        score = np.full(nr, np.inf)
        for s in range(nr):
            for vel in velocities:
                tot = 0.0
                for jj in range(W):
                    if mode == "openseqslam":
                        row = s + int(np.floor(jj * float(vel)))
                    else:
                        row = s + int(round_half_away(np.array((jj - c) * float(vel))))
                    if row < 0 or row >= nr:
                        tot = np.inf
                        break
                    tot += E[row, st + jj]
                score[s] = min(score[s], tot)
        if mode == "openseqslam":
            score[np.arange(nr) + c >= nr] = np.inf
        if not np.isfinite(score).any():
            continue
        m = int(np.argmin(score))
        out = np.ones(nr, bool)
        out[max(0, m - uniq_half_window) : m + uniq_half_window + 1] = False
        sec = score[out].min() if out.any() else np.inf
        match[N] = m + c if mode == "openseqslam" else m
        best[N] = score[m]
        if mode == "openseqslam":
            ratio[N] = 0.0 if np.isinf(sec) else (score[m] / sec if sec > 0 else (np.inf if score[m] > 0 else 1.0))
        else:
            u = np.nan if (np.isinf(sec) or sec == score[m] == 0) else (np.inf if score[m] == 0 else sec / score[m])
            ratio[N] = np.inf if np.isnan(u) else 1.0 / u
    return match, best, ratio
