"""A NetVLAD layer as a per-frame model of the training engine, and its k-means initialisation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vprbench.core.errors import DataError


class FrameNetVLAD(nn.Module):
    """Per-frame wrapper of :class:`vprbench.features.netvlad_layer.NetVLAD` for the training engine.

    Input [B, L, C, h, w] feature maps -> output [B, L, K*C] unit descriptors (``per_frame``).
    """

    per_frame = True

    def __init__(self, clusters: int, channels: int) -> None:
        super().__init__()
        from vprbench.features.netvlad_layer import NetVLAD

        self.layer = NetVLAD(clusters, channels)
        self.in_dim, self.out_dim = channels, self.layer.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, l = x.shape[:2]
        return self.layer(x.reshape(b * l, *x.shape[2:]).float()).reshape(b, l, -1)


def kmeans(x: np.ndarray, k: int, seed: int, iters: int = 20) -> np.ndarray:
    """K-means centres [k, D] of rows ``x`` [N, D] (Lloyd's iterations, seeded, deterministic)."""
    rng = np.random.default_rng(seed)
    if len(x) < k:
        raise DataError(f"netvlad-trained: {len(x)} local features are fewer than the {k} clusters")
    # farthest-point initialisation from a random first centre (avoids two centres in one cluster)
    c = np.empty((k, x.shape[1]), dtype=np.float64)
    c[0] = x[rng.integers(len(x))]
    d = ((x - c[0]) ** 2).sum(1)
    for j in range(1, k):
        c[j] = x[int(np.argmax(d))]
        d = np.minimum(d, ((x - c[j]) ** 2).sum(1))
    for _ in range(iters):
        assign = np.argmax(x @ c.T - 0.5 * (c * c).sum(1)[None, :], axis=1)
        for j in range(k):
            members = x[assign == j]
            c[j] = members.mean(0) if len(members) else x[rng.integers(len(x))]
    return c.astype(np.float32)
