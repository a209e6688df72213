"""The public kernel toolkit for plugins: windows, distance sources, sequence aggregation, search.

Everything a sequence method needs to be fast without re-implementing the blocked kernels (see
README, "Adding a method"). Stable names; the implementations live in :mod:`vprbench.matching`
and :mod:`vprbench.data.windows`.
"""

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.windows import check_seq_len, gather_windows, traverse_windows, window_indices, window_starts
from vprbench.matching.candidates import CandidateSearch, candidate_topk
from vprbench.matching.descriptors import nearest_neighbours, sequential_descriptor_topk, window_weighted_sum
from vprbench.matching.distances import (
    DISTANCE_KINDS,
    DistanceSource,
    block_rows,
    l2_normalise,
    pairwise_distances,
    sad_distances,
    split_distance_source,
    split_distances,
)
from vprbench.matching.graph import DimensionHash, dp_search, lazy_search
from vprbench.matching.seqslam import (
    SEQSLAM_MODES,
    matlab_colon,
    openseqslam2_velocities,
    openseqslam_ds,
    openseqslam_velocities,
    round_half_away,
    seqslam_match,
    trajectory_offsets,
    velocity_range,
)
from vprbench.matching.sequence import (
    REDUCERS,
    Reducer,
    aggregate_diagonals,
    sequence_distances,
    sequence_topk,
    sequence_topk_from,
    topk_from,
    trimmed_mean,
)
from vprbench.matching.topk import mask_queries, topk_smallest

__all__ = [
    "ConfigError",
    "DataError",
    "block_rows",
    "REDUCERS",
    "Reducer",
    "trimmed_mean",
    "CandidateSearch",
    "candidate_topk",
    "SEQSLAM_MODES",
    "DimensionHash",
    "dp_search",
    "lazy_search",
    "matlab_colon",
    "openseqslam2_velocities",
    "openseqslam_ds",
    "openseqslam_velocities",
    "round_half_away",
    "seqslam_match",
    "trajectory_offsets",
    "velocity_range",
    "DISTANCE_KINDS",
    "DistanceSource",
    "aggregate_diagonals",
    "check_seq_len",
    "gather_windows",
    "l2_normalise",
    "mask_queries",
    "nearest_neighbours",
    "pairwise_distances",
    "sad_distances",
    "sequence_distances",
    "sequence_topk",
    "sequence_topk_from",
    "sequential_descriptor_topk",
    "split_distance_source",
    "split_distances",
    "topk_from",
    "topk_smallest",
    "traverse_windows",
    "window_indices",
    "window_starts",
    "window_weighted_sum",
]
