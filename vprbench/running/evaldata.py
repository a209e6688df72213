"""Evaluation data of a split on disk (``splits/*.npz``): positions, segments, explicit ground truth.

Written once per evaluated split, read by ``vprbench report --protocol`` to recompute metrics under
another protocol. Cost: 8 bytes per position coordinate and 16 per segment bound per frame, plus
the explicit ground truth where a dataset has one (e.g. 2 x 3,000 frames in 2-D: about 0.2 MB).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vprbench.core.errors import DataError
from vprbench.core.fileio import save_npz_atomic
from vprbench.data.groundtruth import GroundTruth
from vprbench.metrics.evaluator import EvaluationData


def save_evaluation_data(path: Path, data: EvaluationData) -> None:
    arrays = {
        "query_positions": data.query_positions, "ref_positions": data.ref_positions,
        "query_segments": data.query_segments, "ref_segments": data.ref_segments,
        "unit": np.array(data.unit), "radius": np.array(data.radius),
    }
    gt = data.explicit
    if gt is not None:
        arrays.update(gt_indptr=gt.indptr, gt_indices=gt.indices, gt_n_ref=np.array(gt.n_ref))
        if gt.soft is not None:
            arrays.update(soft_indptr=gt.soft.indptr, soft_indices=gt.soft.indices)
    save_npz_atomic(path, **arrays)


def load_evaluation_data(path: Path) -> EvaluationData:
    """Read what :func:`save_evaluation_data` wrote; DataError naming the file otherwise."""
    try:
        with np.load(path, allow_pickle=False) as z:
            explicit = None
            if "gt_indptr" in z:
                soft = None
                if "soft_indptr" in z:
                    soft = GroundTruth(z["soft_indptr"], z["soft_indices"], int(z["gt_n_ref"]))
                explicit = GroundTruth(z["gt_indptr"], z["gt_indices"], int(z["gt_n_ref"]), soft=soft)
            return EvaluationData(z["query_positions"], z["ref_positions"], z["query_segments"], z["ref_segments"],
                                  str(z["unit"]), float(z["radius"]), explicit)
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"evaluation data {str(path)!r} is missing or unreadable ({e}); run the job again") from None
