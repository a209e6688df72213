"""Where a results folder keeps what (every path a run writes, relative to the folder)::

    records/<dataset>/<method>/<record key>.json          one record per evaluated job
    predictions/<dataset>/<method>/<ranking key>.npz      the stored ranking: top-K indices, distances,
                                                          confidence, per query (reused by every record
                                                          of that ranking and by report --protocol)
    predictions/<dataset>/<method>/<ranking key>.json     how the ranking was computed (timings, memory,
                                                          training, notes, environment)
    splits/<dataset>-<split>-<query>-<fingerprint>.npz    positions, segments, explicit ground truth of
                                                          an evaluated split (for re-evaluation)
    examples/<dataset>-<split>-<query>-<fingerprint>.npz  a distance-matrix crop for the overlay plot
    claims/<ranking key>.claim                            a job being computed (see core.claims)
    cache/                                                trained models, extracted descriptors
    tables/, plots/                                       derived by `vprbench report`
"""

from __future__ import annotations

import re
from pathlib import Path


def slug(text: str) -> str:
    """File-system safe version of a name."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")[:80]


def record_path(root: Path, dataset: str, method: str, key: str) -> Path:
    return Path(root) / "records" / slug(dataset) / slug(method) / f"{key}.json"


def prediction_path(root: Path, dataset: str, method: str, key: str) -> Path:
    return Path(root) / "predictions" / slug(dataset) / slug(method) / f"{key}.npz"


def split_data_path(root: Path, dataset: str, split: str, query: str, fingerprint: str) -> Path:
    return Path(root) / "splits" / f"{slug(dataset)}-{slug(split)}-{slug(query)}-{fingerprint}.npz"


def example_path(root: Path, dataset: str, split: str, query: str, fingerprint: str) -> Path:
    """Where the distance-matrix crop of a (dataset content, split, query) is saved."""
    return Path(root) / "examples" / f"{slug(dataset)}-{slug(split)}-{slug(query)}-{fingerprint}.npz"


def claim_path(root: Path, key: str) -> Path:
    return Path(root) / "claims" / f"{key}.claim"
