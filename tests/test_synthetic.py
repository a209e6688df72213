"""Tests of the synthetic route generator and its built-in presets (synth-seasons, synth-daynight, synth-tiny)."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from vprbench.core.errors import ConfigError
from vprbench.data.catalog import DEFAULT_DATASET, get_definition, load_dataset
from vprbench.data.dataset import BenchmarkDataset
from vprbench.data.loaders.synthetic import (
    CORRUPTION_GLARE,
    CORRUPTION_NONE,
    CORRUPTION_OCCLUSION,
    GENERATOR_VERSION,
    SyntheticParams,
    fingerprint,
    generate,
)
from vprbench.data.windows import traverse_windows
from vprbench.matching.descriptors import nearest_neighbours
from vprbench.matching.distances import l2_normalise
from vprbench.matching.sequence import sequence_topk

REPO = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=None)
def preset(name: str) -> BenchmarkDataset:
    """A built-in preset, generated once per test session (datasets are immutable)."""
    return load_dataset(name)


@pytest.fixture(scope="module")
def seasons() -> BenchmarkDataset:
    return preset("synth-seasons")


@pytest.fixture(scope="module")
def tiny() -> BenchmarkDataset:
    return preset("synth-tiny")


def tiny_params(**over) -> dict:
    """The synth-tiny preset's parameters (without its seed) with overrides."""
    params = {k: v for k, v in get_definition("synth-tiny").params.items() if k != "seed"}
    return {**params, **over}


def query_of(ds: BenchmarkDataset):
    return ds.queries[ds.default_query]


# --- helpers: the calibration measurements ------------------------------------------------


def recall(ds: BenchmarkDataset, idx: np.ndarray, split: str = "test", n: int = 1) -> float:
    gt = ds.split(split).ground_truth
    return float(gt.hits(idx)[gt.has_positive, :n].any(axis=1).mean())


def single_image_top(ds: BenchmarkDataset, q: np.ndarray | None = None, split: str = "test") -> np.ndarray:
    s = ds.split(split)
    return nearest_neighbours(s.query.descriptors if q is None else q, s.reference.descriptors, 10)[0]


def seqmatch_top(ds: BenchmarkDataset, seq_len: int, split: str = "test") -> np.ndarray:
    s = ds.split(split)
    qs, _ = traverse_windows(s.query, seq_len, "shift")
    rs, rv = traverse_windows(s.reference, seq_len, "shift")
    return sequence_topk(l2_normalise(s.query.descriptors), l2_normalise(s.reference.descriptors), qs, rs, seq_len, 10, r_valid=rv)[0]


def linear_map_from_train(ds: BenchmarkDataset, ridge: float = 0.1):
    """Least-squares affine map query -> reference descriptors, fitted on position-matched train frames."""
    tr = ds.split("train")
    dist, j = cKDTree(tr.reference.positions).query(tr.query.positions)
    ok = dist <= ds.nontrivial_radius
    x = np.hstack([tr.query.descriptors[ok], np.ones((ok.sum(), 1), np.float32)]).astype(np.float64)
    y = tr.reference.descriptors[j[ok]].astype(np.float64)
    w = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)
    return lambda q: l2_normalise(np.hstack([q, np.ones((len(q), 1), np.float32)]) @ w)


# --- determinism and basic structure -------------------------------------------------------


def test_same_seed_same_arrays_and_other_seed_differs():
    a, b, c = generate(tiny_params(), seed=3), generate(tiny_params(), seed=3), generate(tiny_params(), seed=4)
    for ta, tb in ((a.reference, b.reference), (query_of(a), query_of(b))):
        np.testing.assert_array_equal(ta.descriptors, tb.descriptors)
        np.testing.assert_array_equal(ta.positions, tb.positions)
        np.testing.assert_array_equal(ta.timestamps, tb.timestamps)
        np.testing.assert_array_equal(ta.segment_bounds, tb.segment_bounds)
    for name in a.splits:
        np.testing.assert_array_equal(a.splits[name].query, b.splits[name].query)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    n = min(len(a.reference), len(c.reference))
    assert not np.allclose(a.reference.descriptors[:n], c.reference.descriptors[:n])
    assert not np.allclose(a.reference.positions[:n], c.reference.positions[:n])


