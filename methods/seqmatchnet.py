"""SeqMatchNet: contrastive learning with sequence matching (Garg & Milford, CoRL 2021)."""

from __future__ import annotations

from vprbench.method import MethodInfo, Param, TrainedSeqNetMethod, learned_params


class SeqMatchNet(TrainedSeqNetMethod):
    """SeqMatchNet: a learned per-frame transform trained through the sequence-matching distance.

    Model: 1x1 convolution (linear D_in -> D_out with bias) then L2 normalisation of each frame
    (optionally after a fixed PCA of the input, preset ``cpu``). Loss: triplet margin on
    ``d_seq`` (mean of the L aligned frame distances, ``loss=seqmatch``) or on the centre-frame
    distance (``loss=single``); mining ranks positives/negatives by ``d_seq``
    (``mining=seqmatch``: L x L identity convolution over the cached distance matrix) or by the
    centre-frame distance (``mining=single``). The four combinations are the paper's Table 1.
    Evaluation: SeqMatch (meanOfPairs) over the learned descriptors at the run's L.
    Paper training (preset ``paper``): SGD lr 1e-3, momentum 0.9, weight decay 1e-3, StepLR(5, 0.5),
    50 epochs, batch 16, L = 5, 4096-D; best epoch by validation Recall@5.
    """

    info = MethodInfo(
        name="seqmatchnet",
        family="sequence-matching",
        provides_frontend=True,
        summary="SeqMatchNet: per-frame transform learned through the sequence-matching distance, + SeqMatch",
        paper="Garg & Milford, SeqMatchNet: Contrastive learning with sequence matching for place recognition & relocalization, CoRL 2021",
        trains=True,
        needs=("descriptors",),
        smoke_params={"epochs": 2},
        params=learned_params(
            fixed=("filter_width", "loss", "mining"),
            extra={
                "loss": Param("seqmatch", "triplet loss distance: single (centre frame) or seqmatch (sequence distance)", ("single", "seqmatch")),
                "mining": Param("seqmatch", "mining distance: single (centre frame) or seqmatch (sequence distance)", ("single", "seqmatch")),
            },
        ),
    )
