"""SeqGeM: generalised-mean pooling over the window of learned frame descriptors (Berton et al., JIST, RA-L 2023)."""

from __future__ import annotations

from typing import Any

from vprbench.method import MethodInfo, TrainedSeqNetMethod, learned_params


class SeqGeM(TrainedSeqNetMethod):
    """SeqGeM: a learned per-frame projection, then a generalised mean over the window with a learned exponent.

    Model (:class:`vprbench.learning.models.SeqGeMModel`): each frame is L2-normalised (optionally
    projected onto principal directions fitted without labels), mapped by a learned linear layer with
    bias and L2-normalised (JIST's frame descriptor ends in such a layer); per dimension the window is
    pooled as (mean_t max(f_t, 1e-6)^p)^(1/p) with p learned (initial ``gem_p``, JIST: 3); the
    result is L2-normalised and searched by nearest neighbour. JIST trains the backbone jointly on
    images (a CosPlace classification loss) and sequences (triplets); here the inputs are per-frame
    descriptors and only the sequence triplet loss applies. Paper preset (gmberton/JIST): Adam lr
    1e-5, margin 0.1, 5 hard negatives from 3,000 candidates, batch 4, 5 epochs, best by validation
    Recall@5, 512-D frames, L = 5. The ``cpu`` preset starts from the identity (each direction and
    its negation, so the clamp drops no sign: 2H-D output) instead of PyTorch's random layer.
    """

    info = MethodInfo(
        name="seqgem",
        family="sequential-descriptor",
        summary="SeqGeM (JIST): learned frame projection, generalised mean over the window (learned p), nearest-neighbour search",
        paper="Berton et al., JIST: Joint image and sequence training for sequential visual place recognition, RA-L 2023",
        trains=True,
        needs=("descriptors",),
        smoke_params={"epochs": 2},
        params=learned_params(fixed=("loss", "mining", "filter_width"), model=("gem_p",)),
    )

    def make_model(self, in_dim: int, hp: dict[str, Any], pca_dim: int) -> Any:
        from vprbench.learning.models import SeqGeMModel

        return SeqGeMModel(in_dim, hp["out_dim"], pca_dim, hp["init"], hp["gem_p"])
