"""SeqSLAM-style sequence matching (OpenSeqSLAM and OpenSeqSLAM 2.0 behaviours, presets of both programs)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from vprbench.kernels import (
    SEQSLAM_MODES,
    check_seq_len,
    openseqslam2_velocities,
    openseqslam_ds,
    openseqslam_velocities,
    round_half_away,
    seqslam_match,
    split_distance_source,
    velocity_range,
)
from vprbench.method import ConfigError, DataError, Method, MethodInfo, Param, Ranking, RunContext, SplitData

#: Resolved values per preset. None: vprbench's defaults (see the class docstring for where they
#: differ from the programs); "openseqslam" / "openseqslam2": each released program's defaults.
SEQSLAM_PRESETS: dict[str | None, dict[str, Any]] = {
    None: {
        "mode": "openseqslam", "ds": 0, "distance": "euclidean", "vmin": 0.8, "vmax": 1.2, "vstep": None,
        "enhance_window": 10, "uniq_window": 10, "min_uniqueness": 0.0, "boundary": None,
    },
    "openseqslam": {
        "mode": "openseqslam", "ds": 10, "distance": "sad", "vmin": 0.8, "vmax": 1.2, "vstep": 0.0,
        "enhance_window": 10, "uniq_window": 10, "min_uniqueness": 0.0, "boundary": "drop",
    },
    "openseqslam2": {
        "mode": "openseqslam2", "ds": 15, "distance": "sad", "vmin": 0.8, "vmax": 1.2, "vstep": 0.1,
        "enhance_window": 10, "uniq_window": 10, "min_uniqueness": 1.111, "boundary": "drop",
    },
}
#: Velocity step of each mode when neither the preset nor the user sets one: OpenSeqSLAM's own rule
#: (0: the end offset steps by one frame) and OpenSeqSLAM 2.0's v_step.
MODE_VSTEP: dict[str, float] = {"openseqslam": 0.0, "openseqslam2": 0.1}
#: Highest velocity accepted (reference frames per query frame; the programs search 0.8-1.2) and
#: most velocities on a vmin:vstep:vmax grid: each is a pass over the difference matrix.
MAX_VELOCITY = 100.0
MAX_VELOCITIES = 1000


def _p(default_help: str, **kw: Any) -> Param:
    return Param(None, default_help + " (none: from the preset)", optional=True, **kw)


class SeqSLAM(Method):
    """SeqSLAM: contrast-enhanced difference matrix, best straight trajectory over a velocity range.

    Milford & Wyeth, "SeqSLAM: Visual route-based navigation for sunny summer days and stormy
    winter nights", ICRA 2012; behaviours of OpenSeqSLAM (Sunderhauf et al., 2013: openSeqSLAM /
    doFindMatches.m) and OpenSeqSLAM 2.0 (Talbot et al., IROS 2018: SeqSLAMInstance.m), as read
    from their code.

    Presets (``preset``; every other parameter defaults to none = from the preset, an explicit
    value overrides it; the values used are ``self.resolved_params``, recorded by the runner):

    * ``preset=openseqslam`` (the released program's defaults): mode openseqslam, d_s 10, SAD
      difference matrix, velocities 0.8..1.2 by its rule (0.8, 0.9, 1.0, 1.1, 1.2), contrast
      window 10, uniqueness window 10, no uniqueness threshold, queries without a full window get
      no match ("drop"); matches reported as start row + d_s/2.
    * ``preset=openseqslam2``: mode openseqslam2, d_s 15, SAD, trajectory search ("traj"),
      velocities from 0.8:0.1:1.2 by its rule ({6/7, 1, 8/7}), contrast window 10, uniqueness
      window 10, keep a match only if u > 1.111, "drop".
    * none (default): vprbench's setting, see "Where the defaults differ" below.

    Difference matrix (``distance``): ``"sad"`` is the originals' sum of absolute differences of
    the per-frame descriptors (for nordland-64x32 those are the patch-normalised pixels;
    OpenSeqSLAM divides the SAD by the number of reference images, OpenSeqSLAM 2.0 by the pixel
    count: constant scales, which the contrast enhancement's z-score removes exactly). SAD needs
    descriptors: on a dataset that only carries an imported matrix its distances are used instead,
    with a warning. ``"euclidean"``: the Euclidean distances of L2-normalised descriptors (or the
    imported matrix converted to distances, see :mod:`vprbench.matching.distances`). Local
    contrast enhancement per query along the reference axis over i-h..i+h (``enhance_window`` =
    2h, cut at the edges and at reference segment bounds), z-score with the N-1 standard
    deviation, then the whole matrix is shifted so its minimum is 0. ``ctx.notes["distance"]``
    and ``ctx.notes["seqslam"]`` record the difference matrix, window and velocities used.

    ``mode="openseqslam"``: a query's window holds W = d_s + 1 frames centred on it (the program
    rounds an odd d_s up to even first); a trajectory from candidate start row s visits
    s + floor(j v) at window column j (floor of the float64 product, as the program); the score
    of s is the minimum over velocities of the summed enhanced differences; trajectories past the
    end (of the candidate's segment) are +inf; the match is the first argmin s reported as
    s + (query offset in its window) (= s + d_s/2 when centred). Velocities (``vstep`` = 0, the
    program's rule, which never reads its vskip setting): v = (vmin d_s : vmax d_s) / d_s, MATLAB
    colon from a possibly fractional start (:func:`vprbench.matching.seqslam.openseqslam_velocities`).
    Uniqueness ratio = best / lowest score with start outside +-``uniq_window``/2 of the best.

    ``mode="openseqslam2"``: W = d_s frames, offsets qs = (0..d_s-1) - floor(d_s/2) (for even d_s
    one fewer forward); velocities from vmin:vstep:vmax mapped to the candidates of its
    trajectoryOffsets (:func:`vprbench.matching.seqslam.openseqslam2_velocities`); trajectory rows
    round(qs v) (halves away from zero) through candidate r at the query's own column (r is the
    match); trajectories that leave the reference segment are dropped. Its score u = second /
    best with the second best outside +-round(``uniq_window``/2); u undefined there (no second
    candidate, 0/0) never passes a threshold.

    Uniqueness: ``min_uniqueness`` > 0 drops matches with u = 1/ratio <= it (OpenSeqSLAM 2.0:
    1.111); 0 keeps all. The confidence used for precision-recall is minus the ratio in both modes
    (same order as u).

    Where the defaults (no preset) differ from the programs, and why:

    * ``ds`` = 0 takes the window from the run's sequence length, W = ctx.seq_len frames (d_s =
      L - 1 in "openseqslam", not rounded to even; d_s = L in "openseqslam2"), so ``--seq-len``
      keeps its meaning across methods; ``ds`` > 0 sets d_s directly, decoupled from --seq-len.
    * ``distance`` = euclidean: every front end's descriptors are compared by the project's
      common metric (L2 of unit vectors), and imported matrices work unchanged.
    * ``boundary`` = none follows the run's ``--boundary`` ("shift" by default: every query gets
      a window, shifted inward at segment bounds); the programs drop those queries ("drop").
    * no uniqueness threshold (OpenSeqSLAM has none; OpenSeqSLAM 2.0 uses 1.111).
    * velocities follow the mode's program rule (``vstep`` none = 0 for openseqslam, 0.1 for
      openseqslam2); an explicit ``vstep`` > 0 in openseqslam mode uses the decimal grid
      vmin, vmin + vstep, ..., vmax instead (the program itself ignores vskip).

    Decisions where the programs are silent or fail: reference segments (several traverses in
    one) bound enhancement windows and trajectories; a zero-spread enhancement window gives 0 (the
    programs divide by zero); odd window sizes use floor(R/2) for the enhancement and, in
    openseqslam mode, for uniqueness (both programs then index with fractions); ranking = the
    top-K candidates by trajectory score (ties to the lower index).
    """

    info = MethodInfo(
        name="seqslam",
        family="sequence-matching",
        summary="SeqSLAM: contrast enhancement + trajectory search over velocities (presets: openseqslam, openseqslam2)",
        paper="Milford & Wyeth, SeqSLAM, ICRA 2012; Talbot et al., OpenSeqSLAM2.0, IROS 2018",
        needs=("distances",),
        params={
            "preset": Param(None, "released program's defaults: openseqslam or openseqslam2 (none: vprbench's)",
                            ("openseqslam", "openseqslam2"), type=str, optional=True),
            "mode": _p("reference behaviour: OpenSeqSLAM or OpenSeqSLAM 2.0", choices=SEQSLAM_MODES, type=str),
            "ds": _p("trajectory length d_s in frames; 0 = from --seq-len (window of L frames)", type=int, lo=0),
            "distance": _p("difference matrix: sad (the programs) or euclidean (L2 of unit vectors)", choices=("sad", "euclidean"), type=str),
            "vmin": _p("lowest velocity (reference frames per query frame)", type=float, lo=0.0, lo_open=True, hi=MAX_VELOCITY),
            "vmax": _p("highest velocity, >= vmin", type=float, lo=0.0, lo_open=True, hi=MAX_VELOCITY),
            "vstep": _p("velocity step; 0 = OpenSeqSLAM's rule (end offset steps of one frame)", type=float, lo=0.0),
            "enhance_window": _p("contrast-enhancement window R (rows i-R/2..i+R/2)", type=int, lo=2),
            "uniq_window": _p("uniqueness window (candidates within +-R/2 of the best are excluded)", type=int, lo=0),
            "min_uniqueness": _p("drop matches with u = 1/ratio <= this (0 keeps all)", type=float, lo=0.0),
            "boundary": Param(None, "query windows at segment bounds: drop (the programs) or shift (none: the preset's; "
                              "without a preset the run's --boundary)", ("shift", "drop"), type=str, optional=True),
        },
    )

    def check_params(self) -> None:
        """Resolve the preset and check the velocity grid before any data loads (ConfigError)."""
        p = self.params
        table = SEQSLAM_PRESETS[p["preset"]]
        r = {"preset": p["preset"], **{k: (table[k] if p[k] is None else p[k]) for k in table}}
        if r["vstep"] is None:
            r["vstep"] = MODE_VSTEP[r["mode"]]
        self.resolved_params: dict[str, Any] = r
        if r["vmax"] < r["vmin"]:
            raise ConfigError(f"method 'seqslam': empty velocity range, vmax ({r['vmax']}) < vmin ({r['vmin']})")
        if r["vstep"] and (r["vmax"] - r["vmin"]) / r["vstep"] + 1 > MAX_VELOCITIES:
            raise ConfigError(f"method 'seqslam': vmin:vstep:vmax = {r['vmin']}:{r['vstep']}:{r['vmax']} gives "
                              f"{(r['vmax'] - r['vmin']) / r['vstep'] + 1:.3g} velocities; at most {MAX_VELOCITIES} are searched "
                              "(each one is a pass over the difference matrix): use a larger vstep")
        if r["mode"] == "openseqslam2" and not r["vstep"] > 0:
            raise ConfigError("method 'seqslam': mode openseqslam2 needs vstep > 0 (its velocity grid vmin:vstep:vmax)")
        if r["mode"] == "openseqslam2" and r["ds"] == 1:
            raise ConfigError("method 'seqslam': mode openseqslam2 needs d_s >= 2 (it divides by floor(d_s/2))")

    def window(self, seq_len: int) -> int:
        """Query frames per trajectory for this mode and ``seq_len`` (see the class docstring)."""
        r = self.resolved_params
        if r["ds"] == 0:
            return check_seq_len(seq_len)
        return openseqslam_ds(r["ds"]) + 1 if r["mode"] == "openseqslam" else r["ds"]

    def velocities(self, window: int) -> np.ndarray:
        """The velocities searched for a window of ``window`` frames (the mode's rule, see the class docstring)."""
        r = self.resolved_params
        if r["mode"] == "openseqslam2":
            return openseqslam2_velocities(r["vmin"], r["vmax"], r["vstep"], window)
        if r["vstep"] == 0:
            return openseqslam_velocities(r["vmin"], r["vmax"], window - 1)
        return velocity_range(r["vmin"], r["vmax"], r["vstep"])

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        r = self.resolved_params
        W = self.window(ctx.seq_len)
        vel = self.velocities(W)
        longest = int((split.query.segment_bounds[:, 1] - split.query.segment_bounds[:, 0]).max())
        if r["ds"] and W > longest:
            raise DataError(f"method 'seqslam': its window of {W} query frames (ds={r['ds']}) is longer than the longest segment "
                            f"of traverse {split.query.name!r} ({longest} frames); use a smaller ds")
        check_seq_len(W, split.query.segment_bounds, what=f"traverse {split.query.name!r} (seqslam window)")
        boundary = r["boundary"] or ctx.boundary
        src = split_distance_source(split, metric="sad" if r["distance"] == "sad" else "euclidean", memory_mb=ctx.memory_mb)
        note = src.distance_note
        if r["distance"] == "sad" and src.metric != "sad":
            note = f"SAD needs per-frame descriptors; used instead: {note}"
            warnings.warn(
                f"method 'seqslam' on dataset {split.dataset!r}: the SAD difference matrix needs per-frame descriptors, "
                f"the dataset gives an imported matrix; using its distances ({src.distance_note})",
                stacklevel=2,
            )
        ctx.notes["distance"] = f"difference matrix: {note}"
        uniq_half = r["uniq_window"] // 2 if r["mode"] == "openseqslam" else int(round_half_away(r["uniq_window"] / 2))
        ctx.notes["seqslam"] = (
            f"mode {r['mode']}, window {W} frames, velocities {[round(float(v), 6) for v in vel]}, "
            f"boundary {boundary}, uniqueness window +-{uniq_half}"
        )
        with ctx.timings("match"):
            res = seqslam_match(
                src,
                split.query.segment_bounds,
                split.reference.segment_bounds,
                W,
                vel,
                ctx.top_k,
                mode=r["mode"],
                enhance_half_window=r["enhance_window"] // 2,
                uniq_half_window=uniq_half,
                boundary=boundary,
                memory_mb=ctx.memory_mb,
            )
        idx, scores, ratio = res.indices, res.scores, res.ratio
        if r["min_uniqueness"] > 0:
            with np.errstate(divide="ignore"):
                drop = ~(1.0 / ratio > r["min_uniqueness"])
            idx[drop] = -1
            scores[drop] = np.inf
        matched = idx[:, 0] >= 0
        conf = np.where(matched, -np.nan_to_num(ratio, nan=np.inf, posinf=1e300), -np.inf)
        return Ranking(idx, scores, conf)