def test_changing_one_component_keeps_the_other_random_streams():
    """Independent streams: more query noise leaves the reference traverse untouched."""
    a = generate(tiny_params(), seed=0)
    b = generate(tiny_params(query_noise=0.9), seed=0)
    np.testing.assert_array_equal(a.reference.descriptors, b.reference.descriptors)
    np.testing.assert_array_equal(query_of(a).positions, query_of(b).positions)
    assert not np.allclose(query_of(a).descriptors, query_of(b).descriptors)
    assert a.fingerprint != b.fingerprint


def test_shapes_dtypes_units_and_unit_norms(tiny):
    p = SyntheticParams.from_dict(tiny_params())
    for t in (tiny.reference, query_of(tiny)):
        n = len(t)
        assert t.descriptors.dtype == np.float32 and t.descriptors.shape == (n, p.dim)
        np.testing.assert_allclose(np.linalg.norm(t.descriptors, axis=1), 1.0, atol=1e-5)
        assert t.positions.dtype == np.float64 and t.positions.shape == (n, 2)
        assert t.position_unit == "m"
        assert t.timestamps.shape == (n,) and (np.diff(t.timestamps) > 0).all()
        assert t.meta["frame_route_m"].shape == (n,) and (np.diff(t.meta["frame_route_m"]) >= 0).all()
    assert tiny.radius == 10.0 and tiny.nontrivial_radius == 5.0 and tiny.negative_radius == 25.0
    assert 200 <= len(tiny.reference) <= 1000 and 200 <= len(query_of(tiny)) <= 1000


def test_position_dims_1_gives_route_distance():
    ds = generate(tiny_params(position_dims=1), seed=0)
    for t in (ds.reference, query_of(ds)):
        assert t.positions.shape == (len(t), 1)
        np.testing.assert_array_equal(t.positions[:, 0], t.meta["frame_route_m"])


def test_route_steps_match_speeds(seasons):
    """Metres per frame between moving frames average the configured speeds (distance along the route)."""
    p = seasons.meta["params"]
    for t, speed in ((seasons.reference, p["reference_speed_m"]), (query_of(seasons), p["query_speed_m"])):
        s = t.meta["frame_route_m"]
        same_seg = t.segment_bounds[1:, 0] == t.segment_bounds[:-1, 0]
        step = np.diff(s)[same_seg & ~t.meta["frame_stopped"][1:]]
        assert step.min() > 0
        assert abs(step.mean() / speed - 1) < 0.15
        assert step.std() / step.mean() > 0.1  # varying speed
        # positions move about as far as the route distance (planar route, small lane offset)
        d = np.linalg.norm(np.diff(t.positions, axis=0), axis=1)[same_seg & ~t.meta["frame_stopped"][1:]]
        np.testing.assert_allclose(d, step, atol=0.5)


# --- splits --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["synth-seasons", "synth-daynight", "synth-tiny"])
def test_splits_disjoint_stretches_without_cross_split_non_negatives(name):
    ds = preset(name)
    q = query_of(ds)
    assert set(ds.splits) == {"train", "val", "test"}
    for a, sa in ds.splits.items():
        split = ds.split(a)
        assert split.ground_truth.has_positive.mean() > 0.95
        tree = cKDTree(ds.reference.positions[sa.reference])
        for b, sb in ds.splits.items():
            if a != b:
                assert np.intersect1d(sa.query, sb.query).size == 0 and np.intersect1d(sa.reference, sb.reference).size == 0
                dist, _ = tree.query(q.positions[sb.query])
                assert dist.min() > ds.negative_radius, (a, b, dist.min())
    # route ranges: train | val | test, separated by the gap
    ranges = ds.meta["split_ranges_m"]
    gap = ds.meta["params"]["split_gap_m"]
    assert ranges["val"][0] - ranges["train"][1] == pytest.approx(gap)
    assert ranges["test"][0] - ranges["val"][1] == pytest.approx(gap)
    for sname, (lo, hi) in ranges.items():
        s = ds.reference.meta["frame_route_m"][ds.splits[sname].reference]
        assert lo <= s.min() and s.max() < hi


