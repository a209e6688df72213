"""The NetVLAD pooling layer (Arandjelovic et al., CVPR 2016) as a plain ``torch.nn.Module``.

Given a local feature map x [N, C, H, W] (e.g. VGG16 conv5_3, C = 512):

1. optionally L2-normalise every local feature along C (``normalize_input``);
2. soft-assign each local feature to K clusters with a 1x1 convolution and a softmax over K:
   a[n, k, p] = softmax_k(w_k . x[n, :, p] + b_k);
3. aggregate residuals to K learned centroids c_k:
   V[n, k, :] = sum_p a[n, k, p] (x[n, :, p] - c_k);
4. intra-normalise (L2 per cluster), flatten to K*C, L2-normalise;
5. optionally PCA-whiten to ``pca_dim`` with a learned linear map (Patch-NetVLAD's "WPCA"),
   then L2-normalise again.

Parameter names follow the pytorch-NetVlad / Patch-NetVLAD checkpoints (``conv.weight`` [K, C, 1, 1],
``conv.bias`` [K] when ``vladv2``, ``centroids`` [K, C]) so that their ``pool.*`` entries load as is;
the whitening is ``whiten`` (a Linear) — :func:`vprbench.features.networks.load_netvlad_checkpoint` maps
the checkpoints' ``WPCA.0.*`` 1x1-convolution entries onto it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vprbench.core.errors import ConfigError


class NetVLAD(nn.Module):
    """NetVLAD pooling: [N, C, H, W] local features -> [N, K*C] (or [N, pca_dim]) unit vectors.

    Args:
        num_clusters: K, number of cluster centres (the paper: 64).
        dim: C, channels of the local features (VGG16 conv5: 512).
        alpha: sharpness of the soft-assignment used by :meth:`init_from_centroids`.
        normalize_input: L2-normalise each local feature before assignment (as published).
        vladv2: give the 1x1 assignment convolution a bias (pytorch-NetVlad's ``vladv2``);
            False matches the released SeqNet/Patch-NetVLAD checkpoints.
        pca_dim: output dimension of the optional PCA-whitening (4096 in the SeqNet descriptors);
            None for none.
    """

    def __init__(
        self,
        num_clusters: int = 64,
        dim: int = 512,
        alpha: float = 100.0,
        normalize_input: bool = True,
        vladv2: bool = False,
        pca_dim: int | None = None,
    ) -> None:
        super().__init__()
        if num_clusters < 1 or dim < 1:
            raise ConfigError(f"NetVLAD: num_clusters and dim must be >= 1, got {num_clusters}, {dim}")
        if pca_dim is not None and not 1 <= pca_dim <= num_clusters * dim:
            raise ConfigError(f"NetVLAD: pca_dim must be in 1..{num_clusters * dim}, got {pca_dim}")
        self.num_clusters = num_clusters
        self.dim = dim
        self.alpha = float(alpha)
        self.normalize_input = normalize_input
        self.vladv2 = vladv2
        self.pca_dim = pca_dim
        self.conv = nn.Conv2d(dim, num_clusters, kernel_size=1, bias=vladv2)
        self.centroids = nn.Parameter(torch.rand(num_clusters, dim))
        self.whiten = nn.Linear(num_clusters * dim, pca_dim) if pca_dim is not None else None

    @property
    def output_dim(self) -> int:
        return self.pca_dim if self.pca_dim is not None else self.num_clusters * self.dim

    @torch.no_grad()
    def init_from_centroids(self, centroids: np.ndarray | torch.Tensor) -> None:
        """Initialise from K cluster centres [K, C] of (normalised) local features.

        Without ``vladv2`` the assignment weights are alpha * (unit centroid), so the soft-assignment
        ranks clusters by cosine similarity; with ``vladv2`` it is softmax_k(-alpha ||x - c_k||^2),
        expanded as weight 2 alpha c_k and bias -alpha ||c_k||^2.
        """
        c = torch.as_tensor(np.asarray(centroids), dtype=self.centroids.dtype)
        if c.shape != (self.num_clusters, self.dim):
            raise ConfigError(f"NetVLAD.init_from_centroids: expected centroids [{self.num_clusters}, {self.dim}], got {list(c.shape)}")
        self.centroids.copy_(c)
        if self.vladv2:
            self.conv.weight.copy_((2.0 * self.alpha * c)[:, :, None, None])
            self.conv.bias.copy_(-self.alpha * c.pow(2).sum(1))
        else:
            self.conv.weight.copy_((self.alpha * F.normalize(c, dim=1))[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] -> [N, output_dim], L2-normalised."""
        if x.ndim != 4 or x.shape[1] != self.dim:
            raise ConfigError(f"NetVLAD: expected input [N, {self.dim}, H, W], got {list(x.shape)}")
        n = x.shape[0]
        if self.normalize_input:
            x = F.normalize(x, p=2, dim=1)
        a = F.softmax(self.conv(x).view(n, self.num_clusters, -1), dim=1)  # [N, K, P]
        feats = x.view(n, self.dim, -1)  # [N, C, P]
        # sum_p a_kp (x_p - c_k) = (a @ x^T)_k - (sum_p a_kp) c_k : one batched matmul
        vlad = torch.bmm(a, feats.transpose(1, 2)) - a.sum(-1, keepdim=True) * self.centroids[None]
        vlad = F.normalize(vlad, p=2, dim=2).reshape(n, -1)
        vlad = F.normalize(vlad, p=2, dim=1)
        if self.whiten is not None:
            vlad = F.normalize(self.whiten(vlad), p=2, dim=1)
        return vlad
