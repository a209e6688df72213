"""The learned networks over descriptor windows (SeqNet, SeqVLAD, SeqGeM), their input projection, batched inference.

Every model takes windows of per-frame descriptors [B, L, D_in] (float32) and first applies the same
fixed input stage (:class:`WindowModel`): L2-normalise each frame, then optionally project onto
``pca_dim`` principal directions fitted without labels (:func:`fit_input_pca`) and L2-normalise
again. What follows is the method's learned layer; ``per_frame`` models return [B, L, D_out] (one
descriptor per frame, matched by SeqMatch), window models return [B, 1, D_out].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


@dataclass
class InputPCA:
    """A fitted input projection: ``mean`` [D] (zeros when not centred), ``components`` [D, k] orthonormal columns.

    ``report`` says what it was fitted on and how much it keeps (recorded in ``training_info["pca"]``).
    """

    mean: np.ndarray
    components: np.ndarray
    report: dict[str, Any]


def fit_input_pca(x: np.ndarray, dim: int, center: bool = False, max_rows: int = 20000, seed: int = 0,
                  held_out: tuple[np.ndarray, np.ndarray] | None = None) -> InputPCA:
    """Principal directions of the L2-normalised rows of ``x`` [N, D]: at most ``dim``, never more than their rank.

    With ``center=False`` these are the top right-singular vectors of the raw unit descriptors (a
    truncated SVD), so projecting onto all of them preserves every distance. Components beyond the
    numerical rank (e.g. fewer rows than ``dim``) are dropped, never padded with zeros; the report
    then has ``capped = True``. Signs are fixed (largest entry of each component positive) so the
    result does not depend on the LAPACK build. More than ``max_rows`` rows: a seeded subsample.

    ``held_out``: (fit rows, evaluation rows) to estimate how well a projection generalises: one fitted
    on the first keeps ``report["held_out_energy"]`` of the second's energy (centred the same way).
    """
    x = l2_normalise(x).astype(np.float64)
    n_rows = len(x)
    if n_rows > max_rows:
        x = x[np.sort(np.random.default_rng(seed).choice(n_rows, max_rows, replace=False))]
    mean = x.mean(0) if center else np.zeros(x.shape[1])
    comps, s = _principal_directions(x - mean, dim)
    energy = float((s[: comps.shape[1]] ** 2).sum() / max((s**2).sum(), 1e-300))
    report: dict[str, Any] = {"requested": int(dim), "dim": int(comps.shape[1]), "fit_rows": int(n_rows), "center": bool(center),
                              "capped": bool(comps.shape[1] < dim), "fit_energy": energy}
    if held_out is not None:
        a, b = (l2_normalise(v).astype(np.float64) for v in held_out)
        m = a.mean(0) if center else np.zeros(a.shape[1])
        c, _ = _principal_directions(a - m, dim)
        e = b - m
        report["held_out_energy"] = float(((e @ c) ** 2).sum() / max((e**2).sum(), 1e-300))
    return InputPCA(mean.astype(np.float32), comps.astype(np.float32), report)


def _principal_directions(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``dim`` right-singular vectors [D, k] of ``x`` within its numerical rank, and all singular values."""
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    # rank tolerance of float32 data (descriptors are float32; the SVD runs in float64)
    tol = (s[0] if s.size else 0.0) * max(x.shape) * np.finfo(np.float32).eps
    k = int(min(dim, (s > tol).sum()))
    comps = vt[:k].T
    if k:
        signs = np.sign(comps[np.abs(comps).argmax(0), np.arange(k)])
        comps = comps * np.where(signs == 0, 1.0, signs)
    return comps, s


