"""SeqNet: learned sequential descriptors S_L, and S_1 + SeqMatch (Garg & Milford, RA-L 2021)."""

from __future__ import annotations

from vprbench.method import MethodInfo, TrainedSeqNetMethod, learned_params

_PAPER = "Garg & Milford, SeqNet: Learning descriptors for sequence-based hierarchical place recognition, RA-L 2021"


class SeqNet(TrainedSeqNetMethod):
    """SeqNet S_L: a sequential descriptor per window, searched by nearest neighbour.

    Each window of L per-frame descriptors goes through a 1-D temporal convolution (D_in -> D_out
    channels, kernel w, stride 1, no padding, with bias), averaged over the remaining temporal
    positions and L2-normalised (:class:`vprbench.learning.models.SeqNetModel`); references are ranked by
    the Euclidean distance of these descriptors (exact search). Trained by the shared triplet
    engine (:mod:`vprbench.learning`) with margin sqrt(0.1), 10 hard negatives from 1,000 random
    candidates. Paper setups: Oxford L = 5, w = 3 (preset ``paper``); Nordland trained with
    L = 10, w = 5 and tested with L = 5 (``filter_width=5 train_seq_len=10`` and ``--seq-len 5``).
    Test windows follow the run's boundary policy; training windows always use "drop".
    """

    info = MethodInfo(
        name="seqnet",
        family="sequential-descriptor",
        summary="SeqNet S_L: learned temporal convolution over the window, nearest-neighbour search",
        paper=_PAPER,
        trains=True,
        needs=("descriptors",),
        smoke_params={"epochs": 2},
        params=learned_params(fixed=("loss", "mining")),
    )


class SeqNetS1(TrainedSeqNetMethod):
    """SeqNet S_1 + SeqMatch: a learned per-frame linear map (w = 1), then sequence matching.

    S_1 is SeqNet with filter width 1 trained on single frames (training L = 1); its per-frame
    outputs are matched with the sequence-matching distance (mean of the L aligned frame distances,
    :func:`vprbench.matching.sequence.sequence_topk`) at the run's L — the "S_1" row of the SeqNet/SeqMatchNet
    papers and HVPR's default re-ranker.
    """

    info = MethodInfo(
        name="seqnet-s1",
        family="sequence-matching",
        provides_frontend=True,
        summary="SeqNet S_1 (learned per-frame map) + SeqMatch over its outputs",
        paper=_PAPER,
        trains=True,
        needs=("descriptors",),
        smoke_params={"epochs": 2},
        params=learned_params(fixed=("loss", "mining", "filter_width")),
    )
