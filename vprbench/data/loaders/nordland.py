"""Loader ``nordland-64x32``: the Nordland 64x32 image release, filtered like the clean Nordland release."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.core.progress import progress_enabled
from vprbench.data.dataset import BenchmarkDataset, SplitIndices
from vprbench.data.download import data_path, missing_files_error, require_data_dir
from vprbench.data.loaders.common import loader_params, split_name_warning
from vprbench.data.loaders.image_folders import EXTRACTOR_PARAMS, _extract, _names, list_images
from vprbench.data.traverse import Traverse, segment_bounds_from_ids
from vprbench.features.images import read_image

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition


def nordland_filter(
    grey: dict[str, np.ndarray],
    reference: str,
    mode: str = "clean",
    tunnel_max_mean: float = 30.0,
    stationary_max_diff: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which frames of frame-aligned traverses to keep, and where removed stretches break segments.

    Args:
        grey: traverse name -> grey images [n, H, W] (0..255), frame-aligned.
        reference: the reference traverse (the season whose darkness defines tunnels).
        mode: ``"clean"`` (drop tunnels and stationary frames), ``"tunnels"`` or ``"none"``.
        tunnel_max_mean: a frame is a tunnel if its mean grey level in the reference is below this.
        stationary_max_diff: a (non-tunnel) frame is stationary if its mean absolute grey difference
            to the previous frame is below this in any traverse (the train stood still, so the
            later frame repeats the place of the earlier one).

    Returns:
        keep [n] bool, tunnel [n] bool, stationary [n] bool.
    """
    if mode not in ("clean", "tunnels", "none"):
        raise ConfigError(f"nordland-64x32: filter must be 'clean', 'tunnels' or 'none', got {mode!r}")
    ref = np.asarray(grey[reference], dtype=np.float32)
    n = ref.shape[0]
    tunnel = ref.reshape(n, -1).mean(1) < tunnel_max_mean
    stationary = np.zeros(n, dtype=bool)
    for g in grey.values():
        g = np.asarray(g, dtype=np.float32).reshape(n, -1)
        stationary[1:] |= np.abs(np.diff(g, axis=0)).mean(1) < stationary_max_diff
    stationary &= ~tunnel
    stationary[1:] &= ~tunnel[:-1]
    if mode == "none":
        keep = np.ones(n, dtype=bool)
    elif mode == "tunnels":
        keep = ~tunnel
    else:
        keep = ~tunnel & ~stationary
    return keep, tunnel, stationary


