"""Deterministic synthetic routes: the built-in datasets ``synth-seasons``, ``synth-daynight``, ``synth-tiny``.

A seeded generator of two traverses (reference and query) of one route, given directly as
per-frame descriptors [n, D] (float32, unit rows) with positions in metres. It is built so that
the effects that make sequence methods matter are present and measurable:

* a smooth latent appearance field over route distance (correlation length in metres), so that
  neighbouring frames look alike;
* a systematic condition change of the query traverse (mostly a linear map acting on the main
  principal directions, plus a mild quadratic distortion and a place-specific condition field)
  and per-frame noise;
* perceptual aliasing: look-alike stretches far apart on the route, in every split;
* per-frame corruptions (glare: a few shared patterns; occlusion: one pattern per run) that
  dominate short runs of frames;
* different, varying speeds per traverse, with stops (repeated positions), and several drive
  segments in the query traverse.

Train / val / test are disjoint stretches of the route separated by gaps wider than the
negative radius. The generative model and every parameter are documented in ``docs/synthetic.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.spatial import cKDTree

from vprbench.core.errors import ConfigError, UnknownNameError, unknown_name
from vprbench.core.hashing import ContentHash
from vprbench.core.params import Param, coerce_params
from vprbench.data.dataset import BenchmarkDataset, SplitIndices
from vprbench.data.loaders.common import loader_params
from vprbench.data.traverse import Traverse, segment_bounds_from_ids

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition

#: Bumped whenever the same (params, seed) would give different data.
GENERATOR_VERSION = "1.0"

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

# Fixed salts of the independent random streams: changing one component's parameters leaves
# the others' draws unchanged.
_SALT = {
    "route": 1,
    "field": 2,
    "condition_field": 3,
    "alias": 4,
    "condition_map": 5,
    "glare": 6,
    "basis": 7,
    "reference_drive": 11,
    "query_drive": 12,
    "reference_noise": 21,
    "query_noise": 22,
    "reference_corruption": 31,
    "query_corruption": 32,
    "segments": 41,
}

#: Corruption codes in ``Traverse.meta["frame_corruption"]``.
CORRUPTION_NONE, CORRUPTION_GLARE, CORRUPTION_OCCLUSION = 0, 1, 2


def _p(default: Any, help: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Any:
    """A parameter field: its :class:`~vprbench.core.params.Param` (default, help with unit, range)."""
    return field(default=default, metadata={"param": Param(default, help, lo=lo, hi=hi, lo_open=lo_open)})


#: Largest descriptor volume a synthetic route may generate (GiB, both traverses; float32).
MAX_GENERATED_GIB = 8.0


@dataclass(frozen=True)
class SyntheticParams:
    """Parameters of the synthetic route generator (all lengths in metres, counts in frames).

    Defaults are those of ``synth-seasons``; see ``docs/synthetic.md`` for the model.
    """

    # size and route layout
    dim: int = _p(256, "descriptor dimension D (the generator builds D x D condition maps: at most 16384)", 2, 16384)
    train_length_m: float = _p(4400.0, "length of the training stretch of the route (m)", 0.0, lo_open=True)
    val_length_m: float = _p(1400.0, "length of the validation stretch (m)", 0.0, lo_open=True)
    test_length_m: float = _p(2000.0, "length of the test stretch (m)", 0.0, lo_open=True)
    split_gap_m: float = _p(60.0, "unused route between consecutive splits (m); must keep splits > negative radius apart", 0.0)
    position_dims: int = _p(2, "1: positions are route distance; 2: planar x/y of a curving route", 1, 2)
    max_heading_deg: float = _p(45.0, "largest deviation of the route heading from its main direction (deg)", 0.0, 80.0)
    turn_length_m: float = _p(150.0, "correlation length of heading changes (m)", 0.0, lo_open=True)
    lateral_offset_m: float = _p(1.5, "query lane offset from the reference path (m)", 0.0)
    # appearance
    spectrum_decay: float = _p(0.5, "variance of the i-th principal direction of the appearance ~ (i+1)^-decay (0: isotropic)", 0.0, 4.0)
    correlation_length_m: float = _p(6.0, "correlation length of the appearance field: corr(ds) = exp(-ds^2 / (2 l^2)) (m)", 0.0, lo_open=True)
    # driving
    reference_speed_m: float = _p(2.0, "mean reference speed (m per frame)", 0.0, lo_open=True)
    query_speed_m: float = _p(2.3, "mean query speed (m per frame)", 0.0, lo_open=True)
    speed_variation: float = _p(0.25, "std of the log-speed (smooth in time)", 0.0, 2.0)
    speed_correlation_frames: float = _p(40.0, "correlation length of speed changes (frames)", 0.0, lo_open=True)
    stops_per_km: float = _p(1.5, "stops per km of route, per traverse", 0.0)
    stop_frames_min: int = _p(5, "shortest stop (frames standing still)", 1)
    stop_frames_max: int = _p(20, "longest stop (frames)", 1)
    frame_interval_s: float = _p(0.5, "time between frames (s)", 0.0, lo_open=True)
    # condition change and noise
    condition_angle_deg: float = _p(106.0, "rotation angle of the linear condition map in each of its planes (deg)", 0.0, 180.0)
    condition_rank: int = _p(64, "the rotation acts on the top condition_rank principal directions (0: all D)", 0)
    condition_anisotropy: float = _p(0.3, "std of the log-scales of the linear condition map along random axes", 0.0, 2.0)
    condition_nonlinear: float = _p(0.3, "weight of the quadratic distortion of the condition change", 0.0)
    condition_place: float = _p(0.68, "weight (0..1) of the place-specific query condition field", 0.0, 1.0)
    reference_noise: float = _p(0.8, "per-frame noise std of the reference (relative to unit signal per dim)", 0.0)
    query_noise: float = _p(0.8, "per-frame noise std of the query", 0.0)
    # perceptual aliasing
    alias_per_km: float = _p(1.5, "look-alike stretch pairs per km of each split", 0.0)
    alias_length_m: float = _p(60.0, "length of a look-alike stretch (m)", 0.0, lo_open=True)
    alias_strength: float = _p(0.9, "share w of the copied appearance in a look-alike stretch (0..1)", 0.0, 1.0)
    alias_min_separation_m: float = _p(300.0, "smallest route distance between the two stretches of a pair (m)", 0.0)
    # corruptions
    reference_corruption_rate: float = _p(0.04, "fraction of reference frames corrupted", 0.0, 0.5)
    query_corruption_rate: float = _p(0.06, "fraction of query frames corrupted", 0.0, 0.5)
    corruption_run_max: int = _p(6, "longest corruption run (frames; lengths uniform 1..max)", 1)
    corruption_strength: float = _p(0.85, "weight k of the corruption pattern: x' = sqrt(1-k^2) x + k u", 0.0, 1.0)
    glare_fraction: float = _p(0.5, "share of corruption runs that are glare (shared patterns) rather than occlusion", 0.0, 1.0)
    glare_patterns: int = _p(3, "number of shared glare patterns", 1)
    # query drive segments
    query_segments: int = _p(3, "drive segments in the query traverse", 1)
    segment_skip_m: float = _p(40.0, "route skipped by the query between two segments (m)", 0.0)
    min_segment_m: float = _p(60.0, "shortest piece of a query segment inside a split (m)", 0.0, lo_open=True)
    # ground truth
    radius_m: float = _p(10.0, "localisation radius for evaluation (m)", 0.0, lo_open=True)
    nontrivial_radius_m: float = _p(5.0, "training positives lie within it (m)", 0.0, lo_open=True)
    negative_radius_m: float = _p(25.0, "training negatives lie beyond it (m)", 0.0, lo_open=True)
    # names
    reference_name: str = _p("summer", "name of the reference traverse")
    query_name: str = _p("winter", "name of the query traverse")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def spec(cls) -> dict[str, Param]:
        """Every parameter's :class:`~vprbench.core.params.Param`."""
        return {f.name: f.metadata["param"] for f in fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "synthetic dataset") -> SyntheticParams:
        """Parameters from a mapping (TOML ``[params]`` or overrides), validated and coerced.

        Raises :class:`ConfigError` naming the parameter for unknown names, wrong types and
        out-of-range values.
        """
        spec = cls.spec()
        for key in values:
            if key not in spec:
                raise _unknown_param(where, key, spec)
        params = cls(**coerce_params(spec, values, where, fill_defaults=False))
        params.validate(where)
        return params

    def validate(self, where: str = "synthetic dataset") -> None:
        """Check every range and the cross-parameter constraints; raise :class:`ConfigError`."""
        for name, param in self.spec().items():
            param.coerce(getattr(self, name), name, where)
        if self.stop_frames_min > self.stop_frames_max:
            raise ConfigError(f"{where}: stop_frames_min ({self.stop_frames_min}) must be <= stop_frames_max ({self.stop_frames_max})")
        if not self.negative_radius_m > self.nontrivial_radius_m:
            raise ConfigError(
                f"{where}: negative_radius_m ({self.negative_radius_m}) must be larger than nontrivial_radius_m ({self.nontrivial_radius_m})"
            )
        if not self.reference_name or not self.query_name or self.reference_name == self.query_name:
            raise ConfigError(f"{where}: reference_name and query_name must be non-empty and different, got {self.reference_name!r}, {self.query_name!r}")
        shortest = min(self.train_length_m, self.val_length_m, self.test_length_m)
        for name in ("reference_speed_m", "query_speed_m"):
            if getattr(self, name) > shortest / 10:
                raise ConfigError(f"{where}: {name} ({getattr(self, name):g} m per frame) gives fewer than 10 frames in the shortest "
                                  f"split ({shortest:g} m); expected at most {shortest / 10:g}")
        # frames of both traverses, with stops, times D float32 values: refuse before generating what cannot fit
        route = self.train_length_m + self.val_length_m + self.test_length_m + 2 * self.split_gap_m
        frames = route / min(self.reference_speed_m, self.query_speed_m) * 2 + route / 1000 * self.stops_per_km * self.stop_frames_max * 2
        gib = frames * self.dim * 4 / 2**30
        if gib > MAX_GENERATED_GIB:
            raise ConfigError(f"{where}: these parameters generate about {frames:.3g} frames of dim {self.dim} (~{gib:.3g} GiB of "
                              f"descriptors); at most {MAX_GENERATED_GIB:g} GiB are generated: shorten the route, raise the speeds "
                              "or lower dim")