@pytest.mark.parametrize("name", ["synth-tiny", "synth-seasons"])
def test_segments_long_enough_for_sequences(name):
    ds = preset(name)
    q = query_of(ds)
    n_seg = np.unique(q.segment_bounds[:, 0]).size
    assert n_seg == ds.meta["params"]["query_segments"]
    assert len(ds.meta["query_segment_breaks_m"]) == n_seg - 1
    for split in ds.splits:
        s = ds.split(split)
        for t in (s.query, s.reference):
            lengths = t.segment_bounds[:, 1] - t.segment_bounds[:, 0]
            assert lengths.min() >= 10
            for seq_len in (5, 10):
                _, valid = traverse_windows(t, seq_len, "drop")
                assert valid.mean() > 0.8
    # a time gap and a route jump where a segment ends
    starts = np.flatnonzero(q.segment_bounds[:, 0] == np.arange(len(q)))[1:]
    assert (q.timestamps[starts] - q.timestamps[starts - 1] > 30).all()
    jumps = q.meta["frame_route_m"][starts] - q.meta["frame_route_m"][starts - 1]
    assert (jumps >= ds.meta["params"]["segment_skip_m"]).all()


# --- phenomena -----------------------------------------------------------------------------


def test_stops_repeat_positions(seasons):
    p = seasons.meta["params"]
    for t in (seasons.reference, query_of(seasons)):
        repeated = np.concatenate([[False], (np.diff(t.positions, axis=0) == 0).all(axis=1)])
        np.testing.assert_array_equal(repeated, t.meta["frame_stopped"])
        # runs of standing still are at least stop_frames_min long
        edges = np.diff(np.concatenate([[0], repeated.astype(np.int8), [0]]))
        run_lengths = np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)
        assert run_lengths.size >= 3 and run_lengths.min() >= p["stop_frames_min"]


def test_condition_matrix_rotates_only_its_subspace():
    """Hand-checkable: with no anisotropy M is orthogonal, turns vectors of its span by the angle, fixes the rest."""
    from vprbench.data.loaders.synthetic import _condition_matrix, _random_orthogonal

    rng = np.random.default_rng(0)
    basis = _random_orthogonal(rng, 12).astype(np.float64)
    np.testing.assert_allclose(basis @ basis.T, np.eye(12), atol=1e-6)
    m = _condition_matrix(rng, basis[:, :4], np.deg2rad(120.0), 0.0).astype(np.float64)
    np.testing.assert_allclose(m @ m.T, np.eye(12), atol=1e-6)
    x = basis[:, :4] @ rng.standard_normal(4)
    assert x @ m @ x / (x @ x) == pytest.approx(np.cos(np.deg2rad(120.0)), abs=1e-6)
    y = basis[:, 4:] @ rng.standard_normal(8)
    np.testing.assert_allclose(m @ y, y, atol=1e-6)


def test_appearance_spectrum_decays():
    """A few principal directions carry most of the appearance variance (like real descriptors)."""

    def top_share(ds: BenchmarkDataset, k: int) -> float:
        x = ds.reference.descriptors[ds.reference.meta["frame_corruption"] == CORRUPTION_NONE].astype(np.float64)
        ev = np.linalg.eigvalsh(np.cov(x.T))[::-1]
        return float(ev[:k].sum() / ev.sum())

    decaying = top_share(generate(tiny_params(spectrum_decay=1.0, reference_noise=0.1), seed=0), 4)
    flat = top_share(generate(tiny_params(spectrum_decay=0.0, reference_noise=0.1), seed=0), 4)
    # (i+1)^-1 over 32 directions: the top 4 hold 2.08 / 4.06 = 51 %; a flat spectrum 4/32 = 12.5 % (+ sampling error)
    assert decaying > 0.4 and flat < 0.3