def tunnel_segments(removed_tunnel: np.ndarray, kept: np.ndarray, min_frames: int) -> np.ndarray:
    """Per-frame [start, end) segments [len(kept), 2] of the kept frames.

    A segment breaks between two consecutive kept frames when a removed run of at least
    ``min_frames`` tunnel frames lies between them (0: never break). Shorter runs (a bridge, a
    short cutting) skip under 750 m and do not justify cutting the sequence.
    """
    if min_frames <= 0:
        return segment_bounds_from_ids(np.zeros(kept.size, dtype=np.int64))
    t = np.asarray(removed_tunnel, dtype=np.int8)
    edges = np.diff(np.concatenate([[0], t, [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long_run = np.zeros(t.size, dtype=bool)
    for s, e in zip(starts, ends):
        if e - s >= min_frames:
            long_run[s:e] = True
    before = np.cumsum(long_run)
    brk = np.concatenate([[True], before[kept[1:]] != before[kept[:-1]]])
    return segment_bounds_from_ids(np.cumsum(brk))


def _cached_filter(root: Path, ref_name: str, q_names: list[str], names: list[str], mode: str, tunnel_max_mean: float, stationary_max_diff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`nordland_filter` over the images, cached (keyed by the files and the rule's parameters)."""
    from vprbench.core.fileio import save_npz_atomic
    from vprbench.core.hashing import ContentHash
    from vprbench.features.cache import cache_root

    h = ContentHash([ref_name, q_names, mode, tunnel_max_mean, stationary_max_diff], Path(__file__).read_bytes())
    for t in (ref_name, *q_names):
        for n in names:
            h.add_file_identity(root / t / n)
    path = cache_root() / "nordland-filter" / f"{h.hexdigest()}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                if z["keep"].shape == (len(names),):
                    return z["keep"], z["tunnel"], z["stationary"]
        except (ValueError, OSError, KeyError):
            pass
    grey = {t: np.stack([read_image(root / t / n, "L") for n in names]) for t in (ref_name, *q_names)}
    keep, tunnel, stationary = nordland_filter(grey, ref_name, mode, tunnel_max_mean, stationary_max_diff)
    try:
        save_npz_atomic(path, keep=keep, tunnel=tunnel, stationary=stationary)
    except OSError:
        pass  # a read-only cache only costs time
    return keep, tunnel, stationary


@loader_params(
    "root", "reference", "queries", "filter", "tunnel_max_mean", "stationary_max_diff", "break_min_frames", "frame_step",
    "tolerance", "nontrivial_radius", "negative_radius", "splits", *EXTRACTOR_PARAMS,
)
def load_nordland_64x32(definition: DatasetDefinition, data_dir: Path | None) -> BenchmarkDataset:
    """Loader ``nordland-64x32``: the frame-synchronised 64x32 Nordland seasons.

    Frames (every 10th frame of the 1 fps footage, ~250 m apart) are positioned by their index in
    this release (``images-NNNNN.png`` -> NNNNN / 10 - 1), unit "frame". Filtering (param
    ``filter``, rule in :func:`nordland_filter`): with the defaults, "clean" removes 229 tunnel
    frames (reference = summer mean grey < 30) and 400 stationary frames (mean absolute difference
    to the previous frame < 1 grey level in summer or winter), keeping 2,947 of 3,576. Segments
    break where tunnel stretches were removed (a window never bridges a tunnel); dropping a
    stationary repeat removes no distance, so it does not break segments. Ground truth:
    |frame difference| <= ``tolerance`` frames (radius = tolerance + 0.5). Splits are disjoint
    stretches given as fractions of the release's frame range (``splits``).
    """
    data_dir = require_data_dir(definition, data_dir)
    p = definition.params
    root_rel = p.get("root", "nordland-64x32")
    root = data_path(definition, data_dir, root_rel, "root")
    ref_name, q_names = _names(definition)
    missing = [f"{root_rel}/{t}" for t in (ref_name, *q_names) if not (root / t).is_dir()]
    if missing:
        raise missing_files_error(definition, data_dir, missing)
    files = list_images(root / ref_name, "images-*.png")
    names = [f.name for f in files]
    try:
        numbers = np.array([int(n.removeprefix("images-").removesuffix(".png")) for n in names])
    except ValueError:
        raise DataError(f"{root / ref_name}: image names must be images-NNNNN.png") from None
    step = int(p.get("frame_step", 10))
    index = numbers // step - 1
    if (numbers % step).any() or (np.diff(index) <= 0).any():
        raise DataError(f"{root / ref_name}: frame numbers must be multiples of {step}, increasing")
    for t in q_names:
        other = [f.name for f in list_images(root / t, "images-*.png")]
        if other != names:
            only = sorted(set(names) ^ set(other))[:3]
            raise DataError(f"{root / t}: {len(other)} images but {ref_name!r} has {len(names)}; the seasons must be frame-synchronised (first differences: {only})")
    mode = p.get("filter", "clean")
    if mode != "none":
        keep, tunnel, stationary = _cached_filter(root, ref_name, q_names, names, mode, float(p.get("tunnel_max_mean", 30.0)), float(p.get("stationary_max_diff", 1.0)))
    else:
        keep = np.ones(len(names), dtype=bool)
        tunnel = stationary = np.zeros(len(names), dtype=bool)
    kept = np.flatnonzero(keep)
    segments = tunnel_segments(tunnel & ~keep, kept, int(p.get("break_min_frames", 3)))
    tolerance = float(p.get("tolerance", 0))
    if tolerance < 0:
        raise ConfigError(f"dataset {definition.name!r}: tolerance must be >= 0 frames, got {tolerance}")
    positions = index[kept].astype(np.float64)
    progress = progress_enabled(p.get("progress"))
    traverses = {}
    for t in (ref_name, *q_names):
        all_paths = [root / t / n for n in names]
        # descriptors of every frame (one cache entry whatever the filter), then the kept rows
        desc = _extract(definition, data_dir, t, all_paths, progress)[kept]
        paths = tuple(all_paths[i] for i in kept)
        traverses[t] = Traverse(t, positions, "frame", desc, paths, segments=segments, meta={"frame_numbers": numbers[kept]})
    n_frames = int(index.max()) + 1
    splits = {}
    warnings = [w for w in map(split_name_warning, p.get("splits") or {}) if w]
    for sname, rng in (p.get("splits") or {"test": [0.0, 1.0]}).items():
        if not (isinstance(rng, list) and len(rng) == 2):
            raise ConfigError(f"dataset {definition.name!r}: split {sname!r} must be [start, end) as fractions or frame indices")
        a, b = (x * n_frames if isinstance(x, float) else x for x in rng)
        sel = np.flatnonzero((positions >= a) & (positions < b))
        if sel.size == 0:
            raise ConfigError(f"dataset {definition.name!r}: split {sname!r} {rng} holds no kept frame")
        splits[sname] = SplitIndices(sel, sel)
    meta: dict[str, Any] = {
        "loader": "nordland-64x32",
        "filter": mode,
        "frames_total": len(names),
        "frames_kept": int(keep.sum()),
        "tunnel_frames": int(tunnel.sum()),
        "stationary_frames": int(stationary.sum()),
        "extractor": p.get("extractor", "patchnorm"),
        "extractor_params": dict(p.get("extractor_params", {})),
        "warnings": warnings,
    }
    return BenchmarkDataset(
        name=definition.name,
        reference=traverses[ref_name],
        queries={q: traverses[q] for q in q_names},
        splits=splits,
        radius=tolerance + 0.5,
        nontrivial_radius=p.get("nontrivial_radius"),
        negative_radius=p.get("negative_radius"),
        description=definition.summary,
        meta=meta,
    )