def _unknown_param(where: str, key: str, known: Any) -> UnknownNameError:
    err = unknown_name("parameter", key, known)
    return UnknownNameError(f"{where}: {err} See docs/synthetic.md.")


# --------------------------------------------------------------------------------------------
# building blocks


def _rng(seed: int, component: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _SALT[component]])


def _smooth_noise(rng: np.random.Generator, n: int, dim: int, sigma: float) -> np.ndarray:
    """[n, dim] float32 white noise smoothed along axis 0 by a Gaussian of ``sigma`` samples, unit variance.

    Scaled by the filter's exact gain (the norm of its impulse response), not by the sample std,
    so the variance is 1 in expectation and the result does not depend on n.
    """
    if sigma <= 0:
        return rng.standard_normal((n, dim), dtype=np.float32)
    pad = int(4.0 * sigma + 0.5) + 1  # padded and cropped, so the ends are not correlated with each other
    x = rng.standard_normal((n + 2 * pad, dim), dtype=np.float32)
    x = gaussian_filter1d(x, sigma, axis=0, mode="constant", truncate=4.0)[pad : pad + n]
    m = int(4.0 * sigma + 0.5) * 2 + 1
    delta = np.zeros(max(m * 2 + 1, 3), dtype=np.float64)
    delta[delta.size // 2] = 1.0
    gain = np.sqrt((gaussian_filter1d(delta, sigma, mode="constant", truncate=4.0) ** 2).sum())
    x /= np.float32(gain)
    return x


def _interp_rows(grid: np.ndarray, spacing: float, s: np.ndarray) -> np.ndarray:
    """Linear interpolation of a field sampled every ``spacing`` metres ([G, D]) at distances ``s`` [n]."""
    u = np.clip(s / spacing, 0.0, grid.shape[0] - 1.000001)
    i0 = np.floor(u).astype(np.int64)
    frac = (u - i0).astype(np.float32)[:, None]
    return grid[i0] * (1.0 - frac) + grid[i0 + 1] * frac


def _random_orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    """[d, d] float32 random orthogonal matrix: a product of d - 1 Householder reflections of
    Gaussian vectors of decreasing length (uniformly distributed up to column signs).

    Built from vector operations rather than a LAPACK QR, whose threads stall on a busy machine.
    """
    x = rng.standard_normal((d, d))
    q = np.eye(d)
    for k in range(d - 1):
        v = x[k, k:].copy()
        v[0] += np.copysign(np.linalg.norm(v), v[0])
        v /= np.linalg.norm(v)
        q[:, k:] -= 2.0 * np.outer(q[:, k:] @ v, v)
    return q.astype(np.float32)


def _condition_matrix(rng: np.random.Generator, subspace: np.ndarray, angle: float, anisotropy: float) -> np.ndarray:
    """[D, D] float32 linear condition map: anisotropic scaling after a rotation by ``angle`` (rad).

    The rotation turns every vector of the span of ``subspace`` ([D, k] orthonormal columns) by
    exactly ``angle``, in floor(k/2) random planes of that span (one axis is left fixed when k is
    odd), and leaves its orthogonal complement unchanged; the scales are
    exp(anisotropy * N(0, 1)) along random axes of the whole space.
    """
    d, k = subspace.shape
    u = subspace.astype(np.float64) @ _random_orthogonal(rng, k).astype(np.float64)  # random planes in the span
    half = k // 2
    a, b = u[:, :half], u[:, half : 2 * half]
    # rotation by angle in each plane (a_i, b_i): R = I + (cos - 1)(a a^T + b b^T) + sin (b a^T - a b^T)
    rot = np.eye(d) + (np.cos(angle) - 1.0) * (a @ a.T + b @ b.T) + np.sin(angle) * (b @ a.T - a @ b.T)
    axes = _random_orthogonal(rng, d).astype(np.float64)
    scales = np.exp(anisotropy * rng.standard_normal(d))
    return ((axes * scales[None, :]) @ axes.T @ rot).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


@dataclass
class _Drive:
    """One traverse's frames in route coordinates."""

    s: np.ndarray  # [n] route distance (m)
    segment_id: np.ndarray  # [n] int
    stopped: np.ndarray  # [n] bool: frame repeats the previous frame's position
    timestamps: np.ndarray  # [n] s


def _drive(
    rng: np.random.Generator,
    p: SyntheticParams,
    route_end: float,
    mean_speed: float,
    breaks: list[float],
) -> _Drive:
    """Frames of a drive from 0 to ``route_end`` with smooth varying speed, stops and segment breaks.

    ``breaks`` are route distances where a segment ends; the next segment starts
    ``segment_skip_m`` further on.
    """
    skips = [(b, p.segment_skip_m) for b in sorted(breaks)]
    odometer_length = route_end - p.segment_skip_m * len(skips)
    sigma = p.speed_variation
    n = int(np.ceil(odometer_length / mean_speed * 1.5)) + 64
    while True:
        z = _smooth_noise(rng, n, 1, p.speed_correlation_frames / np.sqrt(2.0))[:, 0].astype(np.float64)
        v = mean_speed * np.exp(sigma * z - 0.5 * sigma**2)
        v = np.maximum(v, 0.1 * mean_speed)
        odo = rng.uniform(0.0, mean_speed) + np.concatenate([[0.0], np.cumsum(v[:-1])])
        if odo[-1] >= odometer_length:
            break
        n *= 2
    odo = odo[odo < odometer_length]
    # stops: the first frame at or past each stop position is repeated
    n_stops = rng.poisson(p.stops_per_km * route_end / 1000.0)
    stop_at = rng.uniform(0.0, odometer_length, size=n_stops)
    stop_len = rng.integers(p.stop_frames_min, p.stop_frames_max + 1, size=n_stops)
    counts = np.ones(odo.size, dtype=np.int64)
    frame = np.searchsorted(odo, stop_at)
    ok = frame < odo.size
    np.add.at(counts, frame[ok], stop_len[ok])
    odo = np.repeat(odo, counts)
    stopped = np.ones(odo.size, dtype=bool)
    stopped[np.concatenate([[0], np.cumsum(counts)[:-1]])] = False
    # segment breaks: odometer -> route distance
    s = odo.copy()
    seg = np.zeros(odo.size, dtype=np.int64)
    shift = 0.0
    for b, skip in skips:
        after = odo >= b - shift
        s[after] += skip
        seg[after] += 1
        shift += skip
    ts = np.arange(s.size, dtype=np.float64) * p.frame_interval_s + seg * 60.0  # a minute between segments
    return _Drive(s=s, segment_id=seg, stopped=stopped, timestamps=ts)


def _corruptions(
    rng: np.random.Generator, n: int, rate: float, p: SyntheticParams, glare: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Corruption kind per frame [n] (int8) and unit patterns [n, D] (zero where none)."""
    kind = np.zeros(n, dtype=np.int8)
    pattern = np.zeros((n, p.dim), dtype=np.float32)
    if rate <= 0:
        return kind, pattern
    mean_len = (1 + p.corruption_run_max) / 2
    starts = np.flatnonzero(rng.random(n) < rate / mean_len)
    lengths = rng.integers(1, p.corruption_run_max + 1, size=starts.size)
    is_glare = rng.random(starts.size) < p.glare_fraction
    which = rng.integers(0, glare.shape[0], size=starts.size)
    base = np.where(is_glare[:, None], glare[which], _unit(rng.standard_normal((starts.size, p.dim))))
    frames = np.concatenate([np.arange(a, min(a + m, n)) for a, m in zip(starts, lengths)]) if starts.size else np.zeros(0, np.int64)
    run = np.repeat(np.arange(starts.size), np.minimum(lengths, n - starts)) if starts.size else np.zeros(0, np.int64)
    # later runs overwrite earlier ones where they overlap
    kind[frames] = np.where(is_glare[run], CORRUPTION_GLARE, CORRUPTION_OCCLUSION)
    wobble = rng.standard_normal((frames.size, p.dim)).astype(np.float32) / np.sqrt(p.dim)
    pattern[frames] = _unit(base[run] + 0.3 * wobble)
    return kind, pattern


def _route_layout(p: SyntheticParams) -> tuple[dict[str, tuple[float, float]], float]:
    """Route-distance range [start, end) of each split (train | gap | val | gap | test) and the route length."""
    lengths = {"train": p.train_length_m, "val": p.val_length_m, "test": p.test_length_m}
    ranges, s = {}, 0.0
    for name in SPLIT_NAMES:
        ranges[name] = (s, s + lengths[name])
        s += lengths[name] + p.split_gap_m
    return ranges, s - p.split_gap_m


def _segment_breaks(rng: np.random.Generator, p: SyntheticParams, ranges: dict[str, tuple[float, float]], where: str) -> list[float]:
    """Route distances of the query's segment breaks: spread over the splits, longest (test first) first."""
    n_breaks = p.query_segments - 1
    order = sorted(SPLIT_NAMES, key=lambda k: (-(k == "test"), -(ranges[k][1] - ranges[k][0])))
    per_split = {k: 0 for k in SPLIT_NAMES}
    for i in range(n_breaks):
        per_split[order[i % len(order)]] += 1
    breaks = []
    for name, k in per_split.items():
        if k == 0:
            continue
        a, b = ranges[name]
        part = (b - a) / k
        for j in range(k):
            lo = a + j * part + p.min_segment_m
            hi = a + (j + 1) * part - p.min_segment_m - p.segment_skip_m
            if hi <= lo:
                raise ConfigError(
                    f"{where}: split {name!r} ({b - a:g} m) is too short for {k} query segment break(s) with "
                    f"min_segment_m={p.min_segment_m:g} and segment_skip_m={p.segment_skip_m:g}; lower query_segments or lengthen the split"
                )
            breaks.append(float(rng.uniform(lo, hi)))
    return breaks


def _aliases(rng: np.random.Generator, p: SyntheticParams, ranges: dict[str, tuple[float, float]], where: str) -> list[dict[str, Any]]:
    """Look-alike pairs: ``{"split", "source_m", "copy_m", "length_m"}`` with both stretches in one split."""
    pairs: list[dict[str, Any]] = []
    if p.alias_per_km <= 0 or p.alias_strength <= 0:
        return pairs
    for name in SPLIT_NAMES:
        a, b = ranges[name]
        count = int(round(p.alias_per_km * (b - a) / 1000.0))
        if count == 0 and name == "test":
            count = 1  # the test stretch always holds at least one pair
        hi = b - p.alias_length_m
        if count and (hi - a) < p.alias_min_separation_m + p.alias_length_m:
            raise ConfigError(
                f"{where}: split {name!r} ({b - a:g} m) is too short for look-alike stretches of "
                f"{p.alias_length_m:g} m at least alias_min_separation_m={p.alias_min_separation_m:g} m apart; "
                "set alias_per_km = 0 or change the lengths"
            )
        used: list[tuple[float, float]] = []
        for _ in range(count):
            for _try in range(1000):  # rejection sampling: far enough apart, not overlapping earlier pairs
                src, dst = rng.uniform(a, hi, size=2)
                if abs(src - dst) < max(p.alias_min_separation_m, p.alias_length_m):
                    continue
                if any(abs(x - u) < p.alias_length_m for x in (src, dst) for iv in used for u in iv):
                    continue
                used.append((src, dst))
                pairs.append({"split": name, "source_m": float(src), "copy_m": float(dst), "length_m": p.alias_length_m})
                break
            else:
                raise ConfigError(
                    f"{where}: cannot place {count} non-overlapping look-alike pairs of {p.alias_length_m:g} m, "
                    f"at least alias_min_separation_m={p.alias_min_separation_m:g} m apart, in split {name!r} ({b - a:g} m); "
                    "lower alias_per_km, alias_length_m or alias_min_separation_m"
                )
    return pairs


def _apply_aliases(grid: np.ndarray, spacing: float, pairs: list[dict[str, Any]], strength: float) -> None:
    """Blend the source stretch's appearance into the copy stretch, in place (variance preserved)."""
    for pair in pairs:
        m = int(round(pair["length_m"] / spacing))
        i_src, i_dst = int(round(pair["source_m"] / spacing)), int(round(pair["copy_m"] / spacing))
        m = min(m, grid.shape[0] - i_src, grid.shape[0] - i_dst)
        u = np.arange(m) / max(m - 1, 1)
        ramp = np.clip(np.minimum(u, 1 - u) / 0.15, 0.0, 1.0)  # raised-cosine taper over 15% at each end
        w = (strength * 0.5 * (1 - np.cos(np.pi * ramp))).astype(np.float32)[:, None]
        grid[i_dst : i_dst + m] = np.sqrt(1 - w**2) * grid[i_dst : i_dst + m] + w * grid[i_src : i_src + m]


def _route_geometry(rng: np.random.Generator, p: SyntheticParams, length: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Planar route sampled every metre: points [G, 2], unit normals [G, 2], spacing (m)."""
    spacing = 1.0
    g = int(np.ceil(length / spacing)) + 2
    z = _smooth_noise(rng, g, 1, p.turn_length_m / spacing / np.sqrt(2.0))[:, 0].astype(np.float64)
    heading = rng.uniform(-np.pi, np.pi) + np.deg2rad(p.max_heading_deg) * np.tanh(z)
    step = np.stack([np.cos(heading), np.sin(heading)], axis=1) * spacing
    points = np.concatenate([[[0.0, 0.0]], np.cumsum(step[:-1], axis=0)])
    normals = np.stack([-np.sin(heading), np.cos(heading)], axis=1)
    return points, normals, spacing


def _interp_xy(points: np.ndarray, spacing: float, s: np.ndarray) -> np.ndarray:
    u = np.clip(s / spacing, 0.0, points.shape[0] - 1.000001)
    i0 = np.floor(u).astype(np.int64)
    f = (u - i0)[:, None]
    return points[i0] * (1 - f) + points[i0 + 1] * f


def fingerprint(params: SyntheticParams, seed: int) -> str:
    """Hash of (the generator's code, its version, parameters, seed): identifies the generated data;
    any edit of the generator changes it (so no result of another generator is ever served)."""
    return ContentHash({"generator": "vprbench.synthetic", "version": GENERATOR_VERSION, "params": asdict(params), "seed": int(seed)},
                       Path(__file__).read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# the generator


def generate(
    params: SyntheticParams | dict[str, Any] | None = None,
    seed: int = 0,
    name: str = "synthetic",
    description: str = "",
    where: str | None = None,
) -> BenchmarkDataset:
    """Generate a synthetic reference/query dataset.

    Args:
        params: :class:`SyntheticParams` or a dict of overrides of its defaults.
        seed: generator seed; the same (params, seed) always gives identical arrays.
        name, description: dataset name and one-line description.
        where: how errors name the dataset (default: ``synthetic dataset NAME``).

    Returns:
        A :class:`BenchmarkDataset` with one query traverse, splits ``train``/``val``/``test``,
        radii from the parameters, and ``meta`` holding the generator version, parameters, seed,
        look-alike pairs and ``fingerprint``. Each traverse's ``meta`` holds full-traverse per-frame
        arrays ``frame_route_m`` [n] (route distance, m), ``frame_corruption`` [n] (0 none,
        1 glare, 2 occlusion) and ``frame_stopped`` [n] (bool).
    """
    where = where or f"synthetic dataset {name!r}"
    if params is None:
        p = SyntheticParams()
    elif isinstance(params, SyntheticParams):
        p = params
        p.validate(where)
    elif isinstance(params, dict):
        p = SyntheticParams.from_dict(params, where)
    else:
        raise ConfigError(f"{where}: params must be SyntheticParams or a dict, got {type(params).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"{where}: seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    d = p.dim

    ranges, route_len = _route_layout(p)
    route_end = route_len + p.segment_skip_m + 1.0  # field/geometry margin

    # latent appearance field over route distance, and the place-specific query condition field
    spacing = p.correlation_length_m / 6.0
    n_grid = int(np.ceil(route_end / spacing)) + 2
    sigma = p.correlation_length_m / np.sqrt(2.0) / spacing  # kernel sigma for corr exp(-ds^2/(2 l^2))
    # principal directions of the appearance (a random basis) with decaying variances, mean 1
    basis = _random_orthogonal(_rng(seed, "basis"), d)
    var = (1.0 + np.arange(d)) ** -p.spectrum_decay
    var *= d / var.sum()
    mix = (basis * np.sqrt(var).astype(np.float32)[None, :]).T  # z @ mix = basis diag(sqrt(var)) z
    field_grid = _smooth_noise(_rng(seed, "field"), n_grid, d, sigma) @ mix
    cond_grid = _smooth_noise(_rng(seed, "condition_field"), n_grid, d, sigma) @ mix
    pairs = _aliases(_rng(seed, "alias"), p, ranges, where)
    _apply_aliases(field_grid, spacing, pairs, p.alias_strength)
    _apply_aliases(cond_grid, spacing, pairs, p.alias_strength)

    # condition map: anisotropic scaling after a rotation in the span of the top condition_rank
    # principal directions (learnable by a linear model with few effective weights), plus a
    # quadratic distortion in a random basis (not linearly predictable)
    crng = _rng(seed, "condition_map")
    rank = p.condition_rank if 0 < p.condition_rank < d else d
    m_lin = _condition_matrix(crng, basis[:, :rank], np.deg2rad(p.condition_angle_deg), p.condition_anisotropy)
    rot_in, rot_out = _random_orthogonal(crng, d), _random_orthogonal(crng, d)
    glare = _unit(_rng(seed, "glare").standard_normal((p.glare_patterns, d)))
    lin_gain = float(np.sqrt(((m_lin.astype(np.float64) @ mix.T.astype(np.float64)) ** 2).sum() / d))  # sqrt(E|Mp|^2 / D)

    def query_condition(x: np.ndarray, c: np.ndarray) -> np.ndarray:
        quad = ((x @ rot_in.T) ** 2 - 1.0) / np.float32(np.sqrt(2.0)) @ rot_out.T
        y = x @ m_lin.T + np.float32(p.condition_nonlinear) * quad
        y /= np.float32(np.sqrt(lin_gain**2 + p.condition_nonlinear**2))
        rho = np.float32(p.condition_place)
        return np.sqrt(1 - rho**2) * y + rho * c

    # geometry
    points, normals, geo_spacing = _route_geometry(_rng(seed, "route"), p, route_end)
    breaks = _segment_breaks(_rng(seed, "segments"), p, ranges, where)

    traverses: dict[str, Traverse] = {}
    split_idx: dict[str, dict[str, np.ndarray]] = {k: {} for k in SPLIT_NAMES}
    for role in ("reference", "query"):
        is_q = role == "query"
        drive = _drive(_rng(seed, f"{role}_drive"), p, route_len, p.query_speed_m if is_q else p.reference_speed_m, breaks if is_q else [])
        s = drive.s
        clean = _interp_rows(field_grid, spacing, s)
        if is_q:
            clean = query_condition(clean, _interp_rows(cond_grid, spacing, s))
        noise = p.query_noise if is_q else p.reference_noise
        x = clean + np.float32(noise) * _rng(seed, f"{role}_noise").standard_normal(clean.shape, dtype=np.float32)
        x = _unit(x)
        kind, pattern = _corruptions(_rng(seed, f"{role}_corruption"), s.size, p.query_corruption_rate if is_q else p.reference_corruption_rate, p, glare)
        k = np.float32(p.corruption_strength)
        hit = kind > 0
        x[hit] = _unit(np.sqrt(1 - k**2) * x[hit] + k * pattern[hit])
        if p.position_dims == 1:
            pos = s[:, None]
        else:
            pos = _interp_xy(points, geo_spacing, s)
            if is_q:
                pos = pos + p.lateral_offset_m * _interp_xy(normals, geo_spacing, s)
        tname = p.query_name if is_q else p.reference_name
        traverses[role] = Traverse(
            name=tname,
            positions=pos,
            position_unit="m",
            descriptors=x,
            timestamps=drive.timestamps,
            segments=segment_bounds_from_ids(drive.segment_id) if is_q else None,
            meta={
                "generator": "vprbench.synthetic",
                "condition": "query" if is_q else "reference",
                "frame_route_m": s,
                "frame_corruption": kind,
                "frame_stopped": drive.stopped,
            },
        )
        for split, (a, b) in ranges.items():
            idx = np.flatnonzero((s >= a) & (s < b))
            if idx.size == 0:
                raise ConfigError(f"{where}: split {split!r} has no {role} frames; lengthen it")
            split_idx[split][role] = idx

    splits = {k: SplitIndices(reference=v["reference"], query=v["query"]) for k, v in split_idx.items()}
    _check_split_separation(traverses["reference"], traverses["query"], splits, p, where)

    meta = {
        "generator": "vprbench.synthetic",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "params": asdict(p),
        "split_ranges_m": {k: list(v) for k, v in ranges.items()},
        "alias_pairs": pairs,
        "query_segment_breaks_m": breaks,
        "fingerprint": fingerprint(p, seed),
    }
    return BenchmarkDataset(
        name=name,
        reference=traverses["reference"],
        queries={p.query_name: traverses["query"]},
        splits=splits,
        radius=p.radius_m,
        nontrivial_radius=p.nontrivial_radius_m,
        negative_radius=p.negative_radius_m,
        description=description or f"synthetic route ({p.reference_name} -> {p.query_name}), seed {seed}",
        meta=meta,
    )


def _check_split_separation(ref: Traverse, query: Traverse, splits: dict[str, SplitIndices], p: SyntheticParams, where: str) -> None:
    """No query of one split may lie within the negative radius of a reference of another split."""
    for a, sa in splits.items():
        tree = cKDTree(ref.positions[sa.reference])
        for b, sb in splits.items():
            if a == b:
                continue
            dist, _ = tree.query(query.positions[sb.query], k=1, distance_upper_bound=p.negative_radius_m + 1e-9)
            if np.isfinite(dist).any():
                raise ConfigError(
                    f"{where}: query frames of split {b!r} lie within negative_radius_m={p.negative_radius_m:g} m "
                    f"of reference frames of split {a!r} (closest {float(dist.min()):.1f} m); increase split_gap_m "
                    f"(now {p.split_gap_m:g}) or lower max_heading_deg"
                )


@loader_params(*SyntheticParams.names(), "seed", doc="docs/synthetic.md")
def load(definition: DatasetDefinition, data_dir: Path | None) -> BenchmarkDataset:
    """Catalog loader ``synthetic``: ``[params]`` are :class:`SyntheticParams` fields plus ``seed``.

    ``data_dir`` is unused (nothing is read from disk).
    """
    where = f"dataset definition {definition.source or definition.name}"
    values = dict(definition.params)
    seed = values.pop("seed", 0)
    if isinstance(seed, str) and seed.strip().isdigit():
        seed = int(seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"{where}: parameter 'seed' must be a non-negative integer, got {seed!r}")
    params = SyntheticParams.from_dict(values, where=where)  # also refuses unknown names (for direct calls)
    ds = generate(params, seed=seed, name=definition.name, description=definition.summary, where=where)
    ds.meta["definition"] = definition.source
    return ds
