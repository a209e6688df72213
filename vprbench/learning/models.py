"""The learned networks over descriptor windows (SeqNet family) and batched inference."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.windows import window_indices
from vprbench.matching.distances import l2_normalise

#: Initialisations of the learned layer: PyTorch's default (the papers) or the identity map.
INITS: tuple[str, ...] = ("default", "identity")


class SeqNetModel(nn.Module):
    """SeqNet-style network over descriptor windows (Garg & Milford, RA-L 2021).

    Input [B, L, D_in] (float32) -> L2-normalise each frame -> optional fixed PCA to ``pca_dim``
    (mean and components fitted on the training split, then L2-normalised) -> 1-D temporal
    convolution (kernel ``filter_width``, stride 1, no padding, bias) -> output.

    * ``filter_width == 1`` (per-frame, S_1 / SeqMatchNet): output [B, L, D_out], each frame L2-normalised.
    * ``filter_width > 1`` (S_L): mean over the L - w + 1 temporal positions, L2-normalised: [B, 1, D_out].
    """

    def __init__(self, in_dim: int, out_dim: int = 0, filter_width: int = 1, pca_dim: int = 0, init: str = "default") -> None:
        super().__init__()
        if init not in INITS:
            raise ConfigError(f"model init must be one of {INITS}, got {init!r}")
        self.in_dim, self.filter_width = int(in_dim), int(filter_width)
        self.pca_dim = int(pca_dim) if pca_dim and pca_dim < in_dim else 0
        hidden = self.pca_dim or self.in_dim
        self.out_dim = int(out_dim) or hidden
        self.register_buffer("pca_mean", torch.zeros(self.in_dim))
        self.register_buffer("pca_components", torch.zeros(self.in_dim, self.pca_dim))
        self.conv = nn.Conv1d(hidden, self.out_dim, kernel_size=self.filter_width, stride=1, padding=0, bias=True)
        if init == "identity":
            # start from the untrained descriptors: every tap maps input to output (1/w each, zero bias),
            # so the initial model is raw matching (w = 1) or mean smoothing over the window (w > 1)
            with torch.no_grad():
                eye = torch.eye(self.out_dim, hidden) / self.filter_width
                self.conv.weight.copy_(eye[:, :, None].expand(-1, -1, self.filter_width))
                self.conv.bias.zero_()

    @property
    def per_frame(self) -> bool:
        """True when the model outputs one descriptor per frame (w = 1)."""
        return self.filter_width == 1

    def config(self) -> dict[str, Any]:
        return {"arch": "seqnet", "in_dim": self.in_dim, "out_dim": self.out_dim, "filter_width": self.filter_width, "pca_dim": self.pca_dim}

    def fit_pca(self, x: np.ndarray, max_rows: int = 20000, seed: int = 0) -> None:
        """Fit the fixed input PCA on descriptors ``x`` [N, D_in] (L2-normalised first)."""
        if not self.pca_dim:
            return
        x = l2_normalise(x).astype(np.float64)
        if len(x) > max_rows:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))]
        mean = x.mean(0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        comps = vt[: self.pca_dim].T
        # fix the sign of each component so the result does not depend on the LAPACK build
        signs = np.sign(comps[np.abs(comps).argmax(0), np.arange(comps.shape[1])])
        comps = comps * np.where(signs == 0, 1.0, signs)
        if comps.shape[1] < self.pca_dim:
            comps = np.pad(comps, ((0, 0), (0, self.pca_dim - comps.shape[1])))
        self.pca_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        self.pca_components.copy_(torch.from_numpy(comps.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise DataError(f"model input dimension mismatch: the model was trained on D={self.in_dim}, got D={x.shape[-1]}")
        x = F.normalize(x, dim=-1)
        if self.pca_dim:
            x = F.normalize((x - self.pca_mean) @ self.pca_components, dim=-1)
        # the convolution as one matrix product over unfolded windows (much faster than conv1d's
        # backward on CPU): [B, L - w + 1, H * w] @ [H * w, D_out], same weights as self.conv
        w = self.filter_width
        cols = x.unfold(1, w, 1).reshape(x.shape[0], x.shape[1] - w + 1, -1)
        y = F.linear(cols, self.conv.weight.reshape(self.out_dim, -1), self.conv.bias)  # [B, L - w + 1, D_out]
        if self.per_frame:
            return F.normalize(y, dim=-1)
        return F.normalize(y.mean(1), dim=-1)[:, None, :]


def build_model(config: dict[str, Any]) -> SeqNetModel:
    """Rebuild a model from its :meth:`SeqNetModel.config` (e.g. from a checkpoint)."""
    if config.get("arch") != "seqnet":
        raise DataError(f"unknown model architecture {config.get('arch')!r} in model config; expected 'seqnet'")
    try:
        return SeqNetModel(int(config["in_dim"]), int(config["out_dim"]), int(config["filter_width"]), int(config["pca_dim"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"model config is incomplete or malformed ({e!r}); expected in_dim, out_dim, filter_width, pca_dim") from None


@torch.no_grad()
def encode_frames(model: SeqNetModel, x: np.ndarray, device: torch.device, batch: int = 4096) -> np.ndarray:
    """Per-frame outputs [N, D_out] of a per-frame model for descriptors ``x`` [N, D_in]."""
    model.eval()
    out = [model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])).to(device)[:, None, :])[:, 0].cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy().astype(np.float32)


@torch.no_grad()
def encode_windows(model: SeqNetModel, x: np.ndarray, starts: np.ndarray, seq_len: int, device: torch.device, batch: int = 1024) -> np.ndarray:
    """One output per window [n, D_out] (window models) for windows of ``x`` [N, D_in] starting at ``starts`` [n]."""
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    out = []
    for i in range(0, len(starts), batch):
        idx = torch.from_numpy(window_indices(starts[i : i + batch], seq_len))
        out.append(model(xt[idx].to(device))[:, 0].cpu())
    if not out:
        return np.zeros((0, model.out_dim), np.float32)
    return torch.cat(out).numpy().astype(np.float32)