def test_neighbouring_frames_look_alike(seasons):
    """The appearance field is smooth: consecutive clean frames are far more similar than far-apart frames."""
    t = seasons.reference
    x = t.descriptors
    clean = t.meta["frame_corruption"] == CORRUPTION_NONE
    i = np.flatnonzero(clean[:-1] & clean[1:] & ~t.meta["frame_stopped"][1:])
    near = np.einsum("ij,ij->i", x[i], x[i + 1])
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(t), 5000), rng.integers(0, len(t), 5000)
    far_ok = np.abs(t.meta["frame_route_m"][a] - t.meta["frame_route_m"][b]) > 200
    far = np.einsum("ij,ij->i", x[a[far_ok]], x[b[far_ok]])
    assert near.mean() > 0.5 and abs(far.mean()) < 0.05 and near.mean() > far.mean() + 5 * far.std()


def test_aliasing_far_apart_stretches_look_alike(seasons):
    t = seasons.reference
    s, x = t.meta["frame_route_m"], t.descriptors
    pairs = seasons.meta["alias_pairs"]
    assert sum(p["split"] == "test" for p in pairs) >= 2
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(t), 20000), rng.integers(0, len(t), 20000)
    keep = np.abs(s[a] - s[b]) > 200
    far = np.einsum("ij,ij->i", x[a[keep]], x[b[keep]])
    tree = cKDTree(s[:, None])
    for p in pairs:
        assert abs(p["copy_m"] - p["source_m"]) >= seasons.meta["params"]["alias_min_separation_m"]
        u = np.arange(15.0, p["length_m"] - 15.0, 2.0)  # the core of the stretch (taper excluded)
        _, i = tree.query((p["copy_m"] + u)[:, None])
        _, j = tree.query((p["source_m"] + u)[:, None])
        sim = np.einsum("ij,ij->i", x[i], x[j])
        assert np.median(sim) > np.quantile(far, 0.999), p


def test_corruptions_present_and_dominating(seasons):
    p = seasons.meta["params"]
    ref, q = seasons.reference, query_of(seasons)
    for t, rate in ((ref, p["reference_corruption_rate"]), (q, p["query_corruption_rate"])):
        kind = t.meta["frame_corruption"]
        assert set(np.unique(kind)) == {CORRUPTION_NONE, CORRUPTION_GLARE, CORRUPTION_OCCLUSION}
        assert 0.5 * rate < (kind > 0).mean() < 2 * rate
    # a corrupted query frame looks less like its place than a clean one does
    tree = cKDTree(ref.positions)
    _, j = tree.query(q.positions)
    sim = np.einsum("ij,ij->i", q.descriptors, ref.descriptors[j])
    kind_q = q.meta["frame_corruption"]
    assert sim[kind_q > 0].mean() < 0.7 * sim[kind_q == CORRUPTION_NONE].mean()
    # glare patterns are shared: glare query frames match some glare reference frame strongly
    gq = q.descriptors[kind_q == CORRUPTION_GLARE]
    gr = ref.descriptors[ref.meta["frame_corruption"] == CORRUPTION_GLARE]
    cq = q.descriptors[kind_q == CORRUPTION_NONE][: len(gq)]
    assert (gq @ gr.T).max(axis=1).mean() > 0.5 > (cq @ gr.T).max(axis=1).mean()


# --- calibration ---------------------------------------------------------------------------


def test_calibration_of_the_default_dataset(seasons):
    """Single image fails often; sequences help (more with L=10); a learned linear map helps."""
    single = recall(seasons, single_image_top(seasons))
    seq5 = recall(seasons, seqmatch_top(seasons, 5))
    seq10 = recall(seasons, seqmatch_top(seasons, 10))
    mapped = recall(seasons, single_image_top(seasons, linear_map_from_train(seasons)(seasons.split("test").query.descriptors)))
    assert 0.2 <= single <= 0.6
    assert seq5 >= single + 0.15 and seq5 < 0.95
    assert seq10 > seq5
    assert mapped >= single + 0.15


def test_daynight_is_harder_but_not_hopeless(seasons):
    dn = preset("synth-daynight")
    single_dn = recall(dn, single_image_top(dn))
    assert 0.05 <= single_dn < recall(seasons, single_image_top(seasons))
    assert recall(dn, seqmatch_top(dn, 5)) > single_dn + 0.05
    kinds = query_of(dn).meta["frame_corruption"]
    assert (kinds == CORRUPTION_GLARE).mean() > (query_of(seasons).meta["frame_corruption"] == CORRUPTION_GLARE).mean()


