"""SeqVLAD: a NetVLAD layer over all frames of the window (Mereu et al., RA-L 2022)."""

from __future__ import annotations

from typing import Any

from vprbench.method import MethodInfo, TrainedSeqNetMethod, learned_params


class SeqVLAD(TrainedSeqNetMethod):
    """SeqVLAD: one sequential descriptor per window from NetVLAD soft-assignment of every frame.

    Model (:class:`vprbench.learning.models.SeqVLADModel`): each frame of the window is
    L2-normalised (optionally projected, preset ``cpu``: at most 512 principal directions fitted
    without labels), soft-assigned to K learned clusters (``cpu``: 8, paper: 64; a 1x1 convolution
    without bias, softmax over K), the residuals to the K centroids are summed over all frames of
    the window, intra-normalised, flattened (K x H) and L2-normalised; references are ranked by the
    Euclidean distance of these window descriptors (exact search). The published SeqVLAD aggregates the local features of a
    CNN/transformer backbone over the frames; here the inputs are per-frame descriptors, so each frame
    is one "local feature" (the window descriptor ignores the order of its frames). Centroids start
    from k-means of training frames, the assignment sharpness as in the released code
    (vandal-vpr/vg-transformers). Trained by the shared triplet engine on window descriptors
    (margin 0.1; paper preset: Adam lr 1e-5, 5 hard negatives from 1,000 candidates, batch 4,
    up to 100 epochs with patience 5 on validation Recall@5, K = 64, L = 5). Test windows follow
    the run's boundary policy; training windows always use "drop".
    """

    info = MethodInfo(
        name="seqvlad",
        family="sequential-descriptor",
        summary="SeqVLAD: NetVLAD soft-assignment of all frames of the window, residuals summed, nearest-neighbour search",
        paper="Mereu et al., Learning sequential descriptors for sequence-based visual place recognition, RA-L 2022",
        trains=True,
        needs=("descriptors",),
        smoke_params={"epochs": 2},
        params=learned_params(fixed=("loss", "mining", "filter_width", "out_dim", "init"), model=("clusters",)),
    )

    def make_model(self, in_dim: int, hp: dict[str, Any], pca_dim: int) -> Any:
        from vprbench.learning.models import SeqVLADModel

        return SeqVLADModel(in_dim, hp["clusters"], pca_dim)

    def init_model(self, model: Any, data: Any, seed: int) -> None:
        import numpy as np

        # k-means on the training frames that have windows (both traverses), as the released code
        # clusters training local features; at most 20,000 frames (seeded subsample)
        frames = np.concatenate([data.r[data.r_valid], data.q[data.train_queries]])
        if len(frames) > 20000:
            frames = frames[np.sort(np.random.default_rng(seed).choice(len(frames), 20000, replace=False))]
        model.init_clusters(frames, seed)
