"""SeqSLAM-style sequence matching (OpenSeqSLAM and OpenSeqSLAM 2.0 behaviours)."""

from __future__ import annotations

import numpy as np

from vprbench.kernels import SEQSLAM_MODES, check_seq_len, seqslam_match, split_distance_source, velocity_range
from vprbench.method import ConfigError, Method, MethodInfo, Param, Ranking, RunContext, SplitData


class SeqSLAM(Method):
    """SeqSLAM: contrast-enhanced difference matrix, best straight trajectory over a velocity range.

    Milford & Wyeth, "SeqSLAM: Visual route-based navigation for sunny summer days and stormy
    winter nights", ICRA 2012; behaviours of OpenSeqSLAM (Sunderhauf et al., 2013) and
    OpenSeqSLAM 2.0 (Talbot et al., IROS 2018) as described in the project's METHODS.md.

    Difference matrix: the single-image Euclidean distances of L2-normalised descriptors (or the
    dataset's imported distance matrix) instead of patch-normalised thumbnails (a constant scale
    is irrelevant). Local contrast enhancement per query along the reference axis over
    i-h..i+h (``enhance_window`` = 2h, cut at the edges), z-score with the N-1 standard deviation,
    then the whole matrix is shifted so its minimum is 0.

    ``mode="openseqslam"`` (default): a query's window holds W = d_s + 1 frames centred on it;
    a trajectory from candidate reference s visits s + floor(j v) at window column j; the score
    of s is the minimum over velocities of the summed enhanced differences; references past
    the end (of the candidate's segment) make the trajectory +inf; the match is the first
    argmin s reported as s + (query offset in its window) (= s + d_s/2 when centred).
    ``mode="openseqslam2"``: W = d_s frames (for even d_s one fewer forward), velocities snapped
    to the distinct end offsets round(v (W-1)), trajectories anchored at the query's own row with
    offsets round_half_away((j - c) v) through candidate r (the reported match), trajectories
    leaving the reference segment are dropped.
    Uniqueness ratio = best score / lowest score with candidate outside +-``uniq_window``/2 of the
    best (OpenSeqSLAM's measure; OpenSeqSLAM 2.0 reports its inverse u); the confidence used for
    precision-recall is minus the ratio in both modes (same order as u). ``min_uniqueness`` > 0
    drops matches with u = 1/ratio <= it (OpenSeqSLAM 2.0 uses 1.111); default 0 keeps all.

    Decisions where the sources are silent:
    * ``ds`` = 0 (default) takes the window from the run's sequence length: W = ctx.seq_len frames
      (d_s = L - 1 in "openseqslam", d_s = L in "openseqslam2"), so ``--seq-len`` keeps its
      meaning; ``ds`` > 0 sets d_s directly (the papers' d_s = 10 / 15).
    * Velocities are vmin, vmin + vstep, ..., vmax (0.8..1.2 step 0.1 = OpenSeqSLAM's five for
      d_s = 10); floor(j v) uses a 1e-9 tolerance so 0.7 * 10 counts as 7.
    * Query windows follow ``ctx.boundary``: "drop" reproduces the reference code (the first and
      last W//2 queries of each segment get no match); "shift" (default test policy) shifts them
      inward; reference trajectories and enhancement windows never cross reference segment bounds.
    * A zero-spread enhancement window gives 0 (the reference code divides by zero).
    * Ranking: the top-K references by trajectory score (ties to the lower index).
    """

    info = MethodInfo(
        name="seqslam",
        family="sequence-matching",
        summary="SeqSLAM: contrast enhancement + trajectory search over velocities (OpenSeqSLAM / 2.0)",
        paper="Milford & Wyeth, SeqSLAM, ICRA 2012; Talbot et al., OpenSeqSLAM2.0, IROS 2018",
        needs=("distances",),
        params={
            "mode": Param("openseqslam", "reference behaviour: OpenSeqSLAM or OpenSeqSLAM 2.0", SEQSLAM_MODES),
            "ds": Param(0, "trajectory length d_s in frames; 0 = from --seq-len (window of L frames)", lo=0),
            "vmin": Param(0.8, "lowest velocity (reference frames per query frame)", lo=0.0, lo_open=True),
            "vmax": Param(1.2, "highest velocity, >= vmin", lo=0.0, lo_open=True),
            "vstep": Param(0.1, "velocity step", lo=0.0, lo_open=True),
            "enhance_window": Param(10, "contrast-enhancement window R (rows i-R/2..i+R/2)", lo=2),
            "uniq_window": Param(10, "uniqueness window (candidates within +-R/2 of the best are excluded)", lo=0),
            "min_uniqueness": Param(0.0, "drop matches with u = 1/ratio <= this (0 keeps all; OpenSeqSLAM 2.0: 1.111)", lo=0.0),
        },
    )

    def check_params(self) -> None:
        p = self.params
        if p["vmax"] < p["vmin"]:
            raise ConfigError(f"method 'seqslam': empty velocity range, vmax ({p['vmax']}) < vmin ({p['vmin']})")

    def window(self, seq_len: int) -> int:
        """Query frames per trajectory for this mode and ``seq_len`` (see the class docstring)."""
        ds = self.params["ds"]
        if ds == 0:
            return check_seq_len(seq_len)
        return ds + 1 if self.params["mode"] == "openseqslam" else ds

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        p = self.params
        vel = velocity_range(p["vmin"], p["vmax"], p["vstep"])
        W = self.window(ctx.seq_len)
        check_seq_len(W, split.query.segment_bounds, what=f"traverse {split.query.name!r} (seqslam window)")
        with ctx.timings("match"):
            res = seqslam_match(
                split_distance_source(split),
                split.query.segment_bounds,
                split.reference.segment_bounds,
                W,
                vel,
                ctx.top_k,
                mode=p["mode"],
                enhance_half_window=p["enhance_window"] // 2,
                uniq_half_window=p["uniq_window"] // 2,
                boundary=ctx.boundary,
                memory_mb=ctx.memory_mb,
            )
        idx, scores, ratio = res.indices, res.scores, res.ratio
        if p["min_uniqueness"] > 0:
            with np.errstate(divide="ignore"):
                drop = ~(1.0 / ratio > p["min_uniqueness"])
            idx[drop] = -1
            scores[drop] = np.inf
        matched = idx[:, 0] >= 0
        conf = np.where(matched, -np.nan_to_num(ratio, nan=np.inf, posinf=1e300), -np.inf)
        return Ranking(idx, scores, conf)
