import numpy as np
import pytest

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.traverse import Traverse, segment_bounds_from_ids
from vprbench.data.windows import traverse_windows, window_indices, window_starts


def naive_windows(seg, L, policy):
    """Reference: the definition, one frame at a time."""
    starts, valid = [], []
    for t, (a, b) in enumerate(seg):
        s = t - L // 2
        if policy == "shift":
            s = min(max(s, a), b - L)
            starts.append(max(s, a))
            valid.append(b - a >= L)
        else:
            ok = s >= a and s + L <= b
            starts.append(s if ok else a)
            valid.append(ok)
    return np.array(starts), np.array(valid)


@pytest.mark.parametrize("policy", ["shift", "drop"])
@pytest.mark.parametrize("L", [1, 2, 3, 4, 5, 8])
def test_windows_match_definition(policy, L):
    seg = segment_bounds_from_ids(np.repeat([0, 1, 2, 3], [7, 3, 12, 1]))
    starts, valid = window_starts(seg, L, policy)
    ref_s, ref_v = naive_windows(seg, L, policy)
    np.testing.assert_array_equal(valid, ref_v)
    np.testing.assert_array_equal(starts[valid], ref_s[valid])
    win = window_indices(starts[valid], L)
    # windows never leave their frame's segment
    assert (win >= seg[valid, :1]).all() and (win < seg[valid, 1:]).all()


def test_even_length_centre():
    starts, _ = window_starts(np.array([[0, 10]] * 10), 4, "drop")
    assert window_indices(starts[[5]], 4).tolist() == [[3, 4, 5, 6]]  # 2 before, 1 after


def test_subset_breaks_segments_at_gaps():
    t = Traverse("t", np.arange(10.0), descriptors=np.ones((10, 2), np.float32))
    sub = t.subset(np.array([0, 1, 2, 5, 6, 7, 8]))
    assert sub.segment_bounds[:, 0].tolist() == [0, 0, 0, 3, 3, 3, 3]
    starts, valid = traverse_windows(sub, 3, "drop")
    assert valid.tolist() == [False, True, False, False, True, True, False]


def test_bad_lengths():
    t = Traverse("t", np.arange(4.0), descriptors=np.ones((4, 2), np.float32))
    with pytest.raises(ConfigError, match="seq_len must be >= 1"):
        traverse_windows(t, 0)
    with pytest.raises(DataError, match="longer than its longest segment"):
        traverse_windows(t, 5)
    with pytest.raises(ConfigError, match="boundary policy"):
        window_starts(t.segment_bounds, 3, "wrap")


def test_short_last_segment_keeps_windows_inside_the_traverse():
    from vprbench.matching.sequence import sequence_topk

    seg = segment_bounds_from_ids(np.repeat([0, 1], [38, 2]))
    for policy in ("shift", "drop"):
        starts, valid = window_starts(seg, 5, policy)
        assert (starts >= 0).all() and (starts + 5 <= 40).all()
        assert not valid[-2:].any()
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    starts, valid = window_starts(seg, 5, "shift")
    idx, _ = sequence_topk(x, x, starts, starts, 5, 3, r_valid=valid)
    assert (starts[idx[valid, 0]] == starts[valid]).all()  # identical traverses: the same window wins