class WindowModel(nn.Module):
    """Base of the window networks: the fixed input stage and the interface the training engine uses.

    Subclasses set ``arch``, ``per_frame`` and ``out_dim``, implement :meth:`layer` (projected
    frames [B, L, H] -> outputs) and :meth:`config` (everything :func:`build_model` needs).
    """

    arch: str = ""
    per_frame: bool = False

    def __init__(self, in_dim: int, pca_dim: int = 0) -> None:
        super().__init__()
        self.in_dim = int(in_dim)
        self.pca_dim = int(pca_dim) if pca_dim and pca_dim < in_dim else 0
        self.register_buffer("pca_mean", torch.zeros(self.in_dim))
        self.register_buffer("pca_components", torch.zeros(self.in_dim, self.pca_dim))

    @property
    def hidden(self) -> int:
        """Dimension of the projected frames the learned layer sees."""
        return self.pca_dim or self.in_dim

    def set_pca(self, pca: InputPCA) -> None:
        """Install a fitted projection (its number of components must equal ``pca_dim``)."""
        if pca.components.shape != (self.in_dim, self.pca_dim):
            raise ConfigError(f"input projection is {list(pca.components.shape)}, the model expects [{self.in_dim}, {self.pca_dim}]")
        self.pca_mean.copy_(torch.from_numpy(np.ascontiguousarray(pca.mean, dtype=np.float32)))
        self.pca_components.copy_(torch.from_numpy(np.ascontiguousarray(pca.components, dtype=np.float32)))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, D_in] -> [B, L, H]: unit frames, projected (if ``pca_dim``) and re-normalised."""
        if x.shape[-1] != self.in_dim:
            raise DataError(f"model input dimension mismatch: the model was trained on D={self.in_dim}, got D={x.shape[-1]}")
        x = F.normalize(x, dim=-1)
        if self.pca_dim:
            x = F.normalize((x - self.pca_mean) @ self.pca_components, dim=-1)
        return x

    def layer(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(self.project(x))

    def config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


class SeqNetModel(WindowModel):
    """SeqNet-style network over descriptor windows (Garg & Milford, RA-L 2021).

    Input [B, L, D_in] -> input stage (:class:`WindowModel`) -> 1-D temporal convolution (kernel
    ``filter_width``, stride 1, no padding, bias) -> output.

    * ``filter_width == 1`` (per-frame, S_1 / SeqMatchNet): output [B, L, D_out], each frame L2-normalised.
    * ``filter_width > 1`` (S_L): mean over the L - w + 1 temporal positions, L2-normalised: [B, 1, D_out].
    """

    arch = "seqnet"

    def __init__(self, in_dim: int, out_dim: int = 0, filter_width: int = 1, pca_dim: int = 0, init: str = "default") -> None:
        super().__init__(in_dim, pca_dim)
        if init not in INITS:
            raise ConfigError(f"model init must be one of {INITS}, got {init!r}")
        self.filter_width = int(filter_width)
        hidden = self.hidden
        self.out_dim = int(out_dim) or hidden
        self.conv = nn.Conv1d(hidden, self.out_dim, kernel_size=self.filter_width, stride=1, padding=0, bias=True)
        if init == "identity":
            # start from the untrained descriptors: every tap maps input to output (1/w each, zero bias),
            # so the initial model is raw matching (w = 1) or mean smoothing over the window (w > 1)
            with torch.no_grad():
                eye = torch.eye(self.out_dim, hidden) / self.filter_width
                self.conv.weight.copy_(eye[:, :, None].expand(-1, -1, self.filter_width))
                self.conv.bias.zero_()

    @property
    def per_frame(self) -> bool:  # type: ignore[override]
        """True when the model outputs one descriptor per frame (w = 1)."""
        return self.filter_width == 1

    def config(self) -> dict[str, Any]:
        return {"arch": "seqnet", "in_dim": self.in_dim, "out_dim": self.out_dim, "filter_width": self.filter_width, "pca_dim": self.pca_dim}

    def layer(self, z: torch.Tensor) -> torch.Tensor:
        # the convolution as one matrix product over unfolded windows (much faster than conv1d's
        # backward on CPU): [B, L - w + 1, H * w] @ [H * w, D_out], same weights as self.conv
        w = self.filter_width
        cols = z.unfold(1, w, 1).reshape(z.shape[0], z.shape[1] - w + 1, -1)
        y = F.linear(cols, self.conv.weight.reshape(self.out_dim, -1), self.conv.bias)  # [B, L - w + 1, D_out]
        if self.per_frame:
            return F.normalize(y, dim=-1)
        return F.normalize(y.mean(1), dim=-1)[:, None, :]


class SeqVLADModel(WindowModel):
    """SeqVLAD (Mereu et al., RA-L 2022): NetVLAD over every frame of the window at once.

    Input [B, L, D_in] -> input stage -> the L projected frames are the "local features" of one
    NetVLAD layer (:class:`vprbench.features.netvlad_layer.NetVLAD`, K clusters, no assignment bias):
    soft-assignment a_k(z_t) = softmax_k(w_k . z_t), residuals to learned centroids summed over the
    window V_k = sum_t a_k(z_t) (z_t - c_k), intra-normalised, flattened, L2-normalised -> [B, 1, K*H].
    The published model aggregates a backbone's local features of all frames; here the inputs are
    per-frame descriptors (one "local feature" per frame). The result does not depend on the frame
    order inside the window. Initialisation (:meth:`init_clusters`, as the released code): k-means
    centres of training frames; assignment weights alpha * unit centre, alpha = -log(0.01) / mean
    gap between each frame's two highest centre similarities.
    """

    arch = "seqvlad"

    def __init__(self, in_dim: int, clusters: int = 64, pca_dim: int = 0) -> None:
        super().__init__(in_dim, pca_dim)
        from vprbench.features.netvlad_layer import NetVLAD

        self.clusters = int(clusters)
        self.vlad = NetVLAD(self.clusters, self.hidden, normalize_input=True, vladv2=False)
        self.out_dim = self.clusters * self.hidden

    def config(self) -> dict[str, Any]:
        return {"arch": "seqvlad", "in_dim": self.in_dim, "clusters": self.clusters, "pca_dim": self.pca_dim}

    @torch.no_grad()
    def init_clusters(self, frames: np.ndarray, seed: int) -> None:
        """k-means initialisation from descriptors ``frames`` [N, D_in] (projected here first)."""
        from vprbench.learning.netvlad import kmeans

        z = self.project(torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[:, None])[:, 0].numpy()
        centres = kmeans(z, self.clusters, seed)
        unit = l2_normalise(centres)
        dots = np.sort(z @ unit.T, axis=1)
        gap = float(np.mean(dots[:, -1] - dots[:, -2])) if self.clusters > 1 else 0.0
        self.vlad.alpha = -math.log(0.01) / gap if gap > 1e-12 else 100.0
        self.vlad.init_from_centroids(centres)

    def layer(self, z: torch.Tensor) -> torch.Tensor:
        return self.vlad(z.transpose(1, 2)[..., None])[:, None, :]  # frames as the W = 1 column of a [H, L, 1] map


class SeqGeMModel(WindowModel):
    """SeqGeM (Berton et al., JIST, RA-L 2023): learned per-frame projection, generalised mean over the window.

    Input [B, L, D_in] -> input stage -> per frame f_t = L2norm(W z_t + b) (D_out; JIST's frame
    descriptor ends in a fully connected layer and an L2 normalisation) -> per dimension
    g = (mean_t max(f_t, eps)^p)^(1/p) with a learned exponent p (initial ``p``, eps 1e-6: negative
    entries are clamped, as the released code; p is used clamped at >= 0.1 so that 1/p stays finite,
    our decision) -> L2-normalised [B, 1, D_out]. The final
    normalisation is our decision (the released code matches un-normalised descriptors; every method
    here compares unit vectors). ``init="identity"`` starts W as [I; -I] (each input direction and its
    negation, when D_out >= 2 H; otherwise the first D_out rows of that stack), so the clamp keeps
    both signs and p = 1 would be a split-sign mean; ``default`` is PyTorch's initialisation.
    """

    arch = "seqgem"

    def __init__(self, in_dim: int, out_dim: int = 0, pca_dim: int = 0, init: str = "default", p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__(in_dim, pca_dim)
        if init not in INITS:
            raise ConfigError(f"model init must be one of {INITS}, got {init!r}")
        self.out_dim = int(out_dim) or 2 * self.hidden
        self.proj = nn.Linear(self.hidden, self.out_dim, bias=True)
        self.p = nn.Parameter(torch.tensor([float(p)]))
        self.eps = float(eps)
        if init == "identity":
            with torch.no_grad():
                eye = torch.eye(self.hidden)
                self.proj.weight.copy_(torch.cat([eye, -eye])[: self.out_dim] if self.out_dim <= 2 * self.hidden
                                       else torch.cat([eye, -eye, torch.zeros(self.out_dim - 2 * self.hidden, self.hidden)]))
                self.proj.bias.zero_()

    def config(self) -> dict[str, Any]:
        return {"arch": "seqgem", "in_dim": self.in_dim, "out_dim": self.out_dim, "pca_dim": self.pca_dim, "eps": self.eps}

    def layer(self, z: torch.Tensor) -> torch.Tensor:
        f = F.normalize(self.proj(z), dim=-1)  # [B, L, D_out]
        p = self.p.clamp(min=0.1)
        g = f.clamp(min=self.eps).pow(p).mean(1).pow(1.0 / p)
        return F.normalize(g, dim=-1)[:, None, :]


def build_model(config: dict[str, Any]) -> WindowModel:
    """Rebuild a model from its :meth:`WindowModel.config` (e.g. from a checkpoint)."""
    arch = config.get("arch")
    try:
        if arch == "seqnet":
            return SeqNetModel(int(config["in_dim"]), int(config["out_dim"]), int(config["filter_width"]), int(config["pca_dim"]))
        if arch == "seqvlad":
            return SeqVLADModel(int(config["in_dim"]), int(config["clusters"]), int(config["pca_dim"]))
        if arch == "seqgem":
            return SeqGeMModel(int(config["in_dim"]), int(config["out_dim"]), int(config["pca_dim"]), eps=float(config["eps"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"model config of architecture {arch!r} is incomplete or malformed ({e!r})") from None
    raise DataError(f"unknown model architecture {arch!r} in model config; expected 'seqnet', 'seqvlad' or 'seqgem'")


@torch.no_grad()
def encode_frames(model: WindowModel, x: np.ndarray, device: torch.device, batch: int = 4096) -> np.ndarray:
    """Per-frame outputs [N, D_out] of a per-frame model for descriptors ``x`` [N, D_in]."""
    model.eval()
    out = [model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])).to(device)[:, None, :])[:, 0].cpu() for i in range(0, len(x), batch)]
    if not out:
        return np.zeros((0, model.out_dim), np.float32)
    return torch.cat(out).numpy().astype(np.float32)


@torch.no_grad()
def encode_windows(model: WindowModel, x: np.ndarray, starts: np.ndarray, seq_len: int, device: torch.device, batch: int = 1024) -> np.ndarray:
    """One output per window [n, D_out] (window models) for windows of ``x`` [N, D_in] starting at ``starts`` [n]."""
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    # large outputs (SeqVLAD: K * H) in smaller batches, so that one batch stays near 64 MiB
    batch = max(1, min(batch, int(64 * 2**20 // (4 * max(model.out_dim, 1)))))
    out = []
    for i in range(0, len(starts), batch):
        idx = torch.from_numpy(window_indices(starts[i : i + batch], seq_len))
        out.append(model(xt[idx].to(device))[:, 0].cpu())
    if not out:
        return np.zeros((0, model.out_dim), np.float32)
    return torch.cat(out).numpy().astype(np.float32)