def test_tiny_preset_is_usable_by_sequence_methods(tiny):
    single = recall(tiny, single_image_top(tiny))
    assert recall(tiny, seqmatch_top(tiny, 5)) >= single > 0.2


# --- catalog wiring and metadata -----------------------------------------------------------


def test_catalog_wiring_and_meta(seasons):
    assert DEFAULT_DATASET == "synth-seasons"
    assert seasons.name == "synth-seasons"
    assert list(seasons.queries) == ["winter"] and seasons.reference.name == "summer"
    meta = seasons.meta
    assert meta["generator_version"] == GENERATOR_VERSION and meta["seed"] == 0
    params = SyntheticParams(**meta["params"])
    assert meta["fingerprint"] == fingerprint(params, 0) == seasons.fingerprint
    # the dataclass defaults are the synth-seasons preset
    assert asdict(params) == asdict(SyntheticParams())
    assert load_dataset("synth-seasons", overrides={"seed": 1}).fingerprint != seasons.fingerprint
    assert json.loads(json.dumps(meta)) == meta  # recorded with results as JSON


def test_every_parameter_is_documented():
    doc = (REPO / "docs" / "synthetic.md").read_text(encoding="utf-8")
    missing = [f.name for f in fields(SyntheticParams) if f"`{f.name}`" not in doc]
    assert not missing and "`seed`" in doc


# --- bad parameters ------------------------------------------------------------------------


def test_unknown_parameter_names_it_and_the_valid_ones():
    with pytest.raises(ConfigError, match=r"'corelation_length_m'.*correlation_length_m") as e:
        load_dataset("synth-tiny", overrides={"corelation_length_m": 3.0})
    assert "query_noise" in str(e.value) and "seed" in str(e.value)
    with pytest.raises(ConfigError, match="'bogus'"):
        generate({"bogus": 1})


@pytest.mark.parametrize(
    ("over", "pattern"),
    [
        ({"dim": -4}, "'dim'.*>= 2"),
        ({"dim": 100000}, "'dim'.*<= 16384"),  # D x D condition maps would need 75 GiB
        ({"test_length_m": 1e9}, r"GiB of descriptors\); at most 8 GiB"),
        ({"query_speed_m": 1e-6}, r"GiB of descriptors\); at most 8 GiB"),
        ({"query_speed_m": 1e6}, "fewer than 10 frames in the shortest split"),
        ({"dim": 2.5}, "'dim' expects int"),
        ({"test_length_m": -100.0}, "'test_length_m'.*> 0"),
        ({"train_length_m": 0}, "'train_length_m'.*> 0"),
        ({"query_noise": -0.1}, "'query_noise'"),
        ({"condition_place": 1.5}, "'condition_place'.*<= 1"),
        ({"query_noise": "loud"}, "'query_noise' expects float"),
        ({"dim": True}, "'dim'"),
        ({"reference_name": 3}, "'reference_name'"),
        ({"query_name": "summer"}, "different"),
        ({"stop_frames_min": 30}, "stop_frames_min"),
        ({"negative_radius_m": 4.0}, "negative_radius_m.*nontrivial_radius_m"),
        ({"split_gap_m": 0.0}, "split_gap_m"),
        ({"query_segments": 40}, "query_segments"),
        ({"alias_min_separation_m": 1000.0}, "alias"),
        ({"correlation_length_m": float("nan")}, "'correlation_length_m'"),
    ],
)
def test_bad_values_raise_config_error(over, pattern):
    with pytest.raises(ConfigError, match=pattern):
        generate(tiny_params(**over))


@pytest.mark.parametrize("seed", [-1, 1.5, "x", True])
def test_bad_seed(seed):
    with pytest.raises(ConfigError, match="seed"):
        load_dataset("synth-tiny", overrides={"seed": seed})
    with pytest.raises(ConfigError, match="seed"):
        generate(None, seed=seed)


def test_numeric_strings_and_ints_are_coerced():
    ds = load_dataset("synth-tiny", overrides={"dim": "16", "query_noise": "0.4", "split_gap_m": 55})
    assert ds.reference.dim == 16 and ds.meta["params"]["query_noise"] == 0.4 and ds.meta["params"]["split_gap_m"] == 55.0
